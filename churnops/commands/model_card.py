"""``python run.py --model-card [VERSION]``: print a model version's card as Markdown."""

from __future__ import annotations

import argparse
from typing import Any

from churnops.core.errors import UserError
from churnops.core.settings import StatePaths

CARD_ARTIFACT = "model_card"


def missing_card_reason(metadata: dict[str, Any]) -> str:
    """Why a version has no card, from what its training recorded."""
    verdict = metadata.get("verdict")
    if verdict == "invalid_data":
        return "its data failed validation, so it was never evaluated or promoted"
    if verdict is None:
        return "its training run stopped before the promotion step, so it was never promoted"
    return (f"it was trained (verdict: {verdict}) before the training pipeline wrote model cards; "
            "train again to get a card")


def card_markdown(version_name: str | None) -> str:
    """The card of a version (None: production) as Markdown; UserError when there is none."""
    from churnops.platform import deployment
    from churnops.reporting.model_card import render_markdown

    try:
        version = deployment.get_version(deployment.MODEL_NAME, version_name)
    except deployment.DeploymentError as error:
        raise UserError(str(error)) from None
    artifact = version.get_artifact(CARD_ARTIFACT)
    if artifact is None:
        raise UserError(f"model version {version.number} of '{deployment.MODEL_NAME}' has no model card: "
                        f"{missing_card_reason(dict(version.run_metadata))} (see `python run.py --models`)")
    return render_markdown(artifact.load())


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.platform.bootstrap import ensure_stack

    ensure_stack(paths, args.stack)
    print(card_markdown(None if args.model_card == "production" else args.model_card), end="")
    return 0

"""``python run.py --models``: every version of the churn model, and which one serves."""

from __future__ import annotations

import argparse
from typing import Any

from churnops.core.settings import StatePaths
from churnops.modeling.governance import CONTRACT_DIGEST_KEY, describe_overrides

COLUMNS = ("version", "stage", "created", "F1", "ROC-AUC", "gate verdict", "contract", "Bento tag", "serving",
           "gate override")


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def version_rows(paths: StatePaths) -> list[dict[str, str]]:
    from churnops.platform import deployment

    record = deployment.running_deployment(paths)
    rows = []
    for version in deployment.list_versions(deployment.MODEL_NAME):
        metadata = version.run_metadata
        stage = deployment.stage_of(version)
        serving = record is not None and record.model_version == str(version.number)
        rows.append({
            "version": str(version.number),
            "stage": stage or "-",
            "created": version.created.strftime("%Y-%m-%d %H:%M"),
            "F1": _number(metadata.get("f1")),
            "ROC-AUC": _number(metadata.get("roc_auc")),
            "gate verdict": str(metadata.get("verdict", "-")),
            "contract": str(metadata.get(CONTRACT_DIGEST_KEY) or "-"),
            "Bento tag": str(metadata.get("bento_tag") or "-"),
            "serving": f"yes, {record.url}" if serving and record else "",
            "gate override": describe_overrides(metadata),
        })
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS).rstrip(),
             "  ".join("-" * widths[c] for c in COLUMNS)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    rows = version_rows(paths)
    if not rows:
        print("No versions of churn_classifier yet: train one with `python run.py --pipeline training`.")
        return 0
    print(format_table(rows))
    if any(r["stage"] == "production" for r in rows):
        print("\nRedeploy: python run.py --pipeline deploy [--version N] --serve    "
              "Roll back: python run.py --pipeline rollback [--to VERSION]")
    return 0

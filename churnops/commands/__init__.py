"""What each ``run.py`` action does (the CLI layer). One module per action; imported lazily.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from churnops.core.settings import StatePaths


def run_pipeline(name: str, args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.platform.bootstrap import ensure_stack

    stack = ensure_stack(paths, args.stack)
    if args.stack and args.pipeline is None:
        print(f"Active stack: {stack}")
        return 0
    module = importlib.import_module(f"churnops.commands.{name}")
    return int(module.run(args, paths))


def run_models(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.platform.bootstrap import ensure_stack

    ensure_stack(paths, args.stack)
    from churnops.commands import models

    return models.run(args, paths)


def run_feedback(path: Path, args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.commands import feedback

    return feedback.run(path, args, paths)


def run_prune_logs(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.commands import retention

    return retention.prune(args, paths)


def run_forget_customer(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.commands import retention

    return retention.forget(args, paths)

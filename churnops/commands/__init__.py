"""What each ``run.py`` action does (the CLI layer). One module per action; imported lazily.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from churnops.core.settings import StatePaths

# Pipelines whose command module is named otherwise.
COMMAND_MODULES = {"batch_inference": "batch"}


def run_pipeline(name: str, args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.platform.bootstrap import ensure_stack
    from churnops.platform.speedups import memoize_package_lookups

    # Before ZenML stores its first artifact: one package scan per process instead of one per artifact.
    memoize_package_lookups()
    stack = ensure_stack(paths, args.stack)
    if args.stack and args.pipeline is None:
        print(f"Active stack: {stack}")
        return 0
    # simulate --loop is the closed loop, which drives simulate, monitoring and deploy in turn.
    looping = name == "simulate" and getattr(args, "loop", False)
    module_name = "closed_loop" if looping else COMMAND_MODULES.get(name, name)
    module = importlib.import_module(f"churnops.commands.{module_name}")
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

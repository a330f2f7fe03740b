"""Where a model came from: code version and library versions."""

from __future__ import annotations

import importlib.metadata
import subprocess

from churnops.core.settings import PROJECT_ROOT

TRACKED_LIBRARIES = ("zenml", "scikit-learn", "pandas", "numpy", "mlflow", "bentoml", "evidently", "pandera")


def git_commit() -> str:
    """The checked-out commit (with ``-dirty`` for local changes), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def library_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions

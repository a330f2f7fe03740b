"""Test session set-up: every test runs against a throwaway CHURNOPS_HOME.

The environment is configured here, at import, because ZenML, MLflow and BentoML read it
when they are first imported (test modules import them while being collected).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from churnops.core.settings import StatePaths, configure_environment, state_paths

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="churnops-test-"))
SESSION_PATHS = configure_environment(_SESSION_HOME)
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
# Hypothesis (tests/test_fuzz_runtime.py) caches data under ./.hypothesis unless told otherwise.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(_SESSION_HOME / "hypothesis"))


@pytest.fixture(scope="session")
def session_paths() -> StatePaths:
    """The isolated state folder shared by in-process tests (ZenML's client is per process)."""
    from churnops.platform.bootstrap import ensure_stack

    ensure_stack(SESSION_PATHS, "local")
    return SESSION_PATHS


@pytest.fixture
def fresh_home(tmp_path: Path) -> StatePaths:
    """A brand-new state folder for tests that run churnops in subprocesses."""
    return state_paths(tmp_path / "home")


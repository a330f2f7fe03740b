"""Test session set-up: every test runs against a throwaway CHURNOPS_HOME.

The environment is configured here, at import, because ZenML, MLflow and BentoML read it
when they are first imported (test modules import them while being collected).

`make test` runs the suite on pytest-xdist workers (`-n`, `--dist loadfile`). Each worker is a
process of its own and imports this file itself, so each gets its own CHURNOPS_HOME, and with it
its own ZENML_CONFIG_PATH, BENTOML_HOME, MLflow store and inference log; servers take free ports
(churnops.platform.ports.free_port). `--dist loadfile` keeps every test of a file on one worker, so a
module fixture (a served Bento, say) is set up once and tests that run in order within a module
(``test_zz_...`` last) still do.

Fixtures for tests:

- ``session_paths``: the worker's isolated state folder with the local stack active, for
  in-process tests (ZenML's client is one per process).
- ``fresh_home``: a brand-new, empty state folder for tests that run churnops in subprocesses.
- ``trained_store``: a state folder holding one promoted production version (version 1) of
  ``churn_classifier``, trained by ``python run.py --pipeline training --config
  configs/training-fast.yaml`` and packaged as a Bento. It is trained once per pytest run and shared
  by every worker (each worker gets its own copy); treat it as READ-ONLY: query it, load its model,
  read its Bento. ``trained_store_summary`` is that training run's ``--summary-json``.
- ``trained_home``: a private, writable copy of ``trained_store`` for one test (about a second to
  make, against about a minute to train): train again, deploy, roll back, tamper with it.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from churnops.core.settings import PROJECT_ROOT, StatePaths, configure_environment, state_paths

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")  # gw0, gw1, ... under pytest-xdist
_SESSION_HOME = Path(tempfile.mkdtemp(prefix=f"churnops-test-{WORKER}-"))
SESSION_PATHS = configure_environment(_SESSION_HOME)
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
# Hypothesis (tests/test_fuzz_runtime.py) caches data under ./.hypothesis unless told otherwise.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(_SESSION_HOME / "hypothesis"))

FAST_TRAINING_CONFIG = PROJECT_ROOT / "configs" / "training-fast.yaml"


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


def _run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every worker of this pytest run sees: the parent of the workers' temp folders."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (workers are processes: a file lock serialises them)."""
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_shared_store(root: Path) -> tuple[StatePaths, dict[str, Any]]:
    """Train configs/training-fast.yaml once per pytest run into ``root``; later callers reuse it.

    A failed training is recorded too, so that the other workers fail at once with its output
    instead of each training again.
    """
    from tests.support import run_cli

    source = StatePaths(root / "trained-store-source")
    summary_file, failure_file = root / "trained-store.json", root / "trained-store.failed"
    with _exclusive(root / "trained-store.lock"):
        if not summary_file.exists() and not failure_file.exists():
            result = run_cli(source, "--pipeline", "training", "--config", str(FAST_TRAINING_CONFIG),
                             "--summary-json", str(root / "trained-store.partial.json"))
            summary = json.loads((root / "trained-store.partial.json").read_text()) if result.returncode == 0 else {}
            if (summary.get("model_version"), summary.get("stage")) == ("1", "production"):
                summary_file.write_text(json.dumps(summary))
            else:
                failure_file.write_text(f"exit code {result.returncode}, summary {summary}\n"
                                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    if failure_file.exists():
        pytest.fail(f"training the shared store ({FAST_TRAINING_CONFIG.name}) failed:\n{failure_file.read_text()}")
    return source, json.loads(summary_file.read_text())


@pytest.fixture(scope="session")
def _shared_trained_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[StatePaths, dict[str, Any]]:
    return _train_shared_store(_run_root(tmp_path_factory))


@pytest.fixture(scope="session")
def trained_store(_shared_trained_store: tuple[StatePaths, dict[str, Any]],
                  tmp_path_factory: pytest.TempPathFactory) -> StatePaths:
    """This worker's read-only copy of the trained store (version 1 in production, with its Bento)."""
    from tests.stores import copy_state

    source, _ = _shared_trained_store
    return copy_state(source, tmp_path_factory.mktemp("trained-store") / "home")


@pytest.fixture(scope="session")
def trained_store_summary(_shared_trained_store: tuple[StatePaths, dict[str, Any]]) -> dict[str, Any]:
    """The ``--summary-json`` of the training run behind ``trained_store`` (a copy: change it freely)."""
    return json.loads(json.dumps(_shared_trained_store[1]))


@pytest.fixture
def trained_home(_shared_trained_store: tuple[StatePaths, dict[str, Any]], tmp_path: Path) -> StatePaths:
    """A private, writable copy of the trained store for one test."""
    from tests.stores import copy_state

    source, _ = _shared_trained_store
    return copy_state(source, tmp_path / "trained-home")

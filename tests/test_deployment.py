"""Deploy, roll back and list through the Model Control Plane, as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from churnops.core.settings import PROJECT_ROOT, StatePaths
from churnops.platform.ports import free_port
from tests.support import model_versions, run_cli

FAST = str(PROJECT_ROOT / "configs" / "training-fast.yaml")


def served_version(url: str) -> str:
    return requests.get(f"{url}/model_info", timeout=10).json()["model_version"]


def test_package_step_builds_nothing_without_a_promotion(session_paths):
    import bentoml
    from bentoml.exceptions import NotFound

    from churnops.modeling.evaluation import compute_metrics
    from churnops.modeling.promotion import GateConfig, decide
    from steps.deployment import package_model

    metrics = compute_metrics(np.array([0, 1, 0, 1]), np.array([0.6, 0.4, 0.7, 0.3]), 0.5)
    rejected = decide("churn_classifier", "9", metrics, baseline_f1=0.5, gate=GateConfig(), champion=None)
    assert rejected.verdict == "rejected" and not rejected.promoted

    def bentos() -> list[str]:
        try:
            return [str(b.tag) for b in bentoml.bentos.list("churn_service")]
        except NotFound:
            return []

    before = bentos()
    assert package_model.entrypoint(rejected, churn_classifier=None, dataset_schema=None) == ""
    assert bentos() == before


@pytest.mark.slow
def test_train_deploy_rollback_list_and_stop(trained_home, tmp_path):
    empty_home = StatePaths(tmp_path / "empty-home")
    empty = run_cli(empty_home, "--models")
    assert empty.returncode == 0 and "No versions" in empty.stdout
    nothing = run_cli(empty_home, "--pipeline", "rollback")
    assert nothing.returncode == 2 and "nothing to roll back" in nothing.stderr

    # Version 1, trained by the same config, is in production in trained_home (tests/conftest.py): train version 2.
    home = trained_home
    trained = run_cli(home, "--pipeline", "training", "--config", FAST)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    first, second = model_versions(home)
    # The training pipeline packaged each promoted version and recorded its Bento.
    assert first["metadata"]["bento_tag"].startswith("churn_service:")
    assert second["metadata"]["bento_tag"] != first["metadata"]["bento_tag"]
    assert (first["stage"], second["stage"]) == ("archived", "production")

    port = free_port()
    deployed = run_cli(home, "--pipeline", "deploy", "--serve", "--port", str(port))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr[-3000:]
    record = json.loads(home.deployment_file.read_text())
    assert record["url"] == f"http://127.0.0.1:{port}" and record["model_version"] == "2"
    try:
        assert served_version(record["url"]) == "2"
        listing = run_cli(home, "--models")
        assert listing.returncode == 0
        rows = {line.split()[0]: line for line in listing.stdout.splitlines() if line[:1].isdigit()}
        assert "production" in rows["2"] and f"yes, {record['url']}" in rows["2"]
        assert first["metadata"]["bento_tag"] in rows["1"] and "archived" in rows["1"]

        rolled = run_cli(home, "--pipeline", "rollback", "--reason", "canary errors")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr[-3000:]
        assert "production is now version 1" in rolled.stdout
        after = json.loads(home.deployment_file.read_text())
        assert after["model_version"] == "1" and after["port"] == port and after["pid"] != record["pid"]
        assert served_version(after["url"]) == "1"
        assert requests.get(f"{after['url']}/model_info", timeout=10).json()["stage"] == "production"

        first, second = model_versions(home)
        assert (first["stage"], second["stage"]) == ("production", "archived")
        for version in (first, second):
            assert "canary errors" in version["metadata"]["rollback_reason"]
            assert version["metadata"]["rollback_at"]
        assert first["metadata"]["bento_tag"] == after["bento_tag"]

        # Version 1 is the oldest and 2 was rolled back from: nothing earlier, nothing changes.
        again = run_cli(home, "--pipeline", "rollback")
        assert again.returncode == 2 and "no earlier production version" in again.stderr
        assert [v["stage"] for v in model_versions(home)] == ["production", "archived"]
        assert served_version(after["url"]) == "1"
    finally:
        stopped = run_cli(home, "--pipeline", "deploy", "--stop")
    assert stopped.returncode == 0 and "Stopped the service" in stopped.stdout
    assert not home.deployment_file.exists()
    from churnops.platform.deployment import _is_our_server

    assert not _is_our_server(after["pid"])  # gone (a zombie awaiting its reaper has no command line)

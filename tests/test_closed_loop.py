"""The closed loop end to end, as a user runs it: ``python run.py --pipeline simulate --loop``.

A drifted world triggers retraining; the retrained winner is staged and served in shadow beside
production; labelled traffic comes back; ``promote_on_evidence`` decides by the live rule. Then a
deliberately worse challenger (the old version, which the drifted world has left behind) goes out
as a canary: it is never promoted, and it is rolled back automatically. Real CLI processes, a real
BentoML service on a free loopback port, a real ZenML store in a throwaway state folder; one test,
because each stage needs the one before.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests
import yaml

from churnops.core.settings import PROJECT_ROOT
from tests.support import model_versions, run_cli

pytestmark = pytest.mark.slow

CONFIGS = PROJECT_ROOT / "configs"
REQUESTS = 1500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_configs(tmp_path: Path, port: int) -> tuple[Path, Path]:
    monitoring = yaml.safe_load((CONFIGS / "monitoring.yaml").read_text())
    monitoring["retraining"]["training_config"] = str(CONFIGS / "training-fast.yaml")
    monitoring_path = tmp_path / "monitoring.yaml"
    monitoring_path.write_text(yaml.safe_dump(monitoring))
    simulate = yaml.safe_load((CONFIGS / "simulate.yaml").read_text())
    simulate["seed"] = 2024  # the same customers every run: no flaky verdicts
    simulate["loop"].update({"monitoring_config": str(monitoring_path), "port": port, "deploy_challenger": "shadow"})
    simulate_path = tmp_path / "simulate.yaml"
    simulate_path.write_text(yaml.safe_dump(simulate))
    return monitoring_path, simulate_path


def by_number(paths) -> dict[int, dict]:
    return {v["number"]: v for v in model_versions(paths)}


def test_drift_retrain_shadow_promote_then_a_worse_canary_is_rolled_back(trained_home, tmp_path):
    paths = trained_home  # training-fast.yaml's version 1 in production (tests/conftest.py)
    port = free_port()
    monitoring_path, simulate_path = write_configs(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    loop_json = tmp_path / "loop.json"
    result = run_cli(paths, "--pipeline", "simulate", "--loop", "--requests", str(REQUESTS), "--drift", "high",
                     "--config", str(simulate_path), "--summary-json", str(loop_json), timeout=1500)
    try:
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-5000:]
        # Each stage is printed, in order.
        assert all(f"=== [{n}/5]" in result.stdout for n in range(1, 6)), result.stdout[-6000:]
        positions = [result.stdout.index(f"=== [{n}/5]") for n in range(1, 6)]
        assert positions == sorted(positions), result.stdout[-5000:]
        loop = json.loads(loop_json.read_text())
        assert loop["production_version"] == "1"
        assert loop["monitoring"]["action"] == "retrain"
        # The retrained version passed the gate, so it is staged (as the challenger if it also won offline, where
        # the test set is still mostly the old world's) and served in shadow: live traffic decides.
        assert loop["retrained_version"] == "2" and loop["retrained_verdict"] in {"challenger", "staged"}, loop
        assert loop["challenger_version"] == "2"
        assert "deployed in shadow beside production v1" in result.stdout
        # Both versions scored every evidence request; the rule decided on the paired live comparison.
        evidence = loop["evidence_monitoring"]
        assert evidence["rollout_action"] == "promote", evidence
        assert loop["outcome"] == "promoted"
        assert evidence["live_f1_difference"] > 0  # v2 was trained on the drifted world; v1 was not
        versions = by_number(paths)
        assert (versions[1]["stage"], versions[2]["stage"]) == ("archived", "production")
        assert "live_evidence" in versions[2]["metadata"] and "live_evidence" in versions[1]["metadata"]
        info = requests.get(f"{url}/model_info", timeout=10).json()
        assert info["model_version"] == "2" and not info.get("rollout"), info  # v2 alone, no challenger

        # A deliberately worse challenger: v1, which the drifted world has left behind, as a 50 % canary.
        deployed = run_cli(paths, "--pipeline", "deploy", "--serve", "--port", str(port), "--canary", "50",
                           "--challenger", "1")
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        rollout = requests.get(f"{url}/model_info", timeout=10).json()["rollout"]
        assert (rollout["mode"], str(rollout["challenger_version"])) == ("canary", "1"), rollout
        traffic_json = tmp_path / "canary-traffic.json"
        simulated = run_cli(paths, "--pipeline", "simulate", "--requests", str(REQUESTS), "--drift", "high",
                            "--feedback", "--config", str(simulate_path), "--summary-json", str(traffic_json))
        assert simulated.returncode == 0, simulated.stderr[-3000:]
        answered = json.loads(traffic_json.read_text())["model_versions"]
        # A stable half of the customers (by pseudonymised id) got the canary's answers.
        assert set(answered) == {"1", "2"} and 0.4 < answered["1"] / REQUESTS < 0.6, answered
        judged_json = tmp_path / "canary.json"
        time.sleep(5)  # the service writes its log every 2 s
        code = run_cli(paths, "--pipeline", "monitoring", "--last", str(REQUESTS), "--config", str(monitoring_path),
                       "--summary-json", str(judged_json))
        assert code.returncode == 0, code.stdout[-4000:] + code.stderr[-3000:]
        judged = json.loads(judged_json.read_text())
        assert judged["challenger_version"] == "1" and judged["rollout_action"] == "rollback", judged
        versions = by_number(paths)
        # Never promoted: v2 is still production, v1 archived, and the rollback recorded on both.
        assert (versions[1]["stage"], versions[2]["stage"]) == ("archived", "production")
        assert versions[1]["metadata"]["rollback_role"] == "replaced"
        assert "rollback_reason" in versions[2]["metadata"]
        info = requests.get(f"{url}/model_info", timeout=10).json()
        assert info["model_version"] == "2" and not info.get("rollout"), info
    finally:
        run_cli(paths, "--pipeline", "deploy", "--stop")

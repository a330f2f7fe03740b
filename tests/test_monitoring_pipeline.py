"""The monitoring loop end to end, as a user runs it: train → serve → simulate → monitor → retrain.

Real CLI processes, a real BentoML service on a free loopback port, a real ZenML store in a
throwaway state folder. One test, because every stage needs the previous one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from churnops.core.settings import PROJECT_ROOT, StatePaths, environment
from churnops.monitoring.inference_log import WindowSpec, read_window
from tests.support import run_cli

pytestmark = pytest.mark.slow

CONFIGS = PROJECT_ROOT / "configs"


_VERSIONS = """
import json
from zenml.client import Client
versions = Client().list_model_versions(model="churn_classifier", size=100)
print("JSON:" + json.dumps([{"number": v.number, "metadata": dict(v.run_metadata)} for v in versions], default=str))
"""


def model_versions(paths: StatePaths) -> list[dict]:
    """Model versions of churn_classifier in the store of ``paths`` (queried in a separate process)."""
    result = subprocess.run([sys.executable, "-c", _VERSIONS], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, **environment(paths)}, timeout=300, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("JSON:"))
    return sorted(json.loads(line[5:]), key=lambda v: v["number"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def monitoring_config(tmp_path: Path, name: str, retrain_on_drift: bool) -> Path:
    config = yaml.safe_load((CONFIGS / "monitoring.yaml").read_text())
    config["parameters"]["retrain_on_drift"] = retrain_on_drift
    config["retraining"]["training_config"] = str(CONFIGS / "training-fast.yaml")
    config["retraining"]["deploy_challenger"] = "off"  # a winner replaces production (shadow: test_closed_loop.py)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def simulate_config(tmp_path: Path) -> Path:
    config = yaml.safe_load((CONFIGS / "simulate.yaml").read_text())
    config["seed"] = 2024  # the same customers every run: no flaky verdicts
    path = tmp_path / "simulate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def wait_for_log(paths: StatePaths, rows: int, timeout: float = 60) -> None:
    """The service writes its log in the background (every ~2 s): wait until ``rows`` are on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame, _ = read_window(paths.inference_log_dir, WindowSpec(hours=24))
        if len(frame) >= rows:
            return
        time.sleep(0.5)
    raise AssertionError(f"the inference log holds {len(frame)} rows, expected {rows}")


def monitor(paths: StatePaths, tmp_path: Path, name: str, *args: str) -> tuple[int, dict, str]:
    summary_path = tmp_path / f"{name}.json"
    result = run_cli(paths, "--pipeline", "monitoring", "--summary-json", str(summary_path), *args)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return result.returncode, summary, result.stdout + result.stderr


def test_train_serve_simulate_monitor_retrain(fresh_home, trained_home, tmp_path):
    # No production model yet: a clear error naming what to run.
    code, _, output = monitor(fresh_home, tmp_path, "no-model")
    assert code == 2 and "python run.py --pipeline training" in output, output[-2000:]

    # Trained: a copy of the store in which training-fast.yaml's version 1 is in production (tests/conftest.py).
    paths = trained_home

    # Nothing served yet: an empty window is a message, not a failure.
    code, empty, output = monitor(paths, tmp_path, "empty")
    assert code == 0, output[-3000:]
    assert empty["window_rows"] == 0 and empty["action"] == "none" and "empty window" in empty["message"]

    simulate = simulate_config(tmp_path)
    result = run_cli(paths, "--pipeline", "simulate", "--requests", "10", "--config", str(simulate))
    assert result.returncode == 2 and "--pipeline deploy --serve" in result.stderr

    result = run_cli(paths, "--pipeline", "deploy", "--serve", "--port", str(free_port()))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    try:
        # Healthy traffic with its outcomes: no alert.
        result = run_cli(paths, "--pipeline", "simulate", "--requests", "1000", "--feedback",
                         "--config", str(simulate))
        assert result.returncode == 0, result.stderr[-3000:]
        assert "1,000 of 1,000 customers served" in result.stdout
        wait_for_log(paths, 1000)
        code, healthy, output = monitor(paths, tmp_path, "healthy")
        assert code == 0, output[-3000:]
        assert (healthy["window_rows"], healthy["labelled_rows"]) == (1000, 1000)
        assert healthy["alert_count"] == 0 and healthy["action"] == "none", healthy["reasons"]
        assert not healthy["performance_below_gate"] and healthy["live_f1"] > 0.5
        # The label-free estimate (calibrated probabilities only) lands near what the labels then say.
        assert abs(healthy["estimated_f1"] - healthy["live_f1"]) < 0.15, (healthy["estimated_f1"], healthy["live_f1"])
        assert 0 < healthy["prediction_rate"] < 1 and healthy["trend_runs"] == 1  # the empty window ran no pipeline
        for name, report in healthy["reports"].items():
            assert Path(report).stat().st_size > (1_000_000 if name != "monitoring_report" else 2_000), name

        # Heavily drifted traffic: alert, retraining recommended but not configured.
        result = run_cli(paths, "--pipeline", "simulate", "--requests", "1500", "--drift", "high", "--feedback",
                         "--config", str(simulate))
        assert result.returncode == 0, result.stderr[-3000:]
        wait_for_log(paths, 2500)
        config = monitoring_config(tmp_path, "alert-only", retrain_on_drift=False)
        code, alerted, output = monitor(paths, tmp_path, "alerted", "--last", "1500", "--config", str(config))
        assert code == 0, output[-3000:]
        assert alerted["window_rows"] == 1500 and alerted["action"] == "alert"
        assert alerted["retrain_recommended"] and not alerted["retrain_triggered"]
        assert {"monthly_charges", "support_tickets", "contract_type", "payment_method"} <= set(
            alerted["drifted_features"])
        assert "analysis and retraining recommended" in alerted["message"]
        assert "retrain_on_drift" in output
        assert [v["number"] for v in model_versions(paths)] == [1]

        # The same with retrain_on_drift: the training pipeline runs on fresh data.
        config = monitoring_config(tmp_path, "retrain", retrain_on_drift=True)
        code, retrained, output = monitor(paths, tmp_path, "retrained", "--last", "1500", "--config", str(config))
        assert code == 0, output[-3000:]
        assert retrained["action"] == "retrain" and retrained["retrain_triggered"]
        assert retrained["trend_runs"] == 3  # healthy and alerted, read back from their artifacts, and this run
        # Every labelled prediction, one row per customer: with the fixed seed the drifted run reused the
        # healthy run's 1,000 customer ids, and a customer's latest prediction wins.
        assert retrained["retraining_production_rows"] == 1500
        assert retrained["retrained_version"] == "2"
        assert retrained["retrained_verdict"] in {"promoted", "staged", "rejected"}
        versions = model_versions(paths)
        assert [v["number"] for v in versions] == [1, 2]
        assert versions[0]["metadata"]["monitoring"]["action"] == "retrain"
        assert versions[1]["metadata"]["data_source"].endswith("retraining_data.parquet")
    finally:
        run_cli(paths, "--pipeline", "deploy", "--stop")

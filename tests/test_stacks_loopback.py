"""Stacks end to end on loopback: the dashboard server, the cloud-sim stack, the way back.

One module, one state folder, one set of services (starting them is the expensive part):

1. a local ZenML server; a training run on ``local-server``; its REST API lists the run,
   its steps, the model version, and serves the run's HTML visualizations;
2. moto (S3) + an MLflow server storing artifacts in S3; a training run on ``cloud-sim``:
   promoted, artifacts in the bucket, the MLflow run on the server;
3. the ZenML server stopped, ``--stack local`` on the embedded store, the production model
   loaded from S3 with the credentials of a ZenML secret (no AWS variables anywhere);
4. everything torn down, no process left.

Subprocesses never see AWS_* variables: S3 access must come from the ZenML secret.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from churnops.core.settings import PROJECT_ROOT, StatePaths, environment, state_paths
from churnops.platform import cloudsim
from churnops.platform.ports import free_port
from churnops.platform.run_config import with_docker_settings
from churnops.platform.services import group_members, pid_alive, stop_process

pytestmark = pytest.mark.slow

FAST = PROJECT_ROOT / "configs" / "training-fast.yaml"
TRAINING_STEPS = {"load_dataset", "validate_dataset", "split_dataset", "train_model", "evaluate_model",
                  "promote_model"}


def _env(paths: StatePaths, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **environment(paths), "ZENML_AUTO_OPEN_DASHBOARD": "false", **(extra or {})}


def _run(paths: StatePaths, args: list[str], extra: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=_env(paths, extra), capture_output=True,
                          text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@dataclass
class Loopback:
    paths: StatePaths
    zenml_url: str
    zenml_pid: int
    sim: cloudsim.CloudSim
    config: Path

    @property
    def api(self) -> str:
        return f"{self.zenml_url}/api/v1"

    def get(self, path: str, **params) -> dict:
        response = requests.get(f"{self.api}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def leftovers(self) -> list[str]:
        """Live processes we started or that work on this state folder."""
        found = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmdline = " ".join(process.info["cmdline"] or [])
                if process.pid == os.getpid():
                    continue
                ours = str(self.paths.home) in cmdline or any(
                    f"-p {port}" in cmdline or f"--port {port}" in cmdline for port in self.ports)
                if ours and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(f"{process.pid}: {cmdline[:160]}")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        found += [f"{pid} (recorded)" for pid in (self.zenml_pid,) if pid_alive(pid)]
        found += [f"group {pid}" for pid in (self.sim.moto_pid, self.sim.mlflow_pid) if group_members(pid)]
        return found

    @property
    def ports(self) -> list[str]:
        return [url.rsplit(":", 1)[1] for url in (self.zenml_url, self.sim.s3_endpoint, self.sim.mlflow_url)]

    def teardown(self) -> None:
        """Stop the ZenML server (through ZenML), the emulators; kill anything that survived."""
        _run(self.paths, ["-m", "churnops.commands.dashboard", "stop"], timeout=120)
        cloudsim.stop_services(self.paths)
        if pid_alive(self.zenml_pid):
            stop_process(self.zenml_pid)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory) -> Loopback:
    folder = tmp_path_factory.mktemp("loopback")
    paths = state_paths(folder / "home")
    # The fast training config, carrying the pipeline's container settings: ZenML must accept
    # them on every stack (the local orchestrator ignores them).
    config = folder / "training-fast-docker.yaml"
    config.write_text(yaml.safe_dump(with_docker_settings(yaml.safe_load(FAST.read_text()), "training")))
    port = free_port()
    started = _ok(_run(paths, ["-m", "churnops.commands.dashboard", "start", "--port", str(port)], timeout=180))
    url = f"http://127.0.0.1:{port}"
    assert url in started
    zenml_pid = int((paths.zenml_config / "zen_server" / "daemon" / "service.pid").read_text())
    sim = None
    try:
        sim = cloudsim.start_services(paths)
        services = Loopback(paths, url, zenml_pid, sim, config)
        yield services
    finally:
        if sim is None:
            _run(paths, ["-m", "churnops.commands.dashboard", "stop"], timeout=120)
            stop_process(zenml_pid)
        else:
            services.teardown()


@pytest.fixture(scope="module")
def local_server_run(loopback) -> dict:
    summary = loopback.paths.home / "local-server.json"
    output = _ok(_run(loopback.paths, ["run.py", "--stack", "local-server", "--pipeline", "training",
                                       "--config", str(loopback.config), "--summary-json", str(summary)]))
    assert f"ZenML dashboard: {loopback.zenml_url}" in output
    return json.loads(summary.read_text())


def test_dashboard_serves_the_run_its_steps_the_model_version_and_html_visualizations(loopback, local_server_run):
    run_id = local_server_run["run_id"]
    assert local_server_run["stack"] == "churnops-local-server"

    # The first-visit form is skipped: the local user is onboarded, not opted in to e-mails.
    user = loopback.get("/current-user")
    assert user["metadata"]["user_metadata"]["finished_onboarding_survey"] is True
    assert user["body"]["email_opted_in"] is False
    page = requests.get(loopback.zenml_url, timeout=30)
    assert page.ok and "<html" in page.text.lower()

    runs = {r["id"]: r for r in loopback.get("/runs", size=20)["items"]}
    assert runs[run_id]["body"]["status"] == "completed"

    steps = loopback.get("/steps", pipeline_run_id=run_id, size=50)["items"]
    assert {s["name"] for s in steps} >= TRAINING_STEPS
    assert all(s["body"]["status"] == "completed" for s in steps)

    versions = loopback.get("/models/churn_classifier/model_versions")["items"]
    version = next(v for v in versions if v["name"] == local_server_run["model_version"])
    assert version["body"]["stage"] == "production"
    linked_runs = loopback.get("/model_version_pipeline_runs", model_version_id=version["id"])["items"]
    assert [link["body"]["pipeline_run"]["id"] for link in linked_runs] == [run_id]
    linked = loopback.get("/model_version_artifacts", model_version_id=version["id"], size=50)["items"]
    linked_ids = {link["body"]["artifact_version"]["id"] for link in linked}
    model_artifact = next(s for s in steps if s["name"] == "train_model")["resources"]["outputs"]["churn_classifier"]
    assert model_artifact[0]["id"] in linked_ids

    # Every HTML visualization of the run's outputs is served as a complete HTML page.
    outputs = [a for s in steps for arts in s["resources"]["outputs"].values() for a in arts]
    served = {}
    for artifact in outputs:
        detail = loopback.get(f"/artifact_versions/{artifact['id']}", hydrate="true")
        for index, visualization in enumerate(detail["metadata"]["visualizations"] or []):
            if visualization["body"]["type"] == "html":
                shown = loopback.get(f"/artifact_versions/{artifact['id']}/visualize", index=index)
                assert shown["type"] == "html" and "</html>" in shown["value"].lower()
                served[detail["body"]["artifact"]["name"]] = len(shown["value"])
    assert {"validation_report", "evaluation_report"} <= set(served), served

    # The promoted version's Bento carries the Dockerfile `bentoml containerize` builds from.
    dockerfiles = list((loopback.paths.bentoml_home / "bentos").glob("churn_service/*/env/docker/Dockerfile"))
    assert dockerfiles and "scikit-learn==1.9.1" in " ".join(
        p.read_text() for p in dockerfiles[0].parent.parent.parent.glob("env/python/requirements*.txt"))


@pytest.fixture(scope="module")
def cloud_sim_run(loopback, local_server_run) -> dict:
    summary = loopback.paths.home / "cloud-sim.json"
    _ok(_run(loopback.paths, ["run.py", "--stack", "cloud-sim", "--pipeline", "training", "--config",
                              str(loopback.config), "--summary-json", str(summary)],
             extra=loopback.sim.stack_environment()))
    return json.loads(summary.read_text())


def test_training_on_cloud_sim_promotes_and_stores_everything_remotely(loopback, cloud_sim_run):
    assert cloud_sim_run["stack"] == "churnops-cloud-sim"
    assert (cloud_sim_run["stage"], cloud_sim_run["verdict"]) == ("production", "promoted")
    assert cloud_sim_run["model_version"] == "2"
    assert cloud_sim_run["mlflow_tracking_uri"] == loopback.sim.mlflow_url

    # ZenML artifacts are in the bucket, the model among them, and the server knows them there.
    s3 = loopback.sim.s3_client()
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loopback.sim.bucket)
            for o in page.get("Contents", [])]
    assert any(k.startswith("zenml/train_model/churn_classifier/") for k in keys)
    steps = loopback.get("/steps", pipeline_run_id=cloud_sim_run["run_id"], size=50)["items"]
    model = next(s for s in steps if s["name"] == "train_model")["resources"]["outputs"]["churn_classifier"][0]
    assert model["body"]["uri"].startswith(f"s3://{loopback.sim.bucket}/zenml/")

    # The server reads S3 itself (the secret resolves server-side) to show the visualizations.
    report = next(s for s in steps if s["name"] == "evaluate_model")["resources"]["outputs"]["evaluation_report"][0]
    shown = loopback.get(f"/artifact_versions/{report['id']}/visualize", index=0)
    assert shown["type"] == "html" and "</html>" in shown["value"].lower()

    # The MLflow run lives on the tracking server, its artifacts in the same bucket.
    mlflow = f"{loopback.sim.mlflow_url}/api/2.0/mlflow"
    experiment = requests.get(f"{mlflow}/experiments/get-by-name", params={"experiment_name": "churn_training"},
                              timeout=30).json()["experiment"]
    runs = requests.post(f"{mlflow}/runs/search", json={"experiment_ids": [experiment["experiment_id"]]},
                         timeout=30).json()["runs"]
    assert any(run["data"].get("metrics") for run in runs)
    assert all(run["info"]["artifact_uri"].startswith("mlflow-artifacts:") for run in runs)
    assert any(k.startswith(f"mlflow/{experiment['experiment_id']}/") for k in keys)


LOAD_PRODUCTION_MODEL = """
import json
from churnops.core.settings import configure_environment
configure_environment()
from zenml.client import Client
from zenml.enums import ModelStages, StoreType
from churnops.data.schema import load_schema
from churnops.data.synthetic import SyntheticSpec, generate_customers
client = Client()
version = client.get_model_version("churn_classifier", ModelStages.PRODUCTION)
artifact = version.get_model_artifact("churn_classifier")
model = artifact.load()
schema = load_schema("synthetic")
frame = generate_customers(SyntheticSpec(rows=25, seed=11))
probabilities = model.predict_proba(frame[schema.feature_names])[:, 1]
print("JSON:" + json.dumps({"store": str(client.zen_store.type.value), "stack": client.active_stack_model.name,
                            "version": str(version.number), "uri": artifact.uri,
                            "probabilities": [float(p) for p in probabilities]}))
"""


def test_switching_back_to_local_loads_the_production_model_from_s3(loopback, cloud_sim_run):
    stopped = _run(loopback.paths, ["-m", "churnops.commands.dashboard", "stop"])
    assert "Stopped the local ZenML server" in _ok(stopped)
    assert not pid_alive(loopback.zenml_pid)
    assert "Active stack: churnops-local" in _ok(_run(loopback.paths, ["run.py", "--stack", "local"]))

    output = _ok(_run(loopback.paths, ["-c", LOAD_PRODUCTION_MODEL]))
    loaded = json.loads(next(line for line in output.splitlines() if line.startswith("JSON:"))[5:])
    # The embedded store (same database the server served), the local stack, the model in S3.
    assert (loaded["store"], loaded["stack"], loaded["version"]) == ("sql", "churnops-local", "2")
    assert loaded["uri"].startswith(f"s3://{loopback.sim.bucket}/zenml/train_model/churn_classifier/")
    assert len(loaded["probabilities"]) == 25 and all(0.0 <= p <= 1.0 for p in loaded["probabilities"])
    assert len(set(loaded["probabilities"])) > 1


def test_teardown_leaves_no_process_behind(loopback):
    assert loopback.leftovers(), "the services should still be up before teardown"
    loopback.teardown()
    assert loopback.leftovers() == []
    assert cloudsim.running(loopback.paths) is None
    for url in (loopback.sim.s3_endpoint, loopback.sim.mlflow_url, loopback.zenml_url):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)


RECOVER = """
from churnops.core.settings import configure_environment
configure_environment()
from churnops.platform.zenml_server import recover_from_dead_local_server
print("recovered:", recover_from_dead_local_server())
from zenml.client import Client
print("store:", Client().zen_store.type.value)
"""


def test_a_killed_local_server_does_not_strand_the_client(fresh_home):
    """kill -9 (or a reboot) leaves the client pointing at a dead URL: it falls back at once."""
    port = free_port()
    _ok(_run(fresh_home, ["-m", "churnops.commands.dashboard", "start", "--port", str(port)], timeout=180))
    pid = int((fresh_home.zenml_config / "zen_server" / "daemon" / "service.pid").read_text())
    try:
        os.kill(pid, 9)
        psutil.Process(pid).wait(timeout=10)
        output = _ok(_run(fresh_home, ["-c", RECOVER], timeout=120))
        assert "recovered: True" in output and "store: sql" in output
        assert f"127.0.0.1:{port} is not running: using the embedded store" in output
    finally:
        if pid_alive(pid):
            stop_process(pid)

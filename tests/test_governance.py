"""The gate holds on every path, as a user meets it: training exit codes, refused rollbacks and
deploys, the recorded override, tampered artifacts, another input contract, a tampered Bento
that the service refuses to serve, and two promotions at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from churnops.core.errors import ExitCode
from churnops.core.settings import PROJECT_ROOT, StatePaths, environment
from churnops.data.synthetic import SyntheticSpec, generate_customers
from tests.support import model_versions, run_cli

pytestmark = pytest.mark.slow

FAST = PROJECT_ROOT / "configs" / "training-fast.yaml"


def strict_gate_config(tmp_path: Path) -> Path:
    """training-fast.yaml with a gate no model meets."""
    config = yaml.safe_load(FAST.read_text())
    config["steps"]["promote_model"]["parameters"]["gate"].update({"f1": 0.99, "roc_auc": 0.99})
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def table_without(tmp_path: Path, dropped: str) -> tuple[Path, Path]:
    """Synthetic customers without one feature, and a schema describing them: another contract."""
    schema = yaml.safe_load((PROJECT_ROOT / "configs" / "datasets" / "synthetic.yaml").read_text())
    schema["numeric"] = [f for f in schema["numeric"] if f["name"] != dropped]
    schema.update(name="synthetic_without_" + dropped, source={"kind": "file", "path": str(tmp_path / "other.csv")})
    generate_customers(SyntheticSpec(rows=3000, seed=5)).drop(columns=[dropped]).to_csv(tmp_path / "other.csv",
                                                                                         index=False)
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(schema))
    return tmp_path / "other.csv", tmp_path / "other.yaml"


def stages(paths: StatePaths) -> dict[int, str | None]:
    return {v["number"]: v["stage"] for v in model_versions(paths)}


def failure(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-2500:] + result.stderr[-2500:]


def test_a_rejected_version_is_refused_until_overridden_and_a_tampered_one_always(trained_home, tmp_path):
    home = trained_home
    # trained_home: version 1, trained by training-fast.yaml, is in production (tests/conftest.py).
    # A candidate that fails the absolute gate: a documented exit code, not 0 and not a crash.
    rejected = run_cli(home, "--pipeline", "training", "--config", str(strict_gate_config(tmp_path)))
    assert rejected.returncode == ExitCode.GATE_REFUSED, failure(rejected)
    assert "REJECTED" in rejected.stdout and "Exit code 4" in rejected.stdout
    assert stages(home) == {1: "production", 2: None}

    # rollback --to and deploy --version of the rejected version are refused; nothing changes.
    for command in (("--pipeline", "rollback", "--to", "2"), ("--pipeline", "deploy", "--version", "2")):
        refused = run_cli(home, *command)
        assert refused.returncode == ExitCode.GATE_REFUSED, failure(refused)
        assert "gate_failed" in refused.stderr and "f1_min" in refused.stderr
        assert "--force --reason TEXT" in refused.stderr
    versions = model_versions(home)
    assert stages(home) == {1: "production", 2: None}
    assert "bento_tag" not in versions[1]["metadata"]

    # The explicit override goes through and is recorded: who, when, why, which rule.
    forced = run_cli(home, "--pipeline", "rollback", "--to", "2", "--force", "--reason", "incident 4711")
    assert forced.returncode == ExitCode.OK, failure(forced)
    assert "GATE OVERRIDDEN (gate_failed)" in forced.stdout
    assert stages(home) == {1: "archived", 2: "production"}
    [override] = model_versions(home)[1]["metadata"]["gate_overrides"]
    assert override["rules"] == ["gate_failed"] and override["reason"] == "incident 4711"
    assert override["action"] == "rollback --to" and override["by"] and override["at"]
    listing = run_cli(home, "--models")
    row = next(line for line in listing.stdout.splitlines() if line.startswith("2 "))
    assert "rollback --to forced past gate_failed" in row and "incident 4711" in row

    # Back to the promoted version: it passes, no override needed.
    restored = run_cli(home, "--pipeline", "rollback", "--to", "1", "--reason", "undo the override")
    assert restored.returncode == ExitCode.OK, failure(restored)
    assert "production is now version 1" in restored.stdout and "input contract synthetic" in restored.stdout
    assert stages(home) == {1: "production", 2: "archived"}

    # A stored artifact that no longer matches its promotion-time hash is refused, override or not named.
    model_file = tampered_model_artifact(home, version=2)
    refused = run_cli(home, "--pipeline", "rollback", "--to", "2")
    assert refused.returncode == ExitCode.GATE_REFUSED, failure(refused)
    assert "artifact_integrity" in refused.stderr and "churn_classifier: recorded sha256" in refused.stderr
    assert stages(home) == {1: "production", 2: "archived"}
    assert model_file.exists()


def test_another_input_contract_never_silently_replaces_production(trained_home, tmp_path):
    # trained_home: version 1, trained by training-fast.yaml on the synthetic contract, is in production.
    data, schema = table_without(tmp_path, "support_tickets")
    other = run_cli(trained_home, "--pipeline", "training", "--config", str(FAST), "--data", str(data),
                    "--schema", str(schema), "--summary-json", str(tmp_path / "other.json"))
    assert other.returncode == ExitCode.NOT_PROMOTED, failure(other)
    summary = json.loads((tmp_path / "other.json").read_text())
    assert (summary["verdict"], summary["stage"]) == ("held", "staging")
    assert "input_contract" in summary["reason"] and "drops fields ['support_tickets']" in summary["reason"]
    assert "--force --reason" in summary["reason"]
    assert stages(trained_home) == {1: "production", 2: "staging"}
    refused = run_cli(trained_home, "--pipeline", "deploy", "--version", "2")
    assert refused.returncode == ExitCode.GATE_REFUSED and "input_contract" in refused.stderr


def tampered_model_artifact(paths: StatePaths, version: int) -> Path:
    """Append a byte to every file of a version's model artifact in the local artifact store."""
    script = textwrap.dedent(f"""
        from zenml.client import Client
        print("URI:" + Client().get_model_version("churn_classifier", {version}).get_model_artifact(
            "churn_classifier").uri)
    """)
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, **environment(paths)},
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    uri = Path(next(line[4:] for line in result.stdout.splitlines() if line.startswith("URI:")))
    files = [p for p in uri.rglob("*") if p.is_file()]
    assert files, f"no files under {uri}"
    for file in files:
        file.write_bytes(file.read_bytes() + b"\0")
    return files[0]


def test_the_service_refuses_to_start_on_a_tampered_model_file(session_paths, tmp_path):
    import bentoml

    from churnops.platform import deployment
    from churnops.platform.ports import free_port
    from churnops.serving.packaging import ModelCard
    from tests.support import clean_customers
    from tests.test_serving_unit import fit

    cleaned, schema = clean_customers(rows=800)
    pipeline = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=300)
    card = ModelCard(model_name="churn_classifier", model_version="1", model_version_id=str(uuid.uuid4()),
                     stage="production", threshold=0.5, dataset="synthetic")
    model_tag = deployment.save_bento_model(pipeline, schema, card)
    bento_tag = deployment.build_bento(model_tag, card)
    pipeline_file = Path(bentoml.models.get(model_tag).path_of("pipeline.joblib"))
    recorded = bentoml.models.get(model_tag).info.metadata["files_sha256"]["pipeline.joblib"]
    pipeline_file.write_bytes(pipeline_file.read_bytes()[:-1] + b"\x00")

    paths = StatePaths(tmp_path / "home")
    with pytest.raises(deployment.DeploymentError) as refused:
        deployment.start_service(paths, bento_tag, "1", port=free_port(), timeout=90,
                                 extra_env={"BENTOML_HOME": os.environ["BENTOML_HOME"]})
    message = str(refused.value)
    assert "before it was ready" in message  # /readyz never answered: the process exited
    assert "pipeline.joblib" in message and recorded in message
    from churnops.serving.packaging import file_sha256

    assert file_sha256(pipeline_file) in message
    assert deployment.read_record(paths) is None


LOCK_SCRIPT = """
import json, sys, time
from churnops.core.settings import configure_environment
configure_environment()
from zenml.client import Client
from zenml.enums import ModelStages
from churnops.platform.deployment import production_version, promotion_lock

me, start_at = int(sys.argv[1]), float(sys.argv[2])
client = Client()
while time.time() < start_at:
    time.sleep(0.005)
with promotion_lock("race_model"):
    entered = time.time()
    production = production_version("race_model")
    mine = client.get_model_version("race_model", me)
    theirs = production.run_metadata.get("f1", 0.0) if production is not None else -1.0
    time.sleep(1.0)  # widen the window a second promotion would race into
    promoted = mine.run_metadata["f1"] > theirs
    if promoted:
        mine.set_stage(ModelStages.PRODUCTION, force=True)
    left = time.time()
print("RESULT:" + json.dumps({"version": me, "entered": entered, "left": left, "promoted": promoted}))
"""


def test_two_promotions_at_once_are_serialised(fresh_home):
    import time

    setup = textwrap.dedent("""
        from churnops.platform.bootstrap import ensure_stack
        from churnops.core.settings import configure_environment
        paths = configure_environment()
        ensure_stack(paths, "local")
        from zenml import log_metadata
        from zenml.client import Client
        client = Client()
        client.create_model("race_model")
        for f1 in (0.61, 0.72):
            version = client.create_model_version("race_model")
            log_metadata({"f1": f1}, model_version_id=version.id)
    """)
    env = {**os.environ, **environment(fresh_home)}
    subprocess.run([sys.executable, "-c", setup], env=env, cwd=PROJECT_ROOT, check=True, timeout=300,
                   capture_output=True)
    start_at = time.time() + 8  # both interpreters are up and waiting by then
    racers = [subprocess.Popen([sys.executable, "-c", LOCK_SCRIPT, str(n), str(start_at)], env=env, cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=180)
        assert racer.returncode == 0, err[-3000:]
        results.append(json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT:"))))
    first, second = sorted(results, key=lambda r: r["entered"])
    assert second["entered"] >= first["left"], f"the critical sections overlapped: {results}"
    check = textwrap.dedent("""
        from churnops.core.settings import configure_environment
        configure_environment()
        from zenml.client import Client
        print("STAGES:" + ",".join(f"{v.number}={v.stage}" for v in Client().list_model_versions(model="race_model")))
    """)
    out = subprocess.run([sys.executable, "-c", check], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=120).stdout
    stage_line = next(line for line in out.splitlines() if line.startswith("STAGES:"))
    assert stage_line.count("production") == 1
    # Whichever came first, the better version (2, F1 0.72) ends in production: the second saw the first's result.
    assert "2=production" in stage_line.replace("ModelStages.PRODUCTION", "production"), stage_line

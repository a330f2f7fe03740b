"""Kubernetes manifests of the served Bento (issue 14, point 6; docs/kubernetes.md).

The builder (churnops.platform.kubernetes) runs on plain data, and everything it writes is
validated with kubernetes-validate against the API schemas of the cluster version the docs name,
strictly (an unknown field is an error). One slow test goes through run.py and the ZenML store:
a missing model, a version the gate refuses, and the override.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from churnops.core.settings import PROJECT_ROOT, environment
from churnops.platform.bootstrap import DEFAULT_STACK
from churnops.platform.kubernetes import (
    BENTO_PORT,
    BENTO_UID,
    FILE_NAMES,
    KUBERNETES_VERSION,
    PLACEHOLDER,
    SECRETS_EXAMPLE,
    ManifestError,
    ManifestOptions,
    ServedModel,
    ServiceEnvironment,
    build_manifests,
    load_options,
    secrets_example,
    write_manifests,
)
from churnops.platform.stacks import load_stack_spec
from churnops.serving.api_keys import ApiKeyError, parse_api_keys
from churnops.serving.config import load_serving_config
from tests.support import run_cli

OPTIONS_FILE = PROJECT_ROOT / "configs" / "kubernetes.yaml"
DOCS = PROJECT_ROOT / "docs" / "kubernetes.md"
# The oldest schemas the docs promise, and the newest the validator ships (a removed API fails there).
VERSIONS = (KUBERNETES_VERSION, kubernetes_validate.latest_version())
MODEL = ServedModel(model_name="churn_classifier", model_version="7", model_version_id="0b5d2c1e-model-version",
                    stage="production", bento_tag="churn_service:kq3x7nbu2gmzxyz5",
                    input_contract_sha256="3f2a9c81d0e4")
# The variable names configs/serving.yaml gives, as the command passes them.
SERVING = load_serving_config(PROJECT_ROOT / "configs" / "serving.yaml")
ENV = ServiceEnvironment(api_key_env=SERVING.auth.key_env, salt_env=SERVING.pseudonymisation.salt_env)


def validate(document: dict[str, Any]) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def applied(folder: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -f DIR` applies: every .yaml/.yml/.json file of the folder, in name order."""
    documents = []
    for path in sorted(folder.iterdir()):
        if path.suffix in {".yaml", ".yml", ".json"}:
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return documents


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = {document["kind"]: document for document in documents}
    assert len(kinds) == len(documents), "one object of each kind"
    return kinds


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_the_docs_name_the_kubernetes_version_the_manifests_are_validated_against():
    text = DOCS.read_text()
    assert f"Kubernetes {KUBERNETES_VERSION}" in text
    assert kubernetes_validate.validate(build_manifests(MODEL)["30-service.yaml"], KUBERNETES_VERSION) == "1.33"
    assert re.search(r"^kubernetes-validate==1\.37\.0$", (PROJECT_ROOT / "requirements-dev.txt").read_text(), re.M)


def test_every_written_manifest_validates_against_the_kubernetes_schemas(tmp_path):
    options = load_options(OPTIONS_FILE)
    assert options == ManifestOptions(), "configs/kubernetes.yaml states the defaults"
    written = write_manifests(tmp_path, build_manifests(MODEL, options, ENV), MODEL, secrets_example(options, MODEL))
    assert [p.name for p in written] == [*FILE_NAMES, SECRETS_EXAMPLE]
    documents = applied(tmp_path)
    for document in documents:
        validate(document)
    assert set(by_kind(documents)) == {"Namespace", "PersistentVolumeClaim", "Deployment", "Service",
                                       "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert all(d["metadata"].get("namespace") == "churnops" for d in documents if d["kind"] != "Namespace")
    assert "validated against the Kubernetes 1.33 API schemas" in (tmp_path / "20-deployment.yaml").read_text()


def test_the_deployment_probes_resources_security_and_volumes():
    kinds = by_kind(list(build_manifests(MODEL, ManifestOptions(), ENV).values()))
    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    assert container["image"] == "churn_service:kq3x7nbu2gmzxyz5"  # what `bentoml containerize` names it
    assert container["args"] == ["serve", "--port", "3000"]
    assert container["ports"] == [{"name": "http", "containerPort": BENTO_PORT, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz" and startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                      "limits": {"cpu": "2", "memory": "2Gi"}}
    assert container["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsUser"] == BENTO_UID == pod["securityContext"]["fsGroup"]
    assert pod["automountServiceAccountToken"] is False

    env = {item["name"]: item for item in container["env"]}
    assert env["CHURNOPS_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "churn-service-api-key", "key": "api_key", "optional": True}
    salt = env["CHURNOPS_CUSTOMER_SALT"]["valueFrom"]["secretKeyRef"]
    assert salt == {"name": "churn-service-customer-salt", "key": "salt"}  # required: no per-pod salts
    assert all("value" not in env[name] for name in ("CHURNOPS_API_KEY", "CHURNOPS_CUSTOMER_SALT"))

    # Every place the service writes is a mounted volume; the log's volume is the claim.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts.values()) == set(volumes)
    log_dir = env["CHURNOPS_INFERENCE_LOG_DIR"]["value"]
    assert volumes[mounts[log_dir]]["persistentVolumeClaim"]["claimName"] == kinds["PersistentVolumeClaim"][
        "metadata"]["name"]
    writable = {env["CHURNOPS_HOME"]["value"], "/tmp"}
    assert writable <= set(mounts) and all("emptyDir" in volumes[mounts[path]] for path in writable)
    assert env["BENTOML_HOME"]["value"].startswith(env["CHURNOPS_HOME"]["value"] + "/")
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]

    # With an autoscaler, the Deployment leaves the replica count to it.
    assert "replicas" not in deployment["spec"]
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn-service"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 4)
    assert hpa["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def test_service_labels_and_model_annotations():
    kinds = by_kind(list(build_manifests(MODEL).values()))
    deployment, service = kinds["Deployment"], kinds["Service"]
    port = service["spec"]["ports"][0]
    assert (service["spec"]["type"], port["port"], port["targetPort"]) == ("ClusterIP", 80, "http")
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert service["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(BENTO_PORT)

    template = deployment["spec"]["template"]["metadata"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    # The selector picks the pods, the Service, the budget; it has no version (selectors are immutable).
    assert selector.items() <= template["labels"].items() and "app.kubernetes.io/version" not in selector
    assert service["spec"]["selector"] == selector == kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    for document in kinds.values():
        if document["kind"] != "Namespace":
            assert document["metadata"]["labels"]["app.kubernetes.io/version"] == "kq3x7nbu2gmzxyz5"
            assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "churnops"
    for model_notes in (deployment["metadata"]["annotations"], template["annotations"],
                        service["metadata"]["annotations"]):
        assert model_notes["churnops/model-version"] == "7"
        assert model_notes["churnops/input-contract-sha256"] == "3f2a9c81d0e4"
        assert model_notes["churnops/bento-tag"] == "churn_service:kq3x7nbu2gmzxyz5"
    protected = build_manifests(MODEL, env=ServiceEnvironment(protect_metrics=True))["30-service.yaml"]
    assert "prometheus.io/scrape" not in protected["metadata"]["annotations"]


def test_the_secrets_example_is_never_applied_and_holds_only_placeholders(tmp_path):
    options = ManifestOptions()
    write_manifests(tmp_path, build_manifests(MODEL, options), MODEL, secrets_example(options, MODEL))
    assert not any(d["kind"] == "Secret" for d in applied(tmp_path))
    text = (tmp_path / SECRETS_EXAMPLE).read_text()
    secrets = list(yaml.safe_load_all(text))
    assert {s["metadata"]["name"] for s in secrets} == {"churn-service-api-key", "churn-service-customer-salt"}
    for secret in secrets:
        validate(secret)
        assert set(secret["stringData"].values()) == {PLACEHOLDER}
    assert "kubectl -n churnops create secret generic churn-service-customer-salt --from-literal=salt=" in text
    # Applied by mistake, the placeholder key stops the service at start-up instead of guarding it.
    with pytest.raises(ApiKeyError, match="printable ASCII"):
        parse_api_keys(PLACEHOLDER, "CHURNOPS_API_KEY")


def test_options_shape_what_is_written_and_stale_files_go(tmp_path):
    (tmp_path / "kustomization-notes.txt").write_text("mine")
    write_manifests(tmp_path, build_manifests(MODEL), MODEL, "")
    single = load_options(OPTIONS_FILE, {"replicas": 1, "image": "registry.example.com/churn:7"})
    single = single.model_copy(update={"autoscaling": single.autoscaling.model_copy(update={"enabled": False})})
    documents = build_manifests(MODEL, single)
    write_manifests(tmp_path, documents, MODEL, "")
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == [
        "00-namespace.yaml", "10-inference-log-pvc.yaml", "20-deployment.yaml", "30-service.yaml"]
    assert (tmp_path / "kustomization-notes.txt").read_text() == "mine"
    deployment = documents["20-deployment.yaml"]
    assert deployment["spec"]["replicas"] == 1 and container_of(deployment)["image"] == "registry.example.com/churn:7"

    shared = load_options(None, {"image_registry": "registry.example.com/team/", "create_namespace": False,
                                 "inference_log": {"create_claim": False, "claim_name": "existing-log",
                                                   "storage_class": "efs"}})
    documents = build_manifests(MODEL, shared)
    assert list(documents) == ["20-deployment.yaml", "30-service.yaml", "40-hpa.yaml", "50-pdb.yaml"]
    container = container_of(documents["20-deployment.yaml"])
    assert container["image"] == "registry.example.com/team/churn_service:kq3x7nbu2gmzxyz5"
    volumes = documents["20-deployment.yaml"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "inference-log", "persistentVolumeClaim": {"claimName": "existing-log"}} in volumes
    for document in documents.values():
        validate(document)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu: .*not a Kubernetes quantity"),
    ({"replicas": 5}, r"autoscaling.max_replicas \(4\) is below replicas \(5\)"),
    ({"inference_log": {"access_mode": "ReadWriteOncePod"}}, "ReadWriteOncePod lets one pod mount the log"),
    ({"name": "Churn_Service"}, "name: .*DNS label"),
    ({"replica": 2}, "replica: Extra inputs are not permitted"),
    ({"autoscaling": {"cpu_utilization": 0}}, "autoscaling.cpu_utilization"),
    ({"inference_log": {"mount_path": "/tmp"}}, "inference_log.mount_path"),
])
def test_bad_options_are_one_line_errors_naming_the_key(overrides, message):
    with pytest.raises(ManifestError, match=message) as caught:
        load_options(OPTIONS_FILE, overrides)
    assert "\n" not in str(caught.value) and str(OPTIONS_FILE) in str(caught.value)


def test_the_validator_reports_broken_manifests():
    """The checks above are worth something only if the validator fails on a broken manifest."""
    documents = build_manifests(MODEL)
    deployment = documents["20-deployment.yaml"]
    typo = copy.deepcopy(deployment)
    container_of(typo)["readinessprobe"] = container_of(typo).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="'readinessprobe' was unexpected"):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    no_selector = copy.deepcopy(deployment)
    del no_selector["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError, match="'selector' is a required property"):
        kubernetes_validate.validate(no_selector, KUBERNETES_VERSION, strict=True)
    wrong_type = copy.deepcopy(documents["40-hpa.yaml"])
    wrong_type["spec"]["maxReplicas"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError, match="'four' is not of type 'integer'"):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSION, strict=True)
    v1_field = copy.deepcopy(documents["40-hpa.yaml"])
    v1_field["spec"]["targetCPUUtilizationPercentage"] = 70  # autoscaling/v1's field, not v2's
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(v1_field, KUBERNETES_VERSION, strict=True)
    removed = {**documents["50-pdb.yaml"], "apiVersion": "policy/v1beta1"}  # removed in Kubernetes 1.25
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(removed, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_stack_runs_pods_on_a_remote_server_and_is_never_the_default():
    env = {"CHURNOPS_K8S_CONTEXT": "churnops-cluster", "CHURNOPS_CONTAINER_REGISTRY": "registry.example.com/churnops",
           "CHURNOPS_S3_ENDPOINT": "https://s3.eu-west-1.amazonaws.com", "CHURNOPS_S3_BUCKET": "churnops-test",
           "CHURNOPS_S3_ACCESS_KEY_ID": "KEY", "CHURNOPS_S3_SECRET_ACCESS_KEY": "secret",
           "CHURNOPS_MLFLOW_URL": "https://mlflow.example.com", "CHURNOPS_MLFLOW_USERNAME": "churnops",
           "CHURNOPS_MLFLOW_PASSWORD": "password"}
    spec = load_stack_spec("kubernetes", env)
    assert DEFAULT_STACK == "local" and spec.server == "remote"
    orchestrator = spec.components["orchestrator"]
    assert orchestrator.flavor == "kubernetes"
    assert orchestrator.configuration["kubernetes_context"] == "churnops-cluster"
    assert orchestrator.configuration["kubernetes_namespace"] == "zenml"
    # ZenML's Kubernetes orchestrator needs a registry and an image builder in the stack.
    assert {"container_registry", "image_builder", "artifact_store", "experiment_tracker"} <= set(spec.components)
    assert spec.components["artifact_store"].configuration["path"] == "s3://churnops-test/zenml"
    assert spec.secrets["churnops-kubernetes-s3"] == {"aws_access_key_id": "KEY", "aws_secret_access_key": "secret"}
    assert set(spec.integrations) == {"kubernetes", "s3", "mlflow"}


def test_usage_errors_before_anything_runs(fresh_home):
    image_alone = run_cli(fresh_home, "--pipeline", "deploy", "--image", "x:1", timeout=120)
    assert image_alone.returncode == 2 and "--image and --replicas only go with" in image_alone.stderr
    wrong_pipeline = run_cli(fresh_home, "--pipeline", "training", "--k8s-manifests", "out", timeout=120)
    assert wrong_pipeline.returncode == 2 and "--k8s-manifests DIR goes with --pipeline deploy" in wrong_pipeline.stderr


_CREATE_VERSION = """
import json
from churnops.core.settings import configure_environment
paths = configure_environment()
from churnops.platform.bootstrap import ensure_stack
ensure_stack(paths, "local")
from zenml import log_metadata
from zenml.client import Client
client = Client()
client.create_model(name="churn_classifier")
version = client.create_model_version(model_name_or_id="churn_classifier")
log_metadata(model_version_id=version.id, metadata={
    "verdict": "rejected", "gate_passed": False, "gate_failed_rules": ["f1_below_gate"],
    "bento_tag": "churn_service:kq3x7nbu2gmzxyz5", "input_contract_sha256": "3f2a9c81d0e4",
    "decision_threshold": 0.4})
print("VERSION:" + str(version.number))
"""

_OVERRIDES = """
import json
from churnops.core.settings import configure_environment
configure_environment()
from zenml.client import Client
print("JSON:" + json.dumps(Client().get_model_version("churn_classifier", 1).run_metadata.get("gate_overrides")))
"""


def _python(paths, script: str) -> str:
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, **environment(paths)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_run_py_goes_through_the_gate_and_writes_nothing_it_refuses(fresh_home, tmp_path):
    out = tmp_path / "k8s"
    missing = run_cli(fresh_home, "--pipeline", "deploy", "--k8s-manifests", str(out), "--version", "1")
    assert missing.returncode == 2, missing.stderr
    assert "no model 'churn_classifier' yet" in missing.stderr and "Traceback" not in missing.stderr
    assert not out.exists()

    assert "VERSION:1" in _python(fresh_home, _CREATE_VERSION)
    refused = run_cli(fresh_home, "--pipeline", "deploy", "--k8s-manifests", str(out), "--version", "1")
    assert refused.returncode == 4, refused.stderr
    assert "refused: k8s manifests of churn_classifier version 1 breaks the gate" in refused.stderr
    assert "gate_failed" in refused.stderr and not out.exists()

    forced = run_cli(fresh_home, "--pipeline", "deploy", "--k8s-manifests", str(out), "--version", "1",
                     "--image", "registry.example.com/churnops/churn_service:kq3x7nbu2gmzxyz5", "--replicas", "3",
                     "--force", "--reason", "manifests for a staging cluster")
    assert forced.returncode == 0, forced.stderr
    assert "GATE OVERRIDDEN (gate_failed" in forced.stdout and "kubectl apply -f" in forced.stdout
    kinds = by_kind(applied(out))
    for document in kinds.values():
        validate(document)
    deployment = kinds["Deployment"]
    assert container_of(deployment)["image"] == "registry.example.com/churnops/churn_service:kq3x7nbu2gmzxyz5"
    assert kinds["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    annotations = deployment["metadata"]["annotations"]
    assert annotations["churnops/model-version"] == "1"
    assert annotations["churnops/input-contract-sha256"] == "3f2a9c81d0e4"
    assert annotations["churnops/bento-tag"] == "churn_service:kq3x7nbu2gmzxyz5"
    overrides = json.loads(_python(fresh_home, _OVERRIDES).split("JSON:", 1)[1])
    assert [(o["action"], o["reason"]) for o in overrides] == [("k8s manifests", "manifests for a staging cluster")]


# ------------------------------------------------------------------ the container contract, read-only root


def _can_isolate_mounts() -> bool:
    """Root with a private mount namespace (CI and this machine kind: yes)."""
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


def _lay_out_image(bento_tag: str, target: Path) -> Path:
    """The Bento as `bentoml containerize` copies it into the image: the Bento folder plus its
    models under models/ (construct_containerfile in bentoml/_internal/container/__init__.py)."""
    import shutil

    import bentoml
    from _bentoml_sdk.models import BentoModel
    from bentoml._internal.bento.bento import BaseBentoInfo

    bento = bentoml.bentos.get(bento_tag)
    shutil.copytree(bento.path, target)
    with open(bento.path_of("bento.yaml"), "rb") as handle:
        info = BaseBentoInfo.from_yaml_file(handle)
    (target / "models").mkdir()
    for model in info.all_models:
        BentoModel.from_info(model).resolve(target / "models")
    return target


def _serve_read_only(image: Path, mounts: dict[str, Path], env: dict[str, str], port: int,
                     log: Path) -> subprocess.Popen[bytes]:
    """`bentoml serve` of ``image`` with the whole root filesystem read-only but for ``mounts``
    (and a tmpfs on /tmp when the manifest mounts /tmp), in a private mount namespace."""
    import shlex

    steps = [f"mount --bind {shlex.quote(str(p))} {shlex.quote(str(p))}" for c, p in mounts.items() if c != "/tmp"]
    steps.append("mount -o remount,bind,ro /")
    if "/tmp" in mounts:
        steps.append("mount -t tmpfs -o size=256m tmpfs /tmp")
    command = [sys.executable, "-m", "bentoml", "serve", str(image), "--host", "127.0.0.1", "--port", str(port)]
    steps.append(f"cd {shlex.quote(str(image))} && exec env -i {shlex.join(f'{k}={v}' for k, v in env.items())} "
                 f"{shlex.join(command)}")
    with log.open("wb") as output:
        return subprocess.Popen(["unshare", "-m", "--propagation", "private", "bash", "-c", " && ".join(steps)],
                                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait(10)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> bool:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
            if answer.status == 200:
                return True
        time.sleep(0.5)
    return False


def _under_tmp(path: str) -> bool:
    return Path(path).resolve().is_relative_to("/tmp")


@pytest.mark.slow
@pytest.mark.skipif(not _can_isolate_mounts(), reason="needs root and `unshare -m` to make the root read-only")
# The manifest mounts a fresh tmpfs on /tmp, which would hide a project or interpreter living there.
@pytest.mark.skipif(_under_tmp(sys.prefix) or _under_tmp(str(Path(__file__).parent)),
                    reason="the project or its venv is under /tmp, which the container's tmpfs hides")
def test_the_service_runs_as_the_manifest_says_with_a_read_only_root_filesystem():
    """The Deployment's container contract, without Docker: the Bento laid out as in its image,
    served with the root filesystem read-only and writable only what the manifest mounts, with the
    manifest's environment. It must serve, log to the claim and flush on SIGTERM; with the image's
    own BENTOML_HOME instead (read-only) it must fail, which shows the harness bites."""
    import shutil
    import tempfile
    import urllib.request
    import uuid

    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean
    from churnops.platform import deployment
    from churnops.platform.ports import free_port
    from churnops.serving.packaging import ModelCard
    from tests.test_serving_unit import GOOD, SCHEMA, fit

    frame, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=2000, seed=5)), SCHEMA)
    card = ModelCard(model_name="churn_classifier", model_version="1", model_version_id=str(uuid.uuid4()),
                     stage="production", threshold=0.4, metrics={"f1": 0.5}, dataset="synthetic",
                     trained_at="2026-01-01T00:00:00+00:00")
    model_tag = deployment.save_bento_model(fit(frame, "sklearn.linear_model.LogisticRegression", max_iter=500),
                                            SCHEMA, card)
    bento_tag = deployment.build_bento(model_tag, card)
    model = ServedModel(model_name="churn_classifier", model_version="1", bento_tag=bento_tag)
    container = container_of(build_manifests(model, ManifestOptions(), ENV)["20-deployment.yaml"])

    # Outside /tmp: the manifest puts a fresh tmpfs there, which would hide anything below it.
    root = Path(tempfile.mkdtemp(prefix="churnops-k8s-ro-", dir="/var/tmp"))
    try:
        image = _lay_out_image(bento_tag, root / "image")
        mounts = {m["mountPath"]: root / "volumes" / m["name"] for m in container["volumeMounts"]}
        for path in mounts.values():
            path.mkdir(parents=True)

        def on_host(value: str) -> str:  # a container path under a mount, as this machine sees it
            for mount, host in mounts.items():
                if mount != "/tmp" and (value == mount or value.startswith(mount + "/")):
                    return str(host) + value[len(mount):]
            return value

        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/home/bentoml",
               "BENTOML_CONTAINERIZED": "true", "BENTO_PATH": str(image), "PYTHONUNBUFFERED": "1"}
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = on_host(item["value"])
        env[ENV.salt_env] = "read-only-root-salt"  # the required Secret; the optional API key stays unset
        claim = Path(env[ENV.log_dir_env])
        assert claim == mounts["/mnt/inference-log"]

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = _serve_read_only(image, mounts, env, port, root / "serve.log")
        try:
            assert _wait_ready(url, server), (root / "serve.log").read_text()[-3000:]
            request = urllib.request.Request(f"{url}/predict", data=json.dumps(GOOD).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200 and 0 <= json.loads(answer.read())["churn_probability"] <= 1
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
                assert answer.status == 200
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
                assert 'churn_predictions_total{endpoint="predict"' in answer.read().decode()
        finally:
            stopped = _stop(server)
        log_text = (root / "serve.log").read_text()
        assert stopped == 0, log_text[-3000:]
        assert "Completed cleanup hook: flush_inference_log" in log_text
        assert len(list(claim.glob("date=*/*.arrow"))) == 1, sorted(claim.rglob("*"))
        assert "Read-only file system" not in log_text

        # The same, but BentoML's home where the image has it: read-only, so it cannot start.
        unwritable = {**env, "BENTOML_HOME": "/home/bentoml/"}
        refused = _serve_read_only(image, mounts, unwritable, free_port(), root / "refused.log")
        try:
            refused.wait(90)
        finally:
            _stop(refused)
        assert refused.returncode != 0
        assert "Read-only file system: '/home/bentoml" in (root / "refused.log").read_text()
    finally:
        shutil.rmtree(root, ignore_errors=True)

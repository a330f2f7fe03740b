"""Stack files, their registration, container settings and the loopback process harness."""

import ast
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

from churnops.core.settings import PROJECT_ROOT
from churnops.platform import ports, services
from churnops.platform.run_config import docker_settings, load_docker_config, with_docker_settings
from churnops.platform.stacks import (
    MissingVariableError,
    StackConfigError,
    available_stacks,
    expand_env,
    load_stack_spec,
    register_secrets,
    register_stack,
    stack_name,
)

# Realistic values for every variable the stack files reference (nothing here is real).
SAMPLE_ENV = {
    "CHURNOPS_HOME": "/tmp/churnops-home",
    "CHURNOPS_S3_ENDPOINT": "http://127.0.0.1:9",
    "CHURNOPS_S3_BUCKET": "churnops-test",
    "CHURNOPS_S3_ACCESS_KEY_ID": "SIMKEY",
    "CHURNOPS_S3_SECRET_ACCESS_KEY": "sim-secret",
    "CHURNOPS_MLFLOW_URL": "https://mlflow.example.com",
    "CHURNOPS_MLFLOW_USERNAME": "churnops",
    "CHURNOPS_MLFLOW_PASSWORD": "mlflow-password",
    "CHURNOPS_AWS_REGION": "eu-west-1",
    "CHURNOPS_EKS_CLUSTER": "churnops",
    "CHURNOPS_ECR_REGISTRY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    "CHURNOPS_CODEBUILD_PROJECT": "zenml-builds",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "CHURNOPS_GCP_PROJECT": "my-project",
    "CHURNOPS_GCP_REGION": "europe-west1",
    "CHURNOPS_GCS_BUCKET": "churnops-test",
    "CHURNOPS_GAR_REGISTRY": "europe-west1-docker.pkg.dev/my-project/zenml",
    "CHURNOPS_GCP_SERVICE_ACCOUNT_JSON": '{"type": "service_account"}',
    "CHURNOPS_K8S_CONTEXT": "churnops-cluster",
    "CHURNOPS_CONTAINER_REGISTRY": "registry.example.com/churnops",
}
PROJECT_PACKAGES = {"churnops", "steps", "pipelines", "materializers", "bento"}


def test_every_declared_stack_is_shipped():
    assert set(available_stacks()) >= {"local", "local-server", "cloud-sim", "aws", "gcp", "kubernetes"}
    assert stack_name("local") == "churnops-local"


@pytest.mark.parametrize("name", ["local", "local-server", "cloud-sim", "aws", "gcp", "kubernetes"])
def test_stack_components_validate_against_their_zenml_flavors(name, session_paths):
    from zenml.stack.utils import validate_stack_component_config
    from zenml.utils.secret_utils import is_secret_field, is_secret_reference

    spec = load_stack_spec(name, SAMPLE_ENV)
    register_secrets(spec)  # validators resolve {{secret.key}} references
    for type_name, component in spec.components.items():
        config = validate_stack_component_config(component.configuration, component.flavor, type_name,
                                                 validate_custom_flavors=True)
        assert config is not None, f"{name}: {type_name} flavor '{component.flavor}' not found"
        for field_name, field in type(config).model_fields.items():
            value = component.configuration.get(field_name)
            if is_secret_field(field) and value is not None:
                assert is_secret_reference(value), f"{name}: {component.name}.{field_name} must be {{{{secret.key}}}}"


def test_local_and_local_server_share_components_and_differ_only_in_the_server():
    local, server = load_stack_spec("local", SAMPLE_ENV), load_stack_spec("local-server", SAMPLE_ENV)
    assert local.components == server.components
    assert (local.server, server.server) == ("any", "local")
    assert local.components["artifact_store"].configuration["path"] == "/tmp/churnops-home/artifacts"


def test_cloud_stacks_need_a_remote_server_and_take_credentials_from_secrets_or_connectors():
    for name in ("aws", "gcp"):
        spec = load_stack_spec(name, SAMPLE_ENV)
        assert spec.server == "remote" and spec.integrations
        assert {"orchestrator", "artifact_store", "container_registry", "image_builder",
                "experiment_tracker"} <= set(spec.components)
        assert all(c.connector for t, c in spec.components.items() if t != "experiment_tracker")
    aws = load_stack_spec("aws", SAMPLE_ENV)
    assert aws.connectors["churnops-aws"].configuration["aws_secret_access_key"] == "aws-secret"
    assert aws.components["artifact_store"].resource_id == "s3://churnops-test"


def test_missing_variable_is_named_and_defaults_apply():
    with pytest.raises(MissingVariableError, match="'CHURNOPS_S3_ENDPOINT'"):
        load_stack_spec("cloud-sim", {k: v for k, v in SAMPLE_ENV.items() if k != "CHURNOPS_S3_ENDPOINT"})
    assert expand_env({"a": ["${X:-fallback}", "${Y}-${X:-z}"]}, {"Y": "y"}) == {"a": ["fallback", "y-z"]}
    cloud_sim = load_stack_spec("cloud-sim", {k: v for k, v in SAMPLE_ENV.items() if k != "CHURNOPS_S3_BUCKET"})
    assert cloud_sim.components["artifact_store"].configuration["path"] == "s3://churnops/zenml"


def _stack_file(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((PROJECT_ROOT / "configs" / "stacks" / "aws.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_credentials_written_into_a_stack_file_are_refused(tmp_path):
    literal_secret = _stack_file(tmp_path, secrets={"leaky": {"password": "hunter2"}})
    with pytest.raises(StackConfigError, match="secret 'leaky' key 'password' must be exactly one"):
        load_stack_spec(str(literal_secret), SAMPLE_ENV)
    defaulted = _stack_file(tmp_path, secrets={"leaky": {"password": "${PW:-hunter2}"}})
    with pytest.raises(StackConfigError, match="without default"):
        load_stack_spec(str(defaulted), SAMPLE_ENV)
    raw = yaml.safe_load((PROJECT_ROOT / "configs" / "stacks" / "aws.yaml").read_text())
    raw["connectors"]["churnops-aws"]["configuration"]["aws_secret_access_key"] = "plain"
    connector = _stack_file(tmp_path, connectors=raw["connectors"])
    with pytest.raises(StackConfigError, match="connector 'churnops-aws' setting 'aws_secret_access_key'"):
        load_stack_spec(str(connector), SAMPLE_ENV)


def test_a_component_must_use_a_declared_connector(tmp_path):
    raw = yaml.safe_load((PROJECT_ROOT / "configs" / "stacks" / "aws.yaml").read_text())
    raw["components"]["orchestrator"]["connector"] = "nobody"
    with pytest.raises(StackConfigError, match="uses connector 'nobody', which is not declared"):
        load_stack_spec(str(_stack_file(tmp_path, components=raw["components"])), SAMPLE_ENV)
    with pytest.raises(StackConfigError, match="no stack 'nowhere'"):
        load_stack_spec("nowhere")


def test_registration_is_idempotent_and_follows_the_environment(session_paths):
    """cloud-sim's components and secrets in the embedded store (no server needed to register)."""
    from zenml.client import Client

    client = Client()
    active = client.active_stack_model.name
    spec = load_stack_spec("cloud-sim", SAMPLE_ENV).model_copy(update={"server": "any"})
    register_stack(spec, activate=False)
    stack = client.get_stack("churnops-cloud-sim")
    store = client.get_stack_component("artifact_store", "churnops-cloud-sim-s3")
    assert store.configuration["authentication_secret"] == "churnops-cloud-sim-s3"
    assert client.get_secret("churnops-cloud-sim-s3").secret_values == {
        "aws_access_key_id": "SIMKEY", "aws_secret_access_key": "sim-secret"}

    register_stack(spec, activate=False)  # again: nothing changes
    assert client.get_stack("churnops-cloud-sim").updated == stack.updated
    assert client.get_stack_component("artifact_store", "churnops-cloud-sim-s3").updated == store.updated

    rotated = {**SAMPLE_ENV, "CHURNOPS_S3_SECRET_ACCESS_KEY": "rotated", "CHURNOPS_S3_ENDPOINT": "http://127.0.0.1:10"}
    register_stack(load_stack_spec("cloud-sim", rotated).model_copy(update={"server": "any"}), activate=False)
    assert client.get_secret("churnops-cloud-sim-s3").secret_values["aws_secret_access_key"] == "rotated"
    moved = client.get_stack_component("artifact_store", "churnops-cloud-sim-s3")
    assert moved.configuration["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:10"
    assert moved.id == store.id and client.get_stack("churnops-cloud-sim").id == stack.id
    assert client.active_stack_model.name == active


# --- containers for remote orchestrators -------------------------------------------------

def _module_file(module: str) -> Path | None:
    path = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def scan_imports(module: str) -> tuple[set[str], set[str]]:
    """The project modules ``module`` imports anywhere (functions included), transitively and
    itself included, and the top-level third-party modules all of them import."""
    seen, found, todo = set(), set(), [module]
    while todo:
        current = todo.pop()
        if current in seen or (path := _module_file(current)) is None:
            continue
        seen.add(current)
        parts = current.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                parent = package[:len(package) - node.level + 1]
                base = ".".join([*parent, node.module or ""]).strip(".") if node.level else node.module or ""
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PROJECT_PACKAGES:
                    todo.append(name)
                elif top and top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return seen, found


def _distribution(module: str, distributions: dict[str, list[str]]) -> str:
    """The distribution that provides an import name (mlflow's is shared by mlflow, mlflow-skinny...)."""
    names = [re.sub(r"[-_.]+", "-", name).lower() for name in distributions[module]]
    return module if module in names else names[0]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        name, _, version = line.partition("==")
        assert version, f"'{line}' must be pinned with =="
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _constraints() -> dict[str, str]:
    lines = [line.split(";")[0].strip() for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines()]
    return _pins([re.sub(r"\[.*\]", "", line) for line in lines if line and not line.startswith("#")])


def test_pipelines_have_exactly_the_container_requirements_their_code_imports():
    distributions = packages_distributions()
    pipelines = sorted(p.stem for p in (PROJECT_ROOT / "pipelines").glob("*.py") if p.stem != "__init__")
    config = load_docker_config()
    assert pipelines and set(pipelines) <= set(config["pipelines"]), (
        f"add a block per pipeline to configs/docker.yaml: missing {set(pipelines) - set(config['pipelines'])}")
    constraints = _constraints()
    for pipeline in pipelines:
        declared = _pins(docker_settings(pipeline)["requirements"])
        # zenml is the parent image.
        imported = {_distribution(top, distributions) for top in scan_imports(f"pipelines.{pipeline}")[1]
                    if top != "zenml"}
        never_imported = {"pyarrow"}  # ZenML's pandas materializer uses it when installed
        missing, unused = imported - set(declared), set(declared) - never_imported - imported
        assert not missing and not unused, (
            f"configs/docker.yaml, pipelines.{pipeline}: add {sorted(missing)} (imported by its code), "
            f"remove {sorted(unused)} (imported nowhere)")
        for name, version in declared.items():
            assert constraints[name] == version, f"{pipeline}: {name}=={version}, constraints.txt: {constraints[name]}"


def test_the_bento_includes_every_project_module_its_service_imports():
    bentofile = yaml.safe_load((PROJECT_ROOT / "bento" / "bentofile.yaml").read_text())
    modules, _ = scan_imports(bentofile["service"].partition(":")[0])
    files = {_module_file(module).relative_to(PROJECT_ROOT) for module in modules}
    missing = sorted(str(file) for file in files if not any(file.match(pattern) for pattern in bentofile["include"]))
    assert not missing, f"bento/bentofile.yaml: add {missing} to include:"


def test_docker_settings_merge_into_a_run_config_and_build_a_dockerfile_for_a_stack(session_paths):
    from zenml.client import Client
    from zenml.config import DockerSettings
    from zenml.stack import Stack
    from zenml.utils.pipeline_docker_image_builder import DEFAULT_DOCKER_PARENT_IMAGE, PipelineDockerImageBuilder

    run_config = with_docker_settings({"steps": {}, "settings": {"docker": {"apt_packages": ["libgomp1"]}}},
                                      "training")
    settings = DockerSettings(**run_config["settings"]["docker"])
    assert settings.apt_packages == ["libgomp1"] and settings.install_stack_requirements
    assert "scikit-learn==1.9.1" in settings.requirements

    register_stack(load_stack_spec("cloud-sim", SAMPLE_ENV).model_copy(update={"server": "any"}), activate=False)
    stack = Stack.from_model(Client().get_stack("churnops-cloud-sim"))
    files = PipelineDockerImageBuilder.gather_requirements_files(settings, stack, log=False)
    contents = [set(content.split()) for _, content, _ in files]
    # Exactly two requirement sets: the stack's integrations (S3 store, MLflow tracker), then ours.
    assert contents[-1] == set(settings.requirements) and len(contents) == 2
    assert {"s3fs>2022.3.0,!=2025.3.1", "boto3", "mlflow>=2.1.1,<4"} <= contents[0]
    assert not any(name in " ".join(contents[0]) for name in ("evidently", "kubernetes", "sagemaker", "gcsfs"))
    assert DEFAULT_DOCKER_PARENT_IMAGE == "zenmldocker/zenml:0.98.0-py3.11"  # zenml itself comes from it
    dockerfile = PipelineDockerImageBuilder._generate_zenml_pipeline_dockerfile(
        DEFAULT_DOCKER_PARENT_IMAGE, settings, requirements_files=files, apt_packages=settings.apt_packages)
    assert dockerfile.startswith(f"FROM {DEFAULT_DOCKER_PARENT_IMAGE}") and "libgomp1" in dockerfile
    assert "ZENML_ANALYTICS_OPT_IN=false" in dockerfile.replace('"', "").replace("'", "")


# --- loopback process harness ------------------------------------------------------------

def test_a_service_and_everything_it_forks_are_stopped(tmp_path):
    port = ports.free_port()
    # A shell that forks a sleeper and then serves HTTP: the sleeper must die with the group.
    command = ["bash", "-c", f"sleep 300 & exec {sys.executable} -m http.server {port} --bind 127.0.0.1"]
    service = services.start_service("http", command, url=f"http://127.0.0.1:{port}",
                                     health_url=f"http://127.0.0.1:{port}/", log=tmp_path / "http.log")
    members = services.group_members(service.pid)
    assert len(members) == 2 and services.group_runs(service.pid, "http.server")
    assert not ports.port_is_free(port)
    services.stop_process_group(service.pid)
    assert services.group_members(service.pid) == [] and ports.port_is_free(port)
    assert not any(services.pid_alive(member.pid) for member in members)


def test_a_service_that_dies_on_start_reports_its_log(tmp_path):
    with pytest.raises(services.ServiceError, match="exited before it was ready"):
        services.start_service("broken", [sys.executable, "-c", "print('no such server'); raise SystemExit(3)"],
                               url="http://127.0.0.1:9", health_url="http://127.0.0.1:9/", log=tmp_path / "b.log",
                               timeout=20)
    assert "no such server" in (tmp_path / "b.log").read_text()


def test_cloudsim_env_command_without_services_says_so(fresh_home):
    from churnops.core.settings import environment

    result = subprocess.run([sys.executable, "-m", "churnops.platform.cloudsim", "env"], cwd=PROJECT_ROOT,
                            env={**os.environ, **environment(fresh_home)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "cloud-sim is not running" in result.stderr


def test_a_registered_stack_is_activated_as_is_when_its_variables_are_gone(session_paths, tmp_path, monkeypatch):
    from zenml.client import Client

    from churnops.platform.stacks import use_stack

    stack_file = tmp_path / "switchable.yaml"
    stack_file.write_text(yaml.safe_dump({
        "name": "churnops-test-switchable",
        "components": {
            "orchestrator": {"name": "churnops-local-orchestrator", "flavor": "local"},
            "artifact_store": {"name": "churnops-test-switchable-store", "flavor": "local",
                               "configuration": {"path": "${SWITCHABLE_ROOT}/artifacts"}},
        },
    }))
    client = Client()
    active = client.active_stack_model.name
    with pytest.raises(MissingVariableError, match="needs 'SWITCHABLE_ROOT'"):
        use_stack(str(stack_file))  # never registered: nothing to fall back to
    try:
        monkeypatch.setenv("SWITCHABLE_ROOT", str(tmp_path))
        assert use_stack(str(stack_file)) == "churnops-test-switchable"
        client.activate_stack(active)
        monkeypatch.delenv("SWITCHABLE_ROOT")
        assert use_stack(str(stack_file)) == "churnops-test-switchable"
        assert client.active_stack_model.name == "churnops-test-switchable"
        store = client.get_stack_component("artifact_store", "churnops-test-switchable-store")
        assert store.configuration["path"] == f"{tmp_path}/artifacts"
    finally:
        client.activate_stack(active)


def test_a_stack_whose_integrations_are_missing_says_what_to_install(session_paths):
    from zenml.client import Client

    spec = load_stack_spec("aws", SAMPLE_ENV).model_copy(update={"server": "any"})
    with pytest.raises(StackConfigError, match=r"integrations aws.* zenml integration install aws .*-y"):
        register_stack(spec, activate=False)
    with pytest.raises(KeyError):  # refused before anything was registered
        Client().get_stack("churnops-aws")


def test_parameters_can_live_in_a_small_file_but_credentials_cannot(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNOPS_HOME", str(tmp_path))
    for name in set(SAMPLE_ENV) - {"CHURNOPS_HOME"}:
        monkeypatch.delenv(name, raising=False)
    parameters = tmp_path / "stacks" / "cloud-sim.env"
    parameters.parent.mkdir()
    parameters.write_text("# cloud-sim parameters\nexport CHURNOPS_S3_ENDPOINT='http://127.0.0.1:9000'\n"
                          "CHURNOPS_MLFLOW_URL=http://127.0.0.1:5001\n\nCHURNOPS_S3_BUCKET = from-file\n")
    with pytest.raises(MissingVariableError, match=r"needs 'CHURNOPS_S3_ACCESS_KEY_ID'.*credential: environment only"):
        load_stack_spec("cloud-sim")
    monkeypatch.setenv("CHURNOPS_S3_ACCESS_KEY_ID", "key-from-env")
    with pytest.raises(MissingVariableError, match=r"needs 'CHURNOPS_S3_SECRET_ACCESS_KEY'"):
        load_stack_spec("cloud-sim")
    for name in ("CHURNOPS_S3_ACCESS_KEY_ID", "CHURNOPS_S3_SECRET_ACCESS_KEY", "CHURNOPS_MLFLOW_USERNAME",
                 "CHURNOPS_MLFLOW_PASSWORD"):
        monkeypatch.setenv(name, f"{name.lower()}-from-env")
    monkeypatch.setenv("CHURNOPS_S3_BUCKET", "from-env")  # the environment wins over the file
    spec = load_stack_spec("cloud-sim")
    store = spec.components["artifact_store"].configuration
    assert store["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000" and store["path"] == "s3://from-env/zenml"
    assert spec.components["experiment_tracker"].configuration["tracking_uri"] == "http://127.0.0.1:5001"
    assert spec.secrets["churnops-cloud-sim-s3"]["aws_secret_access_key"] == "churnops_s3_secret_access_key-from-env"

    parameters.write_text(parameters.read_text() + "CHURNOPS_S3_SECRET_ACCESS_KEY=oops\n")
    with pytest.raises(StackConfigError, match="holds credentials \\(CHURNOPS_S3_SECRET_ACCESS_KEY\\)"):
        load_stack_spec("cloud-sim")
    parameters.write_text("just words\n")
    with pytest.raises(StackConfigError, match="line 1: expected KEY=VALUE"):
        load_stack_spec("cloud-sim")
    parameters.write_text("CHURNOPS_MLFLOW_URL=http://127.0.0.1:5001\n")
    expected = rf"needs 'CHURNOPS_S3_ENDPOINT'.*write it to {re.escape(str(parameters))}"
    with pytest.raises(MissingVariableError, match=expected):
        load_stack_spec("cloud-sim")

"""Kubernetes manifests for the churn service's Bento, built from plain data (no cluster, no ZenML).

``python run.py --pipeline deploy --k8s-manifests DIR`` (``churnops.commands.manifests``) reads a
model version through the Model Control Plane, passes the gate, and hands this module a
:class:`ServedModel`; :func:`build_manifests` returns one Kubernetes document per file and
:func:`write_manifests` writes them. What runs is the image ``bentoml containerize <bento tag>``
builds: its entrypoint runs ``bentoml serve`` on port 3000 as the user 1034.

The manifests (docs/kubernetes.md): a Namespace, a PersistentVolumeClaim for the inference log,
a Deployment (startup/liveness probes on ``/healthz``, readiness on ``/readyz``, requests and
limits, a non-root read-only container with writable volumes only where the service writes),
a ClusterIP Service on port 80 with Prometheus scrape annotations for ``/metrics``, a
HorizontalPodAutoscaler (autoscaling/v2, CPU utilisation) and a PodDisruptionBudget. Secrets
are never written: ``secrets.yaml.example`` (not applied by ``kubectl apply -f DIR``) shows the
``kubectl create secret`` commands and a placeholder manifest.

Standard library, PyYAML and pydantic only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The cluster version the manifests are validated against in the tests (docs/kubernetes.md).
KUBERNETES_VERSION = "1.33"
# What `bentoml containerize` images do (bentoml/_internal/container/generate.py in BentoML 1.4).
BENTO_PORT = 3000
BENTO_UID = 1034
# Writable places inside the read-only container: the state folder (BentoML's home, the
# Prometheus multiprocess files, the salt file when no salt is given) and /tmp (BentoML's
# sockets); the inference log has a volume of its own.
STATE_DIR = "/var/lib/churnops"
TMP_DIR = "/tmp"
# Every file this module writes; an earlier run's file that this run does not write is removed,
# so `kubectl apply -f DIR` never applies a stale object.
FILE_NAMES = ("00-namespace.yaml", "10-inference-log-pvc.yaml", "20-deployment.yaml", "30-service.yaml",
              "40-hpa.yaml", "50-pdb.yaml")
SECRETS_EXAMPLE = "secrets.yaml.example"
PLACEHOLDER = "REPLACE-ME before applying: see the header of this file"
ANNOTATION_PREFIX = "churnops/"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# A Kubernetes resource quantity: "500m", "1", "1.5", "2Gi", "512Mi", "1e3".
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ManifestError(ValueError):
    """Options or a model that cannot make valid manifests; the message names what is wrong."""


def _dns_label(value: str, what: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(f"{what} must be a DNS label (lower-case letters, digits and '-', at most 63): {value!r}")
    return value


def _dns_subdomain(value: str, what: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(f"{what} must be a DNS subdomain (lower-case letters, digits, '-' and '.'): {value!r}")
    return value


def _quantity(value: str | int | float) -> str:
    text = str(value)
    if not _QUANTITY.match(text):
        raise ValueError(f"not a Kubernetes quantity (like 500m, 1, 512Mi, 2Gi): {text!r}")
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComputeResources(_Strict):
    cpu: str = "1"
    memory: str = "1Gi"

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantities(cls, value: str | int | float) -> str:
        return _quantity(value)


class Resources(_Strict):
    """Requests and limits of the service container. The defaults suit one BentoML worker
    (configs/serving.yaml ``service.workers: 1``): one core of steady work, room above it for
    the inference-log writer thread and for bursts, memory for the model, the request buffers
    and the log's pending rows."""

    requests: ComputeResources = Field(default_factory=ComputeResources)
    limits: ComputeResources = Field(default_factory=lambda: ComputeResources(cpu="2", memory="2Gi"))


class Autoscaling(_Strict):
    """A HorizontalPodAutoscaler between ``replicas`` and ``max_replicas`` on CPU utilisation
    (of the CPU request). Disabled: the Deployment keeps ``replicas`` itself."""

    enabled: bool = True
    max_replicas: int = Field(4, ge=1)
    cpu_utilization: int = Field(70, ge=1, le=100)
    # Scale down only after this long below target: a burst should not flap the replica count.
    scale_down_stabilization_seconds: int = Field(300, ge=0, le=3600)


class InferenceLogVolume(_Strict):
    """Where the service writes its inference log: a PersistentVolumeClaim mounted by every
    replica. Several replicas write side by side (writer ids carry the pod name), so with more
    than one node the claim needs ReadWriteMany (NFS, EFS, Filestore, Azure Files...) and a
    filesystem with rename and flock."""

    claim_name: str = "churn-service-inference-log"
    # false: use a claim of that name that already exists (its data outlives these manifests).
    create_claim: bool = True
    size: str = "10Gi"
    storage_class: str | None = None
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"] = "ReadWriteMany"
    mount_path: str = "/mnt/inference-log"

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: str | int | float) -> str:
        return _quantity(value)

    @field_validator("claim_name")
    @classmethod
    def _claim(cls, value: str) -> str:
        return _dns_subdomain(value, "inference_log.claim_name")

    @field_validator("mount_path")
    @classmethod
    def _mount(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") in {"", TMP_DIR, STATE_DIR}:
            raise ValueError(f"inference_log.mount_path must be an absolute path other than / , {TMP_DIR} and "
                             f"{STATE_DIR}: {value!r}")
        return value.rstrip("/")


class SecretNames(_Strict):
    """The Kubernetes Secrets the service reads; these manifests only refer to them."""

    # Optional: without it (or without its key) the API is open, as with no key locally.
    api_key_secret: str = "churn-service-api-key"
    api_key_key: str = "api_key"
    # Required: pods do not start without the customer-id salt, so replicas never hash ids
    # with salts of their own (the pseudonyms would stop matching feedback).
    salt_secret: str = "churn-service-customer-salt"
    salt_key: str = "salt"

    @field_validator("api_key_secret", "salt_secret")
    @classmethod
    def _names(cls, value: str) -> str:
        return _dns_subdomain(value, "a secret name")

    @field_validator("api_key_key", "salt_key")
    @classmethod
    def _keys(cls, value: str) -> str:
        if not re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", value):
            raise ValueError(f"a secret key must be letters, digits, '-', '_' or '.': {value!r}")
        return value


class ManifestOptions(_Strict):
    """configs/kubernetes.yaml."""

    name: str = "churn-service"
    namespace: str = "churnops"
    # Write a Namespace object too (`kubectl delete -f DIR` then deletes it, secrets included).
    create_namespace: bool = True
    # The container image; null: <image_registry>/<bento name>:<bento version>, the name
    # `bentoml containerize <bento tag>` gives it (without a registry: the bento tag itself).
    image: str | None = None
    image_registry: str | None = None
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    # The Deployment's replicas, or the autoscaler's minimum.
    replicas: int = Field(2, ge=1)
    resources: Resources = Field(default_factory=Resources)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    inference_log: InferenceLogVolume = Field(default_factory=InferenceLogVolume)
    secrets: SecretNames = Field(default_factory=SecretNames)
    service_port: int = Field(80, ge=1, le=65535)
    # The service flushes its inference log on SIGTERM; give it time.
    termination_grace_seconds: int = Field(60, ge=5, le=3600)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # A Service name is a DNS-1035 label: it must start with a letter.
        if not value[:1].isalpha():
            raise ValueError(f"name must start with a letter: {value!r}")
        return _dns_label(value, "name")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return _dns_label(value, "namespace")

    @field_validator("image", "image_registry")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError(f"an image reference has no spaces and is not empty: {value!r}")
        return value.rstrip("/") if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> ManifestOptions:
        if self.autoscaling.enabled and self.autoscaling.max_replicas < self.replicas:
            raise ValueError(f"autoscaling.max_replicas ({self.autoscaling.max_replicas}) is below replicas "
                             f"({self.replicas})")
        if self.inference_log.access_mode == "ReadWriteOncePod" and self.max_replicas > 1:
            raise ValueError("inference_log.access_mode ReadWriteOncePod lets one pod mount the log, but up to "
                             f"{self.max_replicas} replicas may run: use ReadWriteMany, or replicas 1 without "
                             "autoscaling")
        return self

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling.enabled else self.replicas


class ServedModel(_Strict):
    """What the manifests say about the model: a ZenML model version and its Bento."""

    model_name: str
    model_version: str
    bento_tag: str
    model_version_id: str | None = None
    stage: str | None = None
    input_contract_sha256: str | None = None

    @field_validator("bento_tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        name, colon, version = value.partition(":")
        if not (name and colon and version):
            raise ValueError(f"a Bento tag is NAME:VERSION: {value!r}")
        return value

    @property
    def bento_name(self) -> str:
        return self.bento_tag.partition(":")[0]

    @property
    def bento_version(self) -> str:
        return self.bento_tag.partition(":")[2]


class ServiceEnvironment(_Strict):
    """The environment variables the service reads (configs/serving.yaml, churnops.serving.config)."""

    api_key_env: str = "CHURNOPS_API_KEY"
    salt_env: str = "CHURNOPS_CUSTOMER_SALT"
    log_dir_env: str = "CHURNOPS_INFERENCE_LOG_DIR"
    # auth.protect_metrics: /metrics then needs the key, and so does Prometheus.
    protect_metrics: bool = False

    @field_validator("api_key_env", "salt_env", "log_dir_env")
    @classmethod
    def _env(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"not an environment variable name: {value!r}")
        return value


# ---------------------------------------------------------------------------------- options


def load_options(path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
                 ) -> ManifestOptions:
    """The options in ``path`` (a YAML mapping; none: the defaults) with ``overrides`` on top."""
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ManifestError(f"cannot read Kubernetes options {path}: {error}") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    data = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        return ManifestOptions.model_validate(data)
    except ValidationError as error:
        where = f"{path}: " if path is not None else ""
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in error.errors())
        raise ManifestError(f"{where}{problems}") from None


def image_for(model: ServedModel, options: ManifestOptions) -> str:
    """The container image: ``options.image``, else the name ``bentoml containerize`` gives it."""
    if options.image:
        return options.image
    return f"{options.image_registry}/{model.bento_tag}" if options.image_registry else model.bento_tag


# -------------------------------------------------------------------------------- manifests


def labels(options: ManifestOptions, model: ServedModel) -> dict[str, str]:
    """The recommended app.kubernetes.io labels; the version is the Bento's (the image's tag)."""
    found = {
        "app.kubernetes.io/name": options.name,
        "app.kubernetes.io/instance": options.name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "churnops",
        "app.kubernetes.io/managed-by": "churnops",
    }
    if len(model.bento_version) <= 63 and _LABEL_VALUE.match(model.bento_version):
        found["app.kubernetes.io/version"] = model.bento_version
    return found


def selector(options: ManifestOptions) -> dict[str, str]:
    """The labels that pick the pods: stable across versions (a Deployment's selector is immutable)."""
    return {"app.kubernetes.io/name": options.name, "app.kubernetes.io/instance": options.name}


def model_annotations(model: ServedModel, image: str) -> dict[str, str]:
    """Which model the objects serve: enough to find it in the Model Control Plane."""
    found = {
        "model-name": model.model_name,
        "model-version": model.model_version,
        "model-version-id": model.model_version_id,
        "model-stage": model.stage,
        "bento-tag": model.bento_tag,
        "image": image,
        "input-contract-sha256": model.input_contract_sha256,
    }
    return {ANNOTATION_PREFIX + key: value for key, value in found.items() if value}


def _metadata(name: str, options: ManifestOptions, model: ServedModel, annotations: Mapping[str, str] | None = None
              ) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": options.namespace, "labels": labels(options, model)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def prometheus_annotations() -> dict[str, str]:
    """The conventional scrape annotations (Prometheus' kubernetes_sd relabelling examples)."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(BENTO_PORT), "prometheus.io/path": "/metrics",
            "prometheus.io/scheme": "http"}


def namespace(options: ManifestOptions) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": options.namespace, "labels": {"app.kubernetes.io/part-of": "churnops"}}}


def inference_log_claim(options: ManifestOptions, model: ServedModel) -> dict[str, Any]:
    volume = options.inference_log
    spec: dict[str, Any] = {"accessModes": [volume.access_mode], "resources": {"requests": {"storage": volume.size}}}
    if volume.storage_class is not None:
        spec["storageClassName"] = volume.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _metadata(volume.claim_name, options, model), "spec": spec}


def _http_probe(path: str, period: int, failures: int, timeout: int = 3) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": timeout,
            "failureThreshold": failures}


def container_environment(options: ManifestOptions, env: ServiceEnvironment) -> list[dict[str, Any]]:
    secrets = options.secrets
    return [
        # The state folder and BentoML's home on a writable volume: the image's own home is read-only.
        {"name": "CHURNOPS_HOME", "value": STATE_DIR},
        {"name": "BENTOML_HOME", "value": f"{STATE_DIR}/bentoml"},
        {"name": env.log_dir_env, "value": options.inference_log.mount_path},
        {"name": env.api_key_env, "valueFrom": {"secretKeyRef": {
            "name": secrets.api_key_secret, "key": secrets.api_key_key, "optional": True}}},
        {"name": env.salt_env, "valueFrom": {"secretKeyRef": {"name": secrets.salt_secret, "key": secrets.salt_key}}},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
        {"name": "DO_NOT_TRACK", "value": "1"},
    ]


def deployment(options: ManifestOptions, model: ServedModel, env: ServiceEnvironment | None = None
               ) -> dict[str, Any]:
    env = env or ServiceEnvironment()
    image = image_for(model, options)
    annotations = model_annotations(model, image)
    resources = options.resources
    container = {
        "name": options.name,
        "image": image,
        "imagePullPolicy": options.image_pull_policy,
        # The image's entrypoint turns `serve ...` into `bentoml serve ... $BENTO_PATH`.
        "args": ["serve", "--port", str(BENTO_PORT)],
        "ports": [{"name": "http", "containerPort": BENTO_PORT, "protocol": "TCP"}],
        "env": container_environment(options, env),
        "resources": {"requests": resources.requests.model_dump(), "limits": resources.limits.model_dump()},
        # /healthz answers once the worker has loaded and verified the model; loading on a slow
        # node may take a while, so liveness starts only after the startup probe passed (150 s).
        "startupProbe": _http_probe("/healthz", period=5, failures=30),
        "livenessProbe": _http_probe("/healthz", period=10, failures=3),
        "readinessProbe": _http_probe("/readyz", period=5, failures=3),
        # Let endpoints drop the pod before BentoML stops accepting requests.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "inference-log", "mountPath": options.inference_log.mount_path},
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
    }
    spec: dict[str, Any] = {
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector(options)},
        # Never below the current capacity during a rollout.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": labels(options, model),
                         "annotations": {**annotations, **prometheus_annotations()}},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": options.termination_grace_seconds,
                "securityContext": {"runAsNonRoot": True, "runAsUser": BENTO_UID, "runAsGroup": BENTO_UID,
                                    "fsGroup": BENTO_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": [
                    {"name": "inference-log",
                     "persistentVolumeClaim": {"claimName": options.inference_log.claim_name}},
                    {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                ],
            },
        },
    }
    if not options.autoscaling.enabled:
        # With an autoscaler the replica count is its business: `kubectl apply` must not reset it.
        spec = {"replicas": options.replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _metadata(options.name, options, model, annotations), "spec": spec}


def service(options: ManifestOptions, model: ServedModel, env: ServiceEnvironment | None = None) -> dict[str, Any]:
    env = env or ServiceEnvironment()
    annotations = model_annotations(model, image_for(model, options))
    if not env.protect_metrics:  # a protected /metrics needs the API key in Prometheus' scrape config instead
        annotations.update(prometheus_annotations())
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _metadata(options.name, options, model, annotations),
            "spec": {"type": "ClusterIP", "selector": selector(options),
                     "ports": [{"name": "http", "port": options.service_port, "targetPort": "http",
                                "protocol": "TCP"}]}}


def autoscaler(options: ManifestOptions, model: ServedModel) -> dict[str, Any]:
    scaling = options.autoscaling
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(options.name, options, model),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": options.name},
                "minReplicas": options.replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": scaling.cpu_utilization}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds}},
            }}


def disruption_budget(options: ManifestOptions, model: ServedModel) -> dict[str, Any]:
    # maxUnavailable, not minAvailable: a node drain may always evict one pod at a time.
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _metadata(options.name, options, model),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(options)}}}


def build_manifests(model: ServedModel, options: ManifestOptions | None = None,
                    env: ServiceEnvironment | None = None) -> dict[str, dict[str, Any]]:
    """File name -> Kubernetes document, in the order `kubectl apply -f DIR` applies them.

    The claim only when ``create_claim``, the autoscaler only when enabled, the disruption
    budget only when at least two replicas always run (with one it could only block drains).
    """
    options = options or ManifestOptions()
    env = env or ServiceEnvironment()
    documents: dict[str, dict[str, Any]] = {}
    if options.create_namespace:
        documents["00-namespace.yaml"] = namespace(options)
    if options.inference_log.create_claim:
        documents["10-inference-log-pvc.yaml"] = inference_log_claim(options, model)
    documents["20-deployment.yaml"] = deployment(options, model, env)
    documents["30-service.yaml"] = service(options, model, env)
    if options.autoscaling.enabled:
        documents["40-hpa.yaml"] = autoscaler(options, model)
    if options.replicas >= 2:
        documents["50-pdb.yaml"] = disruption_budget(options, model)
    assert set(documents) <= set(FILE_NAMES)
    return documents


def secret_templates(options: ManifestOptions, model: ServedModel) -> list[dict[str, Any]]:
    """The two Secrets the Deployment reads, with placeholders instead of values."""
    secrets = options.secrets
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": _metadata(name, options, model), "stringData": {key: PLACEHOLDER}}
            for name, key in ((secrets.salt_secret, secrets.salt_key), (secrets.api_key_secret, secrets.api_key_key))]


def secrets_example(options: ManifestOptions, model: ServedModel) -> str:
    """``secrets.yaml.example``: how to create the Secrets, and a placeholder manifest of them."""
    secrets, ns = options.secrets, options.namespace
    create = f"kubectl -n {ns} create secret generic"
    salt = f'{create} {secrets.salt_secret} --from-literal={secrets.salt_key}="$(openssl rand -hex 32)"'
    api_key = f'{create} {secrets.api_key_secret} --from-literal={secrets.api_key_key}="$(openssl rand -base64 32)"'
    header = f"""\
# The Secrets the churn service reads. NOT applied by `kubectl apply -f DIR` (the name does not end
# in .yaml) and holds no real values. Create them with kubectl, so no value is ever in a file:
#
#   kubectl create namespace {ns}   # unless 00-namespace.yaml was applied already
#   {salt}
#   {api_key}
#
# {secrets.salt_secret} is required: pods wait (CreateContainerConfigError) until it exists. It
# keys the customer-id pseudonyms in the inference log: give it the salt that feedback ingestion
# and monitoring use (CHURNOPS_CUSTOMER_SALT there), and never change it, or keys stop matching.
# {secrets.api_key_secret} is optional: without it the API is open. Several keys, comma-separated,
# while rotating; pods read it at start, so `kubectl -n {ns} rollout restart deployment/{options.name}`.
#
# Or copy this file to a name outside the project, replace each value and apply the copy; the
# placeholder API key has spaces, which the service refuses at start-up.
"""
    return header + yaml.safe_dump_all(secret_templates(options, model), sort_keys=False)


def render(document: Mapping[str, Any], header: str = "") -> str:
    return header + yaml.safe_dump(dict(document), sort_keys=False, width=120)


def file_header(model: ServedModel) -> str:
    return (f"# Written by `python run.py --pipeline deploy --k8s-manifests` for {model.model_name} version "
            f"{model.model_version} (Bento {model.bento_tag});\n# validated against the Kubernetes "
            f"{KUBERNETES_VERSION} API schemas (docs/kubernetes.md). Regenerate rather than edit.\n")


def write_manifests(directory: str | os.PathLike[str], documents: Mapping[str, Mapping[str, Any]],
                    model: ServedModel, secrets_text: str) -> list[Path]:
    """Write ``documents`` and the secrets example into ``directory``; returns the paths written.

    A file of :data:`FILE_NAMES` this run does not write is removed (left over from other
    options); any other file in the directory is left alone.
    """
    unknown = set(documents) - set(FILE_NAMES)
    if unknown:
        raise ManifestError(f"not a manifest file name: {', '.join(sorted(unknown))}")
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise ManifestError(f"{folder} exists and is not a directory")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    header = file_header(model)
    for name, document in documents.items():
        written.append(_write_text(folder / name, render(document, header)))
    written.append(_write_text(folder / SECRETS_EXAMPLE, secrets_text))
    for name in FILE_NAMES:
        if name not in documents:
            (folder / name).unlink(missing_ok=True)
    return written


def _write_text(path: Path, text: str) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path

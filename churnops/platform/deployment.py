"""Packaging, local deployment and rollback of the churn model, through the Model Control Plane.

* :func:`package_version` — a ZenML model version becomes a BentoML model (the fitted sklearn
  Pipeline, its dataset schema and a model card, labelled with name, version, stage, key
  metrics, data hash and threshold) and a Bento built from ``bento/``; the Bento tag is
  recorded on the model version as ``bento_tag``.
* :func:`start_service` / :func:`stop_service` — ``bentoml serve <bento>`` as a background
  process in its own process group, with a deployment record (docs/contracts.md) so other
  commands find it. (ZenML's ``bentoml_model_deployer_step`` mistakes BentoML 1.4 services
  for legacy ones and serves nothing; see docs/library facts.)
* :func:`rollback` — the previous (or a chosen) production version becomes production again.
* :func:`authorize` — the one gate check every path that makes a version production or serves
  it goes through (training promotion, rollback, deploy, retraining): the version's recorded
  verdict, its artifact hashes and its input contract (``churnops.modeling.governance``), refused unless
  explicitly overridden, the override recorded on the version.
* :func:`promotion_lock` — promotions and rollbacks of one model are serialised through a lock
  held in the ZenML store itself (a uniquely named tag), so it holds for every process that
  shares the store, local or remote.

Import after ``churnops.core.settings.configure_environment``: BentoML and ZenML read their
locations when first imported.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from churnops.core.settings import PROJECT_ROOT, StatePaths, environment
from churnops.data.schema import DatasetSchema
from churnops.modeling.governance import (
    CONTRACT_KEY,
    OVERRIDES_KEY,
    PRODUCTION_SINCE_KEY,
    Violation,
    describe_contract,
    input_contract,
    override_record,
    refusal_message,
    review_version,
    was_production,
)
from churnops.platform import services
from churnops.platform.ports import port_is_free
from churnops.serving.packaging import (
    FILES_SHA256_KEY,
    METRIC_KEYS,
    ModelCard,
    ModelIntegrityError,
    model_files_sha256,
    verify_model_files,
    write_model_files,
)

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline
    from zenml.models import ModelVersionResponse

MODEL_NAME = "churn_classifier"
MODEL_ARTIFACT = "churn_classifier"
SCHEMA_ARTIFACT = "dataset_schema"
BENTOFILE = PROJECT_ROOT / "bento" / "bentofile.yaml"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
LOCK_TIMEOUT = 600.0
# A promotion holds the lock for seconds; a lock this old was left by a killed process.
LOCK_STALE_AFTER = 1800.0


class DeploymentError(RuntimeError):
    """A deployment action that cannot be done; the message says why and what to do."""


class GateRefused(DeploymentError):
    """The gate refuses a version; the message names each broken rule and the override."""

    def __init__(self, message: str, violations: list[Violation]) -> None:
        super().__init__(message)
        self.violations = violations


# ------------------------------------------------------------------------------ model versions


def get_version(model_name: str, version: str | None = None) -> ModelVersionResponse:
    """A model version by number/name, or the production version when ``version`` is None."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    client = Client()
    try:
        client.get_model(model_name)
    except KeyError:
        raise DeploymentError(
            f"no model '{model_name}' yet: train one with `python run.py --pipeline training`") from None
    if version is None:
        try:
            return client.get_model_version(model_name, ModelStages.PRODUCTION)
        except KeyError:
            raise DeploymentError(
                f"model '{model_name}' has no production version: promote one by training, "
                "or choose a version with --version N (see `python run.py --models`)") from None
    try:
        return client.get_model_version(model_name, int(version) if version.isdigit() else version)
    except KeyError:
        raise DeploymentError(
            f"model '{model_name}' has no version '{version}' (see `python run.py --models`)") from None


def stage_of(version: ModelVersionResponse) -> str | None:
    """A model version's stage as text ("production", "archived"...), None when unstaged."""
    stage = version.stage
    return str(getattr(stage, "value", stage)) if stage else None


def list_versions(model_name: str = MODEL_NAME) -> list[ModelVersionResponse]:
    """All versions of ``model_name``, oldest first (empty if the model does not exist)."""
    from zenml.client import Client

    client = Client()
    try:
        client.get_model(model_name)
    except KeyError:
        return []
    versions: list[ModelVersionResponse] = []
    page = 1
    while True:
        batch = client.list_model_versions(model=model_name, sort_by="asc:number", page=page, size=100, hydrate=True)
        versions.extend(batch.items)
        if page >= batch.total_pages:
            return versions
        page += 1


def model_card(version: ModelVersionResponse) -> ModelCard:
    """The card of a model version, from the metadata the training pipeline logged."""
    metadata = dict(version.run_metadata)
    if "decision_threshold" not in metadata:
        raise DeploymentError(f"model version {version.number} has no decision_threshold metadata: "
                              "it did not finish training")
    return ModelCard(
        model_name=version.model.name,
        model_version=str(version.number),
        model_version_id=str(version.id),
        stage=stage_of(version),
        threshold=float(metadata["decision_threshold"]),
        metrics={k: float(metadata[k]) for k in METRIC_KEYS if isinstance(metadata.get(k), int | float)},
        trained_at=str(metadata["trained_at"]) if metadata.get("trained_at") else None,
        dataset=str(metadata.get("dataset", "unknown")),
        data_hash=str(metadata["data_hash"]) if metadata.get("data_hash") else None,
        estimator=str(metadata["estimator"]) if metadata.get("estimator") else None,
    )


def load_version_artifacts(version: ModelVersionResponse) -> tuple[Pipeline, DatasetSchema]:
    model = version.get_model_artifact(MODEL_ARTIFACT)
    schema = version.get_artifact(SCHEMA_ARTIFACT)
    if model is None or schema is None:
        raise DeploymentError(f"model version {version.number} lacks its '{MODEL_ARTIFACT}' or "
                              f"'{SCHEMA_ARTIFACT}' artifact: it did not finish training")
    return model.load(), schema.load()


def log_version_metadata(version: ModelVersionResponse, metadata: dict[str, Any]) -> None:
    from zenml import log_metadata

    log_metadata(metadata=metadata, model_version_id=version.id)


# ------------------------------------------------------------------------------------- gate


GATED_ARTIFACTS = (MODEL_ARTIFACT, SCHEMA_ARTIFACT)


def stored_tree_sha256(uri: str) -> str:
    """SHA-256 over every file under an artifact's URI (relative path and content), read through
    ZenML's file I/O so it works on any artifact store."""
    from zenml.io import fileio

    digest = hashlib.sha256()

    def visit(path: str, relative: str) -> None:
        if fileio.isdir(path):
            for name in sorted(str(n) for n in fileio.listdir(path)):
                visit(os.path.join(path, name), f"{relative}/{name}" if relative else name)
            return
        content = hashlib.sha256()
        with fileio.open(path, "rb") as handle:
            while chunk := handle.read(2**20):
                content.update(chunk)
        digest.update(relative.encode() + b"\0" + content.digest())

    visit(uri, "")
    return digest.hexdigest()


def artifact_hashes(version: Any) -> dict[str, str]:
    """The SHA-256 of the model and schema artifacts of ``version`` as they are stored now
    (a model version response, or the ``Model`` of a running step)."""
    hashes: dict[str, str] = {}
    for name in GATED_ARTIFACTS:
        artifact = version.get_model_artifact(name) if name == MODEL_ARTIFACT else version.get_artifact(name)
        if artifact is None:
            continue
        with contextlib.suppress(OSError):
            hashes[name] = stored_tree_sha256(artifact.uri)
    return hashes


def production_version(model_name: str) -> ModelVersionResponse | None:
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        return Client().get_model_version(model_name, ModelStages.PRODUCTION)
    except KeyError:
        return None


def contract_of(version: ModelVersionResponse) -> dict[str, Any] | None:
    """The input contract recorded on ``version``, else derived from its schema artifact."""
    recorded = version.run_metadata.get(CONTRACT_KEY)
    if isinstance(recorded, dict):
        return recorded
    schema = version.get_artifact(SCHEMA_ARTIFACT)
    return input_contract(schema.load()) if schema is not None else None


def describe_version_contract(version: ModelVersionResponse) -> str:
    return describe_contract(contract_of(version))


def operator() -> str:
    """Who is acting: the OS user and the ZenML user, for override records."""
    from zenml.client import Client

    try:
        zenml_user = Client().active_user.name
    except Exception:  # an unreachable server must not hide who ran the override
        zenml_user = "unknown"
    return f"{getpass.getuser()} (ZenML user {zenml_user})"


@dataclass
class Clearance:
    """A version the gate let through; ``record()`` writes an override, if one was needed,
    on the version once the action it allowed has succeeded."""

    version: Any
    action: str
    overridden: list[Violation] = field(default_factory=list)
    reason: str | None = None

    def record(self) -> dict[str, Any] | None:
        if not self.overridden:
            return None
        entry = override_record(self.action, self.overridden, self.reason or "", operator(),
                                datetime.now(UTC).isoformat(timespec="seconds"))
        from zenml.client import Client

        current = Client().get_model_version(self.version.model.name, self.version.id)
        earlier = current.run_metadata.get(OVERRIDES_KEY) or []
        log_version_metadata(current, {OVERRIDES_KEY: [*earlier, entry] if isinstance(earlier, list) else [entry]})
        return entry


def authorize(version: Any, action: str, *, force: bool = False, reason: str | None = None,
              replaces: ModelVersionResponse | None = None, model_name: str | None = None,
              observed_hashes: dict[str, str] | None = None) -> Clearance:
    """The gate, re-checked: may ``version`` become production / be served by ``action``?

    Checks what training recorded on it (verdict, failed rules), its artifact hashes against
    the artifact store, and its input contract against ``replaces`` (default: the current
    production version, unless that is ``version`` itself). Raises :class:`GateRefused` naming
    every broken rule, unless ``force`` with a ``reason``; then the caller records the override
    with ``Clearance.record()`` once the action succeeded. ``observed_hashes``: the artifact
    hashes when the caller has just computed them from the store (the promotion step records
    and checks one reading).
    """
    name = model_name or version.model.name
    if replaces is None:
        replaces = production_version(name)
    compared = replaces if replaces is not None and replaces.id != version.id else None
    contract = contract_of(compared) if compared is not None else None
    hashes = observed_hashes if observed_hashes is not None else artifact_hashes(version)
    violations = review_version(version.run_metadata, hashes, contract)
    if violations and not force:
        raise GateRefused(refusal_message(name, str(version.number), action, violations), violations)
    if violations and not (reason and reason.strip()):
        raise DeploymentError("--force needs --reason TEXT: why the gate is overridden (recorded on the version)")
    return Clearance(version=version, action=action, overridden=violations, reason=reason)


@contextlib.contextmanager
def promotion_lock(model_name: str, timeout: float = LOCK_TIMEOUT,
                   stale_after: float = LOCK_STALE_AFTER) -> Iterator[None]:
    """Hold the promotion lock of ``model_name`` (one stage change at a time).

    The lock is a tag named for the model in the ZenML store: tag names are unique (a database
    constraint, on the embedded store and behind a ZenML server alike), so creating it is an
    atomic test-and-set for every process that shares the store. A lock older than
    ``stale_after`` seconds was left by a killed process and is broken (by id, so two breakers
    cannot remove a fresh lock).
    """
    from zenml.client import Client
    from zenml.exceptions import EntityExistsError

    client = Client()
    name = f"churnops-promotion-lock:{model_name}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock = client.create_tag(name=name)
            break
        except EntityExistsError:
            try:
                held = client.get_tag(name, allow_name_prefix_match=False)
            except KeyError:
                continue  # released between our attempt and the look-up
            created = held.created if held.created.tzinfo else held.created.replace(tzinfo=UTC)
            age = (datetime.now(UTC) - created).total_seconds()
            if age > stale_after:
                with contextlib.suppress(KeyError):
                    client.delete_tag(held.id)
                continue
            if time.monotonic() > deadline:
                raise DeploymentError(f"another promotion of '{model_name}' has held the lock for {age:.0f} s; "
                                      f"try again later (or delete the tag '{name}' if no promotion is running)"
                                      ) from None
            time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        with contextlib.suppress(KeyError):
            client.delete_tag(lock.id)



# ---------------------------------------------------------------------------------- packaging


@dataclass(frozen=True)
class Packaged:
    model_version: str
    bento_model_tag: str
    bento_tag: str


def save_bento_model(pipeline: Pipeline, schema: DatasetSchema, card: ModelCard) -> str:
    """Save the model into the BentoML model store; returns its tag."""
    import bentoml

    with bentoml.models.create(
        card.model_name,
        labels=card.labels(),
        metadata={"model_card": card.model_dump(exclude_none=True), "features": schema.feature_names},
        module="churnops.serving",
    ) as stored:
        write_model_files(Path(stored.path), pipeline, schema, card)
        # Written into model.yaml when the block closes; the service checks them at start-up.
        stored.info.metadata[FILES_SHA256_KEY] = model_files_sha256(Path(stored.path))
    return str(stored.tag)


def verify_bento_model(bento_model_tag: str) -> dict[str, str]:
    """The stored BentoML model's files match the hashes recorded when it was saved; returns them."""
    import bentoml

    stored = bentoml.models.get(bento_model_tag)
    expected = stored.info.metadata.get(FILES_SHA256_KEY)
    try:
        verify_model_files(Path(stored.path), expected)
    except ModelIntegrityError as error:
        raise DeploymentError(f"BentoML model {bento_model_tag}: {error}") from None
    return dict(expected)


def find_bento_model(card: ModelCard) -> str | None:
    """An already-packaged BentoML model of the same ZenML model version, if any."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        stored_models = bentoml.models.list(card.model_name)
    except NotFound:
        return None
    for stored in stored_models:
        labels = stored.info.labels
        # Same version in the same stage: its card (stage, threshold, metrics) still holds.
        if (card.model_version_id and labels.get("zenml_version_id") == card.model_version_id
                and labels.get("stage") == (card.stage or "none")):
            return str(stored.tag)
    return None


def build_bento(bento_model_tag: str, card: ModelCard, rollout: dict[str, Any] | None = None) -> str:
    """Build a Bento from bento/bentofile.yaml serving ``bento_model_tag``; returns its tag.
    ``rollout``: the challenger's Bento arguments (``challenger_tag``, ``rollout_mode``, ...)."""
    import bentoml

    from churnops.platform.bento_context import staged_build_context

    labels = {"zenml_model": card.model_name, "zenml_version": card.model_version,
              "bento_model": bento_model_tag.replace(":", "-")}
    if rollout:
        labels.update({"rollout_mode": str(rollout["rollout_mode"]),
                       "challenger_model": str(rollout["challenger_tag"]).replace(":", "-")})
    # Only the bentofile's files as the context: BentoML would walk .venv and $CHURNOPS_HOME too.
    with staged_build_context(BENTOFILE, PROJECT_ROOT) as context:
        bento = bentoml.bentos.build_bentofile(
            str(BENTOFILE),
            build_ctx=str(context),
            args={"model_tag": bento_model_tag, **(rollout or {})},
            labels=labels,
            # The service module reads the model tag at import: re-import it for each build.
            reload=True,
        )
    return str(bento.tag)


def stored_bento_model(version: ModelVersionResponse, card: ModelCard, pipeline: Pipeline | None = None,
                       schema: DatasetSchema | None = None) -> tuple[str, dict[str, str]]:
    """The version's BentoML model (reused when one with this card exists, else saved) and its
    verified file hashes: a reused model is verified too, so a file changed in the store is refused."""
    bento_model_tag = find_bento_model(card)
    if bento_model_tag is None:
        if pipeline is None or schema is None:
            pipeline, schema = load_version_artifacts(version)
        bento_model_tag = save_bento_model(pipeline, schema, card)
    return bento_model_tag, verify_bento_model(bento_model_tag)


def package_version(version: ModelVersionResponse, pipeline: Pipeline | None = None,
                    schema: DatasetSchema | None = None, stage: str | None = None) -> Packaged:
    """Package a model version as a BentoML model and a Bento, and record ``bento_tag`` on it.

    ``stage`` overrides the stage written on the model card (a rollback packages a version
    before it becomes production again).
    """
    card = model_card(version)
    if stage is not None:
        card = card.model_copy(update={"stage": stage})
    bento_model_tag, served_files = stored_bento_model(version, card, pipeline, schema)
    bento_tag = build_bento(bento_model_tag, card)
    log_version_metadata(version, {"bento_tag": bento_tag, "bento_model_tag": bento_model_tag,
                                   "served_files_sha256": served_files,
                                   "packaged_at": datetime.now(UTC).isoformat(timespec="seconds")})
    return Packaged(model_version=card.model_version, bento_model_tag=bento_model_tag, bento_tag=bento_tag)


# --------------------------------------------------------------------------- local deployment


class DeploymentRecord(BaseModel):
    """docs/contracts.md: the running local deployment, in ``StatePaths.deployment_file``."""

    pid: int
    url: str
    host: str
    port: int
    bento_tag: str
    model_version: str
    started_at: str
    log_file: str | None = None
    # A challenger served beside model_version (shadow or canary), else None.
    challenger_version: str | None = None
    rollout_mode: str | None = None
    canary_percent: float | None = None
    rollout_id: str | None = None
    rollout_started_at: str | None = None


def read_record(paths: StatePaths) -> DeploymentRecord | None:
    try:
        return DeploymentRecord.model_validate_json(paths.deployment_file.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _write_record(paths: StatePaths, record: DeploymentRecord) -> None:
    paths.deployment_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = paths.deployment_file.with_suffix(".tmp")
    temporary.write_text(record.model_dump_json(indent=2))
    os.replace(temporary, paths.deployment_file)


def _is_our_server(pid: int) -> bool:
    """Whether ``pid`` is alive and a ``bentoml serve`` (not a recycled pid)."""
    command = services.command_line(pid)
    return command is not None and "bentoml" in command and " serve " in f"{command} "


def running_deployment(paths: StatePaths) -> DeploymentRecord | None:
    """The recorded deployment if its server is still alive; a stale record is removed."""
    record = read_record(paths)
    if record is None:
        return None
    if _is_our_server(record.pid):
        return record
    paths.deployment_file.unlink(missing_ok=True)
    return None


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def start_service(paths: StatePaths, bento_tag: str, model_version: str, host: str = "127.0.0.1",
                  port: int = 3000, timeout: float = READY_TIMEOUT,
                  extra_env: dict[str, str] | None = None, rollout: dict[str, Any] | None = None) -> DeploymentRecord:
    """Start ``bentoml serve <bento_tag>`` in the background and wait until it is ready."""
    if running_deployment(paths) is not None:
        raise DeploymentError("a deployment is already running: stop it first (--stop)")
    if not port_is_free(port, host):
        raise DeploymentError(f"port {port} on {host} is in use: choose another with --port")
    log_file = paths.home / "logs" / f"bentoml-serve-{port}.log"
    env = {**os.environ, **environment(paths), **(extra_env or {})}
    from churnops.platform.api_key import ApiKeyError, api_key_environment

    try:  # the API key from a ZenML secret, unless the environment sets one (churnops/platform/api_key.py)
        env.update(api_key_environment(env))
    except ApiKeyError as error:
        raise DeploymentError(str(error)) from None
    command = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]
    url = _url(host, port)
    try:
        service = services.start_service("bentoml", command, url=url, health_url=f"{url}/readyz", log=log_file,
                                         env=env, cwd=paths.home, timeout=timeout)
    except services.NotReady as error:
        if error.returncode is not None:
            raise DeploymentError(f"the service exited with code {error.returncode} before it was ready; "
                                  f"last lines of {log_file}:\n{services.log_tail(log_file, 25)}") from None
        raise DeploymentError(f"the service was not ready after {timeout:.0f} s; see {log_file}") from None
    record = DeploymentRecord(pid=service.pid, url=url, host=host, port=port, bento_tag=bento_tag,
                              model_version=model_version, log_file=str(log_file),
                              started_at=datetime.now(UTC).isoformat(timespec="seconds"), **(rollout or {}))
    _write_record(paths, record)
    return record


def stop_service(paths: StatePaths) -> DeploymentRecord | None:
    """Stop the recorded deployment (SIGTERM to its process group: BentoML shuts down
    gracefully and the inference log is flushed); returns what was stopped."""
    record = read_record(paths)
    if record is None:
        return None
    if _is_our_server(record.pid):
        _terminate(record.pid)
    paths.deployment_file.unlink(missing_ok=True)
    return record


def _terminate(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM our server and its workers (the process group it leads, or else its process
    tree), SIGKILL after ``timeout``; what survives even that is left alone."""
    with contextlib.suppress(ProcessLookupError, services.ServiceError):
        if os.getpgid(pid) == pid:
            services.stop_process_group(pid, timeout)
        else:
            services.stop_process(pid, timeout)


# ---------------------------------------------------------------------------------- rollback


@dataclass(frozen=True)
class RollbackResult:
    from_version: str
    to_version: str
    reason: str
    at: str
    packaged: Packaged
    contract: str = ""
    overridden: list[str] = field(default_factory=list)


def previous_production(
    versions: list[ModelVersionResponse], current: ModelVersionResponse
) -> ModelVersionResponse | None:
    """The newest version older than ``current`` that served in production and was not itself
    rolled back away from."""
    for candidate in sorted(versions, key=lambda v: v.number, reverse=True):
        if candidate.number >= current.number:
            continue
        if was_production(candidate.run_metadata):
            return candidate
    return None


def rollback(to: str | None = None, reason: str | None = None, model_name: str = MODEL_NAME, *,
             force: bool = False) -> RollbackResult:
    """Make the previous production version (or ``to``) production again and archive the current one.

    The target goes through the gate (:func:`authorize`) and is packaged first, all under the
    promotion lock, so a refusal or a failure leaves every stage as it was. Reason and time are
    recorded on both versions (``rollback_reason``, ``rollback_at``, ``rollback_role``).
    """
    from zenml.enums import ModelStages

    with promotion_lock(model_name):
        try:
            current = get_version(model_name, None)
        except DeploymentError as error:
            raise DeploymentError(f"nothing to roll back: {error}") from None
        versions = list_versions(model_name)
        if to is not None:
            target = get_version(model_name, to)
            if target.id == current.id:
                raise DeploymentError(f"version {target.number} is already in production; nothing changed")
        else:
            target = previous_production(versions, current)
            if target is None:
                raise DeploymentError(
                    f"no earlier production version of '{model_name}' to roll back to from version "
                    f"{current.number}; nothing changed (choose one with --to VERSION, see `python run.py --models`)")
        action = "rollback --to" if to is not None else "rollback"
        clearance = authorize(target, action, force=force, reason=reason, replaces=current, model_name=model_name)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        why = reason or "manual rollback"
        packaged = package_version(target, stage="production")
        target.set_stage(ModelStages.PRODUCTION, force=True)
        if stage_of(get_version(model_name, str(current.number))) == "production":  # set_stage archives; be sure
            current.set_stage(ModelStages.ARCHIVED, force=True)
        log_version_metadata(current, {"rollback_reason": f"{why}: production rolled back to version {target.number}",
                                       "rollback_at": at, "rollback_role": "replaced"})
        log_version_metadata(target, {"rollback_reason": f"{why}: restored to production from version "
                                                         f"{current.number}",
                                      "rollback_at": at, "rollback_role": "restored", PRODUCTION_SINCE_KEY: at})
        clearance.record()
    return RollbackResult(from_version=str(current.number), to_version=str(target.number), reason=why, at=at,
                          packaged=packaged, contract=describe_version_contract(target),
                          overridden=[v.rule for v in clearance.overridden])


def switch_running_service(paths: StatePaths, packaged: Packaged) -> DeploymentRecord | None:
    """Restart a running local deployment on another Bento, same host and port."""
    record = running_deployment(paths)
    if record is None:
        return None
    stop_service(paths)
    return start_service(paths, packaged.bento_tag, packaged.model_version, record.host, record.port)



# ---------------------------------------------------------------------------- shadow and canary


ROLLOUT_MODES = ("shadow", "canary")


def current_rollout(paths: StatePaths) -> DeploymentRecord | None:
    """The running local deployment if it serves a challenger beside production."""
    record = running_deployment(paths)
    return record if record is not None and record.challenger_version is not None else None


def start_rollout(paths: StatePaths, challenger: ModelVersionResponse, mode: str, percent: float | None = None,
                  *, force: bool = False, reason: str | None = None, host: str | None = None,
                  port: int | None = None) -> DeploymentRecord:
    """Serve ``challenger`` beside the production version: ``shadow`` (it scores every request off the
    response path) or ``canary`` (it answers ``percent`` % of customers, chosen by pseudonymised id).

    The challenger goes through the gate (:func:`authorize`, action ``shadow``/``canary``) against
    production; both are packaged into one Bento, and the running local deployment is restarted on it
    (same host and port), or one is started. The rollout is recorded on both versions.
    """
    if mode not in ROLLOUT_MODES:
        raise DeploymentError(f"rollout mode must be one of {', '.join(ROLLOUT_MODES)}, not {mode!r}")
    if mode == "canary" and not (percent is not None and 0 < percent < 100):
        raise DeploymentError("a canary needs a share of customers: --canary PERCENT, above 0 and below 100")
    production = get_version(MODEL_NAME, None)
    if production.id == challenger.id:
        raise DeploymentError(f"version {challenger.number} is the production version; a challenger must be "
                              "another version (see `python run.py --models`)")
    clearance = authorize(challenger, mode, force=force, reason=reason, replaces=production)
    packaged_production = package_version(production)
    # The challenger's model only: no Bento of its own, so it never looks like a production version.
    challenger_model, _ = stored_bento_model(challenger, model_card(challenger))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    rollout_id = f"r{datetime.now(UTC):%Y%m%dT%H%M%S}-v{challenger.number}"
    arguments = {"challenger_tag": challenger_model, "rollout_mode": mode,
                 "canary_percent": float(percent or 0.0), "rollout_id": rollout_id, "rollout_started_at": started}
    bento_tag = build_bento(packaged_production.bento_model_tag, model_card(production), arguments)
    running = running_deployment(paths)
    if running is not None:
        stop_service(paths)
    record = start_service(paths, bento_tag, str(production.number),
                           host or (running.host if running else "127.0.0.1"),
                           port or (running.port if running else 3000),
                           rollout={"challenger_version": str(challenger.number), "rollout_mode": mode,
                                    "canary_percent": float(percent) if mode == "canary" else None,
                                    "rollout_id": rollout_id, "rollout_started_at": started})
    shared = {"rollout_id": rollout_id, "rollout_mode": mode, "rollout_started_at": started}
    log_version_metadata(challenger, {**shared, "rollout_role": "challenger", "rollout_bento_tag": bento_tag,
                                      "rollout_production_version": str(production.number),
                                      **({"rollout_canary_percent": float(percent)} if mode == "canary" else {})})
    log_version_metadata(production, {**shared, "rollout_role": "production",
                                      "rollout_challenger_version": str(challenger.number)})
    clearance.record()
    return record


def end_rollout(paths: StatePaths) -> DeploymentRecord | None:
    """Serve the current production version alone again (after a promotion on evidence, the
    challenger is production by then; after a rollback, production never changed)."""
    if running_deployment(paths) is None:
        return None
    production = get_version(MODEL_NAME, None)
    authorize(production, "deploy")
    return switch_running_service(paths, package_version(production))

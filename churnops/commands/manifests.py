"""``python run.py --pipeline deploy --k8s-manifests DIR [--version N] [--image IMAGE] [--replicas N]``.

Writes Kubernetes manifests (``churnops.platform.kubernetes``, docs/kubernetes.md) that run the
Bento of the production (or given) model version, read through the Model Control Plane. The
version goes through the gate first, as for ``--serve``: a refusal exits 4 and writes nothing
unless ``--force --reason TEXT`` (the override is recorded on the version). The Bento is the one
recorded on the version (``bento_tag``) while it is in the local Bento store, else the version is
packaged again, as ``--pipeline deploy`` does; with ``--image`` the recorded tag is enough.
Options: configs/kubernetes.yaml, or ``--config PATH``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnops.core.errors import ExitCode, UserError
from churnops.core.settings import CONFIGS_DIR, StatePaths

if TYPE_CHECKING:
    from churnops.platform.kubernetes import ManifestOptions, ServedModel, ServiceEnvironment

OPTIONS_FILE = CONFIGS_DIR / "kubernetes.yaml"
ACTION = "k8s manifests"


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.platform import deployment
    from churnops.platform.kubernetes import ManifestError, build_manifests, image_for, secrets_example, write_manifests

    if args.serve or args.stop:
        raise UserError("--k8s-manifests only writes files: it does not go with --serve or --stop")
    options = _options(args)  # before ZenML: a typo in the options is one line, at once
    try:
        version = deployment.get_version(deployment.MODEL_NAME, args.version)
        clearance = deployment.authorize(version, ACTION, force=args.force, reason=args.reason)
        model = served_model(version, _bento_tag(version, image_given=args.image is not None))
    except deployment.GateRefused as refusal:
        raise UserError(str(refusal), ExitCode.GATE_REFUSED) from None
    except deployment.DeploymentError as error:
        raise UserError(str(error)) from None
    try:
        documents = build_manifests(model, options, _service_environment())
        written = write_manifests(args.k8s_manifests, documents, model, secrets_example(options, model))
    except (ManifestError, OSError) as error:
        raise UserError(f"cannot write the manifests: {error}") from None
    if clearance.record() is not None:
        print(f"GATE OVERRIDDEN ({', '.join(v.rule for v in clearance.overridden)}): recorded on version "
              f"{clearance.version.number} (see `python run.py --models`).")
    folder = Path(args.k8s_manifests)
    print(f"Kubernetes manifests for model version {model.model_version} (Bento {model.bento_tag}, input contract "
          f"{model.input_contract_sha256 or 'unknown'}) in {folder}:")
    for path in written:
        print(f"  {path.name}")
    print(f"Next: bentoml containerize {model.bento_tag} -t {image_for(model, options)}   (then push it where the "
          "cluster pulls from)")
    print(f"      create the secrets as {folder / 'secrets.yaml.example'} shows, then: kubectl apply -f {folder}")
    return 0


def _options(args: argparse.Namespace) -> ManifestOptions:
    from churnops.platform.kubernetes import ManifestError, load_options

    try:
        return load_options(args.config or OPTIONS_FILE, {"image": args.image, "replicas": args.replicas})
    except ManifestError as error:
        raise UserError(str(error)) from None


def _service_environment() -> ServiceEnvironment:
    """The variable names the service reads, from configs/serving.yaml."""
    from churnops.platform.kubernetes import ServiceEnvironment
    from churnops.serving.config import LOG_DIR_ENV, load_serving_config

    serving = load_serving_config()
    return ServiceEnvironment(api_key_env=serving.auth.key_env, salt_env=serving.pseudonymisation.salt_env,
                              log_dir_env=LOG_DIR_ENV, protect_metrics=serving.auth.protect_metrics)


def _bento_tag(version: Any, image_given: bool) -> str:
    """The Bento to run: the recorded one while `bentoml containerize` can still find it (or the
    image exists already), else a new package of the version."""
    from churnops.platform import deployment

    recorded = version.run_metadata.get("bento_tag")
    if isinstance(recorded, str) and recorded and (image_given or _bento_is_stored(recorded)):
        return recorded
    why = f"its Bento {recorded} is not in the local Bento store" if recorded else "it has no Bento yet"
    print(f"Packaging model version {version.number} ({why}).")
    return deployment.package_version(version).bento_tag


def _bento_is_stored(tag: str) -> bool:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.bentos.get(tag)
    except NotFound:
        return False
    return True


def served_model(version: Any, bento_tag: str) -> ServedModel:
    """A ZenML model version as the manifests describe it."""
    from churnops.modeling.governance import CONTRACT_DIGEST_KEY, contract_digest
    from churnops.platform import deployment
    from churnops.platform.kubernetes import ServedModel

    digest = version.run_metadata.get(CONTRACT_DIGEST_KEY)
    if not isinstance(digest, str):
        contract = deployment.contract_of(version)
        digest = contract_digest(contract) if contract else None
    return ServedModel(model_name=version.model.name, model_version=str(version.number),
                       model_version_id=str(version.id), stage=deployment.stage_of(version),
                       bento_tag=bento_tag, input_contract_sha256=digest)

"""cloud-sim: the remote services of a cloud stack, emulated on 127.0.0.1 with real protocols.

- S3: ``moto_server`` (an S3 API emulator; state in memory, gone when it stops);
- MLflow: ``mlflow server`` with its own sqlite backend, storing artifacts in that S3 bucket
  (clients upload through the server, as with a real tracking server);
- ZenML: the local ZenML server (``churnops.platform.zenml_server``), so runs go through the REST API.

``configs/stacks/cloud-sim.yaml`` reads the endpoints and the emulator's throwaway keys from
the variables :func:`stack_environment` returns; the keys become ZenML secrets at registration.

    python -m churnops.platform.cloudsim up      # start all three, register and activate cloud-sim
    python -m churnops.platform.cloudsim env     # print the variables (to re-register by hand)
    python -m churnops.platform.cloudsim down    # stop everything it started
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from churnops.core.settings import TELEMETRY_OFF, StatePaths
from churnops.platform.ports import LOOPBACK, free_port
from churnops.platform.services import ServiceError, group_runs, start_service, stop_process_group

DEFAULT_BUCKET = "churnops"
REGION = "us-east-1"
STACK = "cloud-sim"


@dataclass(frozen=True)
class CloudSim:
    """Where the emulated services listen, and the processes that serve them."""

    s3_endpoint: str
    bucket: str
    mlflow_url: str
    moto_pid: int
    mlflow_pid: int
    access_key_id: str
    secret_access_key: str
    started_zenml_server: bool = False

    def stack_environment(self) -> dict[str, str]:
        """The variables ``configs/stacks/cloud-sim.yaml`` expands."""
        return {
            "CHURNOPS_S3_ENDPOINT": self.s3_endpoint,
            "CHURNOPS_S3_BUCKET": self.bucket,
            "CHURNOPS_S3_REGION": REGION,
            "CHURNOPS_S3_ACCESS_KEY_ID": self.access_key_id,
            "CHURNOPS_S3_SECRET_ACCESS_KEY": self.secret_access_key,
            "CHURNOPS_MLFLOW_URL": self.mlflow_url,
            # The emulated MLflow server has no auth; ZenML's tracker still wants exactly one method.
            "CHURNOPS_MLFLOW_USERNAME": "churnops",
            "CHURNOPS_MLFLOW_PASSWORD": self.secret_access_key,
        }

    def s3_client(self):  # noqa: ANN201 - boto3 clients are generated classes
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=REGION,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)


def state_dir(paths: StatePaths) -> Path:
    return paths.home / "cloudsim"


def state_file(paths: StatePaths) -> Path:
    return state_dir(paths) / "state.json"


def load_state(paths: StatePaths) -> CloudSim | None:
    try:
        return CloudSim(**json.loads(state_file(paths).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save_state(paths: StatePaths, sim: CloudSim) -> None:
    path = state_file(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Holds the emulator's throwaway keys: readable by this user only.
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(asdict(sim), indent=2))


def running(paths: StatePaths) -> CloudSim | None:
    sim = load_state(paths)
    if sim is not None and group_runs(sim.moto_pid, "moto_server") and group_runs(sim.mlflow_pid, "mlflow"):
        return sim
    return None


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def start_services(paths: StatePaths, bucket: str = DEFAULT_BUCKET, timeout: float = 90.0) -> CloudSim:
    """Start the S3 emulator (with ``bucket``) and an MLflow server storing artifacts in it."""
    existing = running(paths)
    if existing is not None:
        return existing
    stop_services(paths)  # a half-dead previous start
    folder = state_dir(paths)
    folder.mkdir(parents=True, exist_ok=True)
    base_env = {**os.environ, **TELEMETRY_OFF}
    moto_port, mlflow_port = free_port(), free_port()
    s3_endpoint = f"http://{LOOPBACK}:{moto_port}"
    moto = start_service("s3", [_bin("moto_server"), "-H", LOOPBACK, "-p", str(moto_port)], url=s3_endpoint,
                         health_url=f"{s3_endpoint}/moto-api/", log=folder / "moto.log", env=base_env,
                         timeout=timeout)
    sim = CloudSim(s3_endpoint=s3_endpoint, bucket=bucket, mlflow_url=f"http://{LOOPBACK}:{mlflow_port}",
                   moto_pid=moto.pid, mlflow_pid=moto.pid, access_key_id=f"SIM{secrets.token_hex(8).upper()}",
                   secret_access_key=secrets.token_urlsafe(24))
    try:
        sim.s3_client().create_bucket(Bucket=bucket)
        mlflow_env = {
            **base_env,
            "AWS_ACCESS_KEY_ID": sim.access_key_id,
            "AWS_SECRET_ACCESS_KEY": sim.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
            # No background job runner (a dozen worker processes) for a test server.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        mlflow = start_service(
            "mlflow",
            [_bin("mlflow"), "server", "--host", LOOPBACK, "--port", str(mlflow_port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow-server.db'}",
             "--artifacts-destination", f"s3://{bucket}/mlflow"],
            url=sim.mlflow_url, health_url=f"{sim.mlflow_url}/health", log=folder / "mlflow.log", env=mlflow_env,
            timeout=timeout)
    except BaseException:
        stop_process_group(moto.pid)
        raise
    sim = replace(sim, mlflow_pid=mlflow.pid)
    _save_state(paths, sim)
    return sim


def stop_services(paths: StatePaths) -> bool:
    """Stop the emulated services recorded for ``paths``; return whether any was running."""
    sim = load_state(paths)
    if sim is None:
        return False
    was_running = False
    for pid, program in ((sim.moto_pid, "moto_server"), (sim.mlflow_pid, "mlflow")):
        if group_runs(pid, program):
            was_running = True
            stop_process_group(pid)
    state_file(paths).unlink(missing_ok=True)
    return was_running


def up(paths: StatePaths) -> CloudSim:
    """Start everything and register + activate the cloud-sim stack (in this process)."""
    from churnops.platform import zenml_server
    from churnops.platform.bootstrap import ensure_repository

    ensure_repository(paths)  # first, back to the embedded store if the server died
    sim = start_services(paths)
    if zenml_server.local_server_url() is None:
        zenml_server.start_local_server()
        sim = replace(sim, started_zenml_server=True)
        _save_state(paths, sim)
    os.environ.update(sim.stack_environment())
    from churnops.platform.stacks import use_stack

    use_stack(STACK)
    return sim


def down(paths: StatePaths) -> None:
    from churnops.platform import zenml_server

    sim = load_state(paths)
    stop_services(paths)
    if sim is not None and sim.started_zenml_server:
        zenml_server.stop_local_server()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churnops.platform.cloudsim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "env", "status"))
    args = parser.parse_args(argv)

    from churnops.core.settings import configure_environment

    paths = configure_environment()
    os.environ.setdefault("ZENML_AUTO_OPEN_DASHBOARD", "false")
    if args.action == "up":
        try:
            sim = up(paths)
        except ServiceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        from churnops.platform import zenml_server

        print(f"S3 emulator:   {sim.s3_endpoint}  (bucket s3://{sim.bucket})")
        print(f"MLflow server: {sim.mlflow_url}")
        print(f"ZenML server:  {zenml_server.local_server_url()}")
        print("Active stack:  churnops-cloud-sim. Train with `make run`; stop with `make cloud-sim-stop`.")
    elif args.action == "down":
        down(paths)
        print("cloud-sim services stopped.")
    elif args.action == "env":
        sim = running(paths)
        if sim is None:
            print("error: cloud-sim is not running (make cloud-sim)", file=sys.stderr)
            return 1
        for key, value in sim.stack_environment().items():
            print(f"export {key}={shlex.quote(value)}")
    else:
        sim = running(paths)
        print(json.dumps({"running": sim is not None,
                          **({"s3": sim.s3_endpoint, "mlflow": sim.mlflow_url} if sim else {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

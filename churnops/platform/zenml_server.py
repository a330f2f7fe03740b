"""The local ZenML server (dashboard) on 127.0.0.1: start, connect, skip onboarding, stop.

``zenml login --local`` runs the server as a daemon that serves the same sqlite database
as the embedded client store (both live under ``ZENML_CONFIG_PATH``). Connecting to it or
disconnecting from it therefore never loses a run, a model version, a stack or a secret:
it only changes whether the client talks to the database directly or through the server.

``python -m churnops.commands.dashboard start|stop|url`` (``make dashboard``) is its command line.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from pathlib import Path

import requests

from churnops.platform.ports import LOOPBACK, port_is_free
from churnops.platform.services import ServiceError, pid_alive, stop_process, wait_until_ready

DEFAULT_PORT = 8237
PORT_VARIABLE = "CHURNOPS_DASHBOARD_PORT"


def _daemon_dir() -> Path:
    from zenml.zen_server.deploy.daemon.daemon_zen_server import DaemonZenServer

    return Path(DaemonZenServer.config_path())


def daemon_pid() -> int | None:
    """Process id of the running local server daemon, from its pid file."""
    pid_file = _daemon_dir() / "service.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def local_server_url() -> str | None:
    """URL of the running local ZenML server, or None."""
    from zenml.utils.server_utils import get_local_server

    server = get_local_server()
    if server is None or server.status is None or not server.status.url or daemon_pid() is None:
        return None
    return str(server.status.url)


def connected_to_remote_server() -> bool:
    """True when the client talks to a ZenML server that is not the local daemon."""
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StoreType
    from zenml.utils.server_utils import connected_to_local_server

    return GlobalConfiguration().store_configuration.type == StoreType.REST and not connected_to_local_server()


def recover_from_dead_local_server() -> bool:
    """If the client points at a local server whose process is gone (killed, machine rebooted),
    point it back at the embedded store (the same database) instead of retrying for half a
    minute and failing. Touches no store; call it before the first ``Client()``."""
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StoreType
    from zenml.utils.server_utils import get_local_server

    config = GlobalConfiguration()
    store = config.store_configuration
    if store.type != StoreType.REST or daemon_pid() is not None:
        return False
    server = get_local_server()
    if server is None or str(server.config.url).rstrip("/") != store.url.rstrip("/"):
        return False  # a remote server: not ours to second-guess
    config.set_default_store()
    print(f"The local ZenML server at {store.url} is not running: using the embedded store "
          f"(same data). Start it again with `make dashboard`.", file=sys.stderr)
    return True


def skip_onboarding(url: str) -> None:
    """Mark the local (no-auth) user as onboarded so the dashboard opens on the runs, not on
    the first-visit "account details" form. Keeps any other user metadata."""
    endpoint = f"{url.rstrip('/')}/api/v1/current-user"
    user = requests.get(endpoint, timeout=10)
    user.raise_for_status()
    body = user.json()
    metadata = dict((body.get("metadata") or {}).get("user_metadata") or {})
    if metadata.get("finished_onboarding_survey") is True and (body.get("body") or {}).get("email_opted_in") is False:
        return  # done already (the server is reused by every `--stack local-server`)
    metadata["finished_onboarding_survey"] = True
    response = requests.put(endpoint, json={"user_metadata": metadata, "email_opted_in": False}, timeout=10)
    response.raise_for_status()


def start_local_server(port: int | None = None, timeout: int = 60) -> str:
    """Start the local server on 127.0.0.1 (or reuse the running one), connect the client to
    it, skip the dashboard onboarding; return the dashboard URL."""
    from zenml.zen_server.deploy.deployer import LocalServerDeployer
    from zenml.zen_server.deploy.deployment import LocalServerDeploymentConfig

    deployer = LocalServerDeployer()
    url = local_server_url()
    if url is None:
        chosen = port or int(os.environ.get(PORT_VARIABLE, DEFAULT_PORT))
        if not port_is_free(chosen):
            raise ServiceError(f"port {chosen} on {LOOPBACK} is taken: pick another with "
                               f"{PORT_VARIABLE}=N (or DASHBOARD_PORT=N for make)")
        # The server only checks its pid file when started; a stale deployment record from a
        # killed server would make it believe it is running.
        deployer.remove_server()
        config = LocalServerDeploymentConfig(provider="daemon", ip_address=ipaddress.IPv4Address(LOOPBACK),
                                             port=chosen)
        server = deployer.deploy_server(config, timeout=timeout)
        if server.status is None or not server.status.url:
            raise ServiceError(f"the local ZenML server did not start; see {_daemon_dir() / 'service.log'}")
        url = str(server.status.url)
        wait_until_ready(f"{url}/health", timeout=timeout, log=_daemon_dir() / "service.log")
    deployer.connect_to_server()
    skip_onboarding(url)
    return url


def stop_local_server(timeout: float = 30.0) -> bool:
    """Stop the local server (the client falls back to the embedded store, same database)
    and make sure its process is gone; return whether one was running."""
    from zenml.zen_server.deploy.deployer import LocalServerDeployer

    pid = daemon_pid()
    LocalServerDeployer().remove_server(timeout=int(timeout))
    if pid is None:
        return False
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        stop_process(pid)
    return True

"""Make the ZenML repository and a usable stack exist before anything runs."""

from __future__ import annotations

from churnops.core.settings import StatePaths

DEFAULT_STACK = "local"


def ensure_repository(paths: StatePaths) -> None:
    """Make the ZenML client usable: ``zenml init`` inside the state folder (once), and, if the
    client points at a local server whose process is gone, back to the embedded store.

    Every ZenML entry point (``ensure_stack``, ``zenml_server``, ``cloudsim``) goes through here
    before its first ``Client()``."""
    from zenml.client import Client

    from churnops.platform.zenml_server import recover_from_dead_local_server

    # Instead of ZenML retrying a dead server for half a minute and failing.
    recover_from_dead_local_server()
    if not (paths.home / ".zen").is_dir():
        Client.initialize(root=paths.home)


def ensure_stack(paths: StatePaths, stack: str | None = None) -> str:
    """Register and activate ``stack``; with none given, keep the active churnops stack
    or fall back to the local default when ZenML's bare ``default`` stack is active."""
    from zenml.client import Client

    from churnops.platform.stacks import use_stack

    ensure_repository(paths)
    if stack is None:
        active = Client().active_stack_model
        if active.name != "default":
            return active.name
        stack = DEFAULT_STACK
    return use_stack(stack)

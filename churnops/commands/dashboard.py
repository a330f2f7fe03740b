"""``python -m churnops.commands.dashboard start [--port N] | stop | url``: the local ZenML server.

What ``make dashboard`` and ``make dashboard-stop`` run (``churnops.platform.zenml_server`` does the
work). Starting and stopping never loses data: the server serves the embedded store's database.
"""

from __future__ import annotations

import argparse
import os
import sys

from churnops.platform.services import ServiceError
from churnops.platform.zenml_server import (
    DEFAULT_PORT,
    LOOPBACK,
    PORT_VARIABLE,
    local_server_url,
    start_local_server,
    stop_local_server,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churnops.commands.dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop", "url"))
    parser.add_argument("--port", type=int, help=f"port on {LOOPBACK} (default: ${PORT_VARIABLE} or {DEFAULT_PORT})")
    args = parser.parse_args(argv)

    from churnops.core.settings import configure_environment

    paths = configure_environment()
    os.environ.setdefault("ZENML_AUTO_OPEN_DASHBOARD", "false")
    from churnops.platform.bootstrap import ensure_repository

    ensure_repository(paths)  # first, back to the embedded store if the server died
    if args.action == "start":
        try:
            url = start_local_server(args.port)
        except ServiceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"ZenML dashboard: {url}  (runs: {url}/projects/default/runs; stop: make dashboard-stop)")
    elif args.action == "stop":
        print("Stopped the local ZenML server." if stop_local_server() else "The local ZenML server was not running.")
    else:
        url = local_server_url()
        print(url or "not running")
        return 0 if url else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python run.py --pipeline rollback [--to VERSION] [--reason TEXT]``.

The previous production version (or VERSION) becomes production, the current one is
archived, reason and time are recorded on both, the Bento is rebuilt and a running local
deployment is switched to it. With no earlier version nothing changes.
"""

from __future__ import annotations

import argparse

from churnops.commands import UserError
from churnops.settings import StatePaths


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops import deployment

    try:
        result = deployment.rollback(args.to, args.reason)
        print(f"Rolled back {deployment.MODEL_NAME}: production is now version {result.to_version} "
              f"(was {result.from_version}, now archived) at {result.at}.")
        print(f"Reason recorded on both versions: {result.reason}")
        print(f"Bento: {result.packaged.bento_tag}")
        record = deployment.switch_running_service(paths, result.packaged)
    except deployment.DeploymentError as error:
        raise UserError(str(error)) from None
    if record is not None:
        print(f"The running deployment at {record.url} now serves version {record.model_version} (pid {record.pid}).")
    else:
        print("No local deployment was running; start one with: python run.py --pipeline deploy --serve")
    return 0

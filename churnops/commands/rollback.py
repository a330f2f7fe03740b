"""``python run.py --pipeline rollback [--to VERSION] [--reason TEXT] [--force]``.

The previous production version (or VERSION) becomes production, the current one is
archived, reason and time are recorded on both, the Bento is rebuilt and a running local
deployment is switched to it. The target goes through the gate first
(``churnops.platform.deployment.authorize``): a version that failed it, was never evaluated, whose
artifacts changed or whose input contract differs is refused (exit 4) unless ``--force
--reason TEXT``. With no earlier version nothing changes.
"""

from __future__ import annotations

import argparse

from churnops.core.errors import ExitCode, UserError
from churnops.core.settings import StatePaths


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.platform import deployment

    try:
        result = deployment.rollback(args.to, args.reason, force=args.force)
        print(f"Rolled back {deployment.MODEL_NAME}: production is now version {result.to_version} "
              f"(was {result.from_version}, now archived) at {result.at}.")
        print(f"It serves the input contract {result.contract}.")
        print(f"Reason recorded on both versions: {result.reason}")
        if result.overridden:
            print(f"GATE OVERRIDDEN ({', '.join(result.overridden)}): recorded on version {result.to_version} "
                  "(see `python run.py --models`).")
        print(f"Bento: {result.packaged.bento_tag}")
        record = deployment.switch_running_service(paths, result.packaged)
    except deployment.GateRefused as refusal:
        raise UserError(str(refusal), ExitCode.GATE_REFUSED) from None
    except deployment.DeploymentError as error:
        raise UserError(str(error)) from None
    if record is not None:
        print(f"The running deployment at {record.url} now serves version {record.model_version} (pid {record.pid}).")
    else:
        print("No local deployment was running; start one with: python run.py --pipeline deploy --serve")
    return 0

"""The one error type users see, and the exit codes of ``run.py`` for CI jobs and scripts.

Standard library only; nothing in churnops is imported here, so any layer may raise
:class:`UserError` without depending on the CLI.

``1`` is left to Python: an uncaught exception (a crash, with a traceback) exits 1, so every
outcome the project decides on has a code of its own.
"""

from __future__ import annotations

import textwrap
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    CRASH = 1
    USAGE = 2
    INVALID_DATA = 3
    GATE_REFUSED = 4
    NOT_PROMOTED = 5


MEANINGS = {
    ExitCode.OK: "success: training promoted its candidate, or kept it as a non-production version by the "
                 "normal champion comparison (staging); any other command did what it said",
    ExitCode.CRASH: "an unexpected error (Python traceback): a bug or a broken environment",
    ExitCode.USAGE: "a bad option or an action that cannot be done (the message says why); nothing changed",
    ExitCode.INVALID_DATA: "the data failed validation (every column and rule listed); nothing was trained "
                           "or promoted",
    ExitCode.GATE_REFUSED: "refused by the gate: the training candidate failed the absolute gate, or a "
                           "rollback/deploy target failed its recorded gate, was never evaluated or its "
                           "artifacts no longer match; stages unchanged (override: --force --reason TEXT)",
    ExitCode.NOT_PROMOTED: "training kept its candidate out of production for another reason: its input "
                           "contract differs from production's, or --fail-on-reject and it lost the champion "
                           "comparison",
}


def describe(width: int = 100) -> str:
    """Every code and its meaning, wrapped, for ``run.py --help``."""
    return "\n".join(textwrap.fill(MEANINGS[code], width, initial_indent=f"  {int(code)}  ", subsequent_indent="     ")
                     for code in ExitCode)


class UserError(Exception):
    """Something the user can fix; shown as an error without a traceback, exit ``code``
    (2 by default, 4 for a gate refusal)."""

    def __init__(self, message: str, code: int = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = int(code)

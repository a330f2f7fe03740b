"""What can be wrong with a batch: each error names the file and the column, so a user can fix it."""

from __future__ import annotations

from churnops.data.validation import Violation


class BatchDataError(ValueError):
    """The batch cannot be scored as it is (``run.py`` exit code 3, nothing written)."""


class BatchInputError(BatchDataError):
    """A file is missing, empty, unreadable, or lacks a column / has a column of the wrong type."""

    def __init__(self, file: str, problem: str, column: str | None = None) -> None:
        self.file = file
        self.column = column
        where = f"{file}: column '{column}'" if column else file
        super().__init__(f"{where}: {problem}")


class BatchValidationError(BatchDataError):
    """Rows of the batch break the data contract: one line per violated (column, rule)."""

    def __init__(self, file: str, violations: list[Violation], rows: str = "") -> None:
        self.file = file
        self.violations = violations
        lines = "\n".join(f"  - {v.describe()}" for v in violations)
        super().__init__(f"Data validation failed for {file}{rows} with {len(violations)} violation(s):\n{lines}")


class SevereDriftError(BatchDataError):
    """The batch drifted too far from the training data and the policy is ``severe_drift: fail``."""

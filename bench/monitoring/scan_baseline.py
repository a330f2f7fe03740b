"""Baseline: a plain pyarrow scan of the same log files, the floor of touching every row.

Reads every ``*.arrow`` file of LOG_DIR whole (all columns, LZ4 decompressed) and computes one
aggregate per column (null count; the mean probability), so nothing is skipped by laziness.

    python bench/monitoring/scan_baseline.py LOG_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.feather as feather


def main() -> None:
    rows, nulls, total = 0, 0, 0.0
    for path in sorted(Path(sys.argv[1]).glob("date=*/*.arrow")):
        table = feather.read_table(str(path), memory_map=False)
        rows += table.num_rows
        nulls += sum(column.null_count for column in table.columns)
        total += pc.sum(table.column("probability")).as_py() or 0.0
    print(f"scanned {rows} rows, {nulls} nulls, mean probability {total / max(rows, 1):.4f}")


if __name__ == "__main__":
    main()

"""The floor of a ZenML re-run: a trivial 3-step pipeline whose steps are all served from cache.

Runs against the same state folder and active stack as ``run.py`` (``$CHURNOPS_HOME``), so a
re-run of the training pipeline with unchanged data and config can be compared with it: both
pay interpreter start, ``import zenml``, client and store set-up and ZenML's per-run bookkeeping.

    .venv/bin/python bench/training/trivial_pipeline.py

The first call in a fresh home computes and stores the three steps; every later call is the
cached re-run the benchmark measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from churnops.core.settings import configure_environment

PATHS = configure_environment()

from zenml import pipeline, step  # noqa: E402


@step
def make_numbers() -> list[int]:
    return list(range(100))


@step
def add_one(numbers: list[int]) -> list[int]:
    return [n + 1 for n in numbers]


@step
def total(numbers: list[int]) -> int:
    return sum(numbers)


@pipeline(name="churnops_trivial", enable_cache=True)
def trivial_pipeline() -> None:
    total(add_one(make_numbers()))


def main() -> None:
    from churnops.platform.bootstrap import ensure_stack

    ensure_stack(PATHS)
    run = trivial_pipeline()
    print(f"trivial pipeline run {run.name}: {run.status}")


if __name__ == "__main__":
    main()

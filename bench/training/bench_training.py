"""Benchmark the training pipeline.

1. ZenML overhead: `python run.py --pipeline training` against `plain_sklearn.py` doing the
   same work, each as a whole process, alternated in the same run (ratio of medians).
2. Scale: the pipeline at 100k and 1M synthetic rows: wall time and peak memory (RSS).

    .venv/bin/python bench/training/bench_training.py [--repeats 3] [--scale 100000 1000000]

Every run gets a fresh CHURNOPS_HOME under bench/out/ (ZenML's first-run set-up included, as
a new user sees it, in the first pipeline run only; later runs reuse that home).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.measure import timed  # noqa: E402
from churnops.core.settings import environment, state_paths  # noqa: E402

OUT = ROOT / "bench" / "out" / "training"
CONFIG = ROOT / "configs" / "training.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=10_000, help="rows for the overhead comparison")
    parser.add_argument("--scale", type=int, nargs="*", default=[100_000, 1_000_000])
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    home = state_paths(OUT / "home")
    env = {**os.environ, **environment(home)}
    pipeline = [sys.executable, "run.py", "--pipeline", "training", "--config", str(CONFIG)]
    plain = [sys.executable, "bench/training/plain_sklearn.py", "--config", str(CONFIG)]

    # Warm-up: first-run ZenML set-up (store, stack) and the OS file cache, not measured.
    timed([*pipeline, "--rows", "2000"], env)
    results: dict[str, object] = {"rows": args.rows, "repeats": args.repeats}
    zenml_times, plain_times = [], []
    for _ in range(args.repeats):
        zenml_times.append(timed([*pipeline, "--rows", str(args.rows)], env)[0])
        plain_times.append(timed([*plain, "--rows", str(args.rows)], env)[0])
    results["pipeline_s"] = [round(t, 2) for t in zenml_times]
    results["plain_s"] = [round(t, 2) for t in plain_times]
    results["overhead_ratio"] = round(statistics.median(zenml_times) / statistics.median(plain_times), 2)
    print(json.dumps(results))

    scale = []
    for rows in args.scale:
        wall, peak = timed([*pipeline, "--rows", str(rows)], env)
        plain_wall, _ = timed([*plain, "--rows", str(rows)], env)
        scale.append({"rows": rows, "pipeline_s": round(wall, 1), "pipeline_peak_mb": round(peak),
                      "plain_s": round(plain_wall, 1), "ratio": round(wall / plain_wall, 2)})
        print(json.dumps(scale[-1]))
    results["scale"] = scale
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

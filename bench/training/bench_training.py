"""Benchmark the training pipeline's fixed cost (issue 13, point 3).

1. First run: `python run.py --pipeline training --no-cache` against `plain_sklearn.py` doing the
   same search on the same data, each as a whole process, alternated in the same run (ratio of
   medians; target <= 1.3).
2. Re-run: the same command again with unchanged data and config (step cache on) against a
   trivial 3-step ZenML pipeline whose steps are all cached, `trivial_pipeline.py` (ratio of
   medians; target <= 1.2).
3. Scale (only with --scale): the pipeline at more rows: wall time and peak memory (RSS).

    .venv/bin/python bench/training/bench_training.py [--repeats 3] [--scale 100000 1000000]

Every run gets a fresh CHURNOPS_HOME under bench/out/training/ (ZenML's first-run set-up is a
warm-up, not measured). Figures are printed by bench/report.py and collected in bench/out/.
Exits 1 when a figure misses its target.
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

from bench.measure import timed, timed_with_cpu  # noqa: E402
from bench.report import at_most  # noqa: E402
from churnops.core.settings import environment, state_paths  # noqa: E402

OUT = ROOT / "bench" / "out" / "training"
CONFIG = ROOT / "configs" / "training.yaml"
FIRST_RUN_TARGET = 1.3
RERUN_TARGET = 1.2


def alternate(first: list[str], second: list[str], env: dict[str, str], repeats: int) -> dict[str, list[float]]:
    """Wall and CPU seconds of ``first`` and ``second``, run in turn ``repeats`` times (noise hits both alike)."""
    times: dict[str, list[float]] = {"first_wall": [], "second_wall": [], "first_cpu": [], "second_cpu": []}
    for _ in range(repeats):
        for side, command in (("first", first), ("second", second)):
            wall, _, cpu = timed_with_cpu(command, env)
            times[f"{side}_wall"].append(round(wall, 2))
            times[f"{side}_cpu"].append(round(cpu, 2))
        print(f"  {first[1]}: {times['first_wall'][-1]} s wall, {times['first_cpu'][-1]} s CPU; "
              f"{second[1]}: {times['second_wall'][-1]} s wall, {times['second_cpu'][-1]} s CPU", flush=True)
    return times


def ratio_of_medians(numerator: list[float], denominator: list[float]) -> float:
    return round(statistics.median(numerator) / statistics.median(denominator), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs per comparison (default: 3)")
    parser.add_argument("--rows", type=int, default=10_000, help="synthetic rows of the comparisons (default: 10k)")
    parser.add_argument("--scale", type=int, nargs="*", default=[], help="also time the pipeline at these row counts")
    parser.add_argument("--reuse-home", action="store_true",
                        help="keep the state folder of an earlier run of this benchmark and skip the warm-up")
    args = parser.parse_args()
    if args.repeats < 1 or args.rows < 1000:
        parser.error("--repeats must be >= 1 and --rows >= 1000")
    reuse = args.reuse_home and (OUT / "home" / ".zen").is_dir()
    if not reuse:
        shutil.rmtree(OUT, ignore_errors=True)
    home = state_paths(OUT / "home")
    env = {**os.environ, **environment(home)}
    run_py = [sys.executable, "run.py", "--pipeline", "training", "--config", str(CONFIG)]
    plain_py = [sys.executable, "bench/training/plain_sklearn.py", "--config", str(CONFIG)]
    pipeline, plain = [*run_py, "--rows", str(args.rows)], [*plain_py, "--rows", str(args.rows)]
    trivial = [sys.executable, "bench/training/trivial_pipeline.py"]

    # Warm-up, not measured: ZenML's first-run set-up (store, stack), the OS file cache and the first
    # (uncached) run of the trivial pipeline. The first-run comparison below runs the pipeline on these
    # rows before any re-run is timed.
    if not reuse:
        timed([*run_py, "--rows", "2000"], env)
        timed(trivial, env)

    results: dict[str, object] = {"rows": args.rows, "repeats": args.repeats}
    first = alternate([*pipeline, "--no-cache"], plain, env, args.repeats)
    pipeline_s, plain_s = first["first_wall"], first["second_wall"]
    first_ratio = ratio_of_medians(pipeline_s, plain_s)
    first_cpu_ratio = ratio_of_medians(first["first_cpu"], first["second_cpu"])
    results["first_run"] = {"pipeline_s": pipeline_s, "plain_s": plain_s, "ratio": first_ratio,
                            "pipeline_cpu_s": first["first_cpu"], "plain_cpu_s": first["second_cpu"],
                            "cpu_ratio": first_cpu_ratio}
    rerun = alternate(pipeline, trivial, env, args.repeats)
    rerun_s, trivial_s = rerun["first_wall"], rerun["second_wall"]
    rerun_ratio = ratio_of_medians(rerun_s, trivial_s)
    rerun_cpu_ratio = ratio_of_medians(rerun["first_cpu"], rerun["second_cpu"])
    results["rerun"] = {"pipeline_s": rerun_s, "trivial_s": trivial_s, "ratio": rerun_ratio,
                        "pipeline_cpu_s": rerun["first_cpu"], "trivial_cpu_s": rerun["second_cpu"],
                        "cpu_ratio": rerun_cpu_ratio}

    scale = []
    for rows in args.scale:
        wall, peak = timed([*run_py, "--no-cache", "--rows", str(rows)], env)
        plain_wall, _ = timed([*plain_py, "--rows", str(rows)], env)
        scale.append({"rows": rows, "pipeline_s": round(wall, 1), "pipeline_peak_mb": round(peak),
                      "plain_s": round(plain_wall, 1), "ratio": round(wall / plain_wall, 2)})
        print(json.dumps(scale[-1]))
    results["scale"] = scale
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    rows_label = f"{args.rows // 1000}k" if args.rows % 1000 == 0 else str(args.rows)
    # The targets are wall-time ratios; the CPU-time ratios beside them say how much of a miss is
    # other work on a shared machine (they are printed, not judged).
    figures = [
        at_most(f"training {rows_label} first run / plain sklearn", first_ratio, FIRST_RUN_TARGET, "x",
                pipeline_s=pipeline_s, plain_s=plain_s),
        at_most(f"training {rows_label} cached re-run / trivial cached pipeline", rerun_ratio, RERUN_TARGET, "x",
                pipeline_s=rerun_s, trivial_s=trivial_s),
    ]
    print(f"CPU-time ratios: first run {first_cpu_ratio} x, re-run {rerun_cpu_ratio} x")
    print(f"first run: pipeline {statistics.median(pipeline_s):.1f} s, plain {statistics.median(plain_s):.1f} s; "
          f"re-run: pipeline {statistics.median(rerun_s):.1f} s, trivial {statistics.median(trivial_s):.1f} s "
          f"(medians of {args.repeats}; {OUT / 'results.json'})")
    return 0 if all(figure["passed"] for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())

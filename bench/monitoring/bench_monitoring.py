"""Benchmark the monitoring pipeline at 10k, 100k and 1M logged predictions.

For each size, in the same run:
- ``python run.py --pipeline monitoring`` as a user runs it (whole process: ZenML start-up,
  checks, the pipeline, console report, exported HTML): wall time and peak RSS, plus the
  duration of each step as ZenML recorded it;
- the baseline, ``evidently_full.py``: pandas reads the whole log and Evidently's drift and
  summary presets run on every row (no sampling) and save their HTML, as a whole process.

    .venv/bin/python bench/monitoring/bench_monitoring.py [--sizes 10000 100000 1000000]

A fresh CHURNOPS_HOME under bench/out/monitoring/ gets one model (configs/training-fast.yaml)
and, per size, its own log (mild drift, files of 50k rows as the service writes them, 10 %
of predictions labelled). Set-up is not measured; one warm-up run precedes the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.measure import run, timed  # noqa: E402
from churnops.core.settings import environment, state_paths  # noqa: E402

OUT = ROOT / "bench" / "out" / "monitoring"
HERE = Path(__file__).resolve().parent

_STEP_TIMES = """
import json, sys
from zenml.client import Client
run = Client().get_pipeline_run(sys.argv[1])
print("JSON:" + json.dumps({name: round((s.end_time - s.start_time).total_seconds(), 2)
                            for name, s in run.steps.items()}))
"""

_EXPORT_REFERENCE = """
import sys
from zenml.client import Client
from zenml.enums import ModelStages
Client().get_model_version("churn_classifier", ModelStages.PRODUCTION).get_artifact("train_set").load() \\
    .to_parquet(sys.argv[1])
"""


def monitoring_config(rows: int) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "monitoring.yaml").read_text())
    config["parameters"].update(log_dir=str(OUT / f"log-{rows}"), feedback_path=str(OUT / f"feedback-{rows}.parquet"))
    path = OUT / f"monitoring-{rows}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    home = state_paths(OUT / "home")
    env = {**os.environ, **environment(home)}
    python = sys.executable
    run([python, "run.py", "--pipeline", "training", "--config", "configs/training-fast.yaml"], env)
    reference = OUT / "reference.parquet"
    run([python, "-c", _EXPORT_REFERENCE, str(reference)], env)
    for rows in args.sizes:
        run([python, str(HERE / "make_log.py"), str(rows), str(OUT / f"log-{rows}"),
             str(OUT / f"feedback-{rows}.parquet")], env)

    smallest = min(args.sizes)
    run([python, "run.py", "--pipeline", "monitoring", "--config", str(monitoring_config(smallest))], env)  # warm-up
    results = []
    for rows in args.sizes:
        summary_path = OUT / f"summary-{rows}.json"
        wall, peak = timed([python, "run.py", "--pipeline", "monitoring", "--config", str(monitoring_config(rows)),
                            "--summary-json", str(summary_path)], env)
        summary = json.loads(summary_path.read_text())
        steps_output = run([python, "-c", _STEP_TIMES, summary["run_id"]], env)
        steps = json.loads(next(line for line in steps_output.splitlines() if line.startswith("JSON:"))[5:])
        base_wall, base_peak = timed([python, str(HERE / "evidently_full.py"), str(OUT / f"log-{rows}"),
                                      str(reference), str(OUT / f"evidently-{rows}")], env)
        result = {
            "rows": rows, "wall_s": round(wall, 1), "peak_mb": round(peak), "window_rows": summary["window_rows"],
            "labelled_rows": summary["labelled_rows"], "drift_share": round(summary["drift_share"], 3),
            "evidently_drift_share": summary["evidently_drift_share"], "action": summary["action"],
            "steps_s": steps, "baseline_wall_s": round(base_wall, 1), "baseline_peak_mb": round(base_peak),
            "wall_ratio_vs_baseline": round(wall / base_wall, 2),
        }
        results.append(result)
        print(json.dumps(result), flush=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

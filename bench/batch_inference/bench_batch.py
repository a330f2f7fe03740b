"""Batch inference speed and scale, on one core, against the plain loop a user would write.

    python bench/batch_inference/bench_batch.py [--rows N] [--big-rows N] [--skip-big]

1. ``--rows`` (1M) validated customers: score + rank + write (sorted Parquet + CSV) with
   churnops.batch, without reasons (target <= 10 s) and with top-3 reasons (target <= 60 s), for
   the linear model (LogisticRegression, as configs/training.yaml trains it); and, in the same
   run, the plain loop (``pd.read_parquet``, ``pipeline.predict_proba`` per 100k rows, expected
   gain, ``sort_values``, ``to_parquet`` + ``to_csv``): the ratio plain / churnops.
2. ``--big-rows`` (10M) customers in a folder of 1M-row Parquet parts, the whole chain (read,
   validate, drift, score, rank, write) in a child process pinned to one core: its peak RSS
   (target <= 2 GB) and time.

Prints ``figure: value (target)`` lines; exits 1 when a target is missed. Step time only: no
ZenML start-up (the pipeline adds ~10 s of orchestration, independent of the rows).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# One core: pin this process (and the child) to one CPU; no BLAS/OpenMP threads either.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.report import at_most, report  # noqa: E402
from churnops.batch.drift import DriftPolicy, batch_drift  # noqa: E402
from churnops.batch.inputs import open_batch, write_synthetic_batch  # noqa: E402
from churnops.batch.output import publish  # noqa: E402
from churnops.batch.scoring import Model, score_batch  # noqa: E402
from churnops.batch.validation import validate_batch  # noqa: E402
from churnops.data.profile import build_reference_profile  # noqa: E402
from churnops.data.schema import DatasetSchema, load_schema  # noqa: E402
from churnops.data.synthetic import SyntheticSpec, generate_customers  # noqa: E402
from churnops.data.validation import validate_and_clean  # noqa: E402
from churnops.modeling.targeting import TargetingConfig  # noqa: E402
from churnops.modeling.training import CandidateSpec, build_pipeline  # noqa: E402

TARGETING = TargetingConfig(offer_cost=20.0, acceptance_rate=0.3)
F1_THRESHOLD, VALUE_THRESHOLD = 0.45, 0.2
PLAIN_CHUNK = 100_000
TARGETS = {"no_reasons_seconds": 10.0, "reasons_seconds": 60.0, "big_peak_rss_gb": 2.0}


def linear_model(schema: DatasetSchema) -> tuple[object, pd.DataFrame]:
    frame, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=5000, seed=42)), schema)
    candidate = CandidateSpec(estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 2000})
    return build_pipeline(schema, candidate, 42).fit(frame[schema.feature_names], frame[schema.target.column]), frame


def plain_loop(pipeline: object, schema: DatasetSchema, source: Path, output: Path) -> float:
    """What a user writes: read, predict_proba in chunks, expected gain, sort, rank, write."""
    started = time.perf_counter()
    frame = pd.read_parquet(source)
    probabilities = np.concatenate([pipeline.predict_proba(frame.iloc[i:i + PLAIN_CHUNK][schema.feature_names])[:, 1]
                                    for i in range(0, len(frame), PLAIN_CHUNK)])
    gain = probabilities * frame["monthly_charges"].to_numpy() * 12 * TARGETING.acceptance_rate - TARGETING.offer_cost
    ranked = pd.DataFrame({"customer_id": frame["customer_id"], "churn_probability": probabilities,
                           "contact": probabilities >= VALUE_THRESHOLD, "expected_net_gain": gain})
    ranked = ranked.sort_values("expected_net_gain", ascending=False, kind="stable").reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    output.mkdir(parents=True)
    ranked.to_parquet(output / "list.parquet", index=False)
    ranked.to_csv(output / "list.csv", index=False)
    return time.perf_counter() - started


def churnops_list(clean: object, model: Model, top_k: int, work: Path, name: str) -> float:
    """Score + rank + write with churnops.batch: the score_batch step's own work."""
    started = time.perf_counter()
    scored = score_batch(clean, model, TARGETING, top_k, work / f"scored-{name}")
    publish(scored, TARGETING, F1_THRESHOLD, VALUE_THRESHOLD, "customer_id", work / f"list-{name}")
    return time.perf_counter() - started


def write_big_batch(folder: Path, rows: int, schema: DatasetSchema, part_rows: int = 1_000_000) -> None:
    """``rows`` customers as 1M-row parts: one generated part, re-written with distinct ids (fast)."""
    write_synthetic_batch(folder / "seed", min(rows, part_rows), 11, schema, part_rows)
    table = pq.read_table(folder / "seed" / "part-00000.parquet")
    folder.joinpath("parts").mkdir()
    written, index = 0, 0
    while written < rows:
        part = table.slice(0, min(part_rows, rows - written))
        ids = pc.binary_join_element_wise(part.column("customer_id"), pa.scalar(f"p{index:03d}"), "-")
        pq.write_table(part.set_column(part.schema.get_field_index("customer_id"), "customer_id", ids),
                       folder / "parts" / f"part-{index:05d}.parquet")
        written += part.num_rows
        index += 1


def _peak_gb() -> float:
    """This process's peak RSS since its exec (VmHWM). Not ru_maxrss: Linux carries that across
    fork and exec, so a child would report its parent's size at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # KiB -> GiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def big_child(folder: Path) -> None:
    """The whole chain on the folder's parts, without reasons; prints its figures."""
    schema = load_schema("synthetic")
    pipeline, training = linear_model(schema)
    started = time.perf_counter()
    batch = open_batch(folder / "parts", schema)
    clean, report = validate_batch(batch, schema, "fail", folder / "clean")
    validated = time.perf_counter()
    print(f"RSS after validation: {_peak_gb():.2f} GB", file=sys.stderr)
    drift = batch_drift(clean, build_reference_profile(training, schema), schema, DriftPolicy())
    drifted = time.perf_counter()
    scored = score_batch(clean, Model.build(pipeline, schema, reasons=False), TARGETING, 0, folder / "scored")
    print(f"RSS after scoring: {_peak_gb():.2f} GB", file=sys.stderr)
    listing, _ = publish(scored, TARGETING, F1_THRESHOLD, VALUE_THRESHOLD, "customer_id", folder / "list")
    done = time.perf_counter()
    print(f"RSS after writing: {_peak_gb():.2f} GB", file=sys.stderr)
    print(f"CHILD {report.rows_valid} {validated - started:.1f} {drifted - validated:.1f} {done - drifted:.1f} "
          f"{len(listing.parquet_files)} {drift.verdict} {_peak_gb():.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--skip-big", action="store_true", help="only the 1M-row figures")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        big_child(args.child)
        return 0
    schema = load_schema("synthetic")
    pipeline, _ = linear_model(schema)
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        source = write_synthetic_batch(work / "input", args.rows, 7, schema, part_rows=args.rows)
        clean, _ = validate_batch(open_batch(source, schema), schema, "fail", work / "clean")
        plain = plain_loop(pipeline, schema, source / "part-00000.parquet", work / "plain")
        fast = churnops_list(clean, Model.build(pipeline, schema, reasons=False), 0, work, "plain")
        explained = churnops_list(clean, Model.build(pipeline, schema, reasons=True), 3, work, "reasons")
        rows = f"{args.rows / 1e6:g}M rows"
        results = [
            at_most(f"batch score+rank+write {rows} no reasons", fast, TARGETS["no_reasons_seconds"], "s"),
            at_most(f"batch score+rank+write {rows} top-3 reasons", explained, TARGETS["reasons_seconds"], "s"),
            report(f"batch plain predict_proba loop / churnops {rows}", plain / fast,
                   "> 1 means churnops is faster (same run)", plain / fast > 1, "x",
                   plain_seconds=round(plain, 2), churnops_seconds=round(fast, 2)),
        ]
        missed += [r["name"] for r in results if not r["passed"]]
    if not args.skip_big:
        with tempfile.TemporaryDirectory(prefix="bench-batch-big-") as tmp:
            folder = Path(tmp)
            write_big_batch(folder, args.big_rows, schema)
            started = time.perf_counter()
            result = subprocess.run([sys.executable, __file__, "--child", str(folder)], capture_output=True, text=True)
            wall = time.perf_counter() - started
            if result.returncode:
                print(result.stdout[-2000:] + result.stderr[-3000:], file=sys.stderr)
                return 1
            fields = next(line for line in result.stdout.splitlines() if line.startswith("CHILD")).split()
            rows, validate_s, drift_s, score_s, parts, verdict, child_peak = fields[1:]
            print(result.stderr.strip()[-400:])
            peak = float(child_peak)
            print(f"{int(rows) / 1e6:g}M rows from {parts} Parquet parts, whole chain: {wall:.0f} s "
                  f"(validate {validate_s} s, drift {drift_s} s, score + rank + write {score_s} s; drift {verdict})")
            result = at_most(f"batch peak RSS {int(rows) / 1e6:g}M rows whole chain", peak,
                             TARGETS["big_peak_rss_gb"], "GB", wall_seconds=round(wall, 1),
                             validate_seconds=float(validate_s), score_rank_write_seconds=float(score_s))
            if not result["passed"]:
                missed.append(result["name"])
    if missed:
        print(f"MISSED: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

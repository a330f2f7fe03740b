"""Serving near the HTTP floor: the churn service's lean routes against bare Starlette, in one run.

    .venv/bin/python bench/serving/bench_lean.py [--seconds 5] [--rounds 3] [--burst-seconds 60]

Every server is pinned to CPU 0 (``taskset -c 0``; BentoML's worker inherits it), the load
generator (``bench/serving/loadgen.py``) to CPU 1; one server is under load at a time and rounds
interleave the servers, so a change in background load hits all of them alike. Servers:

- **Starlette floor**: ``bench/serving/starlette_floor.py`` under uvicorn (1 worker, no access log):
  reads the body, answers a constant;
- **BentoML floor**: ``bench/serving/floor_service.py``, a do-nothing ``@bentoml.api``;
- **churn lean**: the Bento of ``bento/service.py`` started by ``bentoml serve``, inference log on,
  ``/predict`` and ``/predict_batch`` on the lean routes (bento/lean_route.py);
- **churn BentoML path**: the same Bento with ``CHURNOPS_LEAN_ROUTES=off``.

Per round: single-customer ``/predict`` at 8 connections on every server (the ratio to the
Starlette floor), and on the churn service also 1 connection, ``?explain=true`` at 8, and 1k-row
``/predict_batch`` at 2 connections as JSON, CSV and an Arrow IPC stream. After the rounds: 64
connections for ``--burst-seconds`` (errors must be 0), then 1 connection again, then every
answered row is looked for in the inference log. Each figure is the median over rounds; the
server's CPU time per request comes from /proc (all its processes and threads).
Prints ``figure: value (target: ...) PASS|MISS`` lines (bench/report.py); raw results in
``bench/out/serving_lean.json`` (``--report-only`` prints their figures again).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.report import at_least, at_most, report  # noqa: E402
from bench.serving.run_bench import (  # noqa: E402
    BATCH_ROWS,
    CLIENT_CPU,
    LOADGEN,
    OUT,
    Server,
    count_logged_rows,
    describe_cpu,
    post,
    prepare,
)
from churnops.platform.ports import free_port  # noqa: E402

# The issue's targets (issue 13, points 1 and 2) and the floor it measured on this machine.
TARGET_RPS = 3000.0
TARGET_P99_MS = 5.0
TARGET_BATCH_ROWS_PER_S = 500_000.0
ISSUE_STARLETTE_RPS = 9600.0
ARROW_TYPE = "application/vnd.apache.arrow.stream"
RAW = OUT / "serving_lean.json"
BODIES = {"json": ("batch.json", "application/json"), "csv": ("batch.csv", "text/csv"),
          "arrow": ("batch.arrows", ARROW_TYPE)}


def load(server: Server, path: str, body: Path, connections: int, seconds: float,
         content_type: str = "application/json") -> dict[str, Any]:
    """One closed-loop run from CPU 1, plus the server's CPU time per answered request."""
    before = server.cpu_seconds()["all"]
    command = [sys.executable, str(LOADGEN), server.url + path, str(body), "--connections", str(connections),
               "--seconds", str(seconds), "--content-type", content_type]
    result = subprocess.run(["taskset", "-c", CLIENT_CPU, *command], capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["cpu_ms_per_request"] = (server.cpu_seconds()["all"] - before) / max(figures["requests"], 1) * 1e3
    return figures


def write_bodies(home: Path) -> None:
    """The 1k-row batch as CSV and as an Arrow IPC stream, next to run_bench's batch.json."""
    import pandas as pd
    import pyarrow as pa

    frame = pd.DataFrame(json.loads((home / "batch.json").read_text()))
    frame.to_csv(home / "batch.csv", index=False)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (home / "batch.arrows").write_bytes(sink.getvalue())


def measure_round(servers: dict[str, Server], home: Path, seconds: float) -> dict[str, Any]:
    single = home / "single.json"
    cells: dict[str, Any] = {}
    for name, server in servers.items():
        load(server, "/predict", single, 8, 1)  # warm-up
        cells[f"{name} c8"] = load(server, "/predict", single, 8, seconds)
    lean = servers["churn lean"]
    cells["churn lean c1"] = load(lean, "/predict", single, 1, seconds)
    cells["churn lean c8 explain"] = load(lean, "/predict?explain=true", single, 8, seconds)
    for kind, (file, content_type) in BODIES.items():
        cell = load(lean, "/predict_batch", home / file, 2, seconds, content_type)
        cell["rows_per_s"] = cell["rps"] * BATCH_ROWS
        cells[f"churn lean batch {kind}"] = cell
    quiet = servers["churn BentoML path"]
    cell = load(quiet, "/predict_batch", home / "batch.json", 2, seconds)
    cell["rows_per_s"] = cell["rps"] * BATCH_ROWS
    cells["churn BentoML path batch json"] = cell
    print("  " + "  ".join(f"{k}: {v['rps']:.0f}/s p99 {v['p99_ms']:.1f}ms" for k, v in cells.items()), flush=True)
    return cells


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for cell in rounds[0]:
        runs = [r[cell] for r in rounds]
        numbers = [k for k, v in runs[0].items() if isinstance(v, int | float)]
        merged[cell] = {k: float(statistics.median(run[k] for run in runs)) for k in numbers}
        merged[cell]["errors"] = int(sum(run["errors"] for run in runs))
    return merged


def answered_rows(rounds: list[dict[str, Any]], after: list[dict[str, Any]]) -> int:
    """2xx rows answered by the churn lean server in the measured runs (warm-ups excluded)."""
    rows = 0
    for cells in rounds:
        for name, cell in cells.items():
            if name.startswith("churn lean"):
                ok = cell["statuses"].get("200", 0)
                rows += ok * (BATCH_ROWS if " batch " in name else 1)
    return rows + sum(cell["statuses"].get("200", 0) for cell in after)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians")
    parser.add_argument("--burst-seconds", type=float, default=60.0, help="the 64-connection run")
    parser.add_argument("--rows", type=int, default=10_000, help="training rows of the benchmark model")
    parser.add_argument("--report-only", action="store_true",
                        help="print the figures of the last run (bench/out/serving_lean.json) without measuring")
    args = parser.parse_args()
    if args.report_only:
        summarise(json.loads(RAW.read_text()))
        return 0
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: one for the server, one for the load generator")
    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="serving-lean-", dir=OUT))
    setup = prepare(home, args.rows)
    write_bodies(home)
    from churnops.core.settings import environment

    env = {**os.environ, **environment(setup["paths"]), "CHURNOPS_INFERENCE_LOG": "on"}
    python = sys.executable
    bento = [python, "-m", "bentoml", "serve", setup["bento_tag"], "--host", "127.0.0.1"]
    targets = {
        "Starlette floor": ([python, "-m", "uvicorn", "bench.serving.starlette_floor:app", "--host", "127.0.0.1",
                             "--workers", "1", "--no-access-log", "--log-level", "warning"], {}, "/healthz"),
        "BentoML floor": ([python, "-m", "bentoml", "serve", "bench.serving.floor_service:FloorService",
                           "--host", "127.0.0.1"], {}, "/readyz"),
        "churn lean": (bento, {}, "/readyz"),
        "churn BentoML path": (bento, {"CHURNOPS_LEAN_ROUTES": "off"}, "/readyz"),
    }
    servers: dict[str, Server] = {}
    rounds: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    try:
        for name, (command, extra, ready) in targets.items():
            port = free_port()
            servers[name] = Server(name, [*command, "--port", str(port)], {**env, **extra}, port, ready,
                                   home / f"{name.replace(' ', '_')}.log")
            print(f"{name}: {post(servers[name].url + '/predict', (home / 'single.json').read_bytes())}", flush=True)
        for number in range(1, args.rounds + 1):
            print(f"round {number}", flush=True)
            rounds.append(measure_round(servers, home, args.seconds))
        lean = servers["churn lean"]
        burst = load(lean, "/predict", home / "single.json", 64, args.burst_seconds)
        calm = load(lean, "/predict", home / "single.json", 1, args.seconds)
        after = [burst, calm]
    finally:
        for server in servers.values():
            server.stop()
    raw = {"results": medians(rounds), "rounds": rounds, "burst_c64": burst, "c1_after_burst": calm,
           "logged_rows": count_logged_rows(setup["paths"].inference_log_dir),
           "answered_rows": answered_rows(rounds, after), "seconds": args.seconds,
           "burst_seconds": args.burst_seconds, "cpu": describe_cpu()}
    RAW.write_text(json.dumps(raw, indent=2))
    shutil.rmtree(home, ignore_errors=True)
    summarise(raw)
    return 0


def summarise(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Print every figure of a run (``RAW``) against its target; return them."""
    results, burst, calm = raw["results"], raw["burst_c64"], raw["c1_after_burst"]
    logged, answered = raw["logged_rows"], raw["answered_rows"]
    floor, lean = results["Starlette floor c8"], results["churn lean c8"]
    bento_floor, bento_path = results["BentoML floor c8"], results["churn BentoML path c8"]
    # Throughput on a core of its own: 1 / CPU time per request (the machine's load does not move it).
    capacity = 1e3 / lean["cpu_ms_per_request"]
    # Ratios per round, then their median: the two servers measured a minute apart at most, so a
    # drift of the machine's speed across rounds (±50 % on a shared machine) cancels out.
    rounds = raw["rounds"]
    ratio = statistics.median(r["churn lean c8"]["rps"] / r["Starlette floor c8"]["rps"] for r in rounds)
    cpu_ratio = statistics.median(r["Starlette floor c8"]["cpu_ms_per_request"]
                                  / r["churn lean c8"]["cpu_ms_per_request"] for r in rounds)
    bento_ratio = statistics.median(r["churn lean c8"]["rps"] / r["churn BentoML path c8"]["rps"] for r in rounds)
    floor_ratio = statistics.median(r["churn lean c8"]["rps"] / r["BentoML floor c8"]["rps"] for r in rounds)
    figures = [
        at_least("serving /predict c=8, lean route, log on", lean["rps"], TARGET_RPS, "req/s",
                 p50_ms=lean["p50_ms"], cpu_ms=lean["cpu_ms_per_request"]),
        at_most("serving /predict c=8 p99", lean["p99_ms"], TARGET_P99_MS, "ms"),
        at_least("serving /predict capacity of one core (1 / server CPU per request)", capacity, TARGET_RPS,
                 "req/s", cpu_ms=lean["cpu_ms_per_request"]),
        report("serving /predict c=8 lean / bare Starlette, req/s (median of per-round ratios)", ratio,
               "info; 3,000 of 9,600 = 0.31", True,
               starlette_rps=floor["rps"], starlette_cpu_ms=floor["cpu_ms_per_request"]),
        report("serving /predict lean / bare Starlette, CPU per request (inverse)", cpu_ratio,
               "info; 0.31 is 3,000 req/s where Starlette does 9,600", True),
        at_least("serving /predict c=8 req/s scaled to the issue's 9,600 req/s Starlette floor",
                 ratio * ISSUE_STARLETTE_RPS, TARGET_RPS, "req/s"),
        report("serving /predict c=8 lean / BentoML path of the same service", bento_ratio,
               "info", True, bentoml_path_rps=bento_path["rps"]),
        report("serving /predict c=8 lean / BentoML do-nothing endpoint", floor_ratio,
               "info", True, bentoml_floor_rps=bento_floor["rps"]),
        report("serving /predict?explain=true c=8 / /predict", results["churn lean c8 explain"]["rps"] / lean["rps"],
               "info", True),
        at_most(f"serving /predict c=64 for {burst['seconds']:.0f} s, errors", burst["errors"], 0, "",
                rps=burst["rps"], p99_ms=burst["p99_ms"]),
        at_most("serving /predict c=1 right after the burst, p50", calm["p50_ms"], TARGET_P99_MS, "ms"),
        at_least("serving every answered row in the inference log (logged / answered)", logged / max(answered, 1),
                 1.0, "", logged=logged, answered=answered),
    ]
    for kind in BODIES:
        cell = results[f"churn lean batch {kind}"]
        figures.append(at_least(f"serving /predict_batch 1k rows {kind}, log on", cell["rows_per_s"],
                                TARGET_BATCH_ROWS_PER_S, "rows/s", cpu_ms=cell["cpu_ms_per_request"],
                                capacity_rows_per_s=BATCH_ROWS * 1e3 / cell["cpu_ms_per_request"]))
        figures.append(report(f"serving /predict_batch 1k rows {kind}, capacity of one core (1 / server CPU)",
                              BATCH_ROWS * 1e3 / cell["cpu_ms_per_request"], "info", True))
    figures.append(report("serving /predict_batch 1k rows json, lean / BentoML path",
                          results["churn lean batch json"]["rows_per_s"]
                          / results["churn BentoML path batch json"]["rows_per_s"], "info", True))
    errors = sum(cell["errors"] for cell in results.values())
    figures.append(at_most("serving errors in the rounds", errors, 0, ""))
    return figures


if __name__ == "__main__":
    sys.exit(main())

"""What the durable inference log costs: the churn service with ``inference_log.mode: buffered``
(the baseline) and ``durable``, same Bento, same run, same machine.

    .venv/bin/python bench/serving/bench_durable.py [--seconds 5] [--rounds 3]

Both servers run side by side, pinned to CPU 0 (``taskset``), the load generator
(``bench/serving/loadgen.py``, closed loop, keep-alive connections) to CPU 1; one server is under
load at a time and rounds alternate them, so drift in the machine's speed hits both alike. Per
server and round: single-customer ``/predict`` at 1, 8 and 16 connections and 1,000-row
``/predict_batch`` at 2. Each figure is the median over rounds; ratios are durable / buffered.
On a shared machine the speed of a core drifts by more than such a ratio from one run to the
next, so after the rounds the /predict cells at 8 and 16 connections are run again with both
servers under load *at the same time* (``--repeats`` runs; medians), where the server CPU per
request does not drift with the machine. Both logs use the shipped ``flush_rows`` and
``flush_seconds``. Results: ``bench/out/durable.json`` and ``bench/out/durable.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.serving.run_bench import (  # noqa: E402
    BATCH_ROWS,
    OUT,
    Server,
    count_logged_rows,
    describe_cpu,
    load,
    load_measured,
    median_cells,
    post,
    prepare,
)
from churnops.platform.ports import free_port  # noqa: E402

CELLS = (("c1", "/predict", 1), ("c8", "/predict", 8), ("c16", "/predict", 16), ("batch_1k", "/predict_batch", 2))
MODES = ("buffered", "durable")


def start(mode: str, home: Path, base_env: dict[str, str], bento_tag: str) -> Server:
    config = home / f"serving-{mode}.yaml"
    config.write_text(yaml.safe_dump({"inference_log": {"mode": mode}}))
    port = free_port()
    env = {**base_env, "CHURNOPS_SERVING_CONFIG": str(config), "CHURNOPS_INFERENCE_LOG": "on",
           "CHURNOPS_INFERENCE_LOG_DIR": str(home / f"log-{mode}")}
    command = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", "127.0.0.1", "--port", str(port)]
    return Server(mode, command, env, port, "/readyz", home / f"{mode}.log")


def measure_round(server: Server, bodies: dict[str, Path], seconds: float, number: int) -> dict[str, Any]:
    load("python", server.url + "/predict", bodies["/predict"], 8, 2)  # warm-up
    results: dict[str, Any] = {}
    for cell, route, connections in CELLS:
        figures = load_measured("python", server, server.url + route, bodies[route], connections, seconds)
        if route == "/predict_batch":
            figures["rows_per_s"] = figures["rps"] * BATCH_ROWS
        results[cell] = figures
    print(f"  round {number} {server.name:<9} " + "  ".join(
        f"{cell} {f['rps']:.0f}/s p50 {f['p50_ms']:.1f} p99 {f['p99_ms']:.1f} ms" for cell, f in results.items()),
        flush=True)
    return results


def simultaneous(servers: list[Server], body: Path, repeats: int, seconds: float) -> dict[str, Any]:
    """/predict at 8 and 16 connections on both servers at once, ``repeats`` times: medians of
    durable / buffered requests/s and server CPU per request."""
    by_name = {server.name: server for server in servers}
    summary: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for cell, connections in (("c8", 8), ("c16", 16)):
            runs = []
            for _ in range(repeats):
                started = {name: pool.submit(load_measured, "python", server, server.url + "/predict", body,
                                             connections, seconds) for name, server in by_name.items()}
                base, durable = started["buffered"].result(), started["durable"].result()
                runs.append({"rps_durable_vs_buffered": durable["rps"] / base["rps"],
                             "cpu_per_request_durable_vs_buffered":
                                 durable["cpu_ms_per_request"] / base["cpu_ms_per_request"],
                             "extra_cpu_ms_per_request": durable["cpu_ms_per_request"] - base["cpu_ms_per_request"],
                             "errors": base["errors"] + durable["errors"]})
            summary[cell] = {key: float(statistics.median(r[key] for r in runs)) for key in runs[0]} | {"runs": runs}
            print(f"  simultaneous {cell}: durable/buffered req/s {summary[cell]['rps_durable_vs_buffered']:.0%}, "
                  f"CPU per request {summary[cell]['cpu_per_request_durable_vs_buffered']:.0%}", flush=True)
    return summary


def answered_rows(rounds: list[dict[str, Any]]) -> int:
    return sum((run[cell]["requests"] - run[cell]["non_2xx"]) * (BATCH_ROWS if cell == "batch_1k" else 1)
               for run in rounds for cell, _route, _c in CELLS)


def render(results: dict[str, Any], together: dict[str, Any], seconds: float, rounds: int, repeats: int,
           logged: dict[str, int], answered: dict[str, int]) -> str:
    lines = [f"Median of {rounds} alternating rounds of {seconds:g} s per cell; server on CPU 0, "
             "bench/serving/loadgen.py on CPU 1; req/s, p50 / p99 ms, server CPU per request.", "",
             "| cell | buffered | durable | durable / buffered req/s | p50 / p99 durable − buffered |",
             "|---|---|---|---|---|"]
    for cell, route, connections in CELLS:
        name = f"{route} c={connections}" + (" (1k rows)" if route == "/predict_batch" else "")
        base, durable = results["buffered"][cell], results["durable"][cell]
        shown = [f"{f['rps']:.0f} req/s, {f['p50_ms']:.2f} / {f['p99_ms']:.2f} ms, "
                 f"{f['cpu_ms_per_request']:.2f} ms CPU, {f['errors']} err" for f in (base, durable)]
        lines.append(f"| {name} | {shown[0]} | {shown[1]} | **{durable['rps'] / base['rps']:.0%}** | "
                     f"+{durable['p50_ms'] - base['p50_ms']:.2f} / +{durable['p99_ms'] - base['p99_ms']:.2f} ms |")
    lines += ["", f"Both servers under load at the same time (median of {repeats} runs of {seconds:g} s): ",
              "", "| cell | durable / buffered req/s | durable / buffered server CPU per request | "
              "durable's extra CPU per request | errors |", "|---|---|---|---|---|"]
    for cell, connections in (("c8", 8), ("c16", 16)):
        f = together[cell]
        lines.append(f"| /predict c={connections} | {f['rps_durable_vs_buffered']:.0%} | "
                     f"{f['cpu_per_request_durable_vs_buffered']:.0%} | {f['extra_cpu_ms_per_request']:.2f} ms | "
                     f"{int(sum(r['errors'] for r in f['runs']))} |")
    lines += ["", "Every answered row logged: " + "; ".join(
        f"{mode} {logged[mode]:,} rows logged ≥ {answered[mode]:,} answered in the rounds: "
        f"{'yes' if logged[mode] >= answered[mode] else '**no**'}" for mode in MODES)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; figures are medians")
    parser.add_argument("--repeats", type=int, default=5, help="runs with both servers under load at once")
    parser.add_argument("--rows", type=int, default=10_000, help="training rows of the benchmark model")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: one for the servers, one for the load generator")
    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="durable-bench-", dir=OUT))
    setup = prepare(home, args.rows)
    from churnops.core.settings import environment

    base_env = {**os.environ, **environment(setup["paths"])}
    bodies = {"/predict": home / "single.json", "/predict_batch": home / "batch.json"}
    servers: list[Server] = []
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    try:
        for mode in MODES:
            servers.append(start(mode, home, base_env, setup["bento_tag"]))
            print(f"{mode}: {post(servers[-1].url + '/predict', bodies['/predict'].read_bytes())}", flush=True)
        for number in range(1, args.rounds + 1):
            for server in servers if number % 2 else servers[::-1]:
                rounds[server.name].append(measure_round(server, bodies, args.seconds, number))
        together = simultaneous(servers, bodies["/predict"], args.repeats, args.seconds)
    finally:
        for server in servers:
            server.stop()  # SIGTERM: both logs write what is left
    results = {mode: median_cells(runs) for mode, runs in rounds.items()}
    logged = {mode: count_logged_rows(home / f"log-{mode}") for mode in MODES}
    answered = {mode: answered_rows(rounds[mode]) for mode in MODES}
    ratios = {cell: {"rps": results["durable"][cell]["rps"] / results["buffered"][cell]["rps"],
                     "cpu_per_request": results["durable"][cell]["cpu_ms_per_request"]
                     / results["buffered"][cell]["cpu_ms_per_request"]} for cell, _r, _c in CELLS}
    report = {"results": results, "rounds": rounds, "ratios_durable_vs_buffered": ratios, "simultaneous": together,
              "logged_rows": logged,
              "answered_rows": answered, "seconds": args.seconds, "cpu": describe_cpu()}
    (OUT / "durable.json").write_text(json.dumps(report, indent=2))
    markdown = render(results, together, args.seconds, args.rounds, args.repeats, logged, answered)
    (OUT / "durable.md").write_text(markdown)
    print(markdown)
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serving benchmark: the churn service against a naive FastAPI app and a do-nothing BentoML
endpoint, same model, same run, same machine.

    .venv/bin/python bench/serving/run_bench.py [--seconds 5] [--rounds 3] [--rows 10000]

Every server is pinned to CPU 0 (``taskset -c 0``; BentoML's workers inherit it) and the load
generator to CPU 1: ``bench/serving/loadgen.py`` (asyncio, no install needed), or with
``--client wrk`` Debian's ``wrk`` (installed with apt-get when missing and running as root,
otherwise ``sudo apt-get install wrk``). One server is under load at a time. Per server and round:
single-customer ``/predict`` at 1, 8 and 64 connections, 1 connection again right after the
64-connection burst, and ``/predict_batch`` with 1,000-row JSON bodies at 2 connections. Rounds
interleave the servers so that changes in background load hit all of them alike; each figure is
the median over rounds. The churn service runs twice: inference log on and off. On a shared
machine the speed of CPU 0 drifts by ±30 % within seconds, more than the log costs, so after the
rounds the log's cost is measured with both running *at the same time* on CPU 0, each under its
own load (``--repeats`` runs): the ratio of their CPU per request does not drift with the machine.
Results: ``bench/out/serving.json`` and ``bench/out/serving.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from churnops.platform.ports import free_port  # noqa: E402
from churnops.platform.services import process_tree, start_service, stop_process_group  # noqa: E402

OUT = ROOT / "bench" / "out"
LUA = Path(__file__).with_name("post.lua")
LOADGEN = Path(__file__).with_name("loadgen.py")
SERVER_CPU, CLIENT_CPU = "0", "1"
BATCH_ROWS = 1000


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is required: sudo apt-get install wrk")
    return found


def post(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class Server:
    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, ready_path: str,
                 log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.pid = start_service(name, ["taskset", "-c", SERVER_CPU, *command], url=self.url,
                                 health_url=self.url + ready_path, log=log, env=env, cwd=ROOT, timeout=120).pid

    def stop(self) -> None:
        """SIGTERM the server's process group (SIGKILL after 60 s), then reap it."""
        stop_process_group(self.pid, timeout=60)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by the server's processes: the inference-log writer thread
        (named by the service) and everything else."""
        used = {"log": 0.0, "all": 0.0}
        for pid in process_tree(self.pid):
            # A process's own figure includes threads that have exited (a thread pool's, say).
            used["all"] += _cpu_seconds(Path(f"/proc/{pid}"))
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    if (task / "comm").read_text().strip() == "inference-log":
                        used["log"] += _cpu_seconds(task)
                except (FileNotFoundError, ProcessLookupError):
                    continue
        return used


def _cpu_seconds(proc_entry: Path) -> float:
    """utime + stime of a /proc process or task entry (0 if it has gone)."""
    try:
        fields = (proc_entry / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_measured(client: str, server: Server, url: str, body_file: Path, connections: int,
                  seconds: float) -> dict[str, Any]:
    """:func:`load`, plus the server's CPU per answered request: in all and in the log writer."""
    before = server.cpu_seconds()
    figures = load(client, url, body_file, connections, seconds)
    after = server.cpu_seconds()
    requests = max(figures["requests"], 1)
    figures["cpu_ms_per_request"] = (after["all"] - before["all"]) / requests * 1e3
    figures["log_cpu_ms_per_request"] = (after["log"] - before["log"]) / requests * 1e3
    return figures


def load(client: str, url: str, body_file: Path, connections: int, seconds: float) -> dict[str, Any]:
    """One closed-loop load run from CPU 1: the asyncio client (default) or wrk."""
    if client == "python":
        command = [sys.executable, str(LOADGEN), url, str(body_file), "--connections", str(connections),
                   "--seconds", str(seconds)]
        result = subprocess.run(["taskset", "-c", CLIENT_CPU, *command], capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_CONTENT_TYPE": "application/json"}
    result = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, client, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "--timeout", "10s", "-s", str(LUA), url], env=env, capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRK_JSON "))
    figures = json.loads(line.removeprefix("WRK_JSON "))
    figures["rps"] = figures["requests"] / figures["seconds"]
    figures["socket_errors"] = sum(figures[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    figures["errors"] = figures["non_2xx"] + figures["socket_errors"]
    return figures


PREDICT_CELLS = (("c1", 1), ("c8", 8), ("c64", 64), ("c1_after_burst", 1))


def measure_round(client: str, server: Server, single: Path, batch: Path | None, seconds: float,
                  round_number: int) -> dict[str, Any]:
    """One round on one server: /predict at 1, 8, 64 connections, 1 again right after the
    64-connection burst, then 1k-row /predict_batch."""
    predict = server.url + "/predict"
    load(client, predict, single, 8, 2)  # warm-up
    results: dict[str, Any] = {}
    for label, connections in PREDICT_CELLS:
        results[label] = load_measured(client, server, predict, single, connections, seconds)
    if batch is not None:
        figures = load_measured(client, server, server.url + "/predict_batch", batch, 2, seconds)
        figures["rows_per_s"] = figures["rps"] * BATCH_ROWS
        results["batch_1k"] = figures
    cells = "  ".join(f"{k} {v['rps']:.0f}/s p99 {v['p99_ms']:.0f}ms" for k, v in results.items())
    print(f"  round {round_number} {server.name:<14} {cells}", flush=True)
    return results


def simultaneous_log_cost(client: str, on: Server, off: Server, single: Path, batch: Path, repeats: int,
                          seconds: float) -> dict[str, Any]:
    """The inference log's cost, measured with the service running with the log on and off at
    the same time on the same core, each under its own closed-loop load: whatever slows the
    machine slows both alike. Per cell, the medians over ``repeats`` of off/on server CPU per
    request, of on/off requests/s, and of the log writer thread's share of the on server's CPU."""
    cells = {"c8": (single, "/predict", 8), "batch_1k": (batch, "/predict_batch", 2)}
    runs: dict[str, list[dict[str, float]]] = {cell: [] for cell in cells}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(repeats):
            for cell, (body, route, connections) in cells.items():
                started = {s.name: pool.submit(load_measured, client, s, s.url + route, body, connections, seconds)
                           for s in (on, off)}
                logged, quiet = started[on.name].result(), started[off.name].result()
                runs[cell].append({"cpu_off_vs_on": quiet["cpu_ms_per_request"] / logged["cpu_ms_per_request"],
                                   "rps_on_vs_off": logged["rps"] / quiet["rps"],
                                   "log_thread_share": logged["log_cpu_ms_per_request"] / logged["cpu_ms_per_request"],
                                   "errors": logged["errors"] + quiet["errors"]})
    summary = {cell: {key: float(statistics.median(r[key] for r in rs)) for key in rs[0]} | {"runs": rs}
               for cell, rs in runs.items()}
    print("  simultaneous log on/off: " + "  ".join(
        f"{cell} CPU off/on {v['cpu_off_vs_on']:.0%}" for cell, v in summary.items()), flush=True)
    return summary


def median_cells(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cell: the median of each figure over the rounds; errors are summed."""
    merged: dict[str, Any] = {}
    for cell in rounds[0]:
        runs = [r[cell] for r in rounds]
        numbers = [key for key, value in runs[0].items() if isinstance(value, int | float)]
        merged[cell] = {key: float(statistics.median(run[key] for run in runs)) for key in numbers}
        merged[cell]["errors"] = int(sum(run["errors"] for run in runs))
        merged[cell]["non_2xx"] = int(sum(run["non_2xx"] for run in runs))
        merged[cell]["socket_errors"] = int(sum(run["socket_errors"] for run in runs))
        merged[cell]["rounds"] = len(runs)
    return merged


def prepare(home: Path, rows: int) -> dict[str, Any]:
    """Train the benchmark model, save it for the naive app, package it as a Bento."""
    from churnops.core.settings import configure_environment

    paths = configure_environment(home)
    import joblib

    from churnops.data.schema import load_schema
    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean
    from churnops.modeling.training import CandidateSpec, best_f1_threshold, build_pipeline
    from churnops.platform import deployment
    from churnops.serving.packaging import ModelCard

    schema = load_schema("synthetic")
    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=rows, seed=1)), schema)
    features, target = cleaned[schema.feature_names], cleaned[schema.target.column]
    pipeline = build_pipeline(schema, CandidateSpec(estimator="sklearn.linear_model.LogisticRegression",
                                                    params={"max_iter": 2000}), 42).fit(features, target)
    threshold, _ = best_f1_threshold(target.to_numpy(), pipeline.predict_proba(features)[:, 1])
    joblib.dump(pipeline, home / "pipeline.joblib")
    card = ModelCard(model_name="churn_classifier", model_version="bench", stage="production",
                     threshold=threshold, dataset="synthetic")
    bento_tag = deployment.build_bento(deployment.save_bento_model(pipeline, schema, card), card)

    requests = generate_customers(SyntheticSpec(rows=BATCH_ROWS, seed=99)).drop(columns=[schema.target.column])
    records = json.loads(requests.to_json(orient="records"))
    for record in records:
        for feature in schema.numeric:
            if feature.kind == "int" and record[feature.name] is not None:
                record[feature.name] = int(record[feature.name])
    (home / "single.json").write_text(json.dumps(records[0]))
    (home / "batch.json").write_text(json.dumps(records))
    return {"paths": paths, "bento_tag": bento_tag, "threshold": threshold}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians")
    parser.add_argument("--repeats", type=int, default=6, help="simultaneous log on/off runs per cell")
    parser.add_argument("--rows", type=int, default=10_000, help="training rows of the benchmark model")
    parser.add_argument("--client", choices=("python", "wrk"), default="python",
                        help="load generator: bench/serving/loadgen.py (default) or wrk")
    args = parser.parse_args()
    client = ensure_wrk() if args.client == "wrk" else "python"
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: one for the server, one for wrk")
    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="serving-bench-", dir=OUT))
    setup = prepare(home, args.rows)
    from churnops.core.settings import environment

    base_env = {**os.environ, **environment(setup["paths"])}
    single, batch = home / "single.json", home / "batch.json"
    python = sys.executable
    targets = [
        ("naive FastAPI", [python, "-m", "uvicorn", "bench.serving.naive_app:app", "--host", "127.0.0.1",
                           "--workers", "1"], {"NAIVE_MODEL": str(home / "pipeline.joblib"),
                                               "NAIVE_THRESHOLD": str(setup["threshold"])}, "/docs", True),
        ("BentoML floor", [python, "-m", "bentoml", "serve", "bench.serving.floor_service:FloorService",
                           "--host", "127.0.0.1"], {}, "/readyz", False),
        ("churn log on", [python, "-m", "bentoml", "serve", setup["bento_tag"], "--host", "127.0.0.1"],
         {"CHURNOPS_INFERENCE_LOG": "on"}, "/readyz", True),
        ("churn log off", [python, "-m", "bentoml", "serve", setup["bento_tag"], "--host", "127.0.0.1"],
         {"CHURNOPS_INFERENCE_LOG": "off"}, "/readyz", True),
    ]
    servers: list[tuple[Server, bool]] = []
    rounds: dict[str, list[dict[str, Any]]] = {}
    try:
        for name, command, extra, ready, has_batch in targets:
            port = free_port()
            server = Server(name, [*command, "--port", str(port)], {**base_env, **extra}, port, ready,
                            home / f"{name.replace(' ', '_')}.log")
            servers.append((server, has_batch))
            print(f"{name}: {post(server.url + '/predict', single.read_bytes())}", flush=True)
        # Rounds interleave the servers, so a change in background load hits all of them alike.
        for number in range(1, args.rounds + 1):
            for server, has_batch in servers:
                rounds.setdefault(server.name, []).append(
                    measure_round(client, server, single, batch if has_batch else None, args.seconds, number))
        by_name = {server.name: server for server, _ in servers}
        simultaneous = simultaneous_log_cost(client, by_name["churn log on"], by_name["churn log off"], single,
                                             batch, args.repeats, args.seconds)
    finally:
        for server, _ in servers:
            server.stop()
    results = {name: median_cells(runs) for name, runs in rounds.items()}
    results["churn log on"]["logged_rows"] = count_logged_rows(setup["paths"].inference_log_dir)
    summary = summarise(results, rounds["churn log on"], simultaneous)
    report = {"results": results, "rounds": rounds, "simultaneous": simultaneous, "summary": summary,
              "seconds": args.seconds,
              "client": client, "cpu": describe_cpu()}
    (OUT / "serving.json").write_text(json.dumps(report, indent=2))
    markdown = render(results, summary, args.seconds, args.rounds, client, args.repeats)
    (OUT / "serving.md").write_text(markdown)
    print(markdown)
    shutil.rmtree(home, ignore_errors=True)
    return 0


def count_logged_rows(directory: Path) -> int:
    import pyarrow.dataset as pads

    if not directory.exists():
        return 0
    return pads.dataset(directory, format="ipc", partitioning="hive").count_rows()


def describe_cpu() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (FileNotFoundError, StopIteration):
        model = "unknown"
    return f"{os.cpu_count()} x {model}"


def summarise(results: dict[str, Any], logged_rounds: list[dict[str, Any]],
              simultaneous: dict[str, Any]) -> dict[str, Any]:
    churn, naive, floor, quiet = (results["churn log on"], results["naive FastAPI"], results["BentoML floor"],
                                  results["churn log off"])
    logged = churn.get("logged_rows", 0)
    served = 0
    for run in logged_rounds:
        served += sum(run[k]["requests"] - run[k]["non_2xx"] for k in ("c1", "c8", "c64", "c1_after_burst"))
        served += (run["batch_1k"]["requests"] - run["batch_1k"]["non_2xx"]) * BATCH_ROWS
    return {
        "c8_vs_floor": churn["c8"]["rps"] / floor["c8"]["rps"],
        "c8_vs_naive": churn["c8"]["rps"] / naive["c8"]["rps"],
        "c8_p99_ms": churn["c8"]["p99_ms"],
        "c64_errors": churn["c64"]["errors"],
        "c64_vs_naive": churn["c64"]["rps"] / naive["c64"]["rps"],
        "c1_after_burst_p50_ms": churn["c1_after_burst"]["p50_ms"],
        "batch_vs_naive": churn["batch_1k"]["rows_per_s"] / naive["batch_1k"]["rows_per_s"],
        "rounds_log_on_vs_off_c8": churn["c8"]["rps"] / quiet["c8"]["rps"],
        "rounds_log_on_vs_off_batch": churn["batch_1k"]["rows_per_s"] / quiet["batch_1k"]["rows_per_s"],
        # Log on and off served at the same time (simultaneous_log_cost): the robust figures.
        "cpu_off_vs_on_c8": simultaneous["c8"]["cpu_off_vs_on"],
        "cpu_off_vs_on_batch": simultaneous["batch_1k"]["cpu_off_vs_on"],
        "log_on_vs_off_c8": simultaneous["c8"]["rps_on_vs_off"],
        "log_on_vs_off_batch": simultaneous["batch_1k"]["rps_on_vs_off"],
        "log_thread_share_c8": simultaneous["c8"]["log_thread_share"],
        "log_thread_share_batch": simultaneous["batch_1k"]["log_thread_share"],
        "simultaneous_errors": int(sum(r["errors"] for v in simultaneous.values() for r in v["runs"])),
        "logged_rows": logged,
        "rows_answered_2xx_excluding_warmup": served,
    }


def render(results: dict[str, Any], summary: dict[str, Any], seconds: float, rounds: int, client: str,
           repeats: int) -> str:
    client_name = "wrk" if client != "python" else "bench/serving/loadgen.py"
    lines = [f"Each cell: median of {rounds} interleaved rounds of {seconds:g} s of closed-loop load from "
             f"{client_name} (CPU 1) against one server (CPU 0, `taskset`); req/s, p50 / p99 latency in ms; "
             "errors = non-2xx + socket errors, summed over rounds; the server's CPU time per request "
             "(all its processes and threads, from /proc).", "",
             "| server | c=1 | c=8 | c=64 | c=1 after c=64 burst | /predict_batch 1k rows (c=2) |",
             "|---|---|---|---|---|---|"]
    for name, figures in results.items():
        cells = []
        for key in ("c1", "c8", "c64", "c1_after_burst"):
            f = figures[key]
            cells.append(f"{f['rps']:.0f} req/s, {f['p50_ms']:.2f} / {f['p99_ms']:.2f} ms, {f['errors']} err, "
                         f"{f['cpu_ms_per_request']:.2f} ms CPU")
        batch = figures.get("batch_1k")
        cells.append(f"{batch['rows_per_s']:,.0f} rows/s, p50 {batch['p50_ms']:.1f} ms, {batch['errors']} err, "
                     f"{batch['cpu_ms_per_request']:.2f} ms CPU" if batch else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    s = summary
    lines += ["", "| target | measured | met |", "|---|---|---|",
              f"| /predict c=8 ≥ 80 % of the BentoML floor | {s['c8_vs_floor']:.0%} | "
              f"{_met(s['c8_vs_floor'] >= 0.8)} |",
              f"| /predict c=8 p99 ≤ 30 ms | {s['c8_p99_ms']:.1f} ms | {_met(s['c8_p99_ms'] <= 30)} |",
              f"| /predict c=8 vs naive FastAPI | {s['c8_vs_naive']:.1f}× | (about 4× expected) |",
              f"| /predict c=64: no errors | {s['c64_errors']} errors | {_met(s['c64_errors'] == 0)} |",
              f"| /predict c=64 ≥ 4× naive | {s['c64_vs_naive']:.1f}× | {_met(s['c64_vs_naive'] >= 4)} |",
              f"| c=1 after the burst: p50 ≤ 5 ms | {s['c1_after_burst_p50_ms']:.2f} ms | "
              f"{_met(s['c1_after_burst_p50_ms'] <= 5)} |",
              f"| /predict_batch 1k rows ≥ 5× naive rows/s | {s['batch_vs_naive']:.1f}× | "
              f"{_met(s['batch_vs_naive'] >= 5)} |",
              f"| inference log on within 10 % of off, c=8 /predict: server CPU per request off / on "
              f"(log on and off served at the same time, median of {repeats}) | {s['cpu_off_vs_on_c8']:.0%} | "
              f"{_met(s['cpu_off_vs_on_c8'] >= 0.9)} |",
              f"| same, 1k-row batches | {s['cpu_off_vs_on_batch']:.0%} | {_met(s['cpu_off_vs_on_batch'] >= 0.9)} |",
              f"| same runs, requests/s on / off (c=8; 1k-row batches) | {s['log_on_vs_off_c8']:.0%}; "
              f"{s['log_on_vs_off_batch']:.0%}; {s['simultaneous_errors']} errors | (both on one core) |",
              f"| same runs, the log writer thread's share of the server's CPU (c=8; 1k-row batches) | "
              f"{s['log_thread_share_c8']:.1%}; {s['log_thread_share_batch']:.1%} | (diagnostic) |",
              f"| log on / off from the rounds above, one server at a time (c=8; 1k-row batches) | "
              f"{s['rounds_log_on_vs_off_c8']:.0%}; {s['rounds_log_on_vs_off_batch']:.0%} | "
              "(drifts with the machine) |",
              f"| every answered row logged | {s['logged_rows']:,} rows logged, "
              f"{s['rows_answered_2xx_excluding_warmup']:,} answered in the rounds (+ other runs) | "
              f"{_met(s['logged_rows'] >= s['rows_answered_2xx_excluding_warmup'])} |"]
    return "\n".join(lines) + "\n"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


if __name__ == "__main__":
    sys.exit(main())

"""What a challenger beside production costs a request, and that serving without one is unchanged.

In one process pinned to one core (a one-worker server's situation: the shadow thread competes with
the request path for the same CPU), with the inference log on, one-customer ``/predict`` bodies are
answered through ``ServingRuntime.predict`` in interleaved rounds by:

* ``before``: the runtime as it was before rollouts existed (``git show REV:churnops/serving/runtime.py``,
  loaded beside today's), no challenger;
* ``none``: today's runtime, no challenger;
* ``shadow``: today's runtime with a challenger scoring every request off the response path;
* ``canary``: today's runtime with a 10 % canary (the other model shadow-scores).

Per request: p50 and p99 latency; per round: throughput including the shadow work (the queue is drained
before the clock stops). Figures: shadow p50 / none p50 (target <= 1.10, the issue's bound), none /
before (unchanged: <= 1.05), and the throughput ratios.

    .venv/bin/python bench/serving/bench_shadow.py [--requests 4000] [--rounds 5] [--before REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})

import numpy as np  # noqa: E402

from bench.report import at_most, report  # noqa: E402
from churnops.core.settings import StatePaths  # noqa: E402
from churnops.data.schema import load_schema  # noqa: E402
from churnops.data.synthetic import SyntheticSpec, generate_customers  # noqa: E402
from churnops.data.validation import validate_and_clean  # noqa: E402
from churnops.modeling.training import CandidateSpec, build_pipeline  # noqa: E402
from churnops.serving.config import ServingConfig  # noqa: E402
from churnops.serving.packaging import ModelCard, write_model_files  # noqa: E402
from churnops.serving.rollout import attach_challenger  # noqa: E402
from churnops.serving.runtime import ServingRuntime  # noqa: E402

SCHEMA = load_schema("synthetic")


def model_folder(root: Path, version: str, seed: int) -> Path:
    frame, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=3000, seed=seed)), SCHEMA)
    pipeline = build_pipeline(SCHEMA, CandidateSpec(estimator="sklearn.linear_model.LogisticRegression",
                                                    params={"max_iter": 1000}), 42)
    pipeline.fit(frame[SCHEMA.feature_names], frame[SCHEMA.target.column])
    folder = root / f"model-{version}"
    folder.mkdir(parents=True)
    write_model_files(folder, pipeline, SCHEMA, ModelCard(model_name="churn_classifier", model_version=version,
                                                         stage=None, threshold=0.4, metrics={}, dataset="synthetic"))
    return folder


def runtime_before(rev: str) -> type:
    """``ServingRuntime`` as it was at ``rev``, loaded as its own module beside today's."""
    source = subprocess.run(["git", "show", f"{rev}:churnops/serving/runtime.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "runtime_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("churnops_runtime_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there while the class is made
    spec.loader.exec_module(module)
    return module.ServingRuntime


def bodies(count: int) -> list[bytes]:
    frame = generate_customers(SyntheticSpec(rows=count, seed=99)).drop(columns=[SCHEMA.target.column])
    records = json.loads(frame.to_json(orient="records"))
    for record in records:
        for feature in SCHEMA.numeric:
            if feature.kind == "int" and record[feature.name] is not None:
                record[feature.name] = int(record[feature.name])
    return [json.dumps(record).encode() for record in records]


def measure(runtime: object, requests: list[bytes], rollout: object | None) -> tuple[np.ndarray, float]:
    """Per-request latencies (s) and requests per second including the shadow work."""
    latencies = np.empty(len(requests))
    started = time.perf_counter()
    for i, body in enumerate(requests):
        t0 = time.perf_counter()
        runtime.predict(body, f"bench-{i}")
        latencies[i] = time.perf_counter() - t0
    if rollout is not None:
        rollout.shadow.drain()
    return latencies, len(requests) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", default="2912cff", help="commit whose runtime is the unchanged baseline")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    production, challenger = model_folder(root, "1", 1), model_folder(root, "2", 2)
    config = ServingConfig.model_validate({})
    requests = bodies(args.requests)

    def serve(name: str) -> tuple[object, object | None]:
        paths = StatePaths(root / name / "home")
        if name == "before":
            return runtime_before(args.before)(production, "churn_classifier:1", config, paths), None
        runtime = ServingRuntime(production, "churn_classifier:1", config, paths)
        if name == "none":
            return runtime, None
        rollout = attach_challenger(runtime, challenger, config, paths, mode=name, rollout_id=f"bench-{name}",
                                    started_at="2026-12-03T00:00:00+00:00",
                                    canary_percent=10.0 if name == "canary" else 0.0)
        return runtime, rollout

    servers = {name: serve(name) for name in ("before", "none", "shadow", "canary")}
    for runtime, rollout in servers.values():  # warm up: compiled paths, caches, log writer threads
        measure(runtime, requests[:300], rollout)
    p50: dict[str, list[float]] = {name: [] for name in servers}
    p99: dict[str, list[float]] = {name: [] for name in servers}
    rate: dict[str, list[float]] = {name: [] for name in servers}
    for round_number in range(args.rounds):
        for name, (runtime, rollout) in servers.items():
            latencies, per_second = measure(runtime, requests, rollout)
            p50[name].append(float(np.median(latencies)) * 1000)
            p99[name].append(float(np.quantile(latencies, 0.99)) * 1000)
            rate[name].append(per_second)
        print(f"round {round_number + 1}: " + "  ".join(
            f"{name} p50 {p50[name][-1]:.3f} ms, {rate[name][-1]:,.0f} req/s" for name in servers), flush=True)
    for runtime, _ in servers.values():
        runtime.close()

    def ratio(values: dict[str, list[float]], a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(values[a], values[b], strict=True))

    load = os.getloadavg()[0]
    details = {"p50_ms": p50, "p99_ms": p99, "requests_per_s": rate, "load_average": load,
               "requests": args.requests, "rounds": args.rounds, "before": args.before}
    at_most("serving shadow p50 / no challenger p50, one core, log on", ratio(p50, "shadow", "none"), 1.10,
            **details)
    at_most("serving canary 10 % p50 / no challenger p50", ratio(p50, "canary", "none"), 1.10)
    at_most("serving no challenger p50 / before rollouts existed p50 (unchanged)", ratio(p50, "none", "before"),
            1.05)
    report("serving shadow requests/s incl. shadow scoring / no challenger", ratio(rate, "shadow", "none"), "info",
           True)
    report("serving no challenger p50 (ms, in process, one core)", statistics.median(p50["none"]), "info", True)
    print(f"load average {load:.2f}; figures in bench/out/figures.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A closed-loop HTTP/1.1 load generator on asyncio (uvloop when installed).

``connections`` keep-alive connections each send the same POST body back to back for
``seconds``; every request's latency is taken with ``time.perf_counter`` (a monotonic clock).
Used instead of wrk's latency figures, which disagreed with an independent client on this
machine (see bench/RESULTS.md); throughput agrees between the two.

    python bench/serving/loadgen.py URL BODY_FILE --connections 8 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


async def _connection(host: str, port: int, request: bytes, deadline: float, latencies: list[float],
                      statuses: dict[int, int], errors: list[str]) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        errors.append(f"connect: {error}")
        return
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            if not status_line:
                errors.append("connection closed")
                return
            status = int(status_line.split(b" ", 2)[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        errors.append(f"{type(error).__name__}: {error}")
    finally:
        writer.close()


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(share * len(sorted_values)) - 1))
    return sorted_values[index]


async def _run(url: str, body: bytes, connections: int, seconds: float, content_type: str) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_connection(host, port, request, deadline, latencies, statuses, errors)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    ok = statuses.get(200, 0)
    return {
        "requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1e3, "p90_ms": percentile(latencies, 0.90) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3, "max_ms": (latencies[-1] if latencies else float("nan")) * 1e3,
        "non_2xx": len(latencies) - ok, "socket_errors": len(errors), "errors": len(latencies) - ok + len(errors),
        "statuses": {str(k): v for k, v in statuses.items()}, "error_samples": errors[:3],
    }


def run(url: str, body: bytes, connections: int, seconds: float,
        content_type: str = "application/json") -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run(url, body, connections, seconds, content_type))
    return uvloop.run(_run(url, body, connections, seconds, content_type))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("body_file", type=Path)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--content-type", default="application/json")
    args = parser.parse_args()
    print(json.dumps(run(args.url, args.body_file.read_bytes(), args.connections, args.seconds, args.content_type)))


if __name__ == "__main__":
    main()

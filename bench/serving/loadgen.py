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
import typing as t
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending ``request`` back to back until ``deadline``.

    A Protocol rather than asyncio streams: the client must outrun a server answering
    10,000 requests/s on a core of its own; streams cost about 0.3 ms a request, this a few µs.
    Parses only the status line and Content-Length (the servers measured answer with one).
    """

    def __init__(self, request: bytes, deadline: float, latencies: list[float], statuses: dict[int, int],
                 errors: list[str], done: asyncio.Future[None]) -> None:
        self.request, self.deadline = request, deadline
        self.latencies, self.statuses, self.errors, self.done = latencies, statuses, errors, done
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t.cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if time.perf_counter() >= self.deadline:
            self.transport.close()
            return
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buffer[:head_end]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if len(self.buffer) < head_end + 4 + length:
            return
        self.latencies.append(time.perf_counter() - self.started)
        status = int(head.split(b" ", 2)[1])
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.buffer = self.buffer[head_end + 4 + length:]
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.perf_counter() < self.deadline:
            self.errors.append(f"connection closed: {exc}")
        if not self.done.done():
            self.done.set_result(None)


async def _connection(host: str, port: int, request: bytes, deadline: float, latencies: list[float],
                      statuses: dict[int, int], errors: list[str]) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        await loop.create_connection(
            lambda: _Connection(request, deadline, latencies, statuses, errors, done), host, port)
    except OSError as error:
        errors.append(f"connect: {error}")
        return
    await done


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

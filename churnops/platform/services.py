"""Background service processes: start, readiness, guaranteed teardown. Standard library only:
``churnops.platform.deployment`` uses it, and it ships in the training pipeline's image.

Every service starts in its own session, so its process group holds it and everything it
forks (MLflow's uvicorn worker, BentoML's workers, for some); stopping kills the whole group
and waits until no live member is left. Processes are read from /proc, or from ``ps`` where
there is none.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

_PROC = Path("/proc")
# Popen handles of services this process started, polled (so reaped) once they exit: no
# zombie stays behind, and no handle is collected while its process runs.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A service did not start, or could not be stopped."""


class NotReady(ServiceError):
    """A service did not answer in time, or exited before (``returncode`` then says how)."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass(frozen=True)
class ServiceProcess:
    """A started service: its process (and process group) id, URL and log file."""

    name: str
    pid: int
    url: str
    log: Path


class Member(NamedTuple):
    """A live process: its id and its command line (arguments joined by spaces)."""

    pid: int
    command: str


class _Process(NamedTuple):
    pid: int
    ppid: int
    pgid: int
    zombie: bool


# ------------------------------------------------------------------------------ start

def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a GET of ``url`` gets a 2xx answer (redirects followed)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, http.client.HTTPException):  # URLError and HTTPError are OSErrors
        return False


def wait_until_ready(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0,
                     log: Path | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise NotReady(f"{url}: the process exited before it was ready (code {process.returncode})\n"
                           f"{log_tail(log) if log else ''}", process.returncode)
        if answers(url):
            return
        if time.monotonic() >= deadline:
            raise NotReady(f"{url} not ready after {timeout:.0f} s\n{log_tail(log) if log else ''}")
        time.sleep(0.25)


def start_service(name: str, command: Sequence[str], *, url: str, health_url: str, log: Path,
                  env: Mapping[str, str] | None = None, cwd: Path | None = None,
                  timeout: float = 60.0) -> ServiceProcess:
    """Start ``command`` in a new session, appending its output to ``log``; return once
    ``health_url`` answers. On failure (:class:`NotReady`) its process group is stopped."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        output.write(f"\n=== {datetime.now(UTC).isoformat()} {' '.join(command)}\n".encode())
        output.flush()
        child = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, env=dict(env) if env is not None else None, start_new_session=True)
    _CHILDREN[child.pid] = child
    try:
        wait_until_ready(health_url, child, timeout, log)
    except BaseException:
        stop_process_group(child.pid)
        raise
    return ServiceProcess(name=name, pid=child.pid, url=url, log=log)


# -------------------------------------------------------------------------- processes

def _stat(pid: int) -> _Process | None:
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return _Process(pid, int(fields[1]), int(fields[2]), fields[0] in ("Z", "X"))


def _processes() -> list[_Process]:
    """Every process on the machine."""
    if _PROC.is_dir():
        return [process for name in os.listdir(_PROC) if name.isdigit() and (process := _stat(int(name)))]
    table = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,pgid=,stat="], capture_output=True, text=True,
                           check=True).stdout
    return [_Process(int(pid), int(ppid), int(pgid), state.startswith("Z"))
            for pid, ppid, pgid, state in (line.split() for line in table.splitlines())]


def command_line(pid: int) -> str | None:
    """The command line of ``pid``, arguments joined by spaces; None if it is gone."""
    if _PROC.is_dir():
        try:
            return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return None
    result = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    process = _stat(pid) if _PROC.is_dir() else next((p for p in _processes() if p.pid == pid), None)
    return process is not None and not process.zombie


def _group(pgid: int) -> list[int]:
    return [p.pid for p in _processes() if p.pgid == pgid and not p.zombie]


def group_members(pgid: int) -> list[Member]:
    """Live processes of process group ``pgid`` (zombies excluded)."""
    return [Member(pid, command_line(pid) or "") for pid in _group(pgid)]


def group_runs(pgid: int, program: str) -> bool:
    """Whether process group ``pgid`` still runs ``program`` (pids get reused after a reboot)."""
    return any(program in member.command for member in group_members(pgid))


# ------------------------------------------------------------------------------- stop

def _stop(send: Callable[[signal.Signals], None], alive: Callable[[], list[int]], timeout: float,
          what: str) -> None:
    """SIGTERM, SIGKILL what is left after ``timeout``; wait until nothing is left."""
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            send(sig)
        deadline = time.monotonic() + grace
        while True:
            left = alive()  # zombies do not count; reap the ones we started
            for pid, child in list(_CHILDREN.items()):
                if child.poll() is not None:
                    del _CHILDREN[pid]
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not left:
            return
    raise ServiceError(f"{what} survived SIGKILL: {left}")


def stop_process_group(pgid: int, timeout: float = 15.0) -> None:
    """SIGTERM the group, SIGKILL what is left after ``timeout``, wait until it is empty."""
    _stop(lambda sig: os.killpg(pgid, sig), lambda: _group(pgid), timeout, f"process group {pgid}")


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, by parent pid (BentoML's worker runs in a process group of
    its own, so the server's process group does not cover it)."""
    processes = _processes()
    targets, index = [root], 0
    while index < len(targets):
        targets += [p.pid for p in processes if p.ppid == targets[index]]
        index += 1
    return targets


def stop_process(pid: int, timeout: float = 15.0) -> None:
    """Stop one process and its descendants (for daemons that left their session)."""
    targets = process_tree(pid)

    def send(sig: signal.Signals) -> None:
        for target in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, sig)

    _stop(send, lambda: [target for target in targets if pid_alive(target)], timeout, "processes")

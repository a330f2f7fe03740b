"""Background service processes on loopback: free ports, readiness, guaranteed teardown.

Every service starts in its own session, so its process group holds it and everything it
forks (MLflow's uvicorn worker, for one); stopping kills the whole group and waits until
no member is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

# Popen handles of services this process started: reaped on stop so no zombie stays behind.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A service did not start, or could not be stopped."""


@dataclass(frozen=True)
class ServiceProcess:
    """A started service: its process (and process group) id, URL and log file."""

    name: str
    pid: int
    url: str
    log: Path


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until_ready(url: str, alive: psutil.Process | None = None, timeout: float = 60.0,
                     log: Path | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail early if ``alive`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not _running(alive):
            raise ServiceError(f"{url}: the process exited before it was ready\n{_log_tail(log) if log else ''}")
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise ServiceError(f"{url} not ready after {timeout:.0f} s\n{_log_tail(log) if log else ''}")


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_service(name: str, command: Sequence[str], *, url: str, health_url: str, log: Path,
                  env: Mapping[str, str] | None = None, timeout: float = 60.0) -> ServiceProcess:
    """Start ``command`` in a new session, logging to ``log``; return once ``health_url`` answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        child = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=dict(env) if env is not None else None, start_new_session=True)
    _CHILDREN[child.pid] = child
    service = ServiceProcess(name=name, pid=child.pid, url=url, log=log)
    try:
        wait_until_ready(health_url, psutil.Process(child.pid), timeout, log)
    except BaseException:
        stop_process_group(child.pid)
        raise
    return service


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of process group ``pgid`` (zombies excluded)."""
    members = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


def group_runs(pgid: int, program: str) -> bool:
    """Whether process group ``pgid`` still runs ``program`` (pids get reused after a reboot)."""
    for member in group_members(pgid):
        try:
            if program in " ".join(member.cmdline()):
                return True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


def stop_process_group(pgid: int, timeout: float = 15.0) -> None:
    """SIGTERM the group, SIGKILL what is left after ``timeout``, wait until it is empty."""
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while group_members(pgid) and time.monotonic() < deadline:
            _reap(pgid)
            time.sleep(0.1)
        _reap(pgid)
        if not group_members(pgid):
            return
    raise ServiceError(f"process group {pgid} survived SIGKILL: {[p.pid for p in group_members(pgid)]}")


def stop_process(pid: int, timeout: float = 15.0) -> None:
    """Stop one process and its descendants (for daemons that left their session)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    _, alive = psutil.wait_procs(alive, timeout=5)
    if alive:
        raise ServiceError(f"processes survived SIGKILL: {[p.pid for p in alive]}")


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def pid_alive(pid: int) -> bool:
    try:
        return _running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False

"""Run a command as a whole process and measure its wall time and peak memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs the command in a fresh process whose only child is that command, so the reported
# peak RSS (ru_maxrss over children) is this command's alone.
_MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "code = subprocess.run(sys.argv[1:]).returncode; wall = time.perf_counter() - t; "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(f'MEASURED {wall} {u.ru_maxrss} {u.ru_utime + u.ru_stime}'); sys.exit(code)"
)


def run(command: list[str], env: dict[str, str]) -> str:
    """Run ``command`` in the project root; its stdout, or exit with its output on failure."""
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``command``."""
    wall, peak, _ = timed_with_cpu(command, env)
    return wall, peak


def timed_with_cpu(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system, the command and the children it
    waited for, such as joblib's workers) of ``command``. CPU seconds move less than wall time when
    other work shares the machine."""
    output = run([sys.executable, "-c", _MEASURE, *command], env)
    _, wall, peak_kb, cpu = output.strip().splitlines()[-1].split()
    return float(wall), int(peak_kb) / 1024, float(cpu)

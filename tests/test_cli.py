"""run.py as a user meets it: help, and one-line errors instead of tracebacks."""

import subprocess
import sys

import pytest

from churnops.core.settings import PROJECT_ROOT, environment


def run_py(*args: str, paths) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "run.py", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, **environment(paths)}, timeout=120)


def test_help_documents_every_option(fresh_home):
    result = run_py("--help", paths=fresh_home)
    assert result.returncode == 0
    for option in ["--pipeline", "--config", "--data", "--rows", "--no-cache", "--summary-json", "--report-md",
                   "--stack", "--models", "--feedback", "--version", "--to", "--serve", "--stop", "--window-hours",
                   "--last", "--requests", "--drift", "--url"]:
        assert option in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--pipeline", "trainnig"], "invalid choice: 'trainnig'"),
    (["--rows", "0"], "must be at least 1"),
    (["--config", "/no/such.yaml"], "file not found: /no/such.yaml"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_options_are_one_line_errors(fresh_home, args, message):
    result = run_py(*args, paths=fresh_home)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_bad_data_source_is_a_one_line_error(fresh_home):
    result = run_py("--pipeline", "training", "--data", "nosuchdata", paths=fresh_home)
    assert result.returncode == 2
    assert "error: unknown data source 'nosuchdata'" in result.stderr and "Traceback" not in result.stderr

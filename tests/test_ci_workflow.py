"""The GitHub Actions workflow (.github/workflows/ci.yml): linted by a real checker, and wired to the
project's own commands, Makefile stamps and training report.

The checker is jactionlint (requirements-dev.txt), a fork of actionlint whose wheel carries the
binary; it runs offline. It also runs shellcheck on `run:` blocks when shellcheck is on PATH
(GitHub's ubuntu runners have it; this machine need not).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from run import build_parser

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CI_WORKFLOW = WORKFLOWS / "ci.yml"
LINTER_CONFIG = ROOT / ".github" / "jactionlint.yaml"
LINTER = Path(sys.executable).parent / "jactionlint"
REPORT_MARKER = "<!-- churnops-metrics-report -->"

# Clean under the project's linter config except for the defects named in BROKEN_RULES.
BROKEN_WORKFLOW = """\
name: broken
on:
  pull_request:
permissions:
  contents: read
concurrency:
  group: broken-${{ github.ref }}
  cancel-in-progress: true
jobs:
  test:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    needs: [build]
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
      - run: make test
        if: ${{ github.event_name == }}
  report:
    runs_on: ubuntu-latest
    timeout-minutes: 5
    steps:
      - run: echo report
"""
BROKEN_RULES = {"undefined-job-needs", "template-injection", "expression-syntax", "workflow-syntax"}


def lint(*files: Path) -> tuple[int, list[dict[str, Any]]]:
    """Run jactionlint with the project's config; return its exit code and findings."""
    if not LINTER.is_file():
        pytest.fail(f"{LINTER} not found: `make install-dev` installs jactionlint (requirements-dev.txt)")
    result = subprocess.run(
        [str(LINTER), "--config-file", str(LINTER_CONFIG), "--format", "json", "--no-color", *map(str, files)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"jactionlint printed no JSON (exit {result.returncode}): {result.stdout}{result.stderr}")
    return result.returncode, findings


def describe(findings: list[dict[str, Any]]) -> str:
    return "\n".join(f"{f['filepath']}:{f['line']}:{f['column']}: {f['message']} [{f['id']}]" for f in findings)


def load_workflow() -> dict[str, Any]:
    workflow = yaml.safe_load(CI_WORKFLOW.read_text())
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def job(name: str) -> dict[str, Any]:
    jobs = load_workflow()["jobs"]
    assert name in jobs, f"{CI_WORKFLOW.name} has no job {name!r} (jobs: {sorted(jobs)})"
    return jobs[name]


def step_named(job_: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [step for step in job_["steps"] if step.get("name") == name]
    assert len(matches) == 1, f"expected one step named {name!r}, found {len(matches)}"
    return matches[0]


def step_index(job_: dict[str, Any], step: dict[str, Any]) -> int:
    return next(index for index, candidate in enumerate(job_["steps"]) if candidate is step)


def run_lines(job_: dict[str, Any]) -> list[str]:
    return [line.strip() for step in job_["steps"] for line in step.get("run", "").splitlines() if line.strip()]


def expand(text: str, env: dict[str, str]) -> str:
    """Expand $NAME and ${NAME} the way the job's shell would, from the workflow's env only."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in env, f"{text!r} uses ${name}, which the workflow does not set"
        return env[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def readme_commands() -> set[str]:
    """Every command line in the README's fenced code blocks, comments stripped."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.M | re.S)
    return {line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()} - {""}


def stamp_prerequisites(stamp: str) -> set[str]:
    """The files (outside the venv) that a Makefile stamp such as `.venv/.dev` depends on, transitively."""
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(rf"^\$\(VENV\)/{re.escape(stamp.removeprefix('.venv/'))}:(.*)$", makefile, flags=re.M)
    assert rule, f"the Makefile has no rule for {stamp}"
    files: set[str] = set()
    for word in rule.group(1).split("|")[0].split():
        if word.startswith("$(VENV)/"):
            files |= stamp_prerequisites(word.replace("$(VENV)", ".venv"))
        else:
            files.add(word)
    return files


def touched_stamps(step: dict[str, Any]) -> set[str]:
    return {word for word in shlex.split(step["run"].replace("&&", " ")) if word.startswith(".venv/.")}


def test_every_workflow_passes_jactionlint() -> None:
    workflows = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert CI_WORKFLOW in workflows
    code, findings = lint(*workflows)
    assert findings == [], f"jactionlint findings:\n{describe(findings)}"
    assert code == 0


def test_jactionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN_WORKFLOW)
    code, findings = lint(broken)
    assert code != 0
    assert {finding["id"] for finding in findings} >= BROKEN_RULES, describe(findings)


def test_test_job_runs_the_readme_test_command_on_push_and_pull_request() -> None:
    assert "make test" in readme_commands(), "the README no longer shows `make test`"
    assert "make test" in run_lines(job("test"))
    # The same command as the local CI entry point.
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()
    triggers = load_workflow()["on"]
    assert {"push", "pull_request"} <= set(triggers), f"triggers: {triggers}"


def test_workflow_is_bounded_and_least_privileged() -> None:
    workflow = load_workflow()
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    for name, job_ in workflow["jobs"].items():
        assert 0 < job_["timeout-minutes"] <= 60, name
    assert job("metrics-report")["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "pull_request" in job("metrics-report")["if"]


@pytest.mark.parametrize(("job_name", "install_target"), [("test", "install-dev"), ("metrics-report", "install")])
def test_venv_cache_key_covers_the_stamps_it_marks_installed(job_name: str, install_target: str) -> None:
    """A key hit touches the stamps, so the key must hash every file those stamps depend on."""
    job_ = job(job_name)
    restore = step_named(job_, "Restore the virtual environment")
    assert restore["uses"].startswith("actions/cache/restore@") and restore["with"]["path"] == ".venv"
    assert "restore-keys" not in restore["with"], "a partial hit would mark a stale venv as installed"
    mark = step_named(job_, "Mark the restored virtual environment as installed")
    assert mark["if"] == f"steps.{restore['id']}.outputs.cache-hit == 'true'"
    stamps = touched_stamps(mark)
    hashed = set(re.findall(r"'([^']+)'", re.search(r"hashFiles\(([^)]*)\)", restore["with"]["key"]).group(1)))
    assert hashed == set().union(*(stamp_prerequisites(stamp) for stamp in stamps))
    # The stamps touched are exactly those of the target the job installs with.
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(rf"^{re.escape(install_target)}: \$\(VENV\)/(\S+)", makefile, flags=re.M).group(1)
    assert f".venv/{target}" in stamps
    assert f"make {install_target}" in run_lines(job_)
    save = step_named(job_, "Save the virtual environment")
    assert step_index(job_, mark) < step_index(job_, step_named(job_, "Install")) < step_index(job_, save)
    assert save["with"]["key"] == f"${{{{ steps.{restore['id']}.outputs.cache-primary-key }}}}"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize(("job_name", "install_target"), [("test", "install-dev"), ("metrics-report", "install")])
def test_restored_venv_is_not_reinstalled_after_the_stamps_are_touched(tmp_path: Path, job_name: str,
                                                                        install_target: str) -> None:
    """Replay a cache hit on the real Makefile: restored stamps older than the checkout, then the step."""
    mark = step_named(job(job_name), "Mark the restored virtual environment as installed")
    prerequisites = set().union(*(stamp_prerequisites(stamp) for stamp in touched_stamps(mark)))
    for name in ["Makefile", *prerequisites]:
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    restored = time.time() - 3600
    for name in [".venv/bin/python", *touched_stamps(mark)]:
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (restored, restored))

    def up_to_date() -> bool:
        # make -q runs nothing: exit 0 when the target is current, 1 when it would rebuild.
        result = subprocess.run(["make", "-q", install_target], cwd=tmp_path, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode in (0, 1), result.stderr
        return result.returncode == 0

    assert not up_to_date(), "with stamps older than the checkout, make should reinstall"
    subprocess.run(["bash", "-eo", "pipefail", "-c", mark["run"]], cwd=tmp_path, check=True, timeout=60)
    assert up_to_date()


def test_metrics_report_job_posts_the_report_that_training_writes() -> None:
    job_ = job("metrics-report")
    train = step_named(job_, "Train and write the metrics report")
    post = step_named(job_, "Post the metrics report on the pull request")
    fail = step_named(job_, "Fail on a rejected candidate")

    command = next(line for line in train["run"].splitlines() if "run.py" in line)
    # A rejected candidate exits 4 or 5: the step keeps the code instead of failing before the post.
    assert command.endswith("|| code=$?")
    words = shlex.split(expand(command.removesuffix("|| code=$?"), {**job_.get("env", {}), **train.get("env", {})}))
    args = build_parser().parse_args(words[words.index("run.py") + 1:])
    assert args.pipeline == "training" and args.report_md is not None

    assert post["uses"].startswith("actions/github-script@") and "if" not in post
    post_env = {**job_.get("env", {}), **post.get("env", {})}
    assert Path(post_env["REPORT_PATH"]) == args.report_md
    script = post["with"]["script"]
    assert "REPORT_PATH" in script and "readFileSync(reportPath" in script
    assert REPORT_MARKER in script and "updateComment" in script and "createComment" in script

    assert step_index(job_, train) < step_index(job_, post) < step_index(job_, fail)
    assert fail["if"] == f"steps.{train['id']}.outputs.exit-code != '0'"

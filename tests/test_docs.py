"""Every command the docs show works as written, and every link leads somewhere (issue 14).

Fast and static: nothing is trained, served or deployed. The fenced code blocks of README.md and
docs/*.md that hold commands (no language, ``bash``, ``sh``, ``shell``, ``console``, ``cron``) are
read line by line; each command is checked against the real thing it names:

- ``python run.py ARGS``: parsed by ``run.build_parser()``, then the option combinations run.py
  refuses after parsing, then the files and stacks it names exist;
- ``make TARGET [VAR=...]``: the target and the variable are defined in the Makefile;
- ``python -m MODULE ...``: the module is importable; its positional words and flags are in its source;
- ``.venv/bin/python bench/SCRIPT.py --flag``: the script exists and defines the flag;
- ``curl URL``: the URL's path is an endpoint of bento/service.py or of BentoML, and a JSON body
  passes the service's request contract for the synthetic schema;
- ``bentoml ...`` and ``zenml ...``: the subcommand and its options exist in the installed CLI
  (one subprocess per CLI, parsing only);
- ``export VAR=...``: the project reads VAR (a stack file's ``${VAR}``, or the Python sources);
- ``eval "$(COMMAND)"``: COMMAND is checked.

Output belongs in ``text`` (or ``json``) blocks: ``text`` is skipped, ``json`` must parse. Any other
line in a command block is an error, so a typo or a pasted output line cannot hide. Also checked:
every ``run.py`` flag and ``make`` target named in inline code, every relative link (file and
heading), that docs/index.md lists every page, and README.md's size.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import run
from churnops.data.schema import load_schema
from churnops.serving.config import load_serving_config
from churnops.serving.contract import RequestContract, RequestError

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
# The README has to fit on two screens (issue 14).
README_MAX_BYTES = 12_288

COMMAND_LANGUAGES = {"", "bash", "sh", "shell", "console", "cron"}

# Placeholders a reader replaces, and what the test uses instead. Whole tokens only, so that e.g.
# `--requests N` parses; `<anything>` (a tag, a key, a version) becomes "placeholder".
PLACEHOLDERS = {
    "N": "3",
    "H": "24",
    "VERSION": "1",
    "TEXT": "why",
    "ID": "C-000123",
    "URL": "http://127.0.0.1:3000",
    "PATH": "out.json",
}
ANGLE_PLACEHOLDER = re.compile(r"<[A-Za-z0-9_ -]+>")
# Files the reader brings: their existence is not the docs' business. A value, where given, is an
# existing file of the same kind used instead (a schema copied from telco.yaml, as data.md says).
READER_FILES: dict[str, str | None] = {
    "my_customers.csv": None,
    "outcomes.csv": None,
    "customers.csv": None,
    "configs/datasets/mine.yaml": "configs/datasets/telco.yaml",
}
# Programs the docs show that cannot be checked here (no Docker engine, no cluster), and `cd`,
# whose argument is wherever the reader cloned the project.
UNCHECKED_PROGRAMS = {"docker", "kubectl", "cd"}
PYTHONS = {"python", "python3", "python3.11", ".venv/bin/python"}
CLIS = ("bentoml", "zenml")
# BentoML's own routes in every service (bentoml/_internal/server/base_app.py, http_app.py).
BENTOML_ROUTES = {"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/"}
SEGMENT_SEPARATORS = {"&&", "||", ";", "|"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the first line inside the fence
    language: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


# ---------------------------------------------------------------------------------------------
# Reading the pages


def fenced_blocks(page: Path) -> list[Block]:
    """Fenced code blocks of a page, fences possibly indented (inside list items)."""
    blocks: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, language = opening.groups()
        body: list[str] = []
        index += 1
        start = index + 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            line = lines[index]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            index += 1
        blocks.append(Block(page, start, language.lower(), tuple(body)))
        index += 1
    return blocks


def prose(page: Path) -> str:
    """A page without its fenced blocks (blank lines kept, so line numbers stay)."""
    lines = page.read_text().splitlines()
    fenced = False
    kept = []
    for line in lines:
        if re.match(r"^\s*(`{3,}|~{3,})", line):
            fenced = not fenced
            kept.append("")
            continue
        kept.append("" if fenced else line)
    return "\n".join(kept)


def _complete(text: str) -> bool:
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def commands_of(block: Block) -> list[Command]:
    """The commands of a command block, continuation lines and multi-line quotes joined."""
    found: list[Command] = []
    pending: list[str] = []
    pending_line = 0
    for offset, raw in enumerate(block.lines):
        line = raw.rstrip()
        if not pending:
            if block.language == "console":
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            pending_line = block.line + offset
        continues = line.endswith("\\")
        pending.append(line[:-1] if continues else line)
        if not continues and _complete("\n".join(pending)):
            found.append(Command(block.page, pending_line, "\n".join(pending)))
            pending = []
    assert not pending, f"{block.page.relative_to(ROOT)}:{pending_line}: unterminated command {pending!r}"
    return found


@cache
def all_commands() -> tuple[Command, ...]:
    return tuple(command for page in PAGES for block in fenced_blocks(page)
                 if block.language in COMMAND_LANGUAGES for command in commands_of(block))


def segments(command: Command, cron: bool = False) -> list[list[str]]:
    """The simple commands of a line: split at && || ; |, redirections and cron fields dropped."""
    tokens = shlex.split(command.text, comments=True)
    if cron:
        assert len(tokens) > 5 and all(re.fullmatch(r"[\d*/,-]+", field) for field in tokens[:5]), (
            f"{command.where}: not a crontab line")
        tokens = tokens[5:]
    result: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in SEGMENT_SEPARATORS:
            result.append([])
        elif token in {">", ">>", "<", "2>"}:
            skip_next = True
        elif re.fullmatch(r"\d*>&\d+|\d*>>?\S+", token):
            continue
        else:
            result[-1].append(token)
    return [segment for segment in result if segment]


def substitute(token: str) -> str:
    token = PLACEHOLDERS.get(token, token)
    return ANGLE_PLACEHOLDER.sub("placeholder", token)


# ---------------------------------------------------------------------------------------------
# Checks, one per kind of command; each returns the problems found (empty: fine)


def parse_run_py(argv: list[str]) -> tuple[object | None, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return run.build_parser().parse_args(argv), ""
        except SystemExit:
            return None, stderr.getvalue().strip().splitlines()[-1]


def check_run_py(args: list[str]) -> list[str]:
    argv = [substitute(arg) for arg in args]
    argv = [READER_FILES.get(arg) or arg for arg in argv]
    parsed, error = parse_run_py(argv)
    if parsed is None:
        return [f"run.py refuses {shlex.join(argv)}: {error}"]
    problems = []
    # Combinations refused after parsing (run.main and run.dispatch).
    if parsed.force and not parsed.reason:
        problems.append("--force needs --reason TEXT")
    if parsed.retention_days is not None and not parsed.prune_logs:
        problems.append("--retention-days only goes with --prune-logs")
    if parsed.feedback is True and parsed.pipeline != "simulate":
        problems.append("--feedback without FILE only goes with --pipeline simulate")
    if parsed.stack and not (ROOT / "configs" / "stacks" / f"{parsed.stack}.yaml").is_file():
        problems.append(f"no stack file configs/stacks/{parsed.stack}.yaml")
    named_files = [value for value in (parsed.data, parsed.feedback) if isinstance(value, str)]
    for value in named_files:
        if value in {"synthetic", "telco"} or value in READER_FILES:
            continue
        if not (ROOT / value).is_file():
            problems.append(f"file not found: {value}")
    return problems


@cache
def makefile() -> tuple[frozenset[str], frozenset[str]]:
    """Targets and variables defined in the Makefile."""
    text = (ROOT / "Makefile").read_text()
    targets = set()
    for match in re.finditer(r"^([A-Za-z0-9_.$()/ -]+?)\s*:(?!=)", text, flags=re.MULTILINE):
        targets.update(match.group(1).split())
    variables = set(re.findall(r"^(?:export\s+)?([A-Z_][A-Z0-9_]*)\s*[:?+]?=", text, flags=re.MULTILINE))
    return frozenset(targets), frozenset(variables)


def check_make(args: list[str]) -> list[str]:
    targets, variables = makefile()
    problems = []
    for arg in args:
        if "=" in arg:
            name = arg.split("=", 1)[0]
            if name not in variables:
                problems.append(f"make variable {name} is not defined in the Makefile")
        elif arg.startswith("-"):
            problems.append(f"unexpected make option {arg}")
        elif arg not in targets:
            problems.append(f"no make target {arg!r}")
    if not [arg for arg in args if "=" not in arg]:
        problems.append("make without a target")
    return problems


def module_source(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin)
    return origin.read_text() if origin.suffix == ".py" else ""


def check_python_module(module: str, args: list[str]) -> list[str]:
    try:
        source = module_source(module)
    except ModuleNotFoundError:
        source = None
    if source is None:
        return [f"module {module} is not importable"]
    if module == "pytest":
        return [f"no test file {arg}" for arg in args
                if not arg.startswith("-") and not (ROOT / arg.split("::")[0]).exists()]
    words = [arg.split("=", 1)[0] for arg in args if not re.fullmatch(r"[\d.]+", arg)]
    return [f"{module} does not define {word!r}" for word in words if f'"{word}"' not in source]


def check_script(script: str, args: list[str]) -> list[str]:
    path = ROOT / script
    if not path.is_file():
        return [f"no script {script}"]
    source = path.read_text()
    return [f"{script} has no option {flag}" for flag in args
            if flag.startswith("--") and f'"{flag.split("=", 1)[0]}"' not in source]


def check_python(args: list[str]) -> list[str]:
    if not args:
        return ["python without arguments"]
    if args[0] == "run.py":
        return check_run_py(args[1:])
    if args[0] == "-m":
        return check_python_module(args[1], args[2:])
    return check_script(args[0], args[1:])


@cache
def service_routes() -> frozenset[str]:
    """Routes of bento/service.py (read from its source, not imported: importing loads a model)."""
    source = (ROOT / "bento" / "service.py").read_text()
    routes = set(re.findall(r'route="(/[^"]*)"', source))
    routes.update(re.findall(r'@info_app\.(?:get|post)\("(/[^"]*)"', source))
    return frozenset(routes | BENTOML_ROUTES)


@cache
def request_contract() -> RequestContract:
    limits = load_serving_config(ROOT / "configs" / "serving.yaml").limits
    return RequestContract(load_schema("synthetic"), limits.max_predict_customers, limits.max_batch_rows)


def check_curl(args: list[str]) -> list[str]:
    urls = [arg for arg in args if arg.startswith(("http://", "https://"))]
    if len(urls) != 1:
        return [f"expected one URL, found {urls}"]
    path = re.sub(r"^https?://[^/]+", "", urls[0]).split("?")[0] or "/"
    if path not in service_routes():
        return [f"{path} is not an endpoint of the service (known: {sorted(service_routes())})"]
    problems = []
    headers = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in {"-H", "--header"}]
    bodies = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in {"-d", "--data", "--data-binary"}]
    for body in bodies:
        if body.startswith("@"):
            if body[1:] not in READER_FILES and not (ROOT / body[1:]).is_file():
                problems.append(f"body file not found: {body[1:]}")
            continue
        if not any(header.lower().replace(" ", "") == "content-type:application/json" for header in headers):
            continue
        try:
            if path == "/predict":
                request_contract().parse_predict(body.encode())
            elif path == "/predict_batch":
                request_contract().parse_batch(body.encode())
        except RequestError as error:
            problems.append(f"the service would answer {error.status}: {error.body}")
    return problems


@cache
def project_sources() -> str:
    files = [*ROOT.glob("configs/**/*.yaml"), *ROOT.glob("churnops/**/*.py"), *ROOT.glob("bento/*.py")]
    return "\n".join(path.read_text() for path in files)


def check_export(args: list[str]) -> list[str]:
    sources = project_sources()
    names = [arg.split("=", 1)[0] for arg in args]
    return [f"the project never reads {name}" for name in names
            if f"${{{name}}}" not in sources and f"${{{name}:-" not in sources and f'"{name}"' not in sources]


def check_segment(segment: list[str]) -> list[str]:
    """Every check but the CLIs', which run in a subprocess (see cli_problems)."""
    program, args = segment[0], segment[1:]
    if program in PYTHONS:
        return check_python(args)
    if program == "make":
        return check_make(args)
    if program == "curl":
        return check_curl(args)
    if program == "export":
        return check_export(args)
    if program == "eval":
        inner = re.fullmatch(r"\$\((.*)\)", " ".join(args), flags=re.DOTALL)
        if not inner:
            return [f"eval of something other than $(COMMAND): {args}"]
        return [problem for part in segments(Command(ROOT, 0, inner.group(1))) for problem in check_segment(part)]
    if program in CLIS:
        return check_cli_target(program, args)
    if program in UNCHECKED_PROGRAMS:
        return []
    return [f"not a known command: {program!r} (output belongs in a ```text block)"]


def check_cli_target(program: str, args: list[str]) -> list[str]:
    """`bentoml serve module:Service` names a class of this project; `churn_service:...` this Bento."""
    if program != "bentoml" or not args or args[0] not in {"serve", "containerize"} or len(args) < 2:
        return []
    target = args[1]
    module, _, name = target.partition(":")
    if module == "churn_service":
        bento_name = re.search(r"^name:\s*(\S+)", (ROOT / "bento" / "bentofile.yaml").read_text(), re.MULTILINE)
        return [] if bento_name and bento_name.group(1) == module else [f"no Bento named {module}"]
    source = module_source(module) if "." in module else None
    if source is None or f"class {name}" not in source:
        return [f"{target}: no class {name} in module {module}"]
    return []


# One subprocess per CLI: resolve each command's subcommands in the click group and parse its
# options (make_context parses, it does not invoke). Reads argv lists as JSON on stdin.
CLI_CHECK_SCRIPT = r"""
import json, sys, warnings
import click
warnings.simplefilter("ignore")
name = sys.argv[1]
if name == "zenml":
    from zenml.cli.cli import cli
else:
    from bentoml_cli.cli import cli
def problem(argv):
    command, rest, parent = cli, list(argv), click.Context(cli, info_name=name)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(parent, rest[0])
        if sub is None:
            return f"no subcommand {rest[0]!r} under {command.name!r}"
        command, rest = sub, rest[1:]
        parent = click.Context(command, info_name=command.name, parent=parent)
    if isinstance(command, click.Group):
        return "a command group, not a command"
    try:
        command.make_context(command.name, rest, parent=parent.parent)
    except click.exceptions.Exit:
        pass
    except click.UsageError as error:
        return str(error)
    return ""
print("JSON:" + json.dumps([problem(argv) for argv in json.load(sys.stdin)]))
"""


def cli_commands() -> dict[str, list[tuple[Command, list[str]]]]:
    found: dict[str, list[tuple[Command, list[str]]]] = {name: [] for name in CLIS}
    for command in all_commands():
        for segment in command_segments(command):
            if segment[0] in CLIS:
                found[segment[0]].append((command, [substitute(arg) for arg in segment[1:]]))
    return found


@cache
def cli_problems(program: str) -> tuple[str, ...]:
    argvs = [argv for _, argv in cli_commands()[program]]
    result = subprocess.run([sys.executable, "-c", CLI_CHECK_SCRIPT, program], input=json.dumps(argvs),
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ))
    lines = [line for line in result.stdout.splitlines() if line.startswith("JSON:")]
    assert result.returncode == 0 and lines, f"{program} CLI check failed:\n{result.stderr[-2000:]}"
    return tuple(json.loads(lines[-1][5:]))


@cache
def cron_lines() -> frozenset[tuple[Path, int]]:
    return frozenset((command.page, command.line) for page in PAGES for block in fenced_blocks(page)
                     if block.language == "cron" for command in commands_of(block))


def command_segments(command: Command) -> list[list[str]]:
    return segments(command, cron=(command.page, command.line) in cron_lines())


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.fixture(autouse=True)
def _in_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # run.py resolves --config and --schema against the working directory, as a reader's shell does.
    monkeypatch.chdir(ROOT)


def test_readme_fits_on_two_screens():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes; at most {README_MAX_BYTES:,}: move detail to docs/"


def test_readme_quickstart_is_the_two_commands():
    quickstart = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = [block for block in fenced_blocks(README) if block.language in COMMAND_LANGUAGES
              and "\n".join(block.lines) in quickstart]
    assert [command.text.split("#")[0].strip() for block in blocks[:1] for command in commands_of(block)] == [
        "make run", "make test"]


def test_docs_show_commands():
    # Guards the extraction itself: an empty list would make every check below pass.
    programs = {segment[0] for command in all_commands() for segment in command_segments(command)}
    assert {"python", "make", "curl", "bentoml", "zenml", ".venv/bin/python"} <= programs
    assert len(all_commands()) > 50


@pytest.mark.parametrize("command", all_commands(), ids=lambda command: command.where)
def test_command_works_as_written(command: Command):
    problems = [problem for segment in command_segments(command) for problem in check_segment(segment)]
    assert not problems, f"{command.where}: {command.text}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("program", CLIS)
def test_cli_subcommands_and_options_exist(program: str):
    commands = cli_commands()[program]
    assert commands, f"the docs show no {program} command"
    failures = [f"{command.where}: {program} {shlex.join(argv)}: {problem}"
                for (command, argv), problem in zip(commands, cli_problems(program), strict=True) if problem]
    assert not failures, "\n".join(failures)


def test_check_catches_broken_commands():
    # The checks are only worth something if they fail: one broken command of each kind.
    assert check_run_py(["--pipeline", "trainig"])
    assert check_run_py(["--pipeline", "deploy", "--force"])
    assert check_run_py(["--stack", "nowhere"])
    assert check_make(["no-such-target"])
    assert check_python_module("churnops.no_such_module", [])
    assert check_python_module("churnops.platform.cloudsim", ["explode"])
    assert check_script("bench/serving/run_bench.py", ["--no-such-flag"])
    assert check_curl(["-s", "http://127.0.0.1:3000/no_such_endpoint"])
    assert check_curl(["-X", "POST", "http://127.0.0.1:3000/predict", "-H", "Content-Type: application/json",
                       "-d", '{"age": 41}'])
    assert check_export(["CHURNOPS_NOT_A_SETTING=1"])
    assert check_segment(["pyhton", "run.py"])
    assert check_cli_target("bentoml", ["serve", "bento.service:NoSuchService"])


def test_inline_run_py_flags_and_make_targets_exist():
    options = {option for action in run.build_parser()._actions for option in action.option_strings}
    targets, _ = makefile()
    problems = []
    for page in PAGES:
        text = prose(page)
        text_blocks = ["\n".join(block.lines) for block in fenced_blocks(page) if block.language == "text"]
        spans = re.findall(r"`([^`\n]+)`", text) + [line for block in text_blocks for line in block.splitlines()
                                                    if line.lstrip().startswith(("python run.py", "run.py"))]
        for span in spans:
            if "run.py" in span:
                problems += [f"{page.name}: `{span}`: run.py has no option {flag}"
                             for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", span) if flag not in options]
            for target in re.findall(r"(?:^|&& )make ([a-z][a-z-]*)", span):
                if target not in targets:
                    problems.append(f"{page.name}: `{span}`: no make target {target}")
    assert not problems, "\n".join(problems)


def test_json_blocks_parse():
    problems = []
    for page in PAGES:
        for block in fenced_blocks(page):
            if block.language == "json":
                try:
                    json.loads("\n".join(block.lines))
                except json.JSONDecodeError as error:
                    problems.append(f"{page.relative_to(ROOT)}:{block.line}: {error}")
    assert not problems, "\n".join(problems)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose(page), flags=re.MULTILINE):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return frozenset(result)


def relative_links(page: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(prose(page).splitlines(), start=1):
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if not re.match(r"^[a-z]+:", target):
                found.append((number, target))
    return found


def test_relative_links_lead_to_files_and_headings():
    problems = []
    for page in PAGES:
        for number, link in relative_links(page):
            path_part, _, anchor = link.partition("#")
            target = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(ROOT)}:{number}: ({link})"
            if not target.exists():
                problems.append(f"{where}: {path_part} does not exist")
                continue
            if anchor and target.suffix == ".md" and anchor not in anchors(target):
                problems.append(f"{where}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def test_index_lists_every_page():
    listed = {(DOCS / target.partition("#")[0]).resolve() for _, target in relative_links(DOCS / "index.md")}
    pages = set(DOCS.glob("*.md"))
    missing = sorted(page.name for page in pages - {DOCS / "index.md"} if page.resolve() not in listed)
    assert not missing, f"docs/index.md does not link {missing}"
    readme_links = {(ROOT / target.partition("#")[0]).resolve() for _, target in relative_links(README)}
    assert (DOCS / "index.md").resolve() in readme_links, "README.md does not link docs/index.md"


# Project paths and module names in inline code: the regroup of churnops/ (and any later move) must
# not leave a page pointing at a file or module that is gone. Generated output (bench/out/) and
# paths with placeholders (`<pipeline>`, `*`) are not files to look for.
INLINE_PATH = re.compile(r"(?<![\w./$-])((?:churnops|bento|tests|bench|configs|steps|pipelines|materializers|docs)"
                         r"/(?:[\w./-]*\.(?:py|ya?ml|md|json|toml|txt|lua)|[\w./-]*/)(?![\w-]))")
INLINE_MODULE = re.compile(r"(?<![\w./])churnops(?:\.\w+)+")


def module_name_problem(dotted: str) -> str:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            source = module_source(".".join(parts[:cut]))
        except ModuleNotFoundError:
            source = None
        if source is not None:
            missing = [name for name in parts[cut:] if not re.search(rf"\b{name}\b", source)]
            return f"{'.'.join(parts[:cut])} defines no {missing[0]}" if missing else ""
    return "no such module"


def test_inline_paths_and_modules_exist():
    problems = []
    for page in PAGES:
        for span in re.findall(r"`([^`\n]+)`", prose(page)):
            for path in INLINE_PATH.findall(span):
                placeholder = re.search(r"\b[A-Z]{2,}\b", path) or "<" in span[span.index(path):][:len(path) + 1]
                if path.startswith("bench/out") or placeholder or path in READER_FILES:
                    continue
                if not (ROOT / path.split("::")[0]).exists():
                    problems.append(f"{page.relative_to(ROOT)}: `{span}`: {path} does not exist")
            for dotted in INLINE_MODULE.findall(span):
                problem = module_name_problem(dotted)
                if problem:
                    problems.append(f"{page.relative_to(ROOT)}: `{span}`: {dotted}: {problem}")
    assert not problems, "\n".join(problems)

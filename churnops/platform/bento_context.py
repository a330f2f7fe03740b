"""A small build context for ``bentoml build``: only the files the bentofile selects.

BentoML walks its whole build context and matches every file against the bentofile's
``include``/``exclude`` (and searches all of it for ``.bentoignore`` files). With the project
root as the context that walk covers ``.venv`` and ``$CHURNOPS_HOME`` (artifact store, BentoML
home): tens of thousands of files, seconds per Bento (bench/RESULTS.md, Training). Here only the
top-level folders the include patterns name are walked, with the same matcher BentoML uses
(gitwildmatch), and the selected files are copied into a temporary folder that becomes the
context; the Bento's contents are the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pathspec import PathSpec

# Never part of a Bento: BentoML ignores these itself (bentoml/_internal/bento/build_config.py).
ALWAYS_EXCLUDED = [".git/", ".venv/", "venv/", "__pycache__/", ".DS_Store"]
IGNORE_FILE = ".bentoignore"
# Bentofile settings that name files of the build context, beside ``include``.
FILE_SETTINGS = (("python", "requirements_txt"), ("docker", "setup_script"), ("docker", "dockerfile_template"),
                 ("conda", "environment_yml"))


def _search_roots(include: list[str]) -> list[str]:
    """The top-level folders (or files) the include patterns can match; ``["."]`` if any pattern
    could match anywhere (a leading wildcard, ``**`` or a bare file name)."""
    roots: set[str] = set()
    for pattern in include:
        head, separator, _ = pattern.strip().lstrip("/").partition("/")
        if not separator or any(char in head for char in "*?[!"):
            return ["."]
        roots.add(head)
    return sorted(roots)


def selected_files(bentofile: Path, root: Path) -> list[str]:
    """Paths (relative, ``/``-separated) under ``root`` that ``bentofile`` puts into a Bento."""
    config: dict[str, Any] = yaml.safe_load(bentofile.read_text()) or {}
    include = [str(p) for p in config.get("include") or ["*"]]
    exclude = [str(p) for p in config.get("exclude") or []]
    included = PathSpec.from_lines("gitwildmatch", include)
    excluded = PathSpec.from_lines("gitwildmatch", [*exclude, *ALWAYS_EXCLUDED])
    chosen: list[str] = []
    for top in _search_roots(include):
        start = root / top
        if start.is_file():
            candidates = [top]
        else:
            candidates = []
            for folder, subfolders, files in os.walk(start):
                relative = Path(folder).relative_to(root).as_posix()
                # Prune what can never be included (the virtualenv, caches, state) instead of walking it.
                subfolders[:] = [d for d in subfolders
                                 if not excluded.match_file(f"{relative}/{d}/".removeprefix("./"))]
                candidates += [f"{relative}/{name}".removeprefix("./") for name in files]
        chosen += [path for path in candidates if path.rsplit("/", 1)[-1] == IGNORE_FILE
                   or (included.match_file(path) and not excluded.match_file(path))]
    for section, key in FILE_SETTINGS:
        named = (config.get(section) or {}).get(key)
        if named and (root / named).is_file():
            chosen.append(Path(named).as_posix())
    return sorted(set(chosen))


@contextlib.contextmanager
def staged_build_context(bentofile: Path, root: Path) -> Iterator[Path]:
    """A temporary copy of the files of ``root`` that ``bentofile`` selects, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="churnops-bento-context-") as staging:
        context = Path(staging)
        for relative in selected_files(bentofile, root):
            target = context / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / relative, target)
        try:
            yield context
        finally:
            _forget_modules_under(context)


def _forget_modules_under(folder: Path) -> None:
    """Drop modules BentoML imported from the staged copy (the service), so a later import in this
    process reads the project's files instead of a deleted folder."""
    prefix = str(folder.resolve()) + os.sep
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin and os.path.realpath(origin).startswith(prefix):
            del sys.modules[name]

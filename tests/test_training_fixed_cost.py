"""The fixed-cost cuts of the training pipeline (bench/RESULTS.md, Training) keep what they replace."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest
import yaml

from churnops.core.settings import PROJECT_ROOT
from churnops.platform import speedups
from churnops.platform.bento_context import selected_files, staged_build_context

BENTOFILE = PROJECT_ROOT / "bento" / "bentofile.yaml"


def _tree(root: Path, files: list[str]) -> None:
    for relative in files:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {relative}\n")


def _bentoml_selection(bentofile: Path, root: Path) -> list[str]:
    """What BentoML itself copies into a Bento: its own matcher over a walk of the whole context."""
    from bentoml._internal.bento.build_config import BentoPathSpec

    config = yaml.safe_load(bentofile.read_text())
    specs = BentoPathSpec(config.get("include") or ["*"], config.get("exclude") or [], str(root))
    chosen = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(os.path.relpath(folder, root), name).replace(os.sep, "/").removeprefix("./")
            if specs.includes(path):
                chosen.append(path)
    return sorted(chosen)


@pytest.mark.parametrize("include,exclude", [
    (["bento/*.py", "pkg/core/*.py", "configs/serving.yaml"], ["**/__pycache__"]),
    (["pkg/**/*.py"], ["pkg/secret.py"]),
    (["*.py"], []),  # a pattern without a folder: the whole context is searched
])
def test_selection_matches_what_bentoml_selects(tmp_path: Path, include: list[str], exclude: list[str]) -> None:
    _tree(tmp_path, ["bento/service.py", "bento/notes.md", "pkg/__init__.py", "pkg/secret.py", "pkg/core/a.py",
                     "pkg/core/__pycache__/a.cpython-311.pyc", "pkg/deep/er/b.py", "configs/serving.yaml",
                     "configs/training.yaml", ".venv/lib/site.py", "state/artifacts/x.py", "top.py"])
    bentofile = tmp_path / "bentofile.yaml"
    bentofile.write_text(yaml.safe_dump({"service": "bento.service:Svc", "include": include, "exclude": exclude}))
    ours = selected_files(bentofile, tmp_path)
    assert ours == [p for p in _bentoml_selection(bentofile, tmp_path) if p != "bentofile.yaml"]
    assert ours and not any(p.startswith(".venv/") for p in ours)


def test_the_project_bentofile_selects_the_service_and_nothing_of_the_state(tmp_path: Path) -> None:
    chosen = selected_files(BENTOFILE, PROJECT_ROOT)
    assert {"bento/service.py", "churnops/serving/runtime.py", "configs/serving.yaml"} <= set(chosen)
    assert not [p for p in chosen if p.startswith((".venv/", ".churnops/", "bench/", "tests/"))]
    with staged_build_context(BENTOFILE, PROJECT_ROOT) as context:
        staged = sorted(p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file())
        assert staged == chosen
        assert (context / "bento" / "service.py").read_bytes() == (PROJECT_ROOT / "bento" / "service.py").read_bytes()
    assert not context.exists()


def test_modules_imported_from_the_staged_context_are_forgotten(tmp_path: Path) -> None:
    _tree(tmp_path, ["stagedpkg_for_test/__init__.py", "stagedpkg_for_test/mod.py"])
    bentofile = tmp_path / "bentofile.yaml"
    bentofile.write_text(yaml.safe_dump({"service": "stagedpkg_for_test.mod:Svc",
                                         "include": ["stagedpkg_for_test/*.py"]}))
    with staged_build_context(bentofile, tmp_path) as context:
        sys.path.insert(0, str(context))
        try:
            __import__("stagedpkg_for_test.mod")
            assert "stagedpkg_for_test.mod" in sys.modules
        finally:
            sys.path.remove(str(context))
    assert "stagedpkg_for_test.mod" not in sys.modules and "stagedpkg_for_test" not in sys.modules


def test_package_lookups_are_read_once_and_answer_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib_metadata
    from zenml.utils import source_utils

    monkeypatch.setattr(importlib.metadata, "packages_distributions", importlib.metadata.packages_distributions)
    monkeypatch.setattr(importlib_metadata, "packages_distributions", importlib_metadata.packages_distributions)
    expected = speedups._ORIGINAL()
    speedups.memoize_package_lookups()
    first = importlib.metadata.packages_distributions()
    assert first == expected
    first["pandas"].append("mutated by a caller")  # MLflow updates the mapping it gets
    assert importlib_metadata.packages_distributions() == expected
    assert speedups._distributions_by_module.cache_info().currsize == 1
    assert source_utils._get_package_for_module("pandas.core.frame") == "pandas"
    assert source_utils._get_package_for_module("sklearn.pipeline") == "scikit-learn"

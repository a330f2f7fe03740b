"""Process-wide shortcuts around library work that is repeated for nothing (bench/RESULTS.md, Training).

``importlib.metadata.packages_distributions()`` reads the file list of every installed
distribution (about 260 here: 0.4 s of CPU, seconds of wall time on a busy disk). ZenML calls it
afresh for every stored artifact whose type comes from an installed package
(``zenml.utils.source_utils._get_package_for_module``, to record that package's version: the five
DataFrames and the sklearn Pipeline of a training run) and MLflow once more when it logs a model
(``warn_dependency_requirement_mismatches``). Nothing is installed while a churnops command runs,
so one reading serves the whole process.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Mapping

_ORIGINAL: Callable[[], Mapping[str, list[str]]] = importlib.metadata.packages_distributions


@functools.cache
def _distributions_by_module() -> dict[str, tuple[str, ...]]:
    return {module: tuple(names) for module, names in _ORIGINAL().items()}


def cached_packages_distributions() -> dict[str, list[str]]:
    """``packages_distributions()`` read once per process; a fresh dict each call (MLflow updates it)."""
    return {module: list(names) for module, names in _distributions_by_module().items()}


def memoize_package_lookups() -> None:
    """Route ``importlib.metadata`` and its ``importlib_metadata`` backport (which MLflow uses)
    through one cached reading. Idempotent."""
    importlib.metadata.packages_distributions = cached_packages_distributions  # type: ignore[assignment]
    try:
        import importlib_metadata
    except ImportError:  # the backport is optional; without it MLflow uses the standard library
        return
    importlib_metadata.packages_distributions = cached_packages_distributions  # type: ignore[assignment]

"""Pipeline configs: read the YAML, apply command-line overrides, write the resolved file.

The resolved file also carries the pipeline's DockerSettings for remote orchestrators
(``configs/docker.yaml``), kept in configuration so pipelines and steps stay stack-agnostic: a run
config gets the ``settings: docker:`` block for its pipeline, which the local orchestrator ignores
and a remote orchestrator builds its image from.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from churnops.core.settings import CONFIGS_DIR, StatePaths
from churnops.data.schema import DATASETS_DIR

DATA_FILE_SUFFIXES = {".csv", ".parquet", ".pq"}


class ConfigError(ValueError):
    """A config file or override that cannot be used."""


def default_config(pipeline: str) -> Path:
    return CONFIGS_DIR / f"{pipeline}.yaml"


def load_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return config


def step_parameters(config: dict[str, Any], step: str) -> dict[str, Any]:
    """The (created if absent) parameters mapping of ``step`` in ``config``."""
    steps = config.setdefault("steps", {})
    return steps.setdefault(step, {}).setdefault("parameters", {})


def apply_data_override(config: dict[str, Any], data: str, schema: Path | None) -> None:
    """``--data``: a known dataset name, a dataset schema YAML, or a data file with ``--schema``."""
    params = step_parameters(config, "load_dataset")
    path = Path(data).expanduser()
    if path.suffix.lower() in DATA_FILE_SUFFIXES:
        if not path.is_file():
            raise ConfigError(f"data file not found: {data}")
        if schema is None:
            raise ConfigError(f"--data {data} needs --schema PATH: a dataset schema YAML describing its columns "
                              f"(see {DATASETS_DIR.relative_to(CONFIGS_DIR.parent)}/ for examples)")
        params["dataset"], params["data_path"] = str(schema.resolve()), str(path.resolve())
    elif path.suffix.lower() in {".yaml", ".yml"}:
        if not path.is_file():
            raise ConfigError(f"dataset schema not found: {data}")
        params["dataset"], params["data_path"] = str(path.resolve()), None
    elif (DATASETS_DIR / f"{data}.yaml").is_file():
        params["dataset"], params["data_path"] = data, None
    else:
        known = ", ".join(sorted(p.stem for p in DATASETS_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown data source '{data}': use one of {known}, a schema YAML, or a CSV/Parquet file")


def with_overrides(config: dict[str, Any], *, data: str | None = None, schema: Path | None = None,
                   rows: int | None = None, seed: int | None = None, no_cache: bool = False,
                   force_reason: str | None = None, target_stage: str | None = None) -> dict[str, Any]:
    """``force_reason``: ``--force --reason TEXT``, the promotion step may override the gate's
    re-check (recorded on the version). ``target_stage``: where a winning candidate goes
    (``staging``: the challenger of a live rollout; the closed loop sets it)."""
    resolved = copy.deepcopy(config)
    if target_stage is not None:
        step_parameters(resolved, "promote_model")["target_stage"] = target_stage
    if force_reason is not None:
        promotion = step_parameters(resolved, "promote_model")
        promotion["force"], promotion["force_reason"] = True, force_reason
    if data is not None:
        apply_data_override(resolved, data, schema)
    elif schema is not None:
        raise ConfigError("--schema goes with --data PATH")
    params = step_parameters(resolved, "load_dataset")
    if rows is not None:
        params["rows"] = rows
    if seed is not None:
        params["seed"] = seed
    if no_cache:
        resolved["enable_cache"] = False
    return resolved


def write_resolved(config: dict[str, Any], pipeline: str, paths: StatePaths) -> Path:
    """Keep the exact config of each run under ``$CHURNOPS_HOME/runs`` (and hand it to ZenML),
    with the container settings of ``pipeline`` (``configs/docker.yaml``) for remote orchestrators."""
    config = with_docker_settings(config, pipeline)
    folder = paths.home / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pipeline}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---------------------------------------------------------------- container settings

DOCKER_CONFIG = CONFIGS_DIR / "docker.yaml"


def load_docker_config() -> dict[str, Any]:
    config = load_config(DOCKER_CONFIG)
    if not isinstance(config.get("pipelines"), dict):
        raise ValueError(f"{DOCKER_CONFIG}: expected a mapping with 'defaults' and 'pipelines'")
    return config


def docker_settings(pipeline: str) -> dict[str, Any]:
    """``defaults`` merged with the block of ``pipeline`` (a run.py pipeline name)."""
    config = load_docker_config()
    if pipeline not in config["pipelines"]:
        raise KeyError(f"{DOCKER_CONFIG}: no container settings for pipeline '{pipeline}' "
                       f"(known: {', '.join(sorted(config['pipelines']))})")
    settings = copy.deepcopy(config.get("defaults") or {})
    for key, value in (config["pipelines"][pipeline] or {}).items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = copy.deepcopy(value)
    return settings


def with_docker_settings(run_config: dict[str, Any], pipeline: str) -> dict[str, Any]:
    """A copy of ``run_config`` carrying ``settings: docker:`` for ``pipeline``; settings the
    run config already declares win."""
    resolved = copy.deepcopy(run_config)
    declared = resolved.setdefault("settings", {}).get("docker") or {}
    resolved["settings"]["docker"] = {**docker_settings(pipeline), **declared}
    return resolved

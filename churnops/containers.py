"""DockerSettings of each pipeline, for remote orchestrators (``configs/docker.yaml``).

Kept in configuration so pipelines and steps stay stack-agnostic: a run config gets the
``settings: docker:`` block for its pipeline, which the local orchestrator ignores and a
remote orchestrator builds its image from.
"""

from __future__ import annotations

import copy
from typing import Any

from churnops.run_config import load_config
from churnops.settings import CONFIGS_DIR

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

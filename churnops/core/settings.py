"""Where churnops keeps its state, and the environment that isolates it.

Every piece of runtime state (ZenML config and store, MLflow backend, BentoML home,
inference logs) lives under one folder: ``$CHURNOPS_HOME``, by default ``.churnops/``
in the project root. Nothing is written to the user's home directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # churnops/core/settings.py
CONFIGS_DIR = PROJECT_ROOT / "configs"
DEFAULT_HOME = PROJECT_ROOT / ".churnops"

TELEMETRY_OFF = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


@dataclass(frozen=True)
class StatePaths:
    """Every location churnops writes to, derived from one home folder."""

    home: Path

    @property
    def zenml_config(self) -> Path:
        return self.home / "zenml"

    @property
    def artifact_store(self) -> Path:
        return self.home / "artifacts"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def inference_log_dir(self) -> Path:
        return self.home / "inference_log"

    @property
    def feedback_log(self) -> Path:
        return self.home / "feedback" / "feedback.parquet"

    @property
    def retraining_dir(self) -> Path:
        return self.home / "retraining"

    @property
    def erasure_audit_log(self) -> Path:
        return self.home / "audit" / "erasure.jsonl"

    @property
    def deployment_file(self) -> Path:
        return self.home / "deployment.json"

    @property
    def cache(self) -> Path:
        return self.home / "cache"


def state_paths(home: str | os.PathLike[str] | None = None) -> StatePaths:
    """Resolve the state folder: an explicit argument, ``$CHURNOPS_HOME`` or the default."""
    chosen = home or os.environ.get("CHURNOPS_HOME") or DEFAULT_HOME
    return StatePaths(Path(chosen).expanduser().resolve())


def environment(paths: StatePaths) -> dict[str, str]:
    """The environment variables that point every library at ``paths``."""
    return {
        **TELEMETRY_OFF,
        "CHURNOPS_HOME": str(paths.home),
        "ZENML_CONFIG_PATH": str(paths.zenml_config),
        # The ZenML repository (.zen, which pins the active stack of one store) lives in the
        # state folder, so two homes never fight over it; the code stays the source root.
        "ZENML_REPOSITORY_PATH": str(paths.home),
        "ZENML_CUSTOM_SOURCE_ROOT": str(PROJECT_ROOT),
        "BENTOML_HOME": str(paths.bentoml_home),
        "MLFLOW_TRACKING_URI": paths.mlflow_tracking_uri,
        # MLflow's sqlite store puts artifacts in ./mlruns of the working directory
        # unless its server artifact root is set; keep them under the state folder.
        "_MLFLOW_SERVER_ARTIFACT_ROOT": str(paths.mlflow_artifacts),
        "MPLCONFIGDIR": str(paths.cache / "matplotlib"),
        # `bentoml build` runs uv, which would otherwise cache in ~/.cache/uv.
        "UV_CACHE_DIR": str(paths.cache / "uv"),
    }


def configure_environment(home: str | os.PathLike[str] | None = None) -> StatePaths:
    """Point ZenML, MLflow and BentoML at the state folder and switch telemetry off.

    Must run before ``zenml``, ``mlflow`` or ``bentoml`` is imported: they read these
    variables once, at import time.
    """
    paths = state_paths(home)
    for folder in (paths.zenml_config, paths.mlflow_artifacts, paths.bentoml_home, paths.cache):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ.update(environment(paths))
    return paths


if __name__ == "__main__":
    # `eval "$(python -m churnops.core.settings)"` gives a shell the same isolated environment.
    import shlex

    for key, value in environment(state_paths()).items():
        print(f"export {key}={shlex.quote(value)}")

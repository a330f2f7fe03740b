"""Serving configuration: ``configs/serving.yaml`` plus a few environment overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from churnops.core.settings import CONFIGS_DIR, StatePaths

CONFIG_ENV = "CHURNOPS_SERVING_CONFIG"
LOG_SWITCH_ENV = "CHURNOPS_INFERENCE_LOG"
LOG_DIR_ENV = "CHURNOPS_INFERENCE_LOG_DIR"
DEFAULT_CONFIG = CONFIGS_DIR / "serving.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceOptions(_Strict):
    workers: int = Field(1, ge=1)
    timeout_seconds: float = Field(30, gt=0)
    access_log: bool = True

    def bentoml_options(self) -> dict[str, Any]:
        """Keyword arguments of ``@bentoml.service`` (the churn service and the benchmark's floor)."""
        return {"workers": self.workers, "traffic": {"timeout": self.timeout_seconds},
                "logging": {"access": {"enabled": self.access_log}}}


class Limits(_Strict):
    max_body_bytes: int = Field(64 * 2**20, ge=1024)
    max_predict_customers: int = Field(1000, ge=1)
    max_batch_rows: int = Field(100_000, ge=1)


class InferenceLogOptions(_Strict):
    enabled: bool = True
    directory: str | None = None
    flush_rows: int = Field(50_000, ge=1)
    flush_seconds: float = Field(2.0, gt=0)
    max_pending_rows: int = Field(1_000_000, ge=1)
    # buffered: answers do not wait for the log; durable: an answer waits until its record is
    # on disk (group commit; churnops/serving/inference_log.py).
    mode: Literal["buffered", "durable"] = "buffered"

    def resolved_directory(self, paths: StatePaths) -> Path:
        chosen = os.environ.get(LOG_DIR_ENV) or self.directory
        return Path(chosen).expanduser().resolve() if chosen else paths.inference_log_dir


class RetentionOptions(_Strict):
    """How long the inference log and the feedback log keep records (null: forever)."""

    retention_days: int | None = Field(None, ge=1)


class PseudonymOptions(_Strict):
    salt_env: str = "CHURNOPS_CUSTOMER_SALT"
    salt_file: str = "secrets/customer_salt"


class AuthOptions(_Strict):
    """Optional API key (bento/api_key_auth.py). With none configured the API is open."""

    # The accepted key(s), comma-separated while rotating; the service reads only this variable.
    key_env: str = Field("CHURNOPS_API_KEY", min_length=1)
    # Also require the key on /metrics (health probes and the docs page always stay open).
    protect_metrics: bool = False
    # On ZenML stacks the CLI that starts the service (churnops.platform.api_key) fills key_env from this
    # ZenML secret when the variable is unset; null: never look one up.
    zenml_secret: str | None = "churnops-api-key"
    zenml_secret_key: str = Field("api_key", min_length=1)


class DocsOptions(_Strict):
    """The Swagger UI page at ``/`` (bento/docs_page.py); ``/docs.json`` stays either way."""

    enabled: bool = True


class ServingConfig(_Strict):
    service: ServiceOptions = Field(default_factory=ServiceOptions)
    limits: Limits = Field(default_factory=Limits)
    inference_log: InferenceLogOptions = Field(default_factory=InferenceLogOptions)
    pseudonymisation: PseudonymOptions = Field(default_factory=PseudonymOptions)
    retention: RetentionOptions = Field(default_factory=RetentionOptions)
    auth: AuthOptions = Field(default_factory=AuthOptions)
    docs: DocsOptions = Field(default_factory=DocsOptions)


def load_serving_config(path: str | os.PathLike[str] | None = None) -> ServingConfig:
    """Read the serving config; ``CHURNOPS_INFERENCE_LOG=off`` switches the log off."""
    chosen = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    data = yaml.safe_load(chosen.read_text()) if chosen.is_file() else {}
    config = ServingConfig.model_validate(data or {})
    switch = os.environ.get(LOG_SWITCH_ENV, "").strip().lower()
    if switch in {"off", "false", "0", "no"}:
        config.inference_log.enabled = False
    elif switch in {"on", "true", "1", "yes"}:
        config.inference_log.enabled = True
    return config

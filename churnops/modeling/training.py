"""Model candidates, the preprocessing + estimator Pipeline, search and threshold tuning.

One sklearn ``Pipeline`` (ColumnTransformer + estimator) is fitted once on the training
split and reused unchanged at serving. The decision threshold is tuned on out-of-fold
probabilities of the training split, never on the test set.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import f1_score, precision_recall_curve
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churnops.data.schema import DatasetSchema
from churnops.modeling.targeting import TargetingConfig, best_value_threshold, customer_values, value_column

SelectionMetric = Literal["roc_auc", "average_precision", "f1", "neg_log_loss", "neg_brier_score"]


class CandidateSpec(BaseModel):
    """An estimator class by import path, fixed parameters and a small search grid."""

    model_config = ConfigDict(extra="forbid")

    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, list[Any]] = Field(default_factory=dict)


class TrainingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidates: dict[str, CandidateSpec] = Field(min_length=1)
    cv_folds: int = Field(5, ge=2)
    selection_metric: SelectionMetric = "roc_auc"
    random_state: int = 42
    n_jobs: int = 1
    # Search and threshold tuning use a stratified sample of at most this many rows; the
    # chosen pipeline is then fitted once on the whole training split. Keeps 1M rows tractable.
    search_sample_rows: int = Field(50_000, ge=100)


class CandidateResult(BaseModel):
    name: str
    best_params: dict[str, Any]
    cv_score: float
    cv_score_std: float
    fit_seconds: float


class SearchSummary(BaseModel):
    selection_metric: str
    cv_folds: int
    search_rows: int = 0
    train_rows: int = 0
    chosen: str
    threshold: float
    threshold_cv_f1: float
    candidates: list[CandidateResult]
    # Value-based targeting (when configured): the cut-off maximising realised net gain on the
    # same out-of-fold probabilities, that gain, and the targeting config it was tuned for.
    value_threshold: float | None = None
    value_threshold_cv_net_gain: float | None = None
    targeting: TargetingConfig | None = None
    value_column: str | None = None

    @property
    def chosen_result(self) -> CandidateResult:
        return next(c for c in self.candidates if c.name == self.chosen)


def import_estimator(path: str) -> type[BaseEstimator]:
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"estimator must be a full import path such as "
                         f"'sklearn.linear_model.LogisticRegression', got '{path}'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import estimator '{path}': {error}") from error


def build_preprocessor(schema: DatasetSchema) -> ColumnTransformer:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="most_frequent")),
        # Unknown categories at serving time encode as all-zeros instead of failing.
        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    return ColumnTransformer(
        [("numeric", numeric, schema.numeric_names), ("categorical", categorical, schema.categorical_names)],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def build_pipeline(schema: DatasetSchema, candidate: CandidateSpec, random_state: int) -> Pipeline:
    estimator_cls = import_estimator(candidate.estimator)
    params = dict(candidate.params)
    if "random_state" in estimator_cls().get_params():
        params.setdefault("random_state", random_state)
    return Pipeline([("preprocess", build_preprocessor(schema)), ("model", estimator_cls(**params))])


def best_f1_threshold(y_true: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """The probability cut-off that maximises F1, and that F1."""
    precision, recall, thresholds = precision_recall_curve(y_true, probabilities)
    f1 = np.divide(2 * precision * recall, precision + recall,
                   out=np.zeros_like(precision), where=(precision + recall) > 0)[:-1]
    if thresholds.size == 0:
        return 0.5, float(f1_score(y_true, probabilities >= 0.5, zero_division=0))
    best = int(np.nanargmax(f1))
    return float(thresholds[best]), float(f1[best])


def search_candidates(
    features: pd.DataFrame, target: pd.Series, schema: DatasetSchema, spec: TrainingSpec,
    targeting: TargetingConfig | None = None,
) -> tuple[Pipeline, SearchSummary]:
    """Grid-search each candidate with stratified CV, pick the best, tune its thresholds (F1, and
    net gain when ``targeting`` is given)."""
    all_features, all_target = features, target
    if len(features) > spec.search_sample_rows:
        features, _, target, _ = train_test_split(features, target, train_size=spec.search_sample_rows,
                                                  stratify=target, random_state=spec.random_state)
    folds = StratifiedKFold(n_splits=spec.cv_folds, shuffle=True, random_state=spec.random_state)
    results: list[CandidateResult] = []
    best_pipeline: Pipeline | None = None
    best_score = -np.inf
    for name, candidate in spec.candidates.items():
        pipeline = build_pipeline(schema, candidate, spec.random_state)
        grid = {f"model__{k}": v for k, v in candidate.search.items()} or [{}]
        started = time.perf_counter()
        search = GridSearchCV(pipeline, grid, scoring=spec.selection_metric, cv=folds,
                              n_jobs=spec.n_jobs, refit=False, error_score="raise")
        search.fit(features, target)
        best = search.best_index_
        results.append(CandidateResult(
            name=name,
            best_params={k.removeprefix("model__"): _plain(v) for k, v in search.best_params_.items()},
            cv_score=float(search.cv_results_["mean_test_score"][best]),
            cv_score_std=float(search.cv_results_["std_test_score"][best]),
            fit_seconds=round(time.perf_counter() - started, 3),
        ))
        if results[-1].cv_score > best_score:
            best_score = results[-1].cv_score
            best_pipeline = clone(pipeline).set_params(**search.best_params_)
    assert best_pipeline is not None
    chosen = max(results, key=lambda r: r.cv_score).name
    out_of_fold = cross_val_predict(best_pipeline, features, target, cv=folds,
                                    method="predict_proba", n_jobs=spec.n_jobs)[:, 1]
    threshold, threshold_f1 = best_f1_threshold(target.to_numpy(), out_of_fold)
    value_tuning: dict[str, Any] = {}
    if targeting is not None:
        value_threshold, cv_net_gain = best_value_threshold(
            target.to_numpy(), out_of_fold, customer_values(features, targeting, schema), targeting)
        value_tuning = {"value_threshold": value_threshold, "value_threshold_cv_net_gain": cv_net_gain,
                        "targeting": targeting, "value_column": value_column(targeting, schema)}
    best_pipeline.fit(all_features, all_target)
    return best_pipeline, SearchSummary(
        selection_metric=spec.selection_metric, cv_folds=spec.cv_folds, chosen=chosen,
        search_rows=len(features), train_rows=len(all_features),
        threshold=threshold, threshold_cv_f1=threshold_f1, candidates=results, **value_tuning,
    )


def _plain(value: Any) -> Any:
    """numpy scalars to Python, so summaries serialise as JSON."""
    return value.item() if isinstance(value, np.generic) else value

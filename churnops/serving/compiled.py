"""A fast, exact inference path for the fitted sklearn ``Pipeline``.

``Pipeline.predict_proba`` on one row costs milliseconds, nearly all of it pandas and
sklearn input checking; the arithmetic is microseconds. The request contract has already
checked every value, so this module reads the fitted parameters of the *same* Pipeline
(imputer statistics, scaler moments, one-hot categories, the estimator) and evaluates them
on numpy arrays directly:

* preprocessing: ``ColumnTransformer`` of ``SimpleImputer`` / ``StandardScaler`` /
  ``OneHotEncoder`` steps (what ``churnops.modeling.training`` builds);
* estimators: ``LogisticRegression`` (binary), forests and single trees (sklearn's own
  compiled tree evaluation), ``HistGradientBoostingClassifier`` (its own predictors); any
  other classifier gets the compiled preprocessing and its own ``predict_proba``.

:func:`compile_pipeline` verifies the result against ``pipeline.predict_proba`` on generated
rows before it is used and falls back to the plain pipeline (with a reason) otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churnops.data.schema import DatasetSchema
from churnops.serving.contract import FeatureBatch

logger = logging.getLogger(__name__)

PARITY_ROWS = 512
PARITY_TOLERANCE = 1e-9


class Unsupported(Exception):
    """The pipeline has a part this module does not evaluate itself."""


@dataclass
class _NumericBlock:
    columns: np.ndarray  # indices into FeatureBatch.numeric
    fill: np.ndarray | None
    mean: np.ndarray | None
    scale: np.ndarray | None
    offset: int

    def write(self, numeric: np.ndarray, out: np.ndarray) -> None:
        block = numeric[:, self.columns]
        if self.fill is not None:
            missing = np.isnan(block)
            if missing.any():
                block = np.where(missing, self.fill, block)
        if self.mean is not None:
            block = block - self.mean
        if self.scale is not None:
            block = block / self.scale
        out[:, self.offset:self.offset + block.shape[1]] = block


@dataclass
class _CategoricalBlock:
    column: int  # index into FeatureBatch.codes
    # schema category code (+1, so null is 0) -> output column, -1 when it encodes as all zeros
    target: np.ndarray


class CompiledTransform:
    """``ColumnTransformer.transform`` on validated arrays."""

    def __init__(self, preprocessor: ColumnTransformer, schema: DatasetSchema) -> None:
        if not isinstance(preprocessor, ColumnTransformer):
            raise Unsupported(f"preprocessing step is {type(preprocessor).__name__}, not a ColumnTransformer")
        if preprocessor.remainder != "drop" or getattr(preprocessor, "sparse_output_", False):
            raise Unsupported("ColumnTransformer with a remainder or sparse output")
        numeric_index = {n: i for i, n in enumerate(schema.numeric_names)}
        categorical_index = {n: i for i, n in enumerate(schema.categorical_names)}
        categories = {f.name: list(f.categories) for f in schema.categorical}
        self.numeric: list[_NumericBlock] = []
        self.categorical: list[_CategoricalBlock] = []
        offset = 0
        for name, transformer, columns in preprocessor.transformers_:
            if transformer == "drop" or name == "remainder":
                continue
            columns = list(columns)
            steps = transformer.steps if isinstance(transformer, Pipeline) else [(name, transformer)]
            if all(c in numeric_index for c in columns):
                offset += self._numeric_block(steps, [numeric_index[c] for c in columns], offset)
            elif all(c in categorical_index for c in columns):
                for position, column in enumerate(columns):
                    width = self._categorical_block(steps, position, categorical_index[column],
                                                    categories[column], offset)
                    offset += width
            else:
                raise Unsupported(f"transformer '{name}' mixes numeric and categorical columns")
        self.width = offset
        # All one-hot columns in one fancy-indexing pass: a few numpy calls per batch instead of
        # five per categorical column (numpy's per-call cost dominates a one-row request).
        depth = max((len(block.target) for block in self.categorical), default=0)
        self._targets = np.full((len(self.categorical), depth), -1, dtype=np.intp)
        for i, block in enumerate(self.categorical):
            self._targets[i, :len(block.target)] = block.target
        self._code_columns = np.asarray([block.column for block in self.categorical], dtype=np.intp)
        self._block_index = np.arange(len(self.categorical))

    def _numeric_block(self, steps: list, columns: list[int], offset: int) -> int:
        fill = mean = scale = None
        for step_name, step in steps:
            if isinstance(step, SimpleImputer) and mean is None and scale is None and fill is None:
                if step.add_indicator or np.isnan(step.statistics_.astype(float)).any():
                    raise Unsupported(f"imputer '{step_name}' adds indicators or drops empty columns")
                fill = step.statistics_.astype(np.float64)
            elif isinstance(step, StandardScaler) and mean is None and scale is None:
                mean = step.mean_ if step.with_mean else None
                scale = step.scale_ if step.with_std else None
            else:
                raise Unsupported(f"numeric step '{step_name}' ({type(step).__name__})")
        self.numeric.append(_NumericBlock(np.asarray(columns), fill, mean, scale, offset))
        return len(columns)

    def _categorical_block(self, steps: list, position: int, column: int, schema_categories: list[str],
                           offset: int) -> int:
        fill: str | None = None
        encoder: OneHotEncoder | None = None
        for step_name, step in steps:
            if isinstance(step, SimpleImputer) and fill is None and encoder is None:
                if step.add_indicator:
                    raise Unsupported(f"imputer '{step_name}' adds indicators")
                fill = step.statistics_[position]
            elif isinstance(step, OneHotEncoder) and encoder is None:
                encoder = step
            else:
                raise Unsupported(f"categorical step '{step_name}' ({type(step).__name__})")
        if encoder is None:
            raise Unsupported("categorical columns without a OneHotEncoder")
        if (encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False)
                or encoder.handle_unknown not in ("ignore", "infrequent_if_exist")):
            raise Unsupported("OneHotEncoder with drop, infrequent categories or handle_unknown='error'")
        learned = {value: i for i, value in enumerate(encoder.categories_[position])}
        target = np.full(len(schema_categories) + 1, -1, dtype=np.intp)
        for code, value in enumerate(schema_categories):
            if value in learned:
                target[code + 1] = offset + learned[value]
        if fill is not None and fill in learned:
            target[0] = offset + learned[fill]
        elif fill is None and any(isinstance(v, float) and np.isnan(v) for v in learned):
            raise Unsupported("OneHotEncoder learned a missing-value category")
        self.categorical.append(_CategoricalBlock(column, target))
        return len(encoder.categories_[position])

    def __call__(self, batch: FeatureBatch) -> np.ndarray:
        out = np.zeros((len(batch), self.width), dtype=np.float64)
        for block in self.numeric:
            block.write(batch.numeric, out)
        if self.categorical:
            columns = self._targets[self._block_index, batch.codes[:, self._code_columns] + 1]
            flat = np.arange(0, out.size, self.width)[:, None] + columns  # positions in out's C-order data
            out.reshape(-1)[flat[columns >= 0]] = 1.0
        return out


# ------------------------------------------------------------------------------------- estimators


def _positive_column(estimator: object) -> int:
    classes = list(getattr(estimator, "classes_", []))
    if len(classes) != 2:
        raise Unsupported(f"estimator has classes {classes}, not a binary 0/1 target")
    return classes.index(1) if 1 in classes else 1


def _logistic(estimator: object) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is not LogisticRegression or estimator.coef_.shape[0] != 1:
        raise Unsupported("not a binary LogisticRegression")
    coef = np.ascontiguousarray(estimator.coef_[0], dtype=np.float64)
    intercept = float(estimator.intercept_[0])
    positive = _positive_column(estimator)

    def positive_probability(x: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(x @ coef + intercept)))
        return p if positive == 1 else 1.0 - p

    return positive_probability


def _trees(estimator: object) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    if type(estimator) in (DecisionTreeClassifier, ExtraTreeClassifier):
        trees = [estimator]
    elif type(estimator) in (RandomForestClassifier, ExtraTreesClassifier):
        trees = list(estimator.estimators_)
    else:
        raise Unsupported("not a tree or forest classifier")
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise Unsupported("multi-output trees")
    positive = _positive_column(estimator)
    # Each tree's own compiled evaluation, without per-call input validation (what
    # DecisionTreeClassifier.predict_proba(X, check_input=False) does after its checks).
    evaluators = [tree.tree_.predict for tree in trees]
    n_classes = 2

    def positive_probability(x: np.ndarray) -> np.ndarray:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        total = np.zeros((x32.shape[0], n_classes), dtype=np.float64)
        for evaluate in evaluators:
            total += evaluate(x32)[:, :n_classes]
        total /= len(evaluators)
        return total[:, positive]

    return positive_probability


def _hist_gradient_boosting(estimator: object) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    if type(estimator) is not HistGradientBoostingClassifier:
        raise Unsupported("not a HistGradientBoostingClassifier")
    if estimator.n_trees_per_iteration_ != 1 or getattr(estimator, "_preprocessor", None) is not None:
        raise Unsupported("multiclass or native-categorical HistGradientBoosting")
    positive = _positive_column(estimator)
    baseline = estimator._baseline_prediction
    predictors = estimator._predictors
    loss = estimator._loss
    # The same evaluation HistGradientBoostingClassifier._raw_predict runs after validating X;
    # one thread: a request is a few rows, OpenMP start-up would cost more than it saves.
    iterate = partial(estimator._predict_iterations, predictors=predictors, is_binned=False, n_threads=1)

    def positive_probability(x: np.ndarray) -> np.ndarray:
        raw = np.zeros((x.shape[0], 1), dtype=baseline.dtype, order="F")
        raw += baseline
        iterate(np.ascontiguousarray(x, dtype=np.float64), raw_predictions=raw)
        return loss.predict_proba(raw)[:, positive]

    return positive_probability


def _estimator_predict_proba(estimator: object) -> Callable[[np.ndarray], np.ndarray]:
    if not hasattr(estimator, "predict_proba"):
        raise Unsupported(f"{type(estimator).__name__} has no predict_proba")
    positive = _positive_column(estimator)
    return lambda x: estimator.predict_proba(x)[:, positive]


HEADS: list[tuple[str, Callable[[object], Callable[[np.ndarray], np.ndarray]]]] = [
    ("logistic", _logistic),
    ("trees", _trees),
    ("hist_gradient_boosting", _hist_gradient_boosting),
    ("estimator.predict_proba", _estimator_predict_proba),
]


# --------------------------------------------------------------------------------------- scorers


class Scorer:
    """Positive-class probabilities for a :class:`FeatureBatch`."""

    path: str = ""

    def __call__(self, batch: FeatureBatch) -> np.ndarray:
        raise NotImplementedError


class CompiledScorer(Scorer):
    def __init__(self, transform: CompiledTransform, head: Callable[[np.ndarray], np.ndarray], path: str) -> None:
        self.transform = transform
        self.head = head
        self.path = path

    def __call__(self, batch: FeatureBatch) -> np.ndarray:
        return self.head(self.transform(batch))


class PipelineScorer(Scorer):
    """The plain ``pipeline.predict_proba`` on a DataFrame shaped like the training data."""

    def __init__(self, pipeline: Pipeline, schema: DatasetSchema, reason: str) -> None:
        self.pipeline = pipeline
        self.schema = schema
        self.categories = [np.array([*f.categories, None], dtype=object) for f in schema.categorical]
        self.positive = _positive_column(pipeline)
        self.path = f"sklearn Pipeline.predict_proba ({reason})"

    def frame(self, batch: FeatureBatch) -> pd.DataFrame:
        return batch_frame(batch, self.schema, self.categories)

    def __call__(self, batch: FeatureBatch) -> np.ndarray:
        return self.pipeline.predict_proba(self.frame(batch))[:, self.positive]


def batch_frame(batch: FeatureBatch, schema: DatasetSchema,
                categories: list[np.ndarray] | None = None) -> pd.DataFrame:
    """The features as the training pipeline saw them: float columns, canonical categories
    (object, NaN for null)."""
    if categories is None:
        categories = [np.array([*f.categories, None], dtype=object) for f in schema.categorical]
    data: dict[str, object] = {n: batch.numeric[:, i] for i, n in enumerate(schema.numeric_names)}
    for j, name in enumerate(schema.categorical_names):
        values = categories[j][batch.codes[:, j]]  # code -1 picks the trailing None
        data[name] = pd.Series(values, dtype=object).where(pd.notna(values), np.nan)
    return pd.DataFrame(data, columns=schema.feature_names)


def sample_batch(schema: DatasetSchema, rows: int = PARITY_ROWS, seed: int = 0,
                 missing_share: float = 0.08) -> FeatureBatch:
    """Rows spanning the schema's ranges and categories, with some nulls, for parity checks."""
    rng = np.random.default_rng(seed)
    numeric = np.empty((rows, len(schema.numeric)), dtype=np.float64)
    for i, feature in enumerate(schema.numeric):
        low = 0.0 if feature.min is None else feature.min
        high = low + 1000.0 if feature.max is None else feature.max
        # Mostly the low end of the range, where real values live, plus the extremes.
        values = low + (high - low) * rng.beta(0.7, 4.0, rows)
        values[:2] = [low, high]
        if feature.kind == "int":
            values = np.round(values)
        values[rng.random(rows) < missing_share] = np.nan
        numeric[:, i] = values
    codes = np.empty((rows, len(schema.categorical)), dtype=np.int32)
    for j, feature in enumerate(schema.categorical):
        column = rng.integers(0, len(feature.categories), rows)
        column[rng.random(rows) < missing_share] = -1
        codes[:, j] = column
    return FeatureBatch(numeric=numeric, codes=codes, customer_ids=None, request_ids=[None] * rows)


def compile_pipeline(pipeline: Pipeline, schema: DatasetSchema, tolerance: float = PARITY_TOLERANCE) -> Scorer:
    """The fastest scorer that reproduces ``pipeline.predict_proba`` within ``tolerance``."""
    reference = PipelineScorer(pipeline, schema, "reference")
    probe = sample_batch(schema)
    try:
        expected = reference(probe)
    except ValueError:
        # A pipeline that cannot impute: compare on complete rows only.
        probe = sample_batch(schema, missing_share=0.0)
        expected = reference(probe)
    try:
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            raise Unsupported("not a two-step (preprocess, estimator) Pipeline")
        transform = CompiledTransform(pipeline.steps[0][1], schema)
    except Unsupported as why:
        logger.warning("compiled inference unavailable, using the plain pipeline: %s", why)
        return PipelineScorer(pipeline, schema, f"fallback: {why}")
    estimator = pipeline.steps[-1][1]
    reasons: list[str] = []
    for name, build in HEADS:
        try:
            scorer = CompiledScorer(transform, build(estimator), f"compiled {type(estimator).__name__} ({name})")
            got = scorer(probe)
        except Unsupported as why:
            reasons.append(f"{name}: {why}")
            continue
        except Exception as error:  # a private sklearn API moved: fall through, never serve it
            reasons.append(f"{name}: {type(error).__name__}: {error}")
            continue
        worst = float(np.max(np.abs(got - expected))) if len(got) == len(expected) else np.inf
        if worst <= tolerance:
            logger.info("inference path: %s (max |diff| %.2e on %d rows)", scorer.path, worst, len(expected))
            return scorer
        reasons.append(f"{name}: parity {worst:.2e} > {tolerance:.0e}")
    logger.warning("compiled inference failed its parity check, using the plain pipeline: %s", "; ".join(reasons))
    return PipelineScorer(pipeline, schema, "fallback: " + "; ".join(reasons))

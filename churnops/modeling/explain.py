"""Reason codes: why a customer is at risk, per original (business) feature.

:func:`explainer_for` reads the fitted ``Pipeline(ColumnTransformer, estimator)`` that training
builds and returns an :class:`Explainer` whose contributions add up, with a base value, to the
model's own output for every row:

* **linear models** (``LogisticRegression``): exact, in log-odds. Contribution of transformed
  column j = ``coef_j * (x_j - reference_j)``; base = ``intercept + coef . reference``; base +
  all contributions == ``decision_function`` (the logit).
* **tree ensembles** (``RandomForestClassifier``, ``HistGradientBoostingClassifier``, single
  trees, extra trees): TreeSHAP (``shap.TreeExplainer``, path-dependent, exact Shapley values
  of the tree model). Random forests are explained in probability (their output is an average
  of leaf probabilities, so only probability is additive); gradient boosting in log-odds.

One-hot columns are summed back to their categorical feature, so a reason reads
``contract_type = Month-to-month``, never ``contract_type_Month-to-month`` or ``x3_1``.

The linear reference point ("an average customer"), chosen so that batch scoring and the
service, which has only the fitted pipeline and the schema, explain identically:
each numeric feature at its training mean (the fitted ``StandardScaler``'s ``mean_``, else the
imputer's median) and each categorical feature at the average of its categories, equal weights
(the fitted encoder keeps no category frequencies). Passing ``background`` (rows of raw
features, e.g. a training sample) uses that sample's transformed column means instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churnops.data.schema import DatasetSchema

if TYPE_CHECKING:
    from collections.abc import Callable

LINEAR_METHOD = "linear-exact-log-odds"
TREE_SHAP_LOG_ODDS = "tree-shap-path-dependent-log-odds"
TREE_SHAP_PROBABILITY = "tree-shap-path-dependent-probability"
MISSING_LABEL = "missing"
# Numeric values in labels: enough digits for charges (70.35), no float noise (70.350000001).
NUMBER_FORMAT = ".6g"


class ExplanationError(ValueError):
    """The pipeline or the rows cannot be explained; the message says which part and why."""


@dataclass(frozen=True)
class ReasonArrays:
    """Top-k reasons per row, vectorised for millions of rows.

    ``labels``: (n, k) object, e.g. ``"contract_type = Month-to-month"``, ``""`` where none;
    ``contributions``: (n, k) float in the explainer's units, > 0 (pushes risk up), NaN where none,
    largest first; ``base_value``: the model output of the reference (scalar for linear and tree
    models); ``features``: (n, k) object, the feature name of each reason, ``""`` where none.
    """

    labels: np.ndarray
    contributions: np.ndarray
    base_value: float | np.ndarray
    features: np.ndarray

    def row(self, i: int) -> list[dict[str, Any]]:
        """Row ``i``'s reasons as JSON-ready dicts (``feature``, ``label``, ``contribution``)."""
        return [{"feature": f, "label": label, "contribution": float(c)}
                for f, label, c in zip(self.features[i], self.labels[i], self.contributions[i], strict=True)
                if label]

    def rows(self) -> list[list[dict[str, Any]]]:
        return [self.row(i) for i in range(self.labels.shape[0])]


# --------------------------------------------------------------------------------- feature layout


@dataclass(frozen=True)
class _Layout:
    """Which transformed columns belong to which original feature, and how to label values."""

    features: list[str]          # original feature names, in transformed-column order of first use
    starts: np.ndarray           # first transformed column of each feature (contiguous blocks)
    width: int                   # number of transformed columns
    numeric: dict[str, int]      # numeric feature -> index in ``features``
    categories: dict[str, list[Any]]  # categorical feature -> encoder categories (its columns, in order)
    kinds: dict[str, str]        # numeric feature -> "int" | "float" (schema), for label formatting
    reference: dict[str, Any]    # raw reference value per feature for the linear base (see module doc)
    # numeric feature -> (imputer fill, scaler mean, scaler scale), each None when that step is absent
    numeric_steps: dict[str, tuple[float | None, float | None, float | None]]
    category_fill: dict[str, Any]  # categorical feature -> imputer fill (None: no imputer)


def _layout(preprocessor: ColumnTransformer, schema: DatasetSchema) -> _Layout:
    if not isinstance(preprocessor, ColumnTransformer):
        raise ExplanationError(f"the pipeline's first step is {type(preprocessor).__name__}, "
                               "not a ColumnTransformer: cannot map its columns back to features")
    features: list[str] = []
    starts: list[int] = []
    categories: dict[str, list[Any]] = {}
    reference: dict[str, Any] = {}
    numeric_steps: dict[str, tuple[float | None, float | None, float | None]] = {}
    category_fill: dict[str, Any] = {}
    offset = 0
    for name, transformer, columns in preprocessor.transformers_:
        if name == "remainder" or transformer == "drop" or len(columns) == 0:
            continue
        if transformer == "passthrough":
            raise ExplanationError(f"transformer '{name}' passes columns through: not supported")
        steps = transformer.steps if isinstance(transformer, Pipeline) else [(name, transformer)]
        encoder = next((s for _, s in steps if isinstance(s, OneHotEncoder)), None)
        imputer = next((s for _, s in steps if isinstance(s, SimpleImputer)), None)
        scaler = next((s for _, s in steps if isinstance(s, StandardScaler)), None)
        unknown = [type(s).__name__ for _, s in steps if not isinstance(s, OneHotEncoder | SimpleImputer
                                                                            | StandardScaler)]
        if unknown or (imputer is not None and imputer.add_indicator):
            raise ExplanationError(f"transformer '{name}' has steps {unknown or ['SimpleImputer(add_indicator)']}: "
                                   "only SimpleImputer, StandardScaler and OneHotEncoder map back to features")
        for position, column in enumerate(columns):
            features.append(column)
            starts.append(offset)
            if encoder is not None:
                if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
                    raise ExplanationError(f"OneHotEncoder in '{name}' drops or groups categories: not supported")
                learned = list(encoder.categories_[position])
                categories[column] = learned
                reference[column] = None  # the equal-weight average over categories, see _linear_reference
                category_fill[column] = None if imputer is None else imputer.statistics_[position]
                offset += len(learned)
            else:
                numeric_steps[column] = (
                    None if imputer is None else float(imputer.statistics_[position]),
                    float(scaler.mean_[position]) if scaler is not None and scaler.with_mean else None,
                    float(scaler.scale_[position]) if scaler is not None and scaler.with_std else None)
                if scaler is not None and scaler.with_mean:
                    reference[column] = float(scaler.mean_[position])
                elif imputer is not None:
                    reference[column] = float(imputer.statistics_[position])
                else:
                    reference[column] = 0.0
                offset += 1
    kinds = {f.name: f.kind for f in schema.numeric}
    missing = sorted(set(schema.feature_names) - set(features))
    if missing:
        raise ExplanationError(f"the pipeline does not use schema feature(s) {missing}")
    numeric = {f: i for i, f in enumerate(features) if f not in categories}
    return _Layout(features, np.asarray(starts, dtype=np.intp), offset, numeric, categories, kinds, reference,
                   numeric_steps, category_fill)


# ------------------------------------------------------------------------------------ transform

Features = pd.DataFrame | Mapping[str, np.ndarray]


def _numbers(values: Any) -> np.ndarray:
    """A column as float64 with NaN for missing (also pandas' nullable Int64 / pd.NA)."""
    if isinstance(values, pd.Series | pd.Index):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(values, dtype=np.float64)


def _objects(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index):
        return values.to_numpy(dtype=object)
    return np.asarray(values, dtype=object)


def _codes(values: np.ndarray, learned: list[Any]) -> np.ndarray:
    """Index of each value in ``learned``; -1 for missing or a value not in it."""
    if len(values) > 256:  # pandas' hash table; a dict for a few rows (a request) is faster
        return pd.Categorical(values, categories=learned).codes.astype(np.intp)
    lookup = {value: i for i, value in enumerate(learned)}
    return np.fromiter((lookup.get(v, -1) for v in values), dtype=np.intp, count=len(values))


def _numeric_column(layout: _Layout, feature: str, features: Features) -> np.ndarray:
    """One numeric feature through its imputer and scaler, with sklearn's floating-point operations."""
    fill, mean, scale = layout.numeric_steps[feature]
    column = _numbers(features[feature])
    if fill is not None:
        column = np.where(np.isnan(column), fill, column)
    if mean is not None:
        column = column - mean
    if scale is not None:
        column = column / scale
    return column


def _category_codes(layout: _Layout, feature: str, features: Features) -> np.ndarray:
    """Each row's one-hot column within the feature's block, after imputation; -1 encodes as all zeros."""
    values = _objects(features[feature])
    learned = layout.categories[feature]
    codes = _codes(values, learned)
    fill = layout.category_fill[feature]
    if fill is not None and fill in learned:
        unmatched = np.nonzero(codes < 0)[0]  # checking only these for null keeps 1M rows cheap
        if unmatched.size:
            codes[unmatched[pd.isna(values[unmatched])]] = learned.index(fill)
    return codes


def _fast_transform(layout: _Layout, features: Features) -> np.ndarray:
    """The fitted ColumnTransformer's output, computed from its parameters with the same floating-point
    operations (impute, ``x -= mean``, ``x /= scale``, one-hot); checked against it in explainer_for."""
    n = len(features[layout.features[0]])
    out = np.zeros((n, layout.width), dtype=np.float64)
    for index, feature in enumerate(layout.features):
        start = layout.starts[index]
        if feature in layout.numeric:
            out[:, start] = _numeric_column(layout, feature, features)
            continue
        codes = _category_codes(layout, feature, features)
        hit = np.nonzero(codes >= 0)[0]
        out[hit, start + codes[hit]] = 1.0  # unseen categories encode as all zeros (handle_unknown="ignore")
    return out


def _linear_by_feature(layout: _Layout, coef: np.ndarray, reference: np.ndarray
                       ) -> Callable[[Features], np.ndarray]:
    """Linear contributions per feature straight from the columns, no (n, one-hot width) matrix: a numeric
    feature's is ``coef * (x - ref)``; a category's is a table lookup, ``coef_c - coef . ref`` over its block
    (the one-hot sum, rearranged), with ``- coef . ref`` for a row that encodes as all zeros."""
    tables: dict[str, np.ndarray] = {}
    for index, feature in enumerate(layout.features):
        if feature in layout.categories:
            block = slice(layout.starts[index], layout.starts[index] + len(layout.categories[feature]))
            offset = float(coef[block] @ reference[block])
            tables[feature] = np.append(coef[block] - offset, -offset)  # code -1 -> the last entry

    def by_feature(features: Features) -> np.ndarray:
        n = len(features[layout.features[0]])
        out = np.empty((n, len(layout.features)), dtype=np.float64)
        for index, feature in enumerate(layout.features):
            if feature in tables:
                out[:, index] = tables[feature][_category_codes(layout, feature, features)]
            else:
                start = layout.starts[index]
                out[:, index] = (_numeric_column(layout, feature, features) - reference[start]) * coef[start]
        return out

    return by_feature


def _parity_rows(layout: _Layout, rows: int = 64) -> pd.DataFrame:
    """Rows around each feature's reference, with missing values and unseen categories."""
    rng = np.random.default_rng(0)
    data: dict[str, Any] = {}
    for feature in layout.features:
        if feature in layout.numeric:
            centre = float(layout.reference[feature])
            values = centre + rng.normal(0, 1 + abs(centre), rows)
            values[::7] = np.nan
            data[feature] = values
        else:
            learned = layout.categories[feature]
            values = np.array([learned[i % len(learned)] for i in range(rows)], dtype=object)
            values[3::9] = np.nan
            values[5::11] = "__unseen__"
            data[feature] = values
    return pd.DataFrame(data)


def _with_base(by_feature: Callable[[Features], np.ndarray], base: float
               ) -> Callable[[Features], tuple[np.ndarray, np.ndarray]]:
    def contributions(features: Features) -> tuple[np.ndarray, np.ndarray]:
        values = by_feature(features)
        return values, np.full(values.shape[0], base)

    return contributions


def _linear_reference(preprocessor: ColumnTransformer, layout: _Layout, schema: DatasetSchema) -> np.ndarray:
    """Transformed-column reference: numeric at the training mean, categories averaged equally."""
    one_row = pd.DataFrame({f: [layout.reference[f] if f in layout.numeric else np.nan] for f in layout.features})
    # Categorical columns get an arbitrary learned category here; overwritten below.
    for feature, learned in layout.categories.items():
        one_row[feature] = pd.Series([learned[0]], dtype=object)
    reference = np.asarray(preprocessor.transform(one_row[schema.feature_names]), dtype=np.float64)[0]
    for feature, learned in layout.categories.items():
        start = layout.starts[layout.features.index(feature)]
        reference[start:start + len(learned)] = 1.0 / len(learned)
    return reference


# ---------------------------------------------------------------------------------------- labels


class _Labeller:
    """Builds ``feature = value`` strings: once per (feature, category), per distinct number."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        self.category_labels = {
            f: np.array([f"{f} = {c}" for c in learned] + [f"{f} = {MISSING_LABEL}"], dtype=object)
            for f, learned in layout.categories.items()
        }

    def number(self, feature: str, value: float) -> str:
        if np.isnan(value):
            return f"{feature} = {MISSING_LABEL}"
        if self.layout.kinds.get(feature) == "int" and float(value).is_integer():
            return f"{feature} = {int(value)}"
        return f"{feature} = {format(float(value), NUMBER_FORMAT)}"

    def labels(self, features: Features, chosen: np.ndarray, present: np.ndarray) -> np.ndarray:
        """``chosen``: (n, k) feature indices; ``present``: (n, k) bool, where a reason exists."""
        out = np.full(chosen.shape, "", dtype=object)
        for index, feature in enumerate(self.layout.features):
            rows, slots = np.nonzero((chosen == index) & present)
            if rows.size == 0:
                continue
            if feature in self.layout.categories:
                out[rows, slots] = self._category_labels(feature, _objects(features[feature])[rows])
            else:
                numbers = _numbers(features[feature])[rows]
                distinct, inverse = np.unique(numbers, return_inverse=True)  # NaNs sort last, kept
                texts = np.array([self.number(feature, v) for v in distinct], dtype=object)
                out[rows, slots] = texts[inverse.ravel()]
        return out

    def _category_labels(self, feature: str, values: np.ndarray) -> np.ndarray:
        learned = self.layout.categories[feature]
        codes = _codes(values, learned)
        table = self.category_labels[feature]
        labels = table[np.where(codes >= 0, codes, len(learned))]
        # A value the encoder never saw (it encodes as all zeros): name it as sent.
        unseen = (codes < 0) & pd.notna(values)
        if unseen.any():
            labels[unseen] = [f"{feature} = {v}" for v in values[unseen]]
        return labels


# -------------------------------------------------------------------------------------- explainer


class Explainer:
    """Per-feature contributions and top-k reasons for one fitted pipeline.

    ``method`` names the algorithm and its output space (recorded on the model version as
    ``reasons_method``); ``units`` is ``"log-odds"`` or ``"probability"``.
    """

    def __init__(self, pipeline: Pipeline, schema: DatasetSchema, layout: _Layout, method: str, units: str,
                 column_contributions: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                 fast_transform: bool = False,
                 by_feature: Callable[[Features], tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.pipeline = pipeline
        self.schema = schema
        self.layout = layout
        self.method = method
        self.units = units
        self.features = list(layout.features)
        self._preprocessor = pipeline.steps[0][1]
        self._column_contributions = column_contributions
        self._labeller = _Labeller(layout)
        self._fast_transform = fast_transform
        self._by_feature = by_feature

    def transform(self, features: Features) -> np.ndarray:
        """The preprocessed matrix: a DataFrame, or a mapping of feature name -> column (the service's)."""
        missing = [c for c in self.schema.feature_names if c not in features]
        if missing:
            raise ExplanationError(f"rows to explain lack feature column(s) {missing}")
        if self._fast_transform:
            return _fast_transform(self.layout, features)
        frame = features if isinstance(features, pd.DataFrame) else pd.DataFrame(dict(features))
        matrix = np.asarray(self._preprocessor.transform(frame[self.schema.feature_names]), dtype=np.float64)
        if matrix.shape[1] != self.layout.width:
            raise ExplanationError(f"preprocessing produced {matrix.shape[1]} columns, expected {self.layout.width}")
        return matrix

    def contributions(self, features: Features) -> tuple[np.ndarray, np.ndarray]:
        """(n, n_features) contributions per original feature, in ``self.features`` order (one-hot
        columns summed back), and the base value of each row (n,)."""
        if self._by_feature is not None:
            missing = [c for c in self.schema.feature_names if c not in features]
            if missing:
                raise ExplanationError(f"rows to explain lack feature column(s) {missing}")
            return self._by_feature(features)
        by_column, base = self._column_contributions(self.transform(features))
        return np.add.reduceat(by_column, self.layout.starts, axis=1), base

    def top_reasons(self, features: Features, k: int = 3) -> ReasonArrays:
        """The ``k`` largest positive contributions per row, largest first."""
        if k < 1:
            raise ExplanationError(f"k must be at least 1, got {k}")
        by_feature, base = self.contributions(features)
        n, width = by_feature.shape
        take = min(k, width)
        # argpartition finds the top `take` columns in O(width) per row; only those get sorted.
        top = np.argpartition(-by_feature, take - 1, axis=1)[:, :take] if take < width else \
            np.broadcast_to(np.arange(width), (n, width)).copy()
        values = np.take_along_axis(by_feature, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        values = np.take_along_axis(values, order, axis=1)
        present = values > 0
        labels = self._labeller.labels(features, top, present)
        names = np.asarray(self.features, dtype=object)[top]
        names[~present] = ""
        contributions = np.where(present, values, np.nan)
        if take < k:  # fewer features than asked for: pad with "no reason"
            pad = k - take
            labels = np.pad(labels, ((0, 0), (0, pad)), constant_values="")
            names = np.pad(names, ((0, 0), (0, pad)), constant_values="")
            contributions = np.pad(contributions, ((0, 0), (0, pad)), constant_values=np.nan)
        base_value: float | np.ndarray = float(base[0]) if n and np.all(base == base[0]) else base
        return ReasonArrays(labels=labels, contributions=contributions, base_value=base_value, features=names)


def _positive_sign(estimator: Any) -> float:
    classes = list(getattr(estimator, "classes_", []))
    if len(classes) != 2:
        raise ExplanationError(f"{type(estimator).__name__} has classes {classes}: reasons need a binary model")
    # decision_function and SHAP's binary output are for classes_[1]; the positive class is 1.
    return 1.0 if classes[1] == 1 or 1 not in classes else -1.0


def _linear(estimator: Any, reference: np.ndarray) -> tuple[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                                                              np.ndarray, float]:
    """Contributions per transformed column, and the positive-class coefficients and base value."""
    sign = _positive_sign(estimator)
    coef = sign * np.asarray(estimator.coef_, dtype=np.float64).ravel()
    intercept = sign * float(np.ravel(estimator.intercept_)[0])
    if coef.shape[0] != reference.shape[0]:
        raise ExplanationError(f"{type(estimator).__name__} has {coef.shape[0]} coefficients for "
                               f"{reference.shape[0]} transformed columns")
    base = intercept + float(coef @ reference)

    def column_contributions(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (matrix - reference) * coef, np.full(matrix.shape[0], base)

    return column_contributions, coef, base


def _tree_shap(estimator: Any, background: np.ndarray | None) -> tuple[Callable[[np.ndarray], tuple[
        np.ndarray, np.ndarray]], str, str]:
    with warnings.catch_warnings():
        # shap 0.51 imports its plotting colours (matplotlib) and sets them with calls matplotlib
        # 3.11 marks as pending deprecation; nothing we can act on.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap  # imported only when a tree model is explained: ~2 s, numba and matplotlib

    sign = _positive_sign(estimator)
    boosted = type(estimator).__name__ in ("HistGradientBoostingClassifier", "GradientBoostingClassifier")
    if background is None:
        explainer = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
    else:
        explainer = shap.TreeExplainer(estimator, data=background, feature_perturbation="interventional")
    expected = np.ravel(np.asarray(explainer.expected_value, dtype=np.float64))

    def column_contributions(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # check_additivity: shap raises if its values do not sum to the model output.
        values = np.asarray(explainer.shap_values(matrix, check_additivity=True), dtype=np.float64)
        if values.ndim == 3:  # (n, columns, classes): the positive class
            values, base = values[:, :, 1 if sign > 0 else 0], expected[1 if sign > 0 else 0]
        else:  # one output: log-odds of classes_[1]
            values, base = sign * values, sign * expected[0]
        return values, np.full(matrix.shape[0], float(base))

    if boosted:
        return column_contributions, TREE_SHAP_LOG_ODDS, "log-odds"
    return column_contributions, TREE_SHAP_PROBABILITY, "probability"


TREE_ESTIMATORS = ("RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier",
                   "ExtraTreeClassifier", "HistGradientBoostingClassifier", "GradientBoostingClassifier")


def explainer_for(pipeline: Pipeline, schema: DatasetSchema, background: pd.DataFrame | None = None) -> Explainer:
    """The explainer of a fitted (preprocess, estimator) pipeline; see the module docstring."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise ExplanationError("reasons need a fitted two-step Pipeline (ColumnTransformer, estimator)")
    preprocessor, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    layout = _layout(preprocessor, schema)
    # Our own transform is used only if it reproduces sklearn's bit for bit (it skips its input checks:
    # most of the cost for a request's few rows, and a third of it for a million).
    probe = _parity_rows(layout)
    fast = bool(np.array_equal(_fast_transform(layout, probe),
                               np.asarray(preprocessor.transform(probe[schema.feature_names]), dtype=np.float64)))
    transformed_background = None
    if background is not None:
        if len(background) == 0:
            raise ExplanationError("the background sample is empty")
        missing = [c for c in schema.feature_names if c not in background.columns]
        if missing:
            raise ExplanationError(f"the background sample lacks feature column(s) {missing}")
        transformed_background = np.asarray(preprocessor.transform(background[schema.feature_names]),
                                            dtype=np.float64)
    name = type(estimator).__name__
    coef = getattr(estimator, "coef_", None)
    if coef is not None and np.ndim(coef) == 2 and np.shape(coef)[0] == 1 and hasattr(estimator, "intercept_"):
        from sklearn.linear_model import LogisticRegression

        if not isinstance(estimator, LogisticRegression):
            raise ExplanationError(f"{name} is linear but not a logistic model: its score is not a log-odds")
        reference = (transformed_background.mean(axis=0) if transformed_background is not None
                     else _linear_reference(preprocessor, layout, schema))
        column_contributions, coef, base = _linear(estimator, reference)
        by_feature = _linear_by_feature(layout, coef, reference) if fast else None
        return Explainer(pipeline, schema, layout, LINEAR_METHOD, "log-odds", column_contributions, fast,
                         None if by_feature is None else _with_base(by_feature, base))
    if name in TREE_ESTIMATORS:
        column_contributions, method, units = _tree_shap(estimator, transformed_background)
        return Explainer(pipeline, schema, layout, method, units, column_contributions, fast)
    raise ExplanationError(f"no exact reason-code method for {name}: supported are LogisticRegression and "
                           f"{', '.join(TREE_ESTIMATORS)}")


def reasons_method_checked(pipeline: Pipeline, schema: DatasetSchema, sample: pd.DataFrame) -> str:
    """The explainer's ``method`` after checking, on ``sample`` rows, that base + contributions
    reproduce the model output (log-odds or probability, per ``units``) to 1e-6; or
    ``"unavailable: <why>"`` when the model cannot be explained (training still succeeds)."""
    try:
        explainer = explainer_for(pipeline, schema)
        by_feature, base = explainer.contributions(sample)
    except ExplanationError as why:
        return f"unavailable: {why}"
    total = base + by_feature.sum(axis=1)
    expected = model_output(pipeline, sample[schema.feature_names], explainer.units)
    worst = float(np.max(np.abs(total - expected))) if len(sample) else 0.0
    if worst > 1e-6:
        raise ExplanationError(f"{explainer.method}: contributions miss the model output by {worst:.2e}")
    return explainer.method


def model_output(pipeline: Pipeline, features: pd.DataFrame, units: str) -> np.ndarray:
    """The positive-class output an explainer's contributions add up to: probability or log-odds."""
    sign = _positive_sign(pipeline.steps[-1][1])
    probability = pipeline.predict_proba(features)[:, 1 if sign > 0 else 0]
    if units == "probability":
        return probability
    if hasattr(pipeline, "decision_function"):
        return sign * pipeline.decision_function(features)
    with np.errstate(divide="ignore"):
        return np.log(probability) - np.log1p(-probability)

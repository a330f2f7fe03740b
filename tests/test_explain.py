"""Reason codes (churnops.modeling.explain): exact for linear models, TreeSHAP for trees."""

from __future__ import annotations

import copy
import re
import time

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from churnops.modeling.explain import (
    LINEAR_METHOD,
    TREE_SHAP_LOG_ODDS,
    TREE_SHAP_PROBABILITY,
    ExplanationError,
    explainer_for,
    model_output,
    reasons_method_checked,
)
from churnops.modeling.training import CandidateSpec, build_pipeline
from tests.support import clean_customers

LOGISTIC = CandidateSpec(estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 1000})
# What a reason label must look like: a schema feature, " = ", a value; never an encoded column name.
LABEL = re.compile(r"^(?P<feature>[a-z][a-z0-9_]*) = (?P<value>.+)$")


@pytest.fixture(scope="module")
def data():
    frame, schema = clean_customers(rows=3000, seed=5)
    return frame, schema


@pytest.fixture(scope="module")
def logistic(data):
    frame, schema = data
    return build_pipeline(schema, LOGISTIC, 0).fit(frame[schema.feature_names], frame[schema.target.column])


def rows(data, n: int = 1000) -> pd.DataFrame:
    frame, schema = data
    return frame[schema.feature_names].head(n).reset_index(drop=True)


def one_hot_columns(pipeline, feature: str) -> np.ndarray:
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    return np.array([i for i, name in enumerate(names) if name.startswith(f"{feature}_")])


def test_linear_base_plus_contributions_is_the_logit(data, logistic):
    _, schema = data
    features = rows(data)
    explainer = explainer_for(logistic, schema)
    by_feature, base = explainer.contributions(features)
    assert explainer.method == LINEAR_METHOD and explainer.units == "log-odds"
    assert explainer.features == schema.feature_names and by_feature.shape == (1000, len(schema.feature_names))
    np.testing.assert_allclose(base + by_feature.sum(axis=1), logistic.decision_function(features), rtol=0, atol=1e-9)
    # The reference ("an average customer"): numeric features at the training mean, categories averaged.
    model = logistic.named_steps["model"]
    coef = model.coef_[0]
    # Scaled numeric columns at their training mean are 0: only the categories' averages remain.
    expected_base = model.intercept_[0] + sum(coef[one_hot_columns(logistic, f)].mean()
                                              for f in schema.categorical_names)
    assert base[0] == pytest.approx(expected_base, abs=1e-12)
    assert explainer.top_reasons(features.head(3)).base_value == pytest.approx(expected_base, abs=1e-12)


def test_one_hot_columns_are_summed_back_to_their_feature(data, logistic):
    _, schema = data
    features = rows(data, 200)
    explainer = explainer_for(logistic, schema)
    by_feature, _ = explainer.contributions(features)
    transformed = logistic.named_steps["preprocess"].transform(features)
    coef = logistic.named_steps["model"].coef_[0]
    for feature in schema.categorical_names:
        columns = one_hot_columns(logistic, feature)
        reference = 1.0 / len(columns)
        expected = ((transformed[:, columns] - reference) * coef[columns]).sum(axis=1)
        np.testing.assert_allclose(by_feature[:, schema.feature_names.index(feature)], expected, atol=1e-12)


def test_a_feature_with_zero_coefficient_never_appears(data, logistic):
    _, schema = data
    silenced = copy.deepcopy(logistic)
    coef = silenced.named_steps["model"].coef_
    for feature in ("contract_type", "payment_method"):
        coef[0, one_hot_columns(silenced, feature)] = 0.0
    coef[0, schema.numeric_names.index("support_tickets")] = 0.0
    features = rows(data)
    # The original model does give them as reasons: the test can fail.
    assert {"contract_type", "payment_method", "support_tickets"} <= set(
        explainer_for(logistic, schema).top_reasons(features, k=5).features.ravel())
    reasons = explainer_for(silenced, schema).top_reasons(features, k=len(schema.feature_names))
    named = set(reasons.features.ravel()) - {""}
    assert named and not named & {"contract_type", "payment_method", "support_tickets"}
    by_feature, base = explainer_for(silenced, schema).contributions(features)
    np.testing.assert_allclose(base + by_feature.sum(axis=1), silenced.decision_function(features), atol=1e-9)


def test_top_reasons_are_the_largest_positive_contributions_in_business_terms(data, logistic):
    _, schema = data
    features = rows(data, 500)
    explainer = explainer_for(logistic, schema)
    by_feature, _ = explainer.contributions(features)
    reasons = explainer.top_reasons(features, k=3)
    assert reasons.labels.shape == reasons.contributions.shape == reasons.features.shape == (500, 3)
    for i in range(500):
        positive = sorted((v for v in by_feature[i] if v > 0), reverse=True)[:3]
        present = reasons.labels[i] != ""
        np.testing.assert_allclose(reasons.contributions[i][present], positive, atol=0)
        assert np.isnan(reasons.contributions[i][~present]).all() and (reasons.features[i][~present] == "").all()
        for feature, label in zip(reasons.features[i][present], reasons.labels[i][present], strict=True):
            match = LABEL.match(label)
            assert match and match["feature"] == feature, label
            value = features.at[i, feature]
            if feature in schema.categorical_names:
                assert match["value"] == value
            else:
                assert float(match["value"]) == pytest.approx(value, rel=1e-5)
    int_labels = [label for label in reasons.labels.ravel() if label.startswith("tenure_months = ")]
    assert int_labels and all(re.fullmatch(r"tenure_months = \d+", label) for label in int_labels)
    assert any(label == "contract_type = Month-to-month" for label in reasons.labels.ravel())
    assert reasons.row(0) == [{"feature": f, "label": la, "contribution": c}
                              for f, la, c in zip(reasons.features[0], reasons.labels[0], reasons.contributions[0],
                                                  strict=True) if la]


def test_missing_and_unseen_values_are_labelled_and_still_exact(data, logistic):
    _, schema = data
    features = rows(data, 4).copy()
    features["monthly_charges"] = np.nan
    features.loc[0, "contract_type"] = "Lifetime"  # the encoder never saw it: all zeros
    features.loc[1, "contract_type"] = np.nan  # imputed with the training mode
    explainer = explainer_for(logistic, schema)
    by_feature, base = explainer.contributions(features)
    np.testing.assert_allclose(base + by_feature.sum(axis=1), logistic.decision_function(features), atol=1e-9)
    reasons = explainer.top_reasons(features, k=len(schema.feature_names))
    labels = set(reasons.labels.ravel())
    contract = by_feature[:, schema.feature_names.index("contract_type")]
    if contract[0] > 0:
        assert "contract_type = Lifetime" in reasons.labels[0]
    if contract[1] > 0:
        assert "contract_type = missing" in reasons.labels[1]
    assert not {label for label in labels if label.startswith("monthly_charges = ")} - {"monthly_charges = missing"}


def test_more_reasons_asked_than_features_pads_with_none(data, logistic):
    _, schema = data
    reasons = explainer_for(logistic, schema).top_reasons(rows(data, 10), k=len(schema.feature_names) + 4)
    assert reasons.labels.shape == (10, len(schema.feature_names) + 4)
    assert (reasons.labels[:, -4:] == "").all() and np.isnan(reasons.contributions[:, -4:]).all()
    with pytest.raises(ExplanationError, match="k must be at least 1"):
        explainer_for(logistic, schema).top_reasons(rows(data, 2), k=0)


def test_a_background_sample_sets_the_reference(data, logistic):
    frame, schema = data
    background = frame[schema.feature_names].sample(500, random_state=1)
    explainer = explainer_for(logistic, schema, background=background)
    features = rows(data, 300)
    by_feature, base = explainer.contributions(features)
    model = logistic.named_steps["model"]
    means = logistic.named_steps["preprocess"].transform(background).mean(axis=0)
    assert base[0] == pytest.approx(model.intercept_[0] + model.coef_[0] @ means, abs=1e-12)
    np.testing.assert_allclose(base + by_feature.sum(axis=1), logistic.decision_function(features), atol=1e-9)
    with pytest.raises(ExplanationError, match=r"lacks feature column\(s\) \['age'\]"):
        explainer_for(logistic, schema, background=background.drop(columns=["age"]))


def test_bad_rows_and_unsupported_models_are_clear_errors(data, logistic):
    frame, schema = data
    with pytest.raises(ExplanationError, match=r"lack feature column\(s\) \['tenure_months'\]"):
        explainer_for(logistic, schema).top_reasons(rows(data, 5).drop(columns=["tenure_months"]))
    bayes = build_pipeline(schema, CandidateSpec(estimator="sklearn.naive_bayes.GaussianNB"), 0).fit(
        frame[schema.feature_names], frame[schema.target.column])
    with pytest.raises(ExplanationError, match="no exact reason-code method for GaussianNB"):
        explainer_for(bayes, schema)
    assert reasons_method_checked(bayes, schema, rows(data, 5)).startswith("unavailable: no exact reason-code")
    assert reasons_method_checked(logistic, schema, rows(data, 50)) == LINEAR_METHOD


@pytest.mark.parametrize(("estimator", "params", "method", "units"), [
    ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 15, "min_samples_leaf": 10},
     TREE_SHAP_PROBABILITY, "probability"),
    ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 20, "max_depth": 4, "early_stopping": False},
     TREE_SHAP_LOG_ODDS, "log-odds"),
])
def test_tree_shap_is_additive_in_the_models_output_space(data, estimator, params, method, units):
    frame, schema = data
    with threadpool_limits(1):  # OpenMP threads on a busy 2-core machine cost more than they save
        pipeline = build_pipeline(schema, CandidateSpec(estimator=estimator, params=params), 0).fit(
            frame[schema.feature_names], frame[schema.target.column])
    features = rows(data, 200)
    explainer = explainer_for(pipeline, schema)
    assert (explainer.method, explainer.units) == (method, units)
    by_feature, base = explainer.contributions(features)
    assert by_feature.shape == (200, len(schema.feature_names))
    # Random forest: base + contributions == P(churn); boosting: == its raw score, the log-odds.
    expected = model_output(pipeline, features, units)
    np.testing.assert_allclose(base + by_feature.sum(axis=1), expected, rtol=0, atol=1e-9)
    if units == "probability":
        np.testing.assert_allclose(expected, pipeline.predict_proba(features)[:, 1])
    else:
        probability = pipeline.predict_proba(features)[:, 1]
        np.testing.assert_allclose(expected, np.log(probability / (1 - probability)), atol=1e-9)
    reasons = explainer.top_reasons(features, k=3)
    labels = [label for label in reasons.labels.ravel() if label]
    assert labels and all(LABEL.match(label) and LABEL.match(label)["feature"] in schema.feature_names
                          for label in labels)
    assert (reasons.contributions[reasons.labels != ""] > 0).all()
    assert reasons_method_checked(pipeline, schema, features.head(20)) == method


def test_linear_reasons_cost_about_as_much_as_scoring(data, logistic):
    """1M rows run in ~15 s on one core (bench figures in the report); here a ratio on 200k rows."""
    _, schema = data
    big = pd.concat([rows(data, 2000)] * 100, ignore_index=True)
    explainer = explainer_for(logistic, schema)
    started = time.perf_counter()
    logistic.predict_proba(big)
    scoring = time.perf_counter() - started
    started = time.perf_counter()
    reasons = explainer.top_reasons(big, k=3)
    explaining = time.perf_counter() - started
    assert reasons.labels.shape == (200_000, 3)
    assert explaining < 4 * scoring, (explaining, scoring)


def test_the_own_transform_is_sklearns_bit_for_bit_and_the_sklearn_path_agrees(data, logistic):
    from churnops.modeling.explain import _fast_transform

    _, schema = data
    features = rows(data, 300).copy()
    features.loc[::5, "tenure_months"] = np.nan
    features.loc[::7, "payment_method"] = np.nan
    features.loc[::11, "service_plan"] = "Platinum"
    explainer = explainer_for(logistic, schema)
    assert explainer._fast_transform
    expected = logistic.named_steps["preprocess"].transform(features)
    assert np.array_equal(_fast_transform(explainer.layout, features), expected)
    fast, base = explainer.contributions(features)
    explainer._fast_transform, explainer._by_feature = False, None  # sklearn's transform, one-hot matrix summed
    slow, slow_base = explainer.contributions(features)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(base, slow_base)
    # Plain column arrays (what the service passes) explain like the DataFrame.
    columns = {name: features[name].to_numpy() for name in schema.feature_names}
    np.testing.assert_array_equal(explainer_for(logistic, schema).contributions(columns)[0], fast)

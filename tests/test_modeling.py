import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline

from churnops.modeling.training import CandidateSpec, TrainingSpec, best_f1_threshold, build_pipeline, search_candidates
from tests.support import clean_customers

LOGISTIC = CandidateSpec(estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 1000},
                         search={"C": [0.01, 1.0]})
TREE = CandidateSpec(estimator="sklearn.tree.DecisionTreeClassifier", params={"max_depth": 2})


def test_search_picks_the_best_candidate_and_fits_one_pipeline():
    frame, schema = clean_customers(rows=2500)
    spec = TrainingSpec(candidates={"logistic_regression": LOGISTIC, "stump": TREE}, cv_folds=3)
    pipeline, summary = search_candidates(frame[schema.feature_names], frame["churned"], schema, spec)
    assert isinstance(pipeline, Pipeline) and [n for n, _ in pipeline.steps] == ["preprocess", "model"]
    scores = {c.name: c.cv_score for c in summary.candidates}
    assert summary.chosen == max(scores, key=scores.get)
    assert summary.chosen_result.best_params
    assert 0.05 < summary.threshold < 0.95 and 0 < summary.threshold_cv_f1 <= 1
    probabilities = pipeline.predict_proba(frame[schema.feature_names])[:, 1]
    assert probabilities.shape == (2500,) and np.all((probabilities >= 0) & (probabilities <= 1))


def test_pipeline_tolerates_missing_values_and_unseen_categories():
    frame, schema = clean_customers(rows=1500)
    pipeline = build_pipeline(schema, LOGISTIC, 42).fit(frame[schema.feature_names], frame["churned"])
    odd = frame[schema.feature_names].head(3).copy()
    odd.loc[odd.index[0], "monthly_charges"] = np.nan
    odd.loc[odd.index[1], "contract_type"] = "Lifetime"
    assert np.isfinite(pipeline.predict_proba(odd)).all()


def test_best_f1_threshold_beats_the_default_cut_off():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    scores = np.clip(0.25 * y + rng.normal(0.2, 0.12, 2000), 0, 1)
    threshold, best = best_f1_threshold(y, scores)
    assert best == pytest.approx(f1_score(y, scores >= threshold))
    assert best >= f1_score(y, scores >= 0.5)


def test_unknown_estimator_is_a_clear_error():
    _, schema = clean_customers(rows=600)
    with pytest.raises(ValueError, match=r"cannot import estimator 'sklearn\.linear_model\.Nope'"):
        build_pipeline(schema, CandidateSpec(estimator="sklearn.linear_model.Nope"), 0)


def test_search_on_a_sample_then_fit_on_everything():
    frame, schema = clean_customers(rows=3000)
    spec = TrainingSpec(candidates={"logistic_regression": LOGISTIC}, cv_folds=3, search_sample_rows=600)
    pipeline, summary = search_candidates(frame[schema.feature_names], frame["churned"], schema, spec)
    assert (summary.search_rows, summary.train_rows) == (600, 3000)
    # The final fit saw every training row: its imputer medians are those of all 3000.
    imputer = pipeline.named_steps["preprocess"].named_transformers_["numeric"].named_steps["impute"]
    assert imputer.statistics_[0] == frame[schema.numeric_names[0]].median()

"""Our artifact types are stored as readable JSON, rendered as HTML, and summarised as metadata."""

import json
from pathlib import Path

import numpy as np
import pytest
from zenml.enums import VisualizationType

from churnops.data.profile import build_reference_profile
from churnops.data.schema import load_schema
from churnops.data.validation import validate_and_clean
from churnops.modeling.evaluation import baseline_metrics, evaluate
from churnops.modeling.promotion import GateConfig, decide
from churnops.modeling.training import CandidateSpec, TrainingSpec, search_candidates
from materializers import (
    DatasetSchemaMaterializer,
    EvaluationReportMaterializer,
    PromotionDecisionMaterializer,
    ReferenceProfileMaterializer,
    SearchSummaryMaterializer,
    ValidationReportMaterializer,
)
from tests.support import clean_customers


@pytest.fixture(scope="module")
def artifacts():
    frame, schema = clean_customers(rows=1200)
    _, validation = validate_and_clean(frame, schema)
    spec = TrainingSpec(candidates={"lr": CandidateSpec(estimator="sklearn.linear_model.LogisticRegression")},
                        cv_folds=2)
    x, y = frame[schema.feature_names], frame["churned"]
    pipeline, summary = search_candidates(x, y, schema, spec)
    evaluation = evaluate("lr", y.to_numpy(), pipeline.predict_proba(x)[:, 1], summary.threshold,
                          baseline_metrics(x, y, x, y, 0))
    decision = decide("churn_classifier", "1", evaluation.metrics, evaluation.best_baseline_f1, GateConfig(), None)
    return {
        ValidationReportMaterializer: (validation, "Data validation", "validation_passed"),
        ReferenceProfileMaterializer: (build_reference_profile(frame, schema), "Reference profile", "target_rate"),
        EvaluationReportMaterializer: (evaluation, "ROC curve", "roc_auc"),
        SearchSummaryMaterializer: (summary, "Model search", "threshold"),
        PromotionDecisionMaterializer: (decision, "Promotion", "verdict"),
        DatasetSchemaMaterializer: (load_schema("telco"), "Dataset schema", "features"),
    }


@pytest.mark.parametrize("materializer_class", [
    ValidationReportMaterializer, ReferenceProfileMaterializer, EvaluationReportMaterializer,
    SearchSummaryMaterializer, PromotionDecisionMaterializer, DatasetSchemaMaterializer,
])
def test_round_trip_html_and_metadata(session_paths, artifacts, materializer_class):
    data, title, metadata_key = artifacts[materializer_class]
    # The local artifact store only writes inside its own folder.
    uri = session_paths.artifact_store / "materializer-tests" / materializer_class.__name__
    uri.mkdir(parents=True, exist_ok=True)
    materializer = materializer_class(str(uri))
    materializer.save(data)
    stored = json.loads((uri / "data_v2.json").read_text())
    assert stored == json.loads(data.model_dump_json())
    assert materializer.load(type(data)) == data

    visualizations = materializer.save_visualizations(data)
    (page_uri, kind), = visualizations.items()
    assert kind == VisualizationType.HTML
    page = Path(page_uri).read_text()
    assert page.startswith("<!DOCTYPE html>") and title in page

    metadata = materializer.extract_metadata(data)
    assert metadata_key in metadata
    assert all(not isinstance(v, float) or np.isfinite(v) for v in metadata.values())

"""The training pipeline's work without ZenML or MLflow: the baseline for its overhead.

Same data, cleaning, profile, split, candidate search, evaluation and gate as
`python run.py --pipeline training`, in one plain process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sklearn.model_selection import train_test_split

from churnops.data.profile import build_reference_profile
from churnops.data.schema import load_schema
from churnops.data.sources import load_raw
from churnops.data.synthetic import SyntheticSpec
from churnops.data.validation import validate_and_clean
from churnops.modeling.evaluation import baseline_metrics, evaluate
from churnops.modeling.promotion import GateConfig, decide
from churnops.modeling.training import TrainingSpec, search_candidates
from churnops.platform.run_config import load_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--rows", type=int, required=True)
    args = parser.parse_args()
    steps = load_config(args.config)["steps"]
    load = steps["load_dataset"]["parameters"]
    schema = load_schema(load["dataset"])
    raw, _ = load_raw(schema, SyntheticSpec(rows=args.rows, seed=load["seed"]))
    clean, _ = validate_and_clean(raw, schema)
    build_reference_profile(clean, schema)
    split = steps["split_dataset"]["parameters"]
    train, test = train_test_split(clean, test_size=split["test_size"], random_state=split["random_state"],
                                   stratify=clean[schema.target.column])
    features, target = schema.feature_names, schema.target.column
    spec = TrainingSpec.model_validate(steps["train_model"]["parameters"]["training"])
    pipeline, summary = search_candidates(train[features], train[target], schema, spec)
    report = evaluate(summary.chosen, test[target].to_numpy(), pipeline.predict_proba(test[features])[:, 1],
                      summary.threshold, baseline_metrics(train[features], train[target], test[features],
                                                          test[target], 42))
    decision = decide("churn_classifier", "1", report.metrics, report.best_baseline_f1,
                      GateConfig.model_validate(steps["promote_model"]["parameters"]["gate"]), None)
    print(f"{summary.chosen} f1={report.metrics.f1:.4f} roc_auc={report.metrics.roc_auc:.4f} {decision.verdict}")


if __name__ == "__main__":
    main()

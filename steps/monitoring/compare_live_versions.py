from typing import Annotated, Any

import pandas as pd
from zenml import step
from zenml.client import Client

from churnops.monitoring.live_comparison import LiveComparison, Rollout, RolloutRules, compare_live
from materializers.monitoring import LiveComparisonMaterializer


@step(enable_cache=False, output_materializers={"live_comparison": LiveComparisonMaterializer})
def compare_live_versions(
    log_dir: str, feedback: pd.DataFrame, rollout: dict[str, Any] | None = None,
    rules: dict[str, Any] | None = None,
) -> Annotated[LiveComparison, "live_comparison"]:
    """Production and the challenger served beside it, on the labelled requests both scored since the
    rollout started: live metrics with intervals, the paired bootstrap of the difference, errors and
    latency. No rollout: an empty comparison (the decision is then ``none``)."""
    if not rollout:
        return LiveComparison(note="no challenger is served beside production")
    plan = Rollout.model_validate(rollout)
    client = Client()
    thresholds = {
        version: float(client.get_model_version("churn_classifier", int(version)).run_metadata.get(
            "decision_threshold", 0.5))
        for version in (plan.production_version, plan.challenger_version)
    }
    return compare_live(log_dir, feedback, plan, thresholds, RolloutRules.model_validate(rules or {}))

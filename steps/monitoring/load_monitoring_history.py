from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client

from churnops.monitoring.decision import MonitoringDecision
from churnops.monitoring.trends import MonitoringHistory, TrendPoint


# Never cached: the history grows with every run.
@step(enable_cache=False)
def load_monitoring_history(max_points: int = 30) -> Annotated[MonitoringHistory, "monitoring_history"]:
    """The decisions of this model's previous monitoring runs, read back from their artifacts, oldest first."""
    model_name = get_step_context().model.name
    points, unreadable = [], 0
    for artifact in Client().list_artifact_versions(name="monitoring_decision", sort_by="desc:created",
                                                    size=max_points):
        try:
            decision = artifact.load()
        except Exception:  # e.g. written to another stack's artifact store: skip it, say how many
            unreadable += 1
            continue
        if isinstance(decision, MonitoringDecision) and decision.model_name == model_name:
            points.append(TrendPoint.of(decision))
    return MonitoringHistory(points=points, unreadable=unreadable)

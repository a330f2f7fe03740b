from pathlib import Path
from typing import Annotated

from zenml import get_step_context, step

from churnops.monitoring.alerts import AlertDelivery, dispatch_alert
from churnops.monitoring.decision import MonitoringDecision
from materializers.monitoring import AlertDeliveryMaterializer


# Never cached: an alert is an event, not a value.
@step(enable_cache=False, output_materializers={"alert_delivery": AlertDeliveryMaterializer})
def send_alert(
    monitoring_decision: MonitoringDecision, alert_log: str, webhook_url: str | None = None,
) -> Annotated[AlertDelivery, "alert_delivery"]:
    """Console, alert log and (optional) webhook, when the decision raises an alert."""
    return dispatch_alert(monitoring_decision, Path(alert_log), webhook_url,
                          run_name=get_step_context().pipeline_run.name)

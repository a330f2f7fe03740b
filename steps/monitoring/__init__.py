from steps.monitoring.build_evidently_reports import build_evidently_reports
from steps.monitoring.compare_live_versions import compare_live_versions
from steps.monitoring.decide_action import decide_action
from steps.monitoring.detect_feature_drift import detect_feature_drift
from steps.monitoring.detect_output_drift import detect_output_drift
from steps.monitoring.enforce_retention import enforce_retention
from steps.monitoring.estimate_live_performance import estimate_live_performance
from steps.monitoring.load_feedback import load_feedback
from steps.monitoring.load_inference_window import load_inference_window
from steps.monitoring.load_monitoring_history import load_monitoring_history
from steps.monitoring.score_live_performance import score_live_performance
from steps.monitoring.send_alert import send_alert

__all__ = [
    "build_evidently_reports",
    "compare_live_versions",
    "decide_action",
    "detect_feature_drift",
    "detect_output_drift",
    "enforce_retention",
    "estimate_live_performance",
    "load_feedback",
    "load_inference_window",
    "load_monitoring_history",
    "score_live_performance",
    "send_alert",
]

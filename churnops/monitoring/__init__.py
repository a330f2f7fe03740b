"""Monitoring: what the served model sees and how it performs, against what it was trained on.

- ``inference_log``: read a window of the service's Parquet inference log (contract in docs/contracts.md).
- ``feedback``: the feedback log of actual outcomes, its CSV ingestion and its join with predictions.
- ``drift``: the lab's per-feature monitor against the training ``ReferenceProfile`` (z-score of the
  mean, PSI, category frequency shift) and prediction drift against the test-set probabilities.
- ``performance``: live accuracy / precision / recall / F1 / ROC-AUC on the labelled part of a window.
- ``evidently_reports``: Evidently 0.7 data-drift and data-summary reports with an explicit DataDefinition.
- ``decision``: from the figures above to an action (nothing, alert, retrain).
- ``alerts``: console, alert log and optional webhook.
- ``retraining``: the fresh training table (reference data plus labelled production rows).
- ``simulator``: realistic (optionally drifted) customers sent to the running service.
"""

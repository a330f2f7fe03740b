from steps.inference.check_batch_drift import check_batch_drift
from steps.inference.load_batch import load_batch
from steps.inference.score_batch import score_batch
from steps.inference.validate_batch import validate_batch

__all__ = ["check_batch_drift", "load_batch", "score_batch", "validate_batch"]

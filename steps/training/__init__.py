from steps.training.evaluate_model import evaluate_model
from steps.training.train_model import train_model

__all__ = ["evaluate_model", "train_model"]

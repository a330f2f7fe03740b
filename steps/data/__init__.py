from steps.data.load_dataset import load_dataset
from steps.data.split_dataset import split_dataset
from steps.data.validate_dataset import validate_dataset

__all__ = ["load_dataset", "split_dataset", "validate_dataset"]

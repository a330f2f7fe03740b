from typing import Annotated

import pandas as pd
from sklearn.model_selection import train_test_split
from zenml import step

from churnops.data.schema import DatasetSchema


@step
def split_dataset(
    clean_dataset: pd.DataFrame, dataset_schema: DatasetSchema, test_size: float = 0.2, random_state: int = 42
) -> tuple[Annotated[pd.DataFrame, "train_set"], Annotated[pd.DataFrame, "test_set"]]:
    """Stratified train/test split with a fixed seed."""
    train, test = train_test_split(clean_dataset, test_size=test_size, random_state=random_state,
                                   stratify=clean_dataset[dataset_schema.target.column])
    return train.reset_index(drop=True), test.reset_index(drop=True)

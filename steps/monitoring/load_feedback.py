from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from churnops.monitoring.feedback import read_feedback
from materializers.monitoring import ZstdDataFrameMaterializer


# Never cached: outcomes keep arriving.
@step(enable_cache=False, output_materializers={"feedback": ZstdDataFrameMaterializer})
def load_feedback(feedback_path: str) -> Annotated[pd.DataFrame, "feedback"]:
    """The feedback log of actual outcomes (empty when none arrived yet)."""
    return read_feedback(Path(feedback_path))

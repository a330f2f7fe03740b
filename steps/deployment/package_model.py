from typing import Annotated

from sklearn.pipeline import Pipeline
from zenml import get_step_context, step
from zenml.client import Client
from zenml.logger import get_logger

from churnops.data.schema import DatasetSchema
from churnops.modeling.promotion import PromotionDecision
from churnops.platform.deployment import package_version

logger = get_logger(__name__)


# Never cached: a cached run would skip packaging a freshly promoted version.
@step(enable_cache=False)
def package_model(
    promotion_decision: PromotionDecision,
    churn_classifier: Pipeline,
    dataset_schema: DatasetSchema,
) -> Annotated[str, "bento_tag"]:
    """Package a newly promoted version as a BentoML model and Bento; record ``bento_tag`` on it.

    Returns the Bento tag, or an empty string when the version was not promoted (no new Bento).
    """
    if not promotion_decision.promoted:
        logger.info("Version %s was %s: no Bento built.", promotion_decision.model_version, promotion_decision.verdict)
        return ""
    model = get_step_context().model
    version = Client().get_model_version(model.name, model.id)
    packaged = package_version(version, pipeline=churn_classifier, schema=dataset_schema)
    logger.info("Packaged version %s: BentoML model %s, Bento %s.", packaged.model_version,
                packaged.bento_model_tag, packaged.bento_tag)
    return packaged.bento_tag

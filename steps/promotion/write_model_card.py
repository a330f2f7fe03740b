from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.client import Client

from churnops.data.schema import DatasetSchema
from churnops.modeling.evaluation import EvaluationReport
from churnops.modeling.promotion import PromotionDecision
from churnops.modeling.training import SearchSummary
from churnops.reporting.model_card import ModelCard, build_model_card
from materializers import ModelCardMaterializer


# Never cached: the card records this run's promotion decision and the version's metadata.
@step(enable_cache=False, output_materializers={"model_card": ModelCardMaterializer})
def write_model_card(
    promotion_decision: PromotionDecision,
    evaluation_report: EvaluationReport,
    search_summary: SearchSummary,
    dataset_schema: DatasetSchema,
) -> Annotated[ModelCard, "model_card"]:
    """The model card of this version (Markdown and HTML), linked to it in the Model Control Plane.

    Written for every version the promotion step decided on, whatever the verdict: a staged or
    held version can still be made production later (rollback --to), and then it has its card.
    """
    model = get_step_context().model
    # Re-read: the promotion step has just added the verdict, provenance and gate records.
    version = Client().get_model_version(model.name, model.id)
    card = build_model_card(evaluation_report, search_summary, promotion_decision, dataset_schema,
                            dict(version.run_metadata))
    log_metadata(model_version_id=version.id, metadata={"model_card_written_at": card.written_at})
    return card

from steps.promotion.promote_model import promote_model
from steps.promotion.write_model_card import write_model_card

# promote_on_evidence (the monitoring pipeline's) is imported from its module: exporting it here would make
# the training pipeline's container import the monitoring stack (Evidently) too.
__all__ = ["promote_model", "write_model_card"]

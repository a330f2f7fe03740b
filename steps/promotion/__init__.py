from steps.promotion.promote_model import promote_model
from steps.promotion.promote_on_evidence import promote_on_evidence
from steps.promotion.write_model_card import write_model_card

__all__ = ["promote_model", "promote_on_evidence", "write_model_card"]

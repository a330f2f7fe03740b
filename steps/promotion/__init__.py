from steps.promotion.promote_model import promote_model
from steps.promotion.write_model_card import write_model_card

__all__ = ["promote_model", "write_model_card"]

from steps.promotion.promote_model import promote_model

__all__ = ["promote_model"]

from steps.deployment.package_model import package_model

__all__ = ["package_model"]

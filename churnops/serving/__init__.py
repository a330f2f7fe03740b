"""Serving the churn model: request contract, fast inference, inference log, packaging.

Nothing here imports BentoML; ``bento/service.py`` wires these pieces into the service and
``churnops.platform.deployment`` puts models and Bentos into the BentoML store.
"""

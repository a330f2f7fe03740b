"""Shared domain code for churnops: settings, dataset schema, data, modelling helpers.

Nothing here imports ZenML at module level, so the package is cheap to import from
steps, the BentoML service and tests alike.
"""

__version__ = "0.1.0"

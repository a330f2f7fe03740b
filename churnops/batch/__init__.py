"""Batch inference: the whole customer base into a ranked, explained retention list.

Read in bounded chunks (``inputs``), validated with the training data contract minus the target
(``validation``), checked for drift against the training profile in one streaming pass
(``drift``), scored, ranked and cut by the targeting policy (``scoring``), and written as sorted
Parquet parts plus one CSV (``output``). No ZenML here: the steps in ``steps/inference`` call it.
"""

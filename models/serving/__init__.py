"""The worker side of the model: what a worker imports to score texts and transactions.

:class:`~models.serving.base.ModelHandler` and :class:`~models.serving.base.TextScores` are all
``stream/`` sees of a text model; :func:`models.serving.factory.create_handler` picks a backend
by name and imports only that one. Nothing here imports ``models.training`` (data sets,
distillation, export, evaluation), pandas, pyarrow or matplotlib, and the ONNX and stub paths
never import torch or transformers: ``tests/test_import_rules.py`` enforces it. Artefacts are
built ahead of time by ``python -m models build``; serving only finds and loads them.
"""

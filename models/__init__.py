"""Model side of riskstream, in two halves that import one way only.

* :mod:`models.serving`: what a worker loads (handler interface, backend factory, backends,
  tokenizer, artefact lookup, the fraud booster's inference). ``stream/`` only ever sees
  :class:`models.serving.base.ModelHandler` and :class:`models.serving.base.TextScores`.
* :mod:`models.training`: data, teacher, distillation, baseline, export, evaluation, fraud
  training; it may import serving, never the reverse (``tests/test_import_rules.py``).

``python -m models build`` installs the served student and exports its ONNX builds.
"""

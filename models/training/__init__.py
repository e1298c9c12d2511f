"""Everything that makes the served artefacts, never imported by a worker: training data,
the teacher and distillation, the frozen-encoder baseline, ONNX export and INT8 quantisation,
evaluation (the model card), the fraud booster's training, and INT8 TensorRT calibration.

Needs the ``train`` extra (torch, transformers, pandas, scikit-learn, onnx). Training code may
import :mod:`models.serving` (the network, the tokenizer, artefact paths); never the reverse.
"""

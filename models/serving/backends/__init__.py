"""Inference backends, one module each, all implementing :class:`models.serving.base.ModelHandler`.

Nothing is imported here, so choosing a backend by name
(:func:`models.serving.factory.create_handler`) never pulls in the heavy libraries of the others:
``onnx_cpu`` and ``stub`` never import torch; ``torch_cpu``, ``torch_cuda`` and ``tensorrt`` do.
"""

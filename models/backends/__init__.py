"""Inference backends, one module each, all implementing :class:`models.base.ModelHandler`.

Nothing is imported here, so choosing a backend by name (:func:`models.factory.create_handler`)
never pulls in the heavy libraries of the others.
"""

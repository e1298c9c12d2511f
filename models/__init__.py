"""Model side of riskstream: text encoder + heads, training data, and inference backends.

`stream/` only ever sees :class:`models.base.ModelHandler` and :class:`models.base.TextScores`.
"""

"""The worker's model: a backend chosen by configuration, behind the shared micro-batcher."""

from __future__ import annotations

from models.factory import create_handler
from stream import metrics
from stream.app import settings
from stream.batcher import MicroBatcher

handler = create_handler(settings.backend)
_limits = handler.batch_elements_kwargs()

batcher = MicroBatcher(
    handler,
    max_batch_size=settings.max_batch_size or _limits["max_batch_size"],
    max_wait_s=(
        settings.max_batch_wait_ms / 1000
        if settings.max_batch_wait_ms is not None
        else _limits["max_batch_duration_secs"]
    ),
    on_batch=metrics.observe_batch,
)

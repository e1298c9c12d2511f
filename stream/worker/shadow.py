"""Shadow scoring in the worker: a challenger build scores the texts the champion scored, off the
critical path, and its comparison goes to ``shadow-scores`` and the ``riskstream_shadow_*``
metrics.

Off the critical path means the champion never waits for it: the edge hands a scored text over
with :meth:`ShadowScoring.offer`, which returns at once; the challenger has its own
micro-batcher and inference thread, and a text it has no room for is dropped and counted
(``riskstream_shadow_dropped{reason="behind"}``). Its records are not part of the delivery
ledger (best effort: a crash may repeat or skip some), and a challenger that fails to load or
to score is logged and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from stream.core.codec import encode
from stream.core.rules import AlertThresholds
from stream.core.shadow import compare_scores, shadow_record
from stream.core.steps import ValidEvent, text_to_score
from stream.topics import SHADOW_SCORES
from stream.worker import metrics
from stream.worker.batcher import MicroBatcher

logger = logging.getLogger("riskstream.shadow")


class ShadowScoring:
    """The challenger's batcher, what it has in flight, and where its comparisons go."""

    def __init__(
        self,
        batcher: MicroBatcher,
        send: Any,
        thresholds: AlertThresholds,
        *,
        precisions: tuple[str, str] = ("fp32", "fp32"),
    ) -> None:
        self.batcher = batcher
        #: (champion, challenger): the same build may be compared in two precisions.
        self.precisions = precisions
        self.send = send
        self.thresholds = thresholds
        self.failed = False
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def version(self) -> str:
        return self.batcher.model_version

    async def start(self) -> bool:
        """Load the challenger; on failure shadow scoring is off (the champion goes on)."""
        try:
            await self.batcher.start()
        except Exception:
            self.failed = True
            logger.exception("shadow challenger failed to load: shadow scoring is off")
            return False
        logger.info(
            "shadow challenger %s loaded in %.2fs", self.version, self.batcher.model_load_seconds
        )
        return True

    def offer(self, event: ValidEvent, champion: dict[str, float], champion_version: str) -> None:
        """Score ``event``'s text with the challenger too, if it can keep up; returns at once
        and never raises (the champion's path calls it)."""
        try:
            text = text_to_score(event)
            if text is None:
                return
            if self.failed or not self.batcher.loaded:
                metrics.SHADOW_DROPPED.labels("error" if self.failed else "loading").inc()
                return
            if len(self._in_flight) >= self.batcher.max_pending:
                metrics.SHADOW_DROPPED.labels("behind").inc()
                return
            task = asyncio.create_task(self._compare(event, text, champion, champion_version))
        except Exception:
            metrics.SHADOW_DROPPED.labels("error").inc()
            logger.exception("shadow scoring could not take a text")
            return
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _compare(
        self, event: ValidEvent, text: str, champion: dict[str, float], champion_version: str
    ) -> None:
        try:
            result = (await self.batcher.score([text]))[0]
            challenger = result.inference.as_dict()
        except Exception:
            metrics.SHADOW_DROPPED.labels("error").inc()
            logger.exception("shadow challenger failed on a batch")
            return
        comparison = compare_scores(champion, challenger, self.thresholds)
        for head in comparison:
            metrics.SHADOW_ABS_DIFF.labels(head.head).observe(head.abs_diff)
            for decision, agrees in (("label", head.label_agrees), ("alert", head.alert_agrees)):
                metrics.SHADOW_DECISIONS.labels(head.head, decision, str(agrees).lower()).inc()
        metrics.SHADOW_SCORED.inc()
        record = shadow_record(
            {
                "event_id": event.data["event_id"],
                "event_type": event.event_type,
                "event_time": event.data["event_time"],
                "source": event.record.source(),
            },
            (champion_version, self.precisions[0], champion),
            (result.model_id, self.precisions[1], challenger),  # a router names the build
            comparison,
        )
        key = event.data["event_id"].encode()
        try:
            await self.send(SHADOW_SCORES, key, encode(record, SHADOW_SCORES))
        except Exception:
            metrics.SHADOW_DROPPED.labels("error").inc()
            logger.exception("shadow scoring could not publish a comparison")

    async def stop(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        await self.batcher.stop()

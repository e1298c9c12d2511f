"""One shared micro-batcher: texts from every text agent are coalesced into model batches.

A batch closes when it reaches ``max_batch_size`` or ``max_wait_s`` after its first text,
whichever comes first. The build can change while it runs (:meth:`MicroBatcher.swap`, a new
champion): each batch takes the handler and its loaded model as one pair when it starts, so a
text is scored once, by one build, and a batch under way finishes on the build it started
with. Tokenisation and inference run in a single worker thread, never on the event loop.
Backpressure is a limit, not a sleep: at most ``max_pending`` texts may be queued or
in flight, and ``score()`` waits for room beyond that, which stalls the calling agent.

A batch the backend does not answer within ``inference_timeout_s`` fails every text in it
(:class:`InferenceHung`): the worker then exits with that line, and its supervisor starts a
fresh one. A hung inference call cannot be cancelled from Python, and before this bound a
worker sat for minutes with 256 events in flight and nothing moving (scale-out test,
``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from models.serving.base import ModelHandler, PredictionResult

#: Called after each batch with (batch size, inference seconds).
BatchObserver = Callable[[int, float], None]


class InferenceHung(RuntimeError):
    """The backend did not answer a batch within the batcher's ``inference_timeout_s``."""


class MicroBatcher:
    def __init__(
        self,
        handler: ModelHandler[Any],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_pending: int | None = None,
        executor: Executor | None = None,
        on_batch: BatchObserver | None = None,
        clock: Callable[[], float] = time.perf_counter,
        inference_timeout_s: float | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.handler = handler
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending or 4 * max_batch_size
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._on_batch = on_batch
        self._clock = clock
        self.inference_timeout_s = inference_timeout_s
        self._pending: deque[tuple[str, asyncio.Future[PredictionResult]]] = deque()
        self._room = asyncio.Semaphore(self.max_pending)
        self._wakeup = asyncio.Event()
        self._ready = asyncio.Event()
        self._model: Any = None
        self._preloaded = False
        self._task: asyncio.Task[None] | None = None
        self.model_load_seconds: float | None = None
        #: Texts in the batch at the model now (0: none), and when it went in.
        self._scoring, self._scoring_since = 0, 0.0

    @property
    def loaded(self) -> bool:
        return self._ready.is_set()

    @property
    def model_version(self) -> str:
        return self.handler.model_version

    async def start(self) -> None:
        """Load the model off the loop, then start the batching loop."""
        if self._task is not None:
            return
        if not self._preloaded:
            loop = asyncio.get_running_loop()
            started = self._clock()
            self._model = await loop.run_in_executor(self._executor, self.handler.load_model)
            self.model_load_seconds = self._clock() - started
        self._task = asyncio.create_task(self._run(), name="micro-batcher")
        self._ready.set()

    def use(
        self, handler: ModelHandler[Any], model: Any = None, load_seconds: float | None = None
    ) -> None:
        """Before :meth:`start`: serve ``handler`` instead, e.g. the registry's champion, so a
        restarted worker never loads the configured build first. With its loaded ``model``,
        ``start`` does not load it again."""
        if self._task is not None:
            raise RuntimeError("the batcher is running: swap() a loaded model in instead")
        self.handler, self._model = handler, model
        self._preloaded = model is not None
        self.model_load_seconds = load_seconds

    def swap(self, handler: ModelHandler[Any], model: Any) -> None:
        """Serve ``handler`` with its loaded ``model`` from the next batch on. Synchronous, so
        on the event loop the pair changes between two batches, never inside one."""
        self.handler, self._model = handler, model

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._ready.clear()
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.cancel()

    async def submit(self, text: str) -> asyncio.Future[PredictionResult]:
        """Queue one text; returns the future of its result
        (scores, and the build that scored it). Waits for the model to load and,
        past ``max_pending`` texts queued or in flight, for room (backpressure)."""
        await self._ready.wait()
        await self._room.acquire()
        future: asyncio.Future[PredictionResult] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if len(self._pending) == 1 or len(self._pending) >= self.max_batch_size:
            # only what the batch loop waits for (a first text, a full batch): a wake-up per
            # text was a ``wait_for`` (a task and a timer) per text
            self._wakeup.set()
        return future

    async def score(self, texts: Sequence[str]) -> list[PredictionResult]:
        """Results (scores and the build that made them) for ``texts``, in input order."""
        futures = [await self.submit(text) for text in texts]
        return list(await asyncio.gather(*futures))

    async def _next_batch(self) -> list[tuple[str, asyncio.Future[PredictionResult]]]:
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(self._pending) < self.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        size = min(self.max_batch_size, len(self._pending))
        return [self._pending.popleft() for _ in range(size)]

    def state(self) -> str:
        """Where the batcher stands, for a stall's log line."""
        task = self._task
        if task is None:
            running = "not started"
        elif task.done():
            running = f"ended ({task.exception() if not task.cancelled() else 'cancelled'!r})"
        else:
            running = "running"
        scoring = (
            f"{self._scoring} texts at the model for {self._clock() - self._scoring_since:.1f} s"
            if self._scoring
            else "none at the model"
        )
        room = self._room._value  # the semaphore's free count (no public accessor)
        return f"batcher {running}, {len(self._pending)} queued, {scoring}, room {room}"

    async def _infer(self, call: asyncio.Future[Any], size: int) -> Any:
        """``call``'s results, or :class:`InferenceHung` past ``inference_timeout_s``."""
        self._scoring, self._scoring_since = size, self._clock()
        try:
            if self.inference_timeout_s is None:
                return await call
            return await asyncio.wait_for(call, self.inference_timeout_s)
        except TimeoutError:
            raise InferenceHung(
                f"the model did not answer a batch of {size} texts within "
                f"{self.inference_timeout_s:.0f} s (inference hung): exiting so a fresh worker "
                "takes over"
            ) from None
        finally:
            self._scoring = 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            handler, model = self.handler, self._model  # one pair for the whole batch
            texts = [text for text, _ in batch]
            started = self._clock()
            try:
                results = await self._infer(
                    loop.run_in_executor(self._executor, handler.run_inference, texts, model),
                    len(texts),
                )
                if len(results) != len(texts):
                    raise RuntimeError(f"backend returned {len(results)} results for {len(texts)}")
            except Exception as exc:  # an outage or a bug: every waiter sees it and crashes
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                if self._on_batch is not None:
                    self._on_batch(len(batch), self._clock() - started)
            finally:
                for _ in batch:
                    self._room.release()

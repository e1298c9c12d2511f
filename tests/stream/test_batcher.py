from __future__ import annotations

import asyncio
import threading

import pytest

from stream.worker.batcher import InferenceHung, MicroBatcher
from tests.fakes import FakeModelHandler


async def started(handler: FakeModelHandler, **kw: float) -> MicroBatcher:
    batcher = MicroBatcher(handler, **{"max_batch_size": 8, "max_wait_s": 0.05, **kw})
    await batcher.start()
    return batcher


async def test_results_come_back_in_input_order() -> None:
    batcher = await started(FakeModelHandler())
    texts = [f"text {i} {'awful' if i % 3 == 0 else 'ok'}" for i in range(20)]
    scores = await batcher.score(texts)
    assert [s.inference.sentiment_negative for s in scores] == [
        0.99 if i % 3 == 0 else 0.01 for i in range(20)
    ]
    await batcher.stop()


async def test_requests_from_several_callers_share_batches_up_to_the_limit() -> None:
    handler = FakeModelHandler()
    batcher = await started(handler, max_batch_size=8, max_wait_s=0.2)
    a, b = await asyncio.gather(batcher.score(["a"] * 5), batcher.score(["b"] * 5))
    assert len(a) == len(b) == 5
    assert [len(x) for x in handler.batches] == [8, 2]
    assert set(handler.batches[0]) == {"a", "b"}
    await batcher.stop()


async def test_a_half_full_batch_leaves_after_max_wait() -> None:
    handler = FakeModelHandler()
    batcher = await started(handler, max_batch_size=64, max_wait_s=0.02)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    await asyncio.wait_for(batcher.score(["one", "two"]), timeout=2)
    assert loop.time() - begin < 1.0
    assert handler.batches == [["one", "two"]]
    await batcher.stop()


async def test_the_batch_loop_wakes_for_a_first_text_and_a_full_batch_not_per_text(
    monkeypatch,
) -> None:
    """Texts arriving one by one into an open batch do not wake the batch loop: it waits
    once for the batch to fill or its time to run out (a wake-up per text was a ``wait_for``,
    a task and a timer, per text)."""
    import stream.worker.batcher as batcher_module

    waits = 0
    real_wait_for = asyncio.wait_for

    async def counted(awaitable, timeout):
        nonlocal waits
        waits += 1
        return await real_wait_for(awaitable, timeout)

    monkeypatch.setattr(batcher_module.asyncio, "wait_for", counted)
    handler = FakeModelHandler()
    batcher = await started(handler, max_batch_size=16, max_wait_s=0.5)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    futures = []
    for i in range(16):  # one at a time, each a turn of the event loop after the last
        futures.append(await batcher.submit(f"t{i}"))
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*futures), 2)
    assert loop.time() - begin < 0.4  # closed by the full batch, not the 0.5 s
    assert handler.batches == [[f"t{i}" for i in range(16)]]
    assert waits <= 2  # per batch, not per text (6 here before the change)
    await batcher.stop()


async def test_with_no_wait_an_idle_model_takes_a_text_at_once_and_a_busy_one_gathers_more() -> (
    None
):
    """The CPU backends' limits (no wait): a text reaching an idle model is scored alone at
    once, and the texts that arrive while the model runs go together as the next batch."""
    gate = threading.Event()
    handler = FakeModelHandler(block=gate)
    batcher = await started(handler, max_batch_size=64, max_wait_s=0.0)
    first = await batcher.submit("t0")
    await asyncio.sleep(0.1)  # the model has it (and waits on the gate)
    rest = [await batcher.submit(f"t{i}") for i in range(1, 6)]
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert handler.batches == [["t0"], ["t1", "t2", "t3", "t4", "t5"]]
    await batcher.stop()


def test_the_cpu_backends_batch_without_a_wait() -> None:
    from models.serving.backends.onnx_cpu import OnnxCpuHandler
    from models.serving.backends.torch_cpu import TorchCpuHandler
    from models.serving.base import CPU_BATCH_LIMITS

    assert CPU_BATCH_LIMITS == {"max_batch_size": 64, "max_batch_duration_secs": 0.0}
    for handler in (OnnxCpuHandler(), OnnxCpuHandler(precision="int8"), TorchCpuHandler()):
        assert handler.batch_elements_kwargs() == CPU_BATCH_LIMITS


async def test_pending_limit_applies_backpressure() -> None:
    gate = threading.Event()
    handler = FakeModelHandler(block=gate)
    batcher = await started(handler, max_batch_size=2, max_wait_s=0.0, max_pending=4)
    caller = asyncio.create_task(batcher.score([f"t{i}" for i in range(10)]))
    await asyncio.sleep(0.2)
    assert batcher._room.locked()  # only 4 admitted while the model is stuck
    assert not caller.done()
    gate.set()
    assert len(await asyncio.wait_for(caller, 5)) == 10
    await batcher.stop()


async def test_backend_failure_reaches_every_caller() -> None:
    batcher = await started(FakeModelHandler(fail_with=RuntimeError("GPU fell off")))
    with pytest.raises(RuntimeError, match="GPU fell off"):
        await batcher.score(["x", "y"])
    await batcher.stop()


async def test_model_loads_once_and_observer_sees_batches() -> None:
    seen: list[int] = []
    handler = FakeModelHandler()
    batcher = MicroBatcher(
        handler, max_batch_size=4, max_wait_s=0.01, on_batch=lambda size, secs: seen.append(size)
    )
    await batcher.start()
    await batcher.start()
    await batcher.score(["a", "b", "c"])
    assert handler.loads == 1
    assert seen == [3]
    await batcher.stop()


async def test_submit_returns_futures_that_resolve_per_text() -> None:
    handler = FakeModelHandler()
    batcher = await started(handler, max_batch_size=4, max_wait_s=0.01)
    futures = [await batcher.submit(t) for t in ("fine", "awful", "prize")]
    scores = await asyncio.gather(*futures)
    assert [s.inference.sentiment_negative for s in scores] == [0.01, 0.99, 0.01]
    assert [s.inference.scam_risk for s in scores] == [0.0, 0.0, 0.95]
    assert handler.batches == [["fine", "awful", "prize"]]
    await batcher.stop()


async def test_a_hung_inference_fails_its_batch_with_one_line_instead_of_waiting_forever() -> None:
    gate = threading.Event()  # never set: the backend hangs (until the fake's own 5 s)
    batcher = await started(FakeModelHandler(block=gate), inference_timeout_s=0.2)
    with pytest.raises(InferenceHung, match="did not answer a batch of 2 texts within 0 s"):
        await asyncio.wait_for(batcher.score(["x", "y"]), 3)
    gate.set()
    await batcher.stop()


async def test_no_inference_bound_waits_for_a_slow_backend() -> None:
    gate = threading.Event()
    batcher = await started(FakeModelHandler(block=gate))  # inference_timeout_s unset
    caller = asyncio.create_task(batcher.score(["x"]))
    await asyncio.sleep(0.3)
    assert not caller.done()
    gate.set()
    assert len(await asyncio.wait_for(caller, 5)) == 1
    await batcher.stop()


def test_the_worker_bounds_inference_by_its_setting() -> None:
    from stream.config import Settings
    from stream.worker.scoring import make_batcher

    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1", inference_timeout_s=45)
    assert make_batcher(settings, FakeModelHandler()).inference_timeout_s == 45
    assert (
        make_batcher(
            Settings(KAFKA_BROKER="kafka://127.0.0.1:1"), FakeModelHandler()
        ).inference_timeout_s
        == 120
    )

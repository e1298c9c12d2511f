"""The torch-cpu handler against the ModelHandler contract, on real data."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from models.serving import artefacts
from models.serving.backends.torch_cpu import (
    LoadedTorchModel,
    TorchCpuHandler,
    default_torch_inference_fn,
)
from models.serving.base import HEAD_NAMES, PredictionResult
from models.serving.batching import plan_sub_batches
from models.serving.encoder import EncoderWithHeads
from models.training.data import fine_foods, fine_foods_reviews, sms_messages
from models.training.distil import predict_logits


def _scores(results: list[PredictionResult]) -> np.ndarray:
    return np.array([[getattr(r.inference, name) for name in HEAD_NAMES] for r in results])


@pytest.fixture(scope="module")
def mixed_texts() -> list[str]:
    """Long reviews interleaved with short SMS, so buckets really differ in length."""
    reviews = [text for _, text, _ in fine_foods_reviews("test")[:12]]
    messages = [text for text, _ in sms_messages("test")[:12]]
    return [text for pair in zip(reviews, messages, strict=True) for text in pair]


# --------------------------------------------------------------------------- bucketing plan


def test_plan_covers_every_index_once_in_length_order() -> None:
    lengths = [40, 7, 250, 9, 12, 256, 33, 8]
    groups = plan_sub_batches(lengths, call_overhead_tokens=64, max_batch_tokens=16_384)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for earlier, later in itertools.pairwise(groups):
        assert max(lengths[i] for i in earlier) <= min(lengths[i] for i in later)


def test_plan_separates_short_from_long_and_keeps_equal_lengths_together() -> None:
    lengths = [8] * 20 + [256] * 2
    groups = plan_sub_batches(lengths, call_overhead_tokens=64, max_batch_tokens=16_384)
    assert [sorted(group) for group in groups] == [list(range(20)), [20, 21]]
    assert len(plan_sub_batches([30] * 50, 64, 16_384)) == 1


def test_plan_respects_the_token_cap() -> None:
    groups = plan_sub_batches([100] * 10, call_overhead_tokens=0, max_batch_tokens=300)
    assert all(len(group) * 100 <= 300 for group in groups)
    assert plan_sub_batches([], 64, 16_384) == []


# --------------------------------------------------------------------------- contract


def test_empty_batch_returns_empty_without_a_forward_pass(
    loaded: LoadedTorchModel, artefact_path: Path
) -> None:
    calls: list[int] = []

    def counting(model: EncoderWithHeads, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        calls.append(1)
        return default_torch_inference_fn(model, batch)

    counted = TorchCpuHandler(artefact_path=artefact_path, inference_fn=counting)
    assert counted.run_inference([], loaded) == []
    assert counted.run_inference((), loaded) == []
    assert calls == []
    assert len(counted.run_inference(["one text"], loaded)) == 1
    assert calls == [1]


def test_results_come_back_in_input_order(
    handler: TorchCpuHandler, loaded: LoadedTorchModel, mixed_texts: list[str]
) -> None:
    forward = handler.run_inference(mixed_texts, loaded)
    backward = handler.run_inference(mixed_texts[::-1], loaded)
    assert [r.example for r in forward] == mixed_texts
    assert [r.example for r in backward] == mixed_texts[::-1]
    np.testing.assert_allclose(_scores(forward), _scores(backward)[::-1], atol=1e-5)


def test_bucketing_matches_one_padded_batch_and_single_texts(
    handler: TorchCpuHandler, loaded: LoadedTorchModel, mixed_texts: list[str]
) -> None:
    bucketed = _scores(handler.run_inference(mixed_texts, loaded))
    padded = _scores(handler.run_inference(mixed_texts, loaded, {"bucketing": False}))
    alone = _scores([handler.run_inference([text], loaded)[0] for text in mixed_texts[:6]])
    np.testing.assert_allclose(bucketed, padded, atol=1e-5)
    np.testing.assert_allclose(bucketed[:6], alone, atol=1e-5)


def test_every_result_is_stamped_with_the_artefact_version(
    handler: TorchCpuHandler, loaded: LoadedTorchModel, artefact_path: Path
) -> None:
    results = handler.run_inference(["fine", "terrible, do not buy"], loaded)
    version = artefacts.read_card(artefact_path)["model_version"]
    assert handler.model_version == loaded.model_version == version
    assert {r.model_id for r in results} == {version}
    assert np.all((_scores(results) >= 0.0) & (_scores(results) <= 1.0))


def test_swapped_inference_fn_sees_each_planned_sub_batch(
    handler: TorchCpuHandler,
    loaded: LoadedTorchModel,
    mixed_texts: list[str],
    artefact_path: Path,
) -> None:
    shapes: list[tuple[int, int]] = []

    def recording(model: EncoderWithHeads, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        shapes.append(tuple(batch["input_ids"].shape))
        return default_torch_inference_fn(model, batch)

    swapped = TorchCpuHandler(artefact_path=artefact_path, inference_fn=recording)
    results = swapped.run_inference(mixed_texts, loaded)
    np.testing.assert_allclose(
        _scores(results), _scores(handler.run_inference(mixed_texts, loaded)), atol=1e-6
    )
    assert len(shapes) > 1, "short SMS and long reviews should not share one padded call"
    assert sum(rows for rows, _ in shapes) == len(mixed_texts)
    assert max(width for _, width in shapes) <= 256


def test_serving_matches_the_training_path(
    handler: TorchCpuHandler, loaded: LoadedTorchModel
) -> None:
    """Train/serve skew check: handler scores equal the training loop's own prediction path."""
    texts = [row.text for row in fine_foods("test")[:16]] + ["WIN a FREE prize, text 8000"]
    served = handler.run_inference(texts, loaded)
    logits = predict_logits(loaded.network, loaded.tokenizer, texts, torch.device("cpu"))
    np.testing.assert_allclose(_scores(served), 1 / (1 + np.exp(-logits)), atol=1e-5)


def test_missing_artefact_tells_the_user_how_to_build(tmp_path: Path) -> None:
    missing = TorchCpuHandler(artefact_path=tmp_path / "minilm-l6-heads-0000000000")
    with pytest.raises(artefacts.ModelNotBuiltError, match="python -m models build"):
        missing.load_model()


# --------------------------------------------------------------------------- sanity


def _review(product_id: str) -> str:
    return next(text for product, text, _ in fine_foods_reviews("test") if product == product_id)


def test_clear_fine_foods_reviews_land_on_the_right_side(
    handler: TorchCpuHandler, loaded: LoadedTorchModel
) -> None:
    positive = _review("B005GXFP60")  # "the best tasting gummy fruits I have ever eaten..."
    negative = _review("B004N5J60S")  # "...what a mess this candy was ... how bad it was"
    pos, neg = handler.run_inference([positive, negative], loaded)
    assert pos.inference.sentiment_negative < 0.5 < neg.inference.sentiment_negative
    assert pos.inference.sentiment_polarity > 0 > neg.inference.sentiment_polarity


def test_negative_reviews_score_more_negative_on_average(
    handler: TorchCpuHandler, loaded: LoadedTorchModel
) -> None:
    reviews = fine_foods_reviews("test")
    negatives = [text for _, text, label in reviews if label == "negative"][:24]
    positives = [text for _, text, label in reviews if label == "positive"][:24]
    scores = _scores(handler.run_inference(negatives + positives, loaded))[:, 0]
    assert scores[:24].mean() > scores[24:].mean() + 0.2


def test_spam_scores_higher_scam_risk_than_ham(
    handler: TorchCpuHandler, loaded: LoadedTorchModel
) -> None:
    messages = sms_messages("test")
    spam = [text for text, label in messages if label == "spam"][:16]
    ham = [text for text, label in messages if label == "ham"][:16]
    risk = _scores(handler.run_inference(spam + ham, loaded))[:, 1]
    pairs_ordered = np.mean(risk[:16, None] > risk[None, 16:])
    assert pairs_ordered > 0.95
    assert np.median(risk[:16]) > 0.5 > np.median(risk[16:])


def _reference_plan(lengths, overhead, cap):
    """The original pure-Python programme, kept as the oracle for the vectorised one."""
    import math

    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sl = [lengths[i] for i in order]
    best = [0.0] + [math.inf] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end - 1, -1, -1):
            padded = (end - start) * sl[end - 1]
            if padded > cap and end - start > 1:
                break
            cost = best[start] + padded + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(order)
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


@pytest.mark.parametrize("seed", range(20))
def test_vectorised_plan_equals_the_reference_programme(seed: int) -> None:
    import random

    rng = random.Random(seed)
    n = rng.choice([1, 2, 7, 64, 300])
    lengths = [rng.choice([rng.randint(3, 40), rng.randint(3, 256)]) for _ in range(n)]
    overhead, cap = rng.choice([(64, 16_384), (2048, 16_384), (0, 512), (10, 300)])
    assert plan_sub_batches(lengths, overhead, cap) == _reference_plan(lengths, overhead, cap)

"""Sub-batch planning and scoring shared by every text backend: numpy only, no torch.

Within a micro-batch, texts are tokenised (truncated at the model's ``max_length``), sorted by
token length and split into sub-batches chosen to minimise padded tokens plus a per-call
overhead, then scattered back to input order. A batch mixing a one-line chat message with a
250-token review then costs about what its real tokens cost, instead of every row paying for
the longest.

``max_batch_tokens`` bounds every sub-batch's rows x padded length, and with it the activation
memory of a forward pass (attention buffers grow with rows x length x length), whatever the
micro-batch size or the texts' lengths: a backend refuses a bound below its ``max_length``, so
even a lone text at full length fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from models.serving.base import HEAD_NAMES, PredictionResult, TextScores
from models.serving.tokenizer import pad_arrays, tokenize

__all__ = [
    "DEFAULT_CALL_OVERHEAD_TOKENS",
    "DEFAULT_CPU_MAX_BATCH_TOKENS",
    "DEFAULT_MAX_BATCH_TOKENS",
    "check_max_batch_tokens",
    "plan_sub_batches",
    "score_in_sub_batches",
    "text_scores",
]

#: What one extra forward call costs, in padded-token equivalents (measured on 2 CPU cores).
DEFAULT_CALL_OVERHEAD_TOKENS = 64
#: Upper bound on rows x padded length per sub-batch on a GPU (device memory, not RSS).
DEFAULT_MAX_BATCH_TOKENS = 16_384
#: The CPU backends' bound: 8 texts at the full 256 tokens per forward pass. A worker scoring
#: 64 e-mails of 4,000 characters (each truncated to 256 tokens) on onnx-cpu peaks at 377 MiB
#: RSS with it, 502 MiB at 4,096 and 1,254 MiB at 16,384 (the old fixed bound), for about the
#: same CPU time (``bench/serving_memory.py --as-image``; docs/benchmarks.md, "Worker memory").
DEFAULT_CPU_MAX_BATCH_TOKENS = 2_048


def check_max_batch_tokens(max_batch_tokens: int, max_length: int) -> int:
    """A bound below ``max_length`` could not hold one full-length text: refuse it."""
    if max_batch_tokens < max_length:
        raise ValueError(
            f"max_batch_tokens {max_batch_tokens} is below max_length {max_length}: "
            "one full-length text would not fit"
        )
    return max_batch_tokens


def plan_sub_batches(
    lengths: Sequence[int], call_overhead_tokens: int, max_batch_tokens: int
) -> list[list[int]]:
    """Group indices (shortest first) into sub-batches minimising padded tokens + call overhead.

    Every group's rows x longest length is at most ``max_batch_tokens``; only a single text
    longer than the bound can exceed it (the handlers rule that out). Exact dynamic programme
    over the length-sorted order: ``best[end]`` is the cheapest plan for the ``end`` shortest
    texts, its last group ``[start, end)`` padded to its longest. The inner minimum over
    ``start`` is one numpy expression, so a 1,024-text GPU batch plans in milliseconds (the
    pure-Python loop took ~0.3 s there); ties go to the largest ``start``.
    """
    n = len(lengths)
    order = sorted(range(n), key=lambda i: lengths[i])
    sorted_lengths = np.asarray([lengths[i] for i in order], dtype=np.float64)
    best = np.full(n + 1, math.inf)
    best[0] = 0.0
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        width = sorted_lengths[end - 1]
        # a group may exceed the token cap only when it is a single text
        rows = max(1, int(max_batch_tokens // width)) if width > 0 else end
        low = max(0, end - rows)
        costs = best[low:end] + (end - np.arange(low, end)) * width + call_overhead_tokens
        pick = int(np.argmin(costs[::-1]))  # first minimum from the right: the largest start
        best[end], cut[end] = costs[::-1][pick], end - 1 - pick
    groups: list[list[int]] = []
    end = n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def score_in_sub_batches(
    batch: Sequence[str],
    tokenizer: Any,
    model_version: str,
    max_length: int,
    plan: Callable[[Sequence[Sequence[int]]], list[list[int]]],
    forward: Callable[[Mapping[str, np.ndarray]], np.ndarray],
    shape_multiples: tuple[int, int] = (1, 1),
) -> list[PredictionResult]:
    """Tokenise, run ``forward`` on each planned sub-batch, scatter back to input order.

    ``forward`` gets int64 ``input_ids``/``attention_mask`` arrays and returns probabilities
    ``(rows, len(HEAD_NAMES))``. ``shape_multiples`` (width, rows) rounds each padded
    sub-batch up; rows added for it are dropped here.
    """
    texts = list(batch)
    if not texts:
        return []
    token_ids = tokenize(tokenizer, texts, max_length)
    probabilities = np.empty((len(texts), len(HEAD_NAMES)), dtype=np.float32)
    for indices in plan(token_ids):
        arrays = pad_arrays(
            [token_ids[i] for i in indices], tokenizer.pad_token_id, *shape_multiples
        )
        probabilities[indices] = np.asarray(forward(arrays))[: len(indices)]
    return [
        PredictionResult(text, text_scores(row), model_version)
        for text, row in zip(texts, probabilities, strict=True)
    ]


def text_scores(row: np.ndarray) -> TextScores:
    """One row of head probabilities (``HEAD_NAMES`` order) as ``TextScores``."""
    return TextScores(**{name: float(value) for name, value in zip(HEAD_NAMES, row, strict=True)})

"""A language router in front of two builds: English text to one, Chinese text to another.

The English student (MiniLM) reads no Chinese: its vocabulary holds 244 Chinese characters,
so Chinese text scores near the middle whatever it says. The multilingual student reads both
languages but is a little weaker on English (``docs/model-card.md``), so the router sends each
text to the build that reads it best, in one ``run_inference`` call: the batch is split by
:func:`text_route`, each part scored by its build, and the results put back in input order.
Every result names the build that scored it (``PredictionResult.model_id``), so a scored
event's ``model_version`` says which weights produced it.

It is itself a :class:`~models.serving.base.ModelHandler`, so the stream side is unchanged;
both builds run on the same backend.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from models.serving.base import ModelHandler, PredictionResult

Route = Literal["english", "multilingual"]

#: A text goes to the multilingual build when at least this share of its letters are CJK
#: ideographs (Chinese; also Japanese kanji), so "iPhone 质量很差" does, "OK 👍" does not.
CJK_SHARE = 0.2


def is_cjk(char: str) -> bool:
    """A CJK ideograph (Chinese; also Japanese kanji), not kana or Hangul."""
    return unicodedata.name(char, "").startswith(("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH"))


def cjk_share(text: str) -> float:
    """CJK ideographs over all letters (Unicode category ``L*``); 0.0 for a text with none."""
    letters = cjk = 0
    for char in text:
        if unicodedata.category(char).startswith("L"):
            letters += 1
            cjk += is_cjk(char)
    return cjk / letters if letters else 0.0


def text_route(text: str) -> Route:
    """Which build reads ``text``: the multilingual one for Chinese, the English one else."""
    return "multilingual" if cjk_share(text) >= CJK_SHARE else "english"


@dataclass(frozen=True, slots=True)
class RoutedModels:
    english: Any
    multilingual: Any


class RoutedHandler(ModelHandler[RoutedModels]):
    """Scores English text with ``english`` and Chinese text with ``multilingual``."""

    def __init__(self, english: ModelHandler[Any], multilingual: ModelHandler[Any]) -> None:
        self.english = english
        self.multilingual = multilingual

    @property
    def model_version(self) -> str:
        """Both builds, English first: what a worker or a run serves."""
        return f"{self.english.model_version}+{self.multilingual.model_version}"

    @property
    def precision(self) -> str | None:
        return getattr(self.english, "precision", None)

    def routes(self) -> dict[str, ModelHandler[Any]]:
        return {"english": self.english, "multilingual": self.multilingual}

    @property
    def max_batch_tokens(self) -> int | None:
        return getattr(self.english, "max_batch_tokens", None)

    def load_model(self) -> RoutedModels:
        return RoutedModels(self.english.load_model(), self.multilingual.load_model())

    def run_inference(
        self,
        batch: Sequence[str],
        model: RoutedModels,
        inference_args: Mapping[str, Any] | None = None,
    ) -> list[PredictionResult]:
        routes = [text_route(text) for text in batch]
        results: list[PredictionResult | None] = [None] * len(batch)
        for route, handler, loaded in (
            ("english", self.english, model.english),
            ("multilingual", self.multilingual, model.multilingual),
        ):
            indices = [i for i, r in enumerate(routes) if r == route]
            if not indices:
                continue
            scored = handler.run_inference([batch[i] for i in indices], loaded, inference_args)
            if len(scored) != len(indices):
                raise RuntimeError(f"{route} build returned {len(scored)} for {len(indices)}")
            for i, result in zip(indices, scored, strict=True):
                results[i] = result
        return [result for result in results if result is not None]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return self.english.batch_elements_kwargs()

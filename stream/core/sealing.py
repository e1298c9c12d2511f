"""Sealed dead-letter originals: the original key/value bytes encrypted, not masked.

Masking (``stream.core.pii.mask_pii_bytes``) is best-effort, so a masked original can still
hold a value that reads as personal data. With ``RISKSTREAM_DEAD_LETTER_KEY_FILE`` set, a dead
letter keeps its original key and value (and the unredacted ``detail``) encrypted with
AES-256-GCM instead: a random 96-bit nonce per part, associated data binding the part to its
source position (topic, partition, offset) and role (key, value, detail), so a ciphertext
moved to another record or another field does not open. The readable record keeps the reason,
a redacted detail, the source, sizes and the value's sha256; ``riskstream dead-letter replay``
opens the parts with the key files given to it and re-produces the originals.

Keys: a file holding 32 random bytes as base64 or hex (``python -c "import os,base64;
print(base64.b64encode(os.urandom(32)).decode())" > key``), never the pseudonymisation key.
Each sealed record names its key by id (the first 8 hex digits of the key's sha256), so a
reader given several key files opens records sealed under any of them: rotate by giving the
workers the new key and keeping the old file for replay until the topic's retention passed.

Pure functions over bytes (no Kafka); ``cryptography`` is imported only when sealing is used.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream.core.pii import QUOTED

KEY_BYTES = 32
NONCE_BYTES = 12
ALGORITHM = "AES-256-GCM"
#: Associated data starts with this, so a ciphertext made for anything else never opens here.
CONTEXT = "riskstream dead-letter v1"
#: The parts of a record that are sealed, each under its own nonce and associated data.
PARTS = ("key", "value", "detail")
KEY_HELP = (
    '32 random bytes as base64 or hex, e.g. python -c "import os,base64;'
    'print(base64.b64encode(os.urandom(32)).decode())" > key'
)


class SealingError(ValueError):
    """A key file that is no key, or a sealed part that does not open; one line."""


@dataclass(frozen=True)
class SealingKey:
    secret: bytes = field(repr=False)
    source: str = ""  # where it came from (a path), for messages

    @property
    def key_id(self) -> str:
        return key_id(self.secret)


def key_id(secret: bytes) -> str:
    """First 8 hex digits of the key's sha256: names the key without revealing it."""
    return hashlib.sha256(secret).hexdigest()[:8]


def parse_key(text: str, source: str = "key", what: str = "dead-letter") -> SealingKey:
    """A key file's text (base64 or hex of 32 bytes, surrounding whitespace ignored); ``what``
    names the key in the message (the pseudonymisation key has the same format)."""
    stripped = text.strip()
    secret: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", stripped):
        secret = bytes.fromhex(stripped)
    else:
        try:
            secret = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            secret = None
    if secret is None or len(secret) != KEY_BYTES:
        raise SealingError(f"{source}: not a {what} key ({KEY_HELP})")
    return SealingKey(secret, source)


def load_key(path: Path | str, what: str = "dead-letter") -> SealingKey:
    """The key in ``path``; a missing, unreadable or malformed file is one-line SealingError."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise SealingError(f"{path}: no such key file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SealingError(f"{path}: cannot read the key file ({exc})") from None
    return parse_key(text, str(path), what)


def create_key_file(path: Path | str) -> bool:
    """Write a new random key to ``path`` (mode 0600) unless a file is there; -> whether it
    wrote one. Atomic: the key is written to a temporary file and linked into place, so two
    workers starting together on a shared volume end up with the one key that won."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return False
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii") + "\n")
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


@functools.lru_cache(maxsize=8)
def cached_key(path: str) -> SealingKey:
    """The worker's key, read once per process (a new key needs a restart)."""
    return load_key(path)


def keyring(keys: Iterable[SealingKey]) -> dict[str, SealingKey]:
    """Key id -> key, for a reader given several key files (rotation)."""
    return {k.key_id: k for k in keys}


def associated_data(source: Mapping[str, Any], part: str) -> bytes:
    return orjson.dumps(
        [CONTEXT, str(source["topic"]), int(source["partition"]), int(source["offset"]), part]
    )


def _aead(key: SealingKey) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key.secret)


def seal(key: SealingKey, data: bytes, aad: bytes) -> dict[str, str]:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = _aead(key).encrypt(nonce, data, aad)
    return {
        "nonce_b64": base64.b64encode(nonce).decode("ascii"),
        "ciphertext_b64": base64.b64encode(ciphertext).decode("ascii"),
    }


def open_box(key: SealingKey, box: Mapping[str, Any], aad: bytes) -> bytes:
    """The plaintext of one sealed part; SealingError when it does not authenticate."""
    from cryptography.exceptions import InvalidTag

    try:
        nonce = base64.b64decode(box["nonce_b64"], validate=True)
        ciphertext = base64.b64decode(box["ciphertext_b64"], validate=True)
        if len(nonce) != NONCE_BYTES:
            raise ValueError("bad nonce length")
        return _aead(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, KeyError, TypeError, ValueError, binascii.Error):
        raise SealingError("does not open: tampered with, or not sealed for this record") from None


def seal_original(
    key: SealingKey,
    source: Mapping[str, Any],
    *,
    original_key: bytes | None,
    original_value: bytes | None,
    detail: str,
    max_original_bytes: int,
) -> dict[str, Any]:
    """The ``sealed_original`` field of a dead letter. Each original is sealed up to
    ``max_original_bytes`` (its readable ``original_*_truncated`` says when it was cut); a part
    that was absent (a null key, a tombstone) is null. The value's sha256 (of all its bytes)
    identifies it; the key's is left out: keys are short and guessable (an e-mail-shaped id)."""
    sealed: dict[str, Any] = {"alg": ALGORITHM, "key_id": key.key_id}
    for part, raw in (("key", original_key), ("value", original_value)):
        if raw is None:
            sealed[part] = None
            continue
        kept = raw[:max_original_bytes]
        box: dict[str, Any] = seal(key, kept, associated_data(source, part))
        box["bytes"] = len(raw)
        if part == "value":
            box["sha256"] = hashlib.sha256(raw).hexdigest()
        if len(kept) < len(raw):
            box["truncated"] = True
        sealed[part] = box
    sealed["detail"] = seal(key, detail.encode("utf-8"), associated_data(source, "detail"))
    return sealed


@dataclass(frozen=True)
class Opened:
    """A dead letter's originals, unsealed."""

    key: bytes | None
    value: bytes | None
    detail: str
    truncated: bool  # a part is only the prefix of its original (cannot be replayed)


def open_original(letter: Mapping[str, Any], keys: Mapping[str, SealingKey]) -> Opened:
    """Open a dead letter's ``sealed_original`` with the matching key of ``keys`` (by id);
    SealingError when it has none, no key file has its key id, or a part does not open."""
    sealed = letter.get("sealed_original")
    if not isinstance(sealed, Mapping):
        raise SealingError("not sealed (no sealed_original)")
    wanted = sealed.get("key_id")
    key = keys.get(str(wanted))
    if key is None:
        raise SealingError(f"key id {wanted} has no key file")
    source = letter["source"]
    parts: dict[str, bytes | None] = {}
    truncated = False
    for part in PARTS:
        box = sealed.get(part)
        if box is None:
            parts[part] = None
            continue
        try:
            parts[part] = open_box(key, box, associated_data(source, part))
        except SealingError as exc:
            raise SealingError(f"{part} {exc}") from None
        truncated = truncated or bool(box.get("truncated"))
    detail = (parts["detail"] or b"").decode("utf-8", errors="replace")
    return Opened(parts["key"], parts["value"], detail, truncated)


#: Quoted words a detail keeps when sealed: schema type names and codec names, never a value.
_KEEP_QUOTED = frozenset(
    {"string", "integer", "number", "object", "array", "boolean", "null"}
    | {"utf-8", "utf-16", "utf-32", "ascii"}
)


def redact_detail(detail: str) -> str:
    """A detail without the values it quotes (``rating: 'jane@...' is not of type 'integer'``
    -> ``rating: '…' is not of type 'integer'``): the sealed record keeps the full one."""

    def one(match: re.Match[str]) -> str:
        inner = match.group(0)[1:-1]
        return match.group(0) if inner in _KEEP_QUOTED else "'…'"

    return QUOTED.sub(one, detail)

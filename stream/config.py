"""Worker settings, from environment variables (or a ``.env`` file) via pydantic-settings."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import NoneType
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stream.core.policy import Pseudonymiser
from stream.core.rules import AlertThresholds, TextThresholds
from stream.core.steps import EdgeLimits
from stream.security import KafkaSecurity


def _cache_dir() -> Path:
    cache = os.environ.get("RISKSTREAM_CACHE_DIR")
    return Path(cache).expanduser() if cache else Path.home() / ".cache" / "riskstream"


def _default_data_dir() -> Path:
    """Faust's state folder lives in the cache, not in whatever directory the worker started."""
    return _cache_dir() / "faust"


def default_pseudonym_key_file() -> Path:
    """Where the pseudonymisation key is kept (and made on first start) when none is set."""
    return _cache_dir() / "pseudonym.key"


def _check_pseudonym_key_file(path: Path) -> Path:
    """RISKSTREAM_PSEUDONYM_KEY_FILE: a readable key. Only the default may be missing (the
    worker makes it): a mistyped path must not silently start a second set of pseudonyms."""
    from stream.core.sealing import SealingError, load_key

    if path == default_pseudonym_key_file() and not path.exists():
        return path
    try:
        load_key(path, "pseudonymisation")
    except SealingError as exc:
        raise ValueError(f"{exc} (make one with: riskstream privacy new-key PATH)") from None
    return path


_BROKER_URL = re.compile(r"^kafka://[A-Za-z0-9._\[\]:-]+:[0-9]{1,5}$")


def _check_broker_urls(value: str) -> str:
    """KAFKA_BROKER: one or more kafka://host:port, so a typo is one line at start, not a
    worker that retries an unresolvable name (or a traceback from deep in Faust)."""
    urls = [part.strip() for part in value.replace(",", ";").split(";") if part.strip()]
    bad = [url for url in urls if not _BROKER_URL.match(url)]
    if not urls or bad:
        shown = ", ".join(repr(url) for url in bad) or "nothing"
        raise ValueError(f"{shown}: each broker must be kafka://host:port, ';' between them")
    return value


def _parse_band(value: Any) -> Any:
    """``0.25,0.80`` (the environment's form; ``(0.25, 0.8)``, as `riskstream settings`
    prints it, reads back too) -> (0.25, 0.8); tuples pass as they are."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.strip().strip("()[]").split(","))
    return value


def _check_band(band: tuple[float, float]) -> tuple[float, float]:
    low, high = band
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"{low},{high}: a band is LOW,HIGH with 0 <= LOW < HIGH <= 1")
    return band


#: A neutral band, LOW,HIGH in the environment (not JSON).
Band = Annotated[
    tuple[float, float], NoDecode, BeforeValidator(_parse_band), AfterValidator(_check_band)
]


def _old_id_policy(value: Any) -> Any:
    """RISKSTREAM_EMAIL_SHAPED_IDS=hash (before the field policy) means pseudonymise."""
    return "pseudonymise" if value == "hash" else value


def _check_key_file(path: Path) -> Path:
    """RISKSTREAM_DEAD_LETTER_KEY_FILE: a readable key, checked when the settings load, so a
    worker with a bad key stops at its start, not at its first dead letter."""
    from stream.core.sealing import SealingError, load_key

    try:
        load_key(path)
    except SealingError as exc:
        raise ValueError(str(exc)) from None
    return path


def _check_builds_dir(path: Path) -> Path:
    """RISKSTREAM_BUILDS_DIR: a writable folder, or one the worker can make (checked when the
    settings load, so a read-only path stops the worker at its start, not at a promotion)."""
    path = path.expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a writable folder" if existing == path else f"cannot be made in {existing}"
        raise ValueError(f"{path} {what} (the worker writes adapted builds there)")
    return path


#: What an optional setting is given for "no value" (no bound, off, the backend's own...): an
#: unset variable means the default, which for some (the future bound, the member TTL) is a
#: value, so "unset for no bound" could not be written. Case-insensitive; ``riskstream settings``
#: prints ``None``, which reads back the same.
NONE_WORD = "none"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RISKSTREAM_", env_file=".env", extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _none_word(cls, value: Any, info: ValidationInfo) -> Any:
        """``none`` -> None for an optional setting; an empty value there is an error that says
        what to write (it meant the default to some and "no bound" to others)."""
        if not isinstance(value, str) or info.field_name not in optional_fields():
            return value
        if value.strip().lower() == NONE_WORD:
            return None
        if not value.strip():
            raise ValueError(
                f"empty: '{NONE_WORD}' for no value, or leave it unset for the default"
            )
        return value

    kafka_broker: Annotated[str, AfterValidator(_check_broker_urls)] = Field(
        "kafka://localhost:9092",
        validation_alias=AliasChoices("KAFKA_BROKER", "RISKSTREAM_KAFKA_BROKER"),
        description="Broker URL(s), e.g. kafka://host:9092;kafka://host2:9092.",
    )
    topic_prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]{0,200}$",
        description="Prepended to every topic and the app id (Kafka's topic characters).",
    )
    app_id: str = Field(
        "riskstream",
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Faust app id (consumer group, changelogs).",
    )
    partitions: int = Field(4, ge=1, description="Partitions of topics this app creates.")
    replication_factor: int | None = Field(
        None,
        ge=1,
        description="Replication of the topics this app creates (its own, the changelogs, "
        "Faust's leader topic, model-registry). Unset or 'none': min(3, brokers), so 1 on a "
        "single broker; with 3 or more replicas min.insync.replicas=2 is added, since the "
        "worker produces with acks=all. `riskstream doctor` checks existing topics against "
        "the same rules.",
    )
    store: Literal["memory://", "rocksdb://"] = Field(
        "memory://",
        description="Faust table store: memory:// rebuilds state from the changelog at start; "
        "rocksdb:// keeps it on local disk in RISKSTREAM_DATA_DIR.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Faust's datadir; each app id gets its own <app id>-data folder in it.",
    )
    rebalance_timeout_s: float | None = Field(
        None, gt=0, description="Group rebalance timeout; unset or 'none' keeps Faust's default."
    )
    session_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Consumer session timeout: how soon a dead worker's partitions move; "
        "unset or 'none': Faust's default.",
    )
    fetch_max_wait_ms: int = Field(
        100, ge=1, description="Longest a consumer fetch waits for data (Faust's is 1500)."
    )
    producer_linger_ms: int = Field(
        5, ge=0, description="How long the producer gathers outputs into one request."
    )
    web_port: int = Field(6066, ge=1, le=65535, description="Worker web server (/metrics).")
    web_bind: str = Field(
        "127.0.0.1",
        description="Address the web server listens on; 0.0.0.0 only where the network is "
        "trusted (compose sets it for Prometheus).",
    )
    web_host: str = Field("127.0.0.1", description="Host name the worker advertises.")
    backend: Literal[
        "auto", "torch-cpu", "onnx-cpu", "onnx-cpu-int8", "torch-cuda", "tensorrt", "stub"
    ] = Field(
        "auto",
        description="Model backend: auto picks tensorrt, then torch-cuda, then onnx-cpu (exact "
        "fp32); onnx-cpu-int8 is about 2x torch on CPU at 99.8 % label agreement, its scores "
        "move slightly with batch composition; stub answers at once (benchmarks of the stream "
        "layer only).",
    )
    model_version: str | None = Field(
        None,
        description="Serve this build from the model cache (e.g. a baseline, for a backtest "
        "--compare); unset or 'none': the current student.",
    )
    chinese_model_version: str = Field(
        "multilingual",
        description="The build that scores Chinese text, which a language router sends to it "
        "(the main build scores the rest): 'multilingual' for the committed English + Chinese "
        "student, a build from the model cache, or 'none' for the main build alone.",
    )
    builds_dir: Annotated[Path, AfterValidator(_check_builds_dir)] | None = Field(
        None,
        description="A writable folder for the builds the worker makes while it runs: adapted "
        "builds made from the model registry's bundles (about 170 MB each; one the registry "
        "no longer names is removed). Looked up before the model cache. Unset or 'none': the "
        "model cache, which must then be writable; set it where that is read-only (the "
        "Kubernetes base, with readOnlyRootFilesystem, mounts an emptyDir here).",
    )
    shadow_backend: (
        Literal["torch-cpu", "onnx-cpu", "onnx-cpu-int8", "torch-cuda", "tensorrt", "stub"] | None
    ) = Field(
        None,
        description="Shadow scoring: a challenger scores the same texts on this backend, off the "
        "critical path, published to shadow-scores with agreement metrics; unset or 'none' (and "
        "no RISKSTREAM_SHADOW_MODEL_VERSION): off. On CPU it shares the cores with the champion.",
    )
    shadow_model_version: str | None = Field(
        None,
        description="The challenger's build from the model cache; unset or 'none': the "
        "champion's build (then RISKSTREAM_SHADOW_BACKEND compares backends, e.g. onnx-cpu-int8).",
    )
    max_batch_size: int | None = Field(
        None, ge=1, description="Micro-batch size limit; unset or 'none': the backend's own."
    )
    max_batch_wait_ms: float | None = Field(
        None,
        ge=0,
        description="Micro-batch time limit after its first text; unset or 'none': the "
        "backend's (none on a CPU: a batch is what queued while the model ran; 20 ms on a GPU).",
    )
    max_batch_tokens: int | None = Field(
        None,
        ge=256,
        description="Bound on texts x padded tokens per forward pass (texts are truncated at "
        "256 tokens), so a worker's memory stays bounded whatever the text lengths; unset or "
        "'none': the backend's own (2048 on CPU, 16384 on a GPU).",
    )
    model_threads: int | None = Field(
        None,
        ge=1,
        description="Threads per ONNX Runtime session on CPU; unset or 'none': one per core. "
        "1 for one worker per core (no thread pool): several workers on few cores otherwise "
        "oversubscribe them.",
    )
    inference_timeout_s: float | None = Field(
        120.0,
        gt=0,
        description="A model batch not answered this long fails its texts: one line and exit "
        "(the supervisor starts a fresh worker); 'none' for no bound.",
    )
    max_event_bytes: int = Field(
        65536, ge=256, description="Larger input records are dead-lettered (oversized_event)."
    )
    max_key_bytes: int = Field(
        1024, ge=16, description="Larger record keys are dead-lettered (oversized_key)."
    )
    event_time_max_future_s: float | None = Field(
        3600.0,
        ge=0,
        description="Event times further ahead of the wall clock are dead-lettered "
        "(invalid_event_time); 'none' for no bound. Whatever the bound, an event ahead of the "
        "wall clock never moves its member's or its subjects' clock past it "
        "(stream/core/member.py).",
    )
    event_time_max_past_s: float | None = Field(
        None,
        ge=0,
        description="Event times further behind the wall clock are dead-lettered; "
        "unset (default) or 'none' for no bound, so backtests of old data run.",
    )
    max_dead_letter_bytes: int = Field(
        65536,
        ge=1024,
        description="Original key/value bytes kept in a dead letter; above it a prefix, the "
        "size and the sha256. Keep it well under producer_max_request_bytes.",
    )
    pseudonym_key_file: Annotated[Path, AfterValidator(_check_pseudonym_key_file)] | None = Field(
        default_factory=default_pseudonym_key_file,
        description="The pseudonymisation key (32 bytes, base64 or hex; `riskstream privacy "
        "new-key PATH`), not the dead-letter key: identifiers (member_id, device_id) and ids "
        "that carry PII become p1-<HMAC-SHA256> pseudonyms (README, Privacy). Every worker of a "
        "group needs the same file. Unset: <cache>/pseudonym.key, made on the first start. "
        "'none': identifiers pass as sent, and an id that carries PII dead-letters its event. "
        "A new key gives every member a new pseudonym (see Privacy: rotation).",
    )
    pii_in_ids: Annotated[Literal["pseudonymise", "reject"], BeforeValidator(_old_id_policy)] = (
        Field(
            "pseudonymise",
            validation_alias=AliasChoices(
                "RISKSTREAM_PII_IN_IDS", "pii_in_ids", "RISKSTREAM_EMAIL_SHAPED_IDS"
            ),
            description="A reference id (event_id, product_id, merchant_id, conversation_id) in "
            "which the masker finds PII (an e-mail, phone, card...): pseudonymised like an "
            "identifier, or the event dead-lettered (schema_violation). "
            "RISKSTREAM_EMAIL_SHAPED_IDS (hash, reject) is read as before.",
        )
    )
    raw_dead_letters: Literal["masked", "drop"] = Field(
        "masked",
        description="Dead-letter originals that decode to no text: kept with every 7+ digit "
        "run and @ token masked, or not kept (size and sha256 only).",
    )
    dead_letter_key_file: Annotated[Path, AfterValidator(_check_key_file)] | None = Field(
        None,
        description="A file holding a 32-byte key (base64 or hex; generate with python -c "
        '"import os,base64;print(base64.b64encode(os.urandom(32)).decode())" > key), not the '
        "pseudonymisation key: dead letters then keep their original key and value sealed "
        "(AES-256-GCM, bound to the source position, tagged with the key's id) instead of "
        "masked, and `riskstream dead-letter replay --key-file` opens them. Rotate by giving "
        "the workers a new key and keeping the old file for replay until the dead-letter "
        "topic's retention passed. Unset or 'none': masked originals "
        "(RISKSTREAM_RAW_DEAD_LETTERS).",
    )
    torch_compile: bool = Field(
        False, description="torch-cuda: torch.compile the network (slower start, faster batches)."
    )
    require_cuda: bool = Field(
        False, description="torch-cuda: exit if no CUDA device, instead of running on the CPU."
    )
    member_stage: Literal["fused", "hop"] = Field(
        "fused",
        description="fused: an input record already on its member's partition (keyed by "
        "member id, Kafka's default murmur2 partitioner, RISKSTREAM_PARTITIONS partitions) "
        "goes through the member stage in the edge, without the member-events hop; any other "
        "record still takes the hop. hop: every record takes it.",
    )
    processing_error_policy: Literal["continue", "fail"] = Field(
        "continue",
        description="An exception while processing one event: dead-letter it "
        "(processing_error) and go on, or stop the worker before it commits.",
    )
    consumer_max_fetch_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes one fetch takes per partition; keep it above the broker's "
        "largest record (message.max.bytes), or a record larger than it stops its partition.",
    )
    producer_max_request_bytes: int = Field(
        1_048_576, ge=65536, description="Largest produce request (the producer's limit)."
    )
    negative_review_threshold: float = Field(
        0.85, ge=0, le=1, description="negative_review alerts (operating points: model card)."
    )
    scam_chat_threshold: float = Field(
        0.90, ge=0, le=1, description="scam_chat alerts (operating points: model card)."
    )
    chinese_negative_review_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="negative_review threshold for the reviews the Chinese build scored "
        "(unset or 'none': RISKSTREAM_NEGATIVE_REVIEW_THRESHOLD). Calibrate it on your own "
        "labelled traffic: a backtest report gives the threshold for precision 0.90 per language.",
    )
    chinese_scam_chat_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="scam_chat threshold for the chats the Chinese build scored (unset or "
        "'none': RISKSTREAM_SCAM_CHAT_THRESHOLD).",
    )
    neutral_band: Band = Field(
        (0.25, 0.80),
        description="P(negative) from LOW (inclusive) to HIGH (exclusive), written LOW,HIGH, "
        "reads neutral in scored events' three-way `sentiment` and the profiles' counts; at or "
        "above HIGH negative, below LOW positive. Default: fitted on three English sets rated "
        "by people with a neutral class (model card, Neutral).",
    )
    chinese_neutral_band: Band | None = Field(
        None,
        description="The neutral band for the texts the Chinese build scored, LOW,HIGH (unset "
        "or 'none': RISKSTREAM_NEUTRAL_BAND). Fitted on Chinese news rated with a neutral class "
        "it is 0.05,0.70 (model card, Neutral): set that for news-like Chinese traffic; on "
        "reviews it reads most positives as neutral.",
    )
    fraud_risk_threshold: float = Field(
        0.15,
        ge=0,
        le=1,
        description="fraud_risk alerts (ULB day 2: precision 0.66, recall 0.81; "
        "docs/evaluation.md).",
    )
    member_ttl_days: float | None = Field(
        365.0,
        gt=0,
        description="Members inactive this long (event time, against the newest event time of "
        "their partition, taken no later than the wall clock) are dropped from the table; "
        "'none' keeps every member.",
    )
    profile_throttle_s: float = Field(
        60.0, ge=0, description="Event-time seconds between a member's profile publications."
    )
    state_flush_ms: int = Field(
        1000,
        ge=0,
        description="Longest a member's new state waits to be written (its events are "
        "committed after it): one table write per active member per flush, not per event. "
        "Outputs never wait for it; 0 writes after every publisher batch.",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="Worker log level."
    )
    broker_data_loss_s: float = Field(
        10.0,
        gt=0,
        description="Signs that the broker lost data the worker knew (its topics missing, "
        "its internal topics or changelogs recreated with another partition count, offsets "
        "beyond a log's end) seen this long: the worker exits (70) naming them in one line, "
        "and its next start recreates the topics it owns (README, When the broker loses its "
        "data).",
    )
    recovery_stalled_s: float | None = Field(
        120.0,
        gt=0,
        description="Table recovery that reads no changelog record this long: one line and "
        "exit (70); 'none' for no bound.",
    )
    standby_replicas: int | None = Field(
        None,
        ge=0,
        description="Warm copies of each table partition kept by other workers (Faust's "
        "table_standby_replicas): with rocksdb:// a worker taking over a dead one's partition "
        "reads nothing more (1 M members: 16 s outage instead of 108 s, docs/benchmarks.md). "
        "Unset or 'none': 1 with rocksdb://, 0 with memory://, where a promoted standby is "
        "read again from the changelog's start anyway and only costs memory.",
    )

    @property
    def standby_replicas_in_effect(self) -> int:
        """RISKSTREAM_STANDBY_REPLICAS, or what its unset value means for the store."""
        if self.standby_replicas is not None:
            return self.standby_replicas
        return 1 if self.store == "rocksdb://" else 0

    group_instance_id: str | None = Field(
        None,
        min_length=1,
        max_length=249,
        description="Static group membership (KIP-345): a stable id per worker, e.g. the pod "
        "name of a StatefulSet, so a restart within the session timeout rejoins as the same "
        "member without a rebalance; every worker of the group needs its own. Unset or "
        "'none': dynamic membership.",
    )

    def topic(self, name: str) -> str:
        """A logical topic name with this deployment's prefix."""
        return f"{self.topic_prefix}{name}"

    def edge_limits(self) -> EdgeLimits:
        def ms(seconds: float | None) -> int | None:
            return None if seconds is None else int(seconds * 1000)

        return EdgeLimits(
            max_event_bytes=self.max_event_bytes,
            max_key_bytes=self.max_key_bytes,
            max_future_ms=ms(self.event_time_max_future_s),
            max_past_ms=ms(self.event_time_max_past_s),
            max_dead_letter_bytes=self.max_dead_letter_bytes,
        )

    def pseudonymiser(self) -> Pseudonymiser | None:
        """The edge's pseudonymiser under RISKSTREAM_PSEUDONYM_KEY_FILE (None: 'none'). The
        default file is made on the first start (logged once, with the key's id, never the
        key); every later start, and every worker sharing the folder, reads the same one."""
        import logging

        from stream.core.sealing import create_key_file, load_key

        path = self.pseudonym_key_file
        if path is None:
            return None
        if create_key_file(path) if path == default_pseudonym_key_file() else False:
            logging.getLogger(__name__).warning(
                "made a pseudonymisation key at %s: give every worker of this group the same "
                "file (RISKSTREAM_PSEUDONYM_KEY_FILE)",
                path,
            )
        key = load_key(path, "pseudonymisation")
        return Pseudonymiser(key.secret, key.key_id)

    def chinese_build(self) -> str | None:
        """The model version that scores Chinese text, or None (no routing)."""
        if self.chinese_model_version == "none":
            return None
        if self.chinese_model_version == "multilingual":
            from models.serving.artefacts import multilingual_version

            return multilingual_version()
        return self.chinese_model_version

    @property
    def shadow_enabled(self) -> bool:
        return self.shadow_backend is not None or self.shadow_model_version is not None

    def challenger(self) -> Settings:
        """These settings with the challenger's backend and build in the champion's place."""
        return self.model_copy(
            update={
                "backend": self.shadow_backend or self.backend,
                "model_version": self.shadow_model_version or self.model_version,
                "shadow_backend": None,
                "shadow_model_version": None,
            }
        )

    def thresholds(self) -> AlertThresholds:
        chinese = self.chinese_build()
        own = TextThresholds(
            self.chinese_negative_review_threshold,
            self.chinese_scam_chat_threshold,
            self.chinese_neutral_band,
        )
        return AlertThresholds(
            negative_review=self.negative_review_threshold,
            scam_chat=self.scam_chat_threshold,
            fraud_risk=self.fraud_risk_threshold,
            neutral_band=self.neutral_band,
            by_build={chinese: own} if chinese and own != TextThresholds() else {},
        )


def optional_fields() -> frozenset[str]:
    """The settings that may be None (``none`` in the environment)."""
    return _OPTIONAL


_OPTIONAL = frozenset(
    name for name, info in Settings.model_fields.items() if NoneType in get_args(info.annotation)
)


class SettingsError(ValueError):
    """A setting with a value it cannot take; the message is one line naming the variable."""


#: Variables read outside ``Settings`` (by the model cache and the base encoder's loader).
OTHER_VARIABLES = {
    "RISKSTREAM_CACHE_DIR": "Downloaded data wheels, embeddings, installed models, ONNX builds "
    "and Faust's state (default ~/.cache/riskstream).",
    "RISKSTREAM_ENCODER_DIR": "Another copy of the base encoder (machines without its wheel).",
}
#: Variables of the test suite and benches, never read by the product.
TEST_PREFIX = "RISKSTREAM_TEST_"


def env_name(field: str) -> str:
    """The variable a ``Settings`` field is read from (its first alias, if it has any)."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"RISKSTREAM_{field.upper()}"


def known_variables() -> set[str]:
    names = {env_name(f) for f in Settings.model_fields}
    names |= {f"RISKSTREAM_{f.upper()}" for f in Settings.model_fields}
    for settings_class in EXTRA_SETTINGS:
        prefix = settings_class.model_config.get("env_prefix", "")
        names |= {f"{prefix}{f}".upper() for f in settings_class.model_fields}
        names |= {f"{prefix}{f}_FILE".upper() for f in settings_class.model_fields}
    return names | set(OTHER_VARIABLES)


#: Other settings classes read from the same environment (e.g. Kafka security).
EXTRA_SETTINGS: list[type[BaseSettings]] = [KafkaSecurity]


def unknown_variables(environ: dict[str, str]) -> list[str]:
    """``RISKSTREAM_*`` variables that no setting reads, each with the closest known name."""
    import difflib

    known = known_variables()
    found = []
    for name in sorted(environ):
        if (
            name.startswith("RISKSTREAM_")
            and not name.startswith(TEST_PREFIX)
            and name not in known
        ):
            close = difflib.get_close_matches(name, sorted(known), n=1)
            found.append(f"{name}" + (f" (did you mean {close[0]}?)" if close else ""))
    return found


def one_line(exc: Exception) -> str:
    """pydantic's multi-line validation report -> one line per bad variable, joined."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        name = env_name(field) if field in Settings.model_fields else field
        given = error.get("input")
        message = error["msg"]
        if error["type"] == "literal_error":
            message = "must be one of " + message.removeprefix("Input should be ")
        if field in _OPTIONAL and error["type"] != "value_error":
            message += f" (or '{NONE_WORD}')"
        parts.append(f"{name}={given!r}: {message}")
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and ``.env``); a bad value raises ``SettingsError`` with
    one line naming the variable and what it may be, and unknown ``RISKSTREAM_*`` variables
    (a misspelt name is otherwise ignored silently) are logged as warnings."""
    import logging

    from pydantic import ValidationError

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(one_line(exc)) from None
    for line in unknown_variables(dict(os.environ)):
        logging.getLogger("riskstream.config").warning("unknown setting %s: ignored", line)
    return settings


def settings_table() -> str:
    """The README's configuration table, generated from ``Settings`` (a test keeps it true)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field, info in Settings.model_fields.items():
        if info.default_factory is not None:
            default = "see meaning"
        elif info.default is None:
            default = "unset"
        elif info.default == "":
            default = "empty"
        else:
            default = f"`{info.default}`"
        rows.append(f"| `{env_name(field)}` | {default} | {info.description or ''} |")
    for name, meaning in OTHER_VARIABLES.items():
        rows.append(f"| `{name}` | see meaning | {meaning} |")
    return "\n".join(rows)

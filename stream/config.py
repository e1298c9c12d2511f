"""Worker settings, from environment variables (or a ``.env`` file) via pydantic-settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.rules import AlertThresholds
from stream.steps import EdgeLimits


def _default_data_dir() -> Path:
    """Faust's state folder lives in the cache, not in whatever directory the worker started."""
    cache = os.environ.get("RISKSTREAM_CACHE_DIR")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache" / "riskstream") / "faust"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RISKSTREAM_", env_file=".env", extra="ignore")

    kafka_broker: str = Field(
        "kafka://localhost:9092",
        validation_alias=AliasChoices("KAFKA_BROKER", "RISKSTREAM_KAFKA_BROKER"),
        description="Broker URL(s), e.g. kafka://host:9092;kafka://host2:9092.",
    )
    topic_prefix: str = Field("", description="Prepended to every topic and the app id.")
    app_id: str = "riskstream"
    partitions: int = Field(4, ge=1, description="Partitions of topics this app creates.")
    replication_factor: int = Field(1, ge=1)
    store: str = Field("memory://", description="Faust table store; rocksdb:// in production.")
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Faust's datadir; each app id gets its own <app id>-data folder in it.",
    )
    rebalance_timeout_s: float | None = Field(
        None, description="Group rebalance timeout; None keeps Faust's default."
    )
    session_timeout_s: float | None = Field(
        None, description="Consumer session timeout: how soon a dead worker's partitions move."
    )
    fetch_max_wait_ms: int = Field(
        100, ge=1, description="Longest a consumer fetch waits for data (Faust's is 1500)."
    )
    producer_linger_ms: int = Field(
        5, ge=0, description="How long the producer gathers outputs into one request."
    )
    web_port: int = Field(6066, description="Worker web server (/metrics).")
    web_host: str = "127.0.0.1"
    backend: str = Field("auto", description="Model backend: auto, torch-cpu, ...")
    model_version: str | None = Field(
        None,
        description="Serve this build from the model cache (e.g. a baseline, for a backtest "
        "--compare); default: the current student.",
    )
    max_batch_size: int | None = Field(None, ge=1, description="Default: the backend's own.")
    max_batch_wait_ms: float | None = Field(None, ge=0, description="Default: the backend's own.")
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
        "(invalid_event_time); unset for no bound.",
    )
    event_time_max_past_s: float | None = Field(
        None,
        ge=0,
        description="Event times further behind the wall clock are dead-lettered; "
        "unset (default) for no bound, so backtests of old data run.",
    )
    max_dead_letter_bytes: int = Field(
        65536,
        ge=1024,
        description="Original key/value bytes kept in a dead letter; above it a prefix, the "
        "size and the sha256. Keep it well under producer_max_request_bytes.",
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
    negative_review_threshold: float = Field(0.85, ge=0, le=1)
    scam_chat_threshold: float = Field(0.90, ge=0, le=1)
    fraud_risk_threshold: float = Field(
        0.15, ge=0, le=1, description="fraud_risk alerts (docs/evaluation.md: precision/recall)."
    )
    profile_throttle_s: float = Field(
        60.0, ge=0, description="Event-time seconds between a member's profile publications."
    )
    log_level: str = "info"

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

    def thresholds(self) -> AlertThresholds:
        return AlertThresholds(
            negative_review=self.negative_review_threshold,
            scam_chat=self.scam_chat_threshold,
            fraud_risk=self.fraud_risk_threshold,
        )

"""Worker settings, from environment variables (or a ``.env`` file) via pydantic-settings."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.rules import AlertThresholds


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
    max_event_bytes: int = Field(65536, ge=256)
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

    def thresholds(self) -> AlertThresholds:
        return AlertThresholds(
            negative_review=self.negative_review_threshold,
            scam_chat=self.scam_chat_threshold,
            fraud_risk=self.fraud_risk_threshold,
        )

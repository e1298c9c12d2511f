"""The Faust application; its topics, tables and agents live beside it.

See ``topics.py``, ``tables.py`` and ``agents.py``.
"""

from __future__ import annotations

import faust

from stream import faust_fixes
from stream.config import load_settings
from stream.security import KafkaSecurity

settings = load_settings()
#: Decides every commit of the agents' input partitions (see ``stream/delivery.py``).
ledger = faust_fixes.apply(fetch_max_wait_ms=settings.fetch_max_wait_ms)


def _optional(**options: float | None) -> dict[str, float]:
    """Only the options that are set, so unset ones keep Faust's defaults."""
    return {name: value for name, value in options.items() if value is not None}


settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the leaf folder
app = faust.App(
    settings.topic(settings.app_id),
    broker=settings.kafka_broker,
    # SASL/TLS from RISKSTREAM_KAFKA_* (stream/security.py); None for PLAINTEXT
    broker_credentials=KafkaSecurity.from_env().faust_credentials(),
    store=settings.store,
    datadir=str(settings.data_dir / "{conf.name}-data"),
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,  # all in-sync replicas: an acked output survives a broker loss
    # Several outputs per input event: a short linger sends them in one request, not one each.
    producer_linger_ms=settings.producer_linger_ms,
    producer_max_request_size=settings.producer_max_request_bytes,
    consumer_max_fetch_size=settings.consumer_max_fetch_bytes,
    web_bind=settings.web_bind,
    web_host=settings.web_host,
    web_port=settings.web_port,
    # Faust's table and router endpoints serve member state (devices, countries, merchants,
    # recent event ids) to anyone who can reach the port: off. Only /metrics is served.
    web_tables_enabled=False,
    web_router_enabled=False,
    web_stats_enabled=False,
    web_graph_enabled=False,
    web_in_thread=False,
    autodiscover=False,
    **_optional(
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
    ),
)

"""The Faust application. Topics, tables and agents live beside it (topics.py, tables.py, agents.py)."""

from __future__ import annotations

import faust

from stream.config import Settings

settings = Settings()

app = faust.App(
    settings.topic(settings.app_id),
    broker=settings.kafka_broker,
    store=settings.store,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,  # all in-sync replicas: an acked output survives a broker loss
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    autodiscover=False,
    **(
        {"broker_rebalance_timeout": settings.rebalance_timeout_s}
        if settings.rebalance_timeout_s
        else {}
    ),
)

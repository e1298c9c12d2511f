"""Create the app's topics on the broker (idempotent): production clusters often disable
auto-creation, and member-profiles must be compacted from the start."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.config import Settings
from stream.security import KafkaSecurity, start_client

logger = logging.getLogger("riskstream.admin")

#: Logical topic -> extra topic configs.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "reviews": {},
    "chats": {},
    "transactions": {},
    "riskstream-member-events": {},
    "riskstream-subject-events": {},
    "scored-events": {},
    "alerts": {},
    "member-profiles": {"cleanup.policy": "compact"},
    "dead-letter": {},
}


def bootstrap_servers(broker_url: str) -> str:
    """``kafka://a:9092;kafka://b:9092`` -> ``a:9092,b:9092`` (aiokafka's form)."""
    hosts = [
        part.strip().removeprefix("kafka://") for part in broker_url.replace(",", ";").split(";")
    ]
    return ",".join(h for h in hosts if h)


async def ensure_topics(
    settings: Settings, *, timeout_s: float = 30.0, security: KafkaSecurity | None = None
) -> list[str]:
    """Create missing topics; returns the names created. ``security``: how to reach the broker
    (default: the ``RISKSTREAM_KAFKA_*`` environment). A broker that cannot be reached with it
    raises ``KafkaAccessError``, one line saying whether TLS, SASL or the connection failed."""
    security = security or KafkaSecurity.from_env()
    bootstrap = bootstrap_servers(settings.kafka_broker)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **security.aiokafka_kwargs(),
    )
    await start_client(admin, bootstrap, security, timeout_s)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic(name),
                settings.partitions,
                settings.replication_factor,
                topic_configs=configs,
            )
            for name, configs in TOPIC_CONFIGS.items()
            if settings.topic(name) not in existing
        ]
        created: list[str] = []
        for topic in wanted:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        if created:
            logger.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()

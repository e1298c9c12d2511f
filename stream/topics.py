"""Every topic the app reads or writes. Values stay raw bytes: the codec decodes and validates
them itself, so a bad record reaches the dead-letter topic with its original bytes."""

from __future__ import annotations

from stream.app import app, settings


def _raw_topic(name: str, **options: object):
    return app.topic(
        settings.topic(name),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        **options,
    )


# Inputs
reviews_topic = _raw_topic("reviews")
chats_topic = _raw_topic("chats")
transactions_topic = _raw_topic("transactions")

# Internal: valid events (text already scored) re-keyed by member, so the member stage and its
# table are co-partitioned.
member_events_topic = _raw_topic("riskstream-member-events", internal=True)
# Internal: review/chat mentions re-keyed by product or brand for the surge detector.
subject_events_topic = _raw_topic("riskstream-subject-events", internal=True)

# Outputs
scored_events_topic = _raw_topic("scored-events")
alerts_topic = _raw_topic("alerts")
member_profiles_topic = _raw_topic("member-profiles")
dead_letter_topic = _raw_topic("dead-letter")

#: Logical input topic name -> topic, for the edge agents.
INPUT_TOPICS = {
    "reviews": reviews_topic,
    "chats": chats_topic,
    "transactions": transactions_topic,
}

#: Logical output topic name -> topic, for the stages' ``Output`` records.
OUTPUT_TOPICS = {
    "scored-events": scored_events_topic,
    "alerts": alerts_topic,
    "member-profiles": member_profiles_topic,
    "dead-letter": dead_letter_topic,
    "riskstream-member-events": member_events_topic,
    "riskstream-subject-events": subject_events_topic,
}

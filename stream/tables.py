"""Tables: member state, partitioned by member id, backed by a changelog topic."""

from __future__ import annotations

from stream.app import app, settings

#: member id -> member state (see stream.profiles); restored from its changelog on restart.
member_to_profile = app.Table(
    "member-to-profile",
    default=None,
    partitions=settings.partitions,
    key_type=str,
    # No value_type: values are plain JSON dicts (value_type=dict breaks changelog recovery).
)

#: "product:<id>" / "brand:<id>" -> surge detector state (see stream.surge).
subject_to_surge = app.Table(
    "subject-to-surge",
    default=None,
    partitions=settings.partitions,
    key_type=str,
)

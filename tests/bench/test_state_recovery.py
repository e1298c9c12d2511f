"""``bench/state_recovery.py`` recovers members with full history (issue 22): its states are
the member stage's own, past the horizon of recent ids, and read back as the table reads them."""

from __future__ import annotations

import base64

import orjson

from bench.state_recovery import template_states
from stream.core.member import DIGEST_BYTES, RECENT_EVENTS, has_seen
from stream.worker.tables import JsonValues


def test_the_recovered_members_are_long_lived_states_of_the_member_stage() -> None:
    states = template_states()
    assert len(states) >= 100
    for state in states:
        assert len(base64.b64decode(state["seen"])) == RECENT_EVENTS * DIGEST_BYTES
        assert sum(state["counts"].values()) > RECENT_EVENTS  # past the horizon
        assert has_seen(state, state["last_event_id"])
    # as the bench writes them into the changelog, and as the worker's table reads them
    table = JsonValues({"m-1": orjson.dumps({**states[0], "member_id": "m-1", "partition": 2})})
    assert table["m-1"]["counts"] == states[0]["counts"]

"""Static group membership (KIP-345): RISKSTREAM_GROUP_INSTANCE_ID reaches Faust's consumer,
and a worker with one never sends the LeaveGroup that would undo it."""

from __future__ import annotations

import asyncio

from stream.config import Settings
from stream.ops.admin import group_member_file, leave_for_a_killed_worker
from stream.worker.app import make_faust_app


def test_the_instance_id_reaches_the_consumer(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RISKSTREAM_GROUP_INSTANCE_ID", "riskstream-worker-2")
    settings = Settings(data_dir=tmp_path)
    assert settings.group_instance_id == "riskstream-worker-2"
    app = make_faust_app(settings)
    assert app.conf.consumer_group_instance_id == "riskstream-worker-2"
    monkeypatch.setenv("RISKSTREAM_GROUP_INSTANCE_ID", "none")
    assert make_faust_app(Settings(data_dir=tmp_path)).conf.consumer_group_instance_id is None


def test_a_static_member_leaves_no_predecessor(tmp_path) -> None:
    """The group-member file survives on the pod's volume and the worker is PID 1 in every
    container: without this, each restart would remove its own static member (a rebalance)."""
    settings = Settings(data_dir=tmp_path, group_instance_id="riskstream-worker-0")
    path = group_member_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("1 aiokafka-0-dead-member")
    assert asyncio.run(leave_for_a_killed_worker(settings)) is None
    assert path.exists()  # untouched, and no broker was asked (none runs here)


def test_standbys_follow_the_store_unless_set(tmp_path) -> None:
    """A memory:// standby is re-read from the changelog's start when promoted (measured:
    docs/benchmarks.md, "Warm failover"), so it only costs memory there."""
    assert Settings(data_dir=tmp_path).standby_replicas_in_effect == 0
    assert Settings(data_dir=tmp_path, store="rocksdb://").standby_replicas_in_effect == 1
    assert Settings(data_dir=tmp_path, standby_replicas=2).standby_replicas_in_effect == 2
    app = make_faust_app(Settings(data_dir=tmp_path, store="rocksdb://"))
    assert app.conf.table_standby_replicas == 1

"""``riskstream doctor``: each misconfiguration gives its finding (one line, with the fix) and the
exit code (0 pass, 3 warn, 4 fail), from snapshots of a cluster without Kafka; then the
collector against the embedded broker (Tansu), and the topic-creation defaults that follow
the same rules."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from stream.config import Settings
from stream.ops.admin import creation_configs, creation_replication
from stream.ops.doctor import (
    ACLS_DENIED,
    ACLS_NOT_ENFORCED,
    ALL,
    ALLOW,
    CLUSTER,
    CREATE,
    DENY,
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_WARN,
    FAIL,
    GROUP,
    INFO,
    LITERAL,
    PASS,
    PREFIXED,
    READ,
    TOPIC,
    WARN,
    Acl,
    ClusterSnapshot,
    Finding,
    TopicState,
    check,
    client_principal,
    collect,
    exit_code,
    worker_needs,
)

DAY_MS = 24 * 3_600_000
PREFIX = "p."
PROFILES = "p.member-profiles"
CHANGELOG = "p.riskstream-member-to-profile-changelog"
MEMBER_EVENTS = "p.riskstream-member-events"
REVIEWS = "p.reviews"


def settings(**values: object) -> Settings:
    return Settings(KAFKA_BROKER="kafka://k1:9092", topic_prefix=PREFIX, partitions=4, **values)


def healthy(brokers: int = 3, **replace: TopicState | None) -> ClusterSnapshot:
    """Every topic as the worker wants it on ``brokers`` brokers; ``replace`` changes (a
    TopicState) or drops (None) one topic by name (dots and dashes as ``_``)."""
    topics = {}
    for need in worker_needs(settings()):
        configs = {"cleanup.policy": "compact" if need.compacted else "delete"}
        if brokers >= 3:
            configs["min.insync.replicas"] = "2"
        if need.kind == "input":
            configs["retention.ms"] = str(7 * DAY_MS)
        partitions = 1 if need.kind == "leader" else 4
        topics[need.name] = TopicState(partitions, min(3, brokers), configs)
    for key, state in replace.items():
        name = next(n for n in topics if n.replace(".", "_").replace("-", "_") == key)
        if state is None:
            del topics[name]
        else:
            topics[name] = state
    return ClusterSnapshot(brokers=brokers, topics=topics, acls=ACLS_NOT_ENFORCED)


def levels(findings: list[Finding], level: str) -> list[str]:
    return [f.line() for f in findings if f.level == level]


def test_a_healthy_cluster_passes() -> None:
    findings = check(settings(), healthy())
    assert levels(findings, FAIL) == levels(findings, WARN) == []
    assert exit_code(findings) == EXIT_PASS
    assert any("15 topics present" in f.what for f in findings if f.level == PASS)
    assert any("ACLs not enforced" in f.what for f in findings)


def test_exit_codes_say_pass_warn_fail() -> None:
    assert exit_code([Finding(PASS, "a"), Finding(INFO, "b")]) == EXIT_PASS == 0
    assert exit_code([Finding(INFO, "a"), Finding(WARN, "b")]) == EXIT_WARN == 3
    assert exit_code([Finding(WARN, "a"), Finding(FAIL, "b")]) == EXIT_FAIL == 4
    assert Finding(FAIL, "x broke", "do y").line() == "FAIL  x broke; fix: do y"


def test_missing_topics_are_created_by_the_worker_info_only() -> None:
    empty = ClusterSnapshot(brokers=1, topics={})
    findings = check(settings(), empty)
    assert exit_code(findings) == EXIT_PASS
    info = "\n".join(levels(findings, INFO))
    assert "inputs missing: p.reviews, p.chats, p.transactions; the worker creates them" in info
    assert "(4 partitions, replication 1)" in info  # a single broker: 1 is all it allows
    assert "for development only" in info


def test_missing_topics_on_three_brokers_are_created_with_three_replicas() -> None:
    findings = check(settings(), ClusterSnapshot(brokers=5, topics={}))
    assert exit_code(findings) == EXIT_PASS
    assert any("replication 3, min.insync.replicas 2" in line for line in levels(findings, INFO))


def test_replication_setting_of_one_on_several_brokers_fails_before_creation() -> None:
    findings = check(settings(replication_factor=1), ClusterSnapshot(brokers=3, topics={}))
    assert exit_code(findings) == EXIT_FAIL
    (line,) = levels(findings, FAIL)
    assert "RISKSTREAM_REPLICATION_FACTOR=1 on 3 brokers" in line
    assert "fix: set RISKSTREAM_REPLICATION_FACTOR=3 or leave it unset" in line
    warned = check(settings(replication_factor=2), ClusterSnapshot(brokers=3, topics={}))
    assert exit_code(warned) == EXIT_WARN
    too_many = check(settings(replication_factor=3), ClusterSnapshot(brokers=2, topics={}))
    assert "creating the missing topics will fail" in levels(too_many, FAIL)[0]


def test_co_partitioned_topic_with_another_count_fails() -> None:
    findings = check(settings(), healthy(p_riskstream_member_to_profile_changelog=None))
    assert exit_code(findings) == EXIT_PASS  # missing: the worker creates it
    wrong = TopicState(6, 3, {"cleanup.policy": "compact", "min.insync.replicas": "2"})
    findings = check(settings(), healthy(p_riskstream_member_to_profile_changelog=wrong))
    assert exit_code(findings) == EXIT_FAIL
    (line,) = levels(findings, FAIL)
    assert line.startswith(f"FAIL  {CHANGELOG}: 6 partitions, the worker needs 4")
    assert "fix: delete it while it is empty (the worker recreates it), or repartition it to 4" in (
        line
    )
    assert not any("topics present" in f.what for f in findings)
    six = {
        key: TopicState(6, 3, {"cleanup.policy": "compact", "min.insync.replicas": "2"})
        for key in (
            "p_riskstream_member_to_profile_changelog",
            "p_riskstream_subject_to_surge_changelog",
            "p_riskstream_member_events",
            "p_riskstream_subject_events",
        )
    }
    findings = check(settings(), healthy(**six))
    assert len(levels(findings, FAIL)) == 4
    assert all(
        "or set RISKSTREAM_PARTITIONS=6 for every worker" in f for f in levels(findings, FAIL)
    )


def test_an_input_with_another_count_only_loses_the_fused_member_stage() -> None:
    other = TopicState(12, 3, {"min.insync.replicas": "2", "retention.ms": str(7 * DAY_MS)})
    findings = check(settings(), healthy(p_reviews=other))
    assert exit_code(findings) == EXIT_PASS
    assert any("p.reviews: 12 partitions" in line for line in levels(findings, INFO))


@pytest.mark.parametrize(
    ("replication", "brokers", "level"),
    [(1, 3, FAIL), (2, 3, WARN), (2, 5, WARN), (1, 2, FAIL), (2, 2, PASS), (1, 1, PASS)],
)
def test_replication_factor_against_the_brokers(replication, brokers, level) -> None:
    min_isr = {"min.insync.replicas": "1"}
    state = TopicState(4, replication, {"cleanup.policy": "compact", **min_isr})
    findings = check(settings(), healthy(brokers, p_member_profiles=state))
    mine = [f for f in findings if f.what.startswith(f"{PROFILES}: replication")]
    if level == PASS:
        assert mine == []
    else:
        assert [f.level for f in mine] == [level]
        assert "kafka-reassign-partitions.sh" in mine[0].fix


@pytest.mark.parametrize(
    ("min_isr", "level", "said"),
    [
        ("1", WARN, "acknowledged by the leader alone"),
        (None, WARN, "min.insync.replicas=1"),  # not reported: Kafka's default, 1
        ("3", WARN, "one broker down stops every write"),
        ("4", FAIL, "every acks=all write of the worker is refused"),
        ("2", PASS, ""),
    ],
)
def test_min_insync_replicas_against_acks_all(min_isr, level, said) -> None:
    configs = {"cleanup.policy": "delete"} | ({"min.insync.replicas": min_isr} if min_isr else {})
    findings = check(settings(), healthy(p_alerts=TopicState(4, 3, configs)))
    mine = [f for f in findings if f.what.startswith("p.alerts:")]
    if level == PASS:
        assert mine == []
        return
    (finding,) = mine
    assert finding.level == level and said in finding.what
    assert "kafka-configs.sh --bootstrap-server k1:9092 --alter --entity-type topics" in finding.fix
    assert "--entity-name p.alerts --add-config min.insync.replicas=2" in finding.fix


@pytest.mark.parametrize(
    "key",
    [
        "p_member_profiles",
        "p_labels",
        "p_model_registry",
        "p_riskstream_member_to_profile_changelog",
        "p_riskstream_subject_to_surge_changelog",
    ],
)
def test_compaction_of_profiles_labels_registry_and_changelogs(key) -> None:
    name = key.replace("p_", "p.", 1).replace("_", "-")
    deleting = TopicState(4, 3, {"cleanup.policy": "delete", "min.insync.replicas": "2"})
    findings = check(settings(), healthy(**{key: deleting}))
    assert exit_code(findings) == EXIT_FAIL
    (line,) = levels(findings, FAIL)
    assert line.startswith(f"FAIL  {name}: cleanup.policy=delete, not compacted")
    assert line.endswith(f"--entity-name {name} --add-config cleanup.policy=compact")
    both = TopicState(4, 3, {"cleanup.policy": "compact,delete", "min.insync.replicas": "2"})
    findings = check(settings(), healthy(**{key: both}))
    assert exit_code(findings) == EXIT_WARN
    # not reported at all (Tansu reports only what was set): Kafka's default, delete
    findings = check(settings(), healthy(**{key: TopicState(4, 1, {})}, brokers=1))
    assert "not compacted" in levels(findings, FAIL)[0]


def test_input_retention_shorter_than_a_day_warns() -> None:
    short = {"min.insync.replicas": "2", "retention.ms": str(3_600_000)}
    findings = check(settings(), healthy(p_chats=TopicState(4, 3, short)))
    assert exit_code(findings) == EXIT_WARN
    (line,) = levels(findings, WARN)
    assert "p.chats: retention.ms=3600000 (1 h): a worker down longer" in line
    assert line.endswith("--add-config retention.ms=604800000")
    endless = {"min.insync.replicas": "2", "retention.ms": "-1"}
    assert exit_code(check(settings(), healthy(p_chats=TopicState(4, 3, endless)))) == 0
    unreported = check(settings(), healthy(p_chats=TopicState(4, 3, {"min.insync.replicas": "2"})))
    assert any("retention.ms not reported" in line for line in levels(unreported, INFO))
    relaxed = check(settings(), healthy(p_chats=TopicState(4, 3, short)), min_input_retention_ms=1)
    assert exit_code(relaxed) == EXIT_PASS


def test_configs_that_cannot_be_read_are_said_not_guessed() -> None:
    findings = check(settings(), healthy(p_member_profiles=TopicState(4, 3, None)))
    assert exit_code(findings) == EXIT_PASS
    assert any("its configs cannot be read" in line for line in levels(findings, INFO))


# ---------------------------------------------------------------------------------- ACLs

WORKER = "User:riskstream"


def acl(resource_type, name, operation, *, pattern=LITERAL, permission=ALLOW, who=WORKER):
    return Acl(resource_type, name, pattern, who, "*", operation, permission)


GRANTS = (
    acl(TOPIC, PREFIX, ALL, pattern=PREFIXED),
    acl(GROUP, "p.riskstream", READ),
)


def with_acls(snapshot: ClusterSnapshot, acls) -> ClusterSnapshot:
    return ClusterSnapshot(snapshot.brokers, snapshot.topics, acls)


def test_acls_that_allow_the_worker_pass() -> None:
    findings = check(settings(), with_acls(healthy(), GRANTS), principal=WORKER)
    assert exit_code(findings) == EXIT_PASS
    assert any(f.what == f"ACLs allow {WORKER} everything the worker does" for f in findings)
    anyone = tuple(
        acl(a.resource_type, a.name, a.operation, pattern=a.pattern, who="User:*") for a in GRANTS
    )
    assert exit_code(check(settings(), with_acls(healthy(), anyone), principal=WORKER)) == 0


def test_missing_acls_fail_with_the_kafka_acls_command() -> None:
    topics_only = (acl(TOPIC, PREFIX, ALL, pattern=PREFIXED),)
    findings = check(settings(), with_acls(healthy(), topics_only), principal=WORKER)
    assert exit_code(findings) == EXIT_FAIL
    (line,) = levels(findings, FAIL)
    assert line == (
        f"FAIL  ACLs: {WORKER} may not Read group p.riskstream; fix: kafka-acls.sh --add "
        f"--allow-principal {WORKER} --operation Read --group p.riskstream"
    )
    read_only = (acl(TOPIC, "*", READ), GRANTS[1])
    findings = check(settings(), with_acls(healthy(), read_only), principal=WORKER)
    (line,) = levels(findings, FAIL)
    assert f"may not Write topic {MEMBER_EVENTS}, p.riskstream-subject-events, p.scored-events" in (
        line
    )
    assert f"--operation Write --topic {MEMBER_EVENTS} --topic" in line


def test_a_deny_wins_and_create_is_needed_only_for_missing_topics() -> None:
    denied = (*GRANTS, acl(TOPIC, REVIEWS, READ, permission=DENY))
    findings = check(settings(), with_acls(healthy(), denied), principal=WORKER)
    assert levels(findings, FAIL) == [
        f"FAIL  ACLs: {WORKER} may not Read topic {REVIEWS}; fix: kafka-acls.sh --add "
        f"--allow-principal {WORKER} --operation Read --topic {REVIEWS}"
    ]
    missing = with_acls(healthy(p_alerts=None), (acl(TOPIC, PREFIX, READ, pattern=PREFIXED),))
    findings = check(settings(), with_acls(missing, (*GRANTS[1:], *missing.acls)), principal=WORKER)
    assert any("may not Create topic p.alerts" in line for line in levels(findings, FAIL))
    cluster_create = (*GRANTS, acl(CLUSTER, "kafka-cluster", CREATE))
    findings = check(
        settings(), with_acls(healthy(p_alerts=None), cluster_create), principal=WORKER
    )
    assert exit_code(findings) == EXIT_PASS


def test_acls_that_cannot_be_checked_say_why_and_what_is_needed() -> None:
    denied = check(settings(), with_acls(healthy(), ACLS_DENIED), principal=WORKER)
    (line,) = [f.line() for f in denied if "ACL" in f.what]
    assert "may not list ACLs (Describe on the cluster)" in line
    assert "Read and Write on the topics prefixed p." in line and "group p.riskstream" in line
    unknown = check(settings(), with_acls(healthy(), GRANTS), principal=None)
    assert any("rerun with --principal" in f.fix for f in unknown)
    assert exit_code(denied) == exit_code(unknown) == EXIT_PASS


def test_the_principal_follows_the_security_settings(monkeypatch) -> None:
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD"):
        monkeypatch.delenv(f"RISKSTREAM_KAFKA_{name}", raising=False)
    assert client_principal() == "User:ANONYMOUS"
    monkeypatch.setenv("RISKSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("RISKSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("RISKSTREAM_KAFKA_SASL_USERNAME", "riskstream")
    monkeypatch.setenv("RISKSTREAM_KAFKA_SASL_PASSWORD", "secret")
    assert client_principal() == WORKER


# ----------------------------------------------------------------- topic-creation defaults


def test_topic_creation_follows_the_same_rules() -> None:
    unset = settings()
    assert [creation_replication(unset, n) for n in (1, 2, 3, 6)] == [1, 2, 3, 3]
    assert creation_replication(settings(replication_factor=1), 6) == 1  # set: as set
    assert creation_configs({}, 3) == {"min.insync.replicas": "2"}
    assert creation_configs({"min.insync.replicas": "3"}, 5) == {"min.insync.replicas": "3"}
    assert creation_configs({"cleanup.policy": "compact"}, 1) == {"cleanup.policy": "compact"}
    # what the worker would create on 3 brokers passes the doctor
    for brokers in (1, 2, 3):
        rf = creation_replication(unset, brokers)
        topics = {
            need.name: TopicState(
                1 if need.kind == "leader" else 4,
                rf,
                creation_configs({"cleanup.policy": "compact"} if need.compacted else {}, rf),
            )
            for need in worker_needs(unset)
            if need.kind != "leader"
        }
        findings = check(unset, ClusterSnapshot(brokers, topics))
        assert exit_code(findings) == EXIT_PASS, levels(findings, WARN) + levels(findings, FAIL)


# ----------------------------------------------------------------------------- command


def test_an_unreachable_broker_is_one_line_and_fails() -> None:
    from stream.ops.cli import main

    result = CliRunner().invoke(
        main, ["doctor", "--timeout", "3"], env={"KAFKA_BROKER": "kafka://127.0.0.1:1"}
    )
    assert result.exit_code == EXIT_FAIL, result.output
    assert result.output.splitlines() == [
        "FAIL  cannot use kafka://127.0.0.1:1: 127.0.0.1:1: connection refused: is the broker "
        "up, is the address right?",
        "fail: 1 failures, 0 warnings (exit 4)",
    ]


def test_a_bad_setting_is_exit_two() -> None:
    from stream.ops.cli import main

    result = CliRunner().invoke(main, ["doctor"], env={"RISKSTREAM_PARTITIONS": "zero"})
    assert result.exit_code == 2


# ------------------------------------------------------------------ against the broker


async def _create(bootstrap: str, name: str, partitions: int, configs: dict | None = None):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
        for _ in range(50):
            if name not in await admin.list_topics():
                break
            await asyncio.sleep(0.1)
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()


@pytest.mark.integration
def test_doctor_against_the_embedded_broker(kafka_broker, topic_prefix, monkeypatch) -> None:
    """Before the worker's topics exist (info: the worker creates them), after
    ``ensure_topics`` (pass: one broker, so replication 1 is allowed), and with a profile topic
    without compaction and a changelog with another partition count (fail, with the fixes).

    What Tansu 0.6 answers: Metadata, DescribeConfigs (only the configs set at creation, so a
    topic created without ``cleanup.policy`` reports none: the rules then take Kafka's defaults,
    ``delete`` and ``min.insync.replicas=1``; a DescribeConfigs naming configs closes the
    connection, so the collector asks for all), and DescribeAcls, which it answers with no
    error and no bindings (no authorizer; Kafka would say SECURITY_DISABLED): the ACL line is
    then info. Replication above 1 cannot be tried on one broker: the unit tests above cover
    it. Tansu also auto-creates a topic a Metadata request names, which is why the collector
    lists all topics instead."""
    from stream.ops.admin import ensure_topics
    from stream.ops.cli import main

    monkeypatch.setenv("KAFKA_BROKER", kafka_broker.url)
    monkeypatch.setenv("RISKSTREAM_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("RISKSTREAM_PARTITIONS", "2")
    mine = Settings(KAFKA_BROKER=kafka_broker.url, topic_prefix=topic_prefix, partitions=2)

    before = CliRunner().invoke(main, ["doctor", "--timeout", "10"])
    assert before.exit_code == EXIT_PASS, before.output
    assert f"INFO  inputs missing: {topic_prefix}reviews" in before.output
    assert "the worker creates them at start (2 partitions, replication 1" in before.output
    assert "the brokers list no ACLs" in before.output
    assert asyncio.run(collect(mine)).topics == {}  # asking created nothing

    asyncio.run(ensure_topics(mine))
    snapshot = asyncio.run(collect(mine))
    profiles = f"{topic_prefix}member-profiles"
    assert snapshot.brokers == 1 and snapshot.topics[profiles].replication == 1
    assert snapshot.topics[profiles].configs["cleanup.policy"] == "compact"
    after = CliRunner().invoke(main, ["doctor"])
    assert after.exit_code == EXIT_PASS, after.output
    assert "PASS  14 topics present" in after.output  # all but Faust's leader topic

    changelog = f"{topic_prefix}riskstream-member-to-profile-changelog"
    asyncio.run(_create(kafka_broker.bootstrap, profiles, 2))  # no cleanup.policy
    asyncio.run(_create(kafka_broker.bootstrap, changelog, 3, {"cleanup.policy": "compact"}))
    wrong = CliRunner().invoke(main, ["doctor"])
    assert wrong.exit_code == EXIT_FAIL, wrong.output
    failed = [line for line in wrong.output.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2, wrong.output
    assert failed[0].startswith(f"FAIL  {profiles}: cleanup.policy=delete, not compacted")
    assert f"--entity-name {profiles} --add-config cleanup.policy=compact" in failed[0]
    assert failed[1].startswith(f"FAIL  {changelog}: 3 partitions, the worker needs 2")
    assert wrong.output.splitlines()[-1] == "fail: 2 failures, 0 warnings (exit 4)"


@pytest.mark.integration
def test_doctor_over_sasl_with_good_and_wrong_credentials(tmp_path, monkeypatch) -> None:
    """Behind the tests' SCRAM terminator (``tests/security_fixtures.py``; Tansu keeps no SCRAM
    users on memory storage): the right password passes, the principal the ACL check uses is
    ``User:<name>``; a wrong one is one FAIL line saying what failed, exit 4."""
    from stream.ops.cli import main
    from tests.security_fixtures import secured_kafka

    with secured_kafka(tmp_path, users={"doctor": "right-pw-7f3"}, tokens=set()) as kafka:
        monkeypatch.setenv("KAFKA_BROKER", kafka["sasl_plaintext"].url)
        monkeypatch.setenv("RISKSTREAM_TOPIC_PREFIX", "sasl.")
        monkeypatch.setenv("RISKSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        monkeypatch.setenv("RISKSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        monkeypatch.setenv("RISKSTREAM_KAFKA_SASL_USERNAME", "doctor")
        monkeypatch.setenv("RISKSTREAM_KAFKA_SASL_PASSWORD", "right-pw-7f3")
        assert client_principal() == "User:doctor"
        good = CliRunner().invoke(main, ["doctor", "--timeout", "10"])
        assert good.exit_code == EXIT_PASS, good.output
        monkeypatch.setenv("RISKSTREAM_KAFKA_SASL_PASSWORD", "wrong-pw-9c1")
        bad = CliRunner().invoke(main, ["doctor", "--timeout", "10"])
    assert bad.exit_code == EXIT_FAIL, bad.output
    first, last = bad.output.splitlines()
    assert first.startswith(f"FAIL  cannot use {kafka['sasl_plaintext'].url}: ")
    assert "SASL authentication failed" in first and "RISKSTREAM_KAFKA_SASL_PASSWORD" in first
    assert "right-pw" not in bad.output and "wrong-pw" not in bad.output
    assert last == "fail: 1 failures, 0 warnings (exit 4)"


@pytest.mark.integration
def test_doctor_finds_replication_retention_and_min_insync_on_the_embedded_broker(
    kafka_broker, topic_prefix, monkeypatch
) -> None:
    """The rest of what one Tansu broker can show, each read back from the broker:

    - ``RISKSTREAM_REPLICATION_FACTOR=3`` on one broker, before the topics exist: FAIL (Kafka
      would refuse the creation; Tansu accepts it and lists its one broker three times as the
      replicas, which the collector counts as the one copy it is, so a later doctor says what
      it made: min.insync.replicas=2 above one replica, every acks=all write refused);
    - an input keeping one hour (WARN), the labels topic compacted and deleted (WARN), the
      registry with min.insync.replicas above its replicas (FAIL), an input with another
      partition count under the fused member stage (INFO)."""
    from stream.ops.admin import ensure_topics
    from stream.ops.cli import main

    monkeypatch.setenv("KAFKA_BROKER", kafka_broker.url)
    monkeypatch.setenv("RISKSTREAM_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("RISKSTREAM_PARTITIONS", "2")
    monkeypatch.setenv("RISKSTREAM_REPLICATION_FACTOR", "3")
    three = Settings(
        KAFKA_BROKER=kafka_broker.url, topic_prefix=topic_prefix, partitions=2, replication_factor=3
    )

    before = CliRunner().invoke(main, ["doctor", "--timeout", "10"])
    assert before.exit_code == EXIT_FAIL, before.output
    assert before.output.splitlines()[0] == (
        "FAIL  RISKSTREAM_REPLICATION_FACTOR=3 but the cluster has 1 broker(s): creating the "
        "missing topics will fail; fix: set RISKSTREAM_REPLICATION_FACTOR=1 or leave it unset"
    )
    asyncio.run(ensure_topics(three))  # what Kafka would refuse
    registry = f"{topic_prefix}model-registry"
    snapshot = asyncio.run(collect(three))
    assert snapshot.topics[registry].replication == 1  # one broker, listed three times
    assert snapshot.topics[registry].configs["min.insync.replicas"] == "2"
    made = CliRunner().invoke(main, ["doctor"])
    assert made.exit_code == EXIT_FAIL, made.output
    failed = [line for line in made.output.splitlines() if line.startswith("FAIL")]
    # every topic the worker made, and the setting again (Faust's leader topic is missing)
    assert len(failed) == len(snapshot.topics) + 1, made.output
    assert failed[0] == before.output.splitlines()[0]
    assert (
        f"FAIL  {registry}: min.insync.replicas=2 above its 1 replicas: every acks=all write of "
        f"the worker is refused (NotEnoughReplicas); fix: kafka-configs.sh --bootstrap-server "
        f"{kafka_broker.bootstrap} --alter --entity-type topics --entity-name {registry} "
        "--add-config min.insync.replicas=1"
    ) in failed

    # a second set of topics, as the worker makes them on one broker, then five changed
    monkeypatch.delenv("RISKSTREAM_REPLICATION_FACTOR")
    prefix = f"{topic_prefix}b."
    monkeypatch.setenv("RISKSTREAM_TOPIC_PREFIX", prefix)
    second = Settings(KAFKA_BROKER=kafka_broker.url, topic_prefix=prefix, partitions=2)
    asyncio.run(ensure_topics(second))
    made_with = {
        name: state.partitions for name, state in asyncio.run(collect(second)).topics.items()
    }
    reviews, chats, labels, registry, dead = (
        f"{prefix}{t}" for t in ("reviews", "chats", "labels", "model-registry", "dead-letter")
    )
    for name, configs in (
        (reviews, {"retention.ms": "3600000"}),
        (labels, {"cleanup.policy": "compact,delete"}),
        (registry, {"cleanup.policy": "compact"}),  # as the worker makes it
        (dead, {"min.insync.replicas": "2"}),
    ):
        asyncio.run(_create(kafka_broker.bootstrap, name, made_with[name], configs))
    asyncio.run(_create(kafka_broker.bootstrap, chats, 3))
    monkeypatch.setenv("RISKSTREAM_MEMBER_STAGE", "fused")
    wrong = CliRunner().invoke(main, ["doctor"])
    assert wrong.exit_code == EXIT_FAIL, wrong.output
    lines = wrong.output.splitlines()
    assert [line.split(";")[0] for line in lines if line[:4] in ("FAIL", "WARN")] == [
        f"FAIL  {dead}: min.insync.replicas=2 above its 1 replicas: every "
        "acks=all write of the worker is refused (NotEnoughReplicas)",
        f"WARN  {reviews}: retention.ms=3600000 (1 h): a worker down longer, or a replay further "
        "back, finds its events deleted",
        f"WARN  {labels}: cleanup.policy=compact,delete: keys quiet longer than retention.ms are "
        "deleted, so analysts' labels would be deleted, and with them build-set's",
    ]
    assert (
        f"INFO  {chats}: 3 partitions, not RISKSTREAM_PARTITIONS=2: every record takes the "
        "member-events hop (the fused member stage needs the same count)"
    ) in lines
    assert lines[-1] == "fail: 1 failures, 2 warnings (exit 4)"

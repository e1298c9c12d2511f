"""``riskstream doctor``: check a Kafka cluster before the worker's first run there.

Pure rules over a snapshot of the cluster (:class:`ClusterSnapshot`: brokers, the topics with
their partitions, replication and configs, the ACLs or why there are none) give one
:class:`Finding` per line, each with its fix; :func:`collect` takes the snapshot with aiokafka's
admin client. The rules are those the topic creation follows (``stream/ops/admin.py``,
``creation_replication`` and ``creation_configs``):

- every topic the worker needs exists, or the worker creates it at start (info);
- the co-partitioned topics (internal topics, table changelogs) have ``RISKSTREAM_PARTITIONS``
  partitions: Faust refuses to start otherwise (fail);
- replication factor >= min(3, brokers); 1 on a cluster of several brokers fails (one broker's
  loss loses the topic), anything else below warns;
- ``min.insync.replicas`` against ``acks=all``: above the replication factor every write is
  refused (fail); 1 with 3 or more replicas lets the leader alone acknowledge a write, lost
  with it (warn); equal to a replication factor of 2 or more stops the writes while one
  broker is down (warn);
- ``member-profiles``, ``labels``, ``model-registry`` and the changelogs are compacted
  (fail: records past retention are deleted, and with them profiles, labels, the champion
  build, table state); ``compact,delete`` warns;
- inputs keep at least 24 h (``--min-input-retention-h``; warn): a worker down longer, or a
  replay further back, finds its events deleted;
- the ACLs the worker needs: Read and Write (which imply Describe) on its topics, Read on its
  consumer group, Create where topics are missing.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import click

from stream.config import Settings
from stream.ops.admin import co_partitioned, creation_replication, wanted_topics
from stream.topics import (
    INPUT_TOPICS,
    INTERNAL_TOPICS,
    LABELS,
    MEMBER_PROFILES,
    MODEL_REGISTRY,
    OUTPUT_TOPICS,
)

PASS, INFO, WARN, FAIL = "pass", "info", "warn", "fail"
_RANK = {PASS: 0, INFO: 0, WARN: 1, FAIL: 2}

#: Exit codes: all passed (info lines included); some warning; some failure (a broker that
#: cannot be reached or refuses the credentials included). 2 stays every command's bad
#: setting, 1 an unexpected error.
EXIT_PASS, EXIT_WARN, EXIT_FAIL = 0, 3, 4

HOUR_MS = 3_600_000
#: Kafka's broker defaults where a broker does not report a topic's config (Tansu reports only
#: what was set when the topic was created).
KAFKA_DEFAULTS = {"cleanup.policy": "delete", "min.insync.replicas": "1"}

# Kafka's ACL protocol codes (org.apache.kafka.common.acl / resource).
TOPIC, GROUP, CLUSTER = 2, 3, 4
ANY, ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE = 1, 2, 3, 4, 5, 6, 7, 8
LITERAL, PREFIXED = 3, 4
DENY, ALLOW = 2, 3
_OPERATION_NAMES = {READ: "Read", WRITE: "Write", CREATE: "Create", DESCRIBE: "Describe"}
#: An ALLOW of any of these also allows Describe (Kafka's implied operations).
_IMPLY_DESCRIBE = {READ, WRITE, DELETE, ALTER}

#: What :class:`ClusterSnapshot.acls` holds when the broker listed none.
ACLS_NOT_ENFORCED = "not enforced"  # SECURITY_DISABLED: no authorizer
ACLS_DENIED = "denied"  # this principal may not describe ACLs (Describe on the cluster)


@dataclass(frozen=True)
class Finding:
    level: str
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level.upper():<4}  {self.what}" + (f"; fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class TopicState:
    partitions: int
    replication: int
    #: the configs the broker reported; None where it would not say (no DescribeConfigs)
    configs: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Acl:
    resource_type: int
    name: str
    pattern: int
    principal: str
    host: str
    operation: int
    permission: int


@dataclass(frozen=True)
class ClusterSnapshot:
    brokers: int
    topics: Mapping[str, TopicState]
    #: the cluster's ACL bindings, or ACLS_NOT_ENFORCED / ACLS_DENIED / another one-line reason
    acls: tuple[Acl, ...] | str = ACLS_NOT_ENFORCED
    cluster_id: str | None = None


@dataclass(frozen=True)
class TopicNeed:
    """A topic the worker reads or writes, and what it must be like."""

    name: str
    kind: str  # input, labels, registry, internal, changelog, output, leader
    co_partitioned: bool = False
    compacted: bool = False
    reads: bool = True
    writes: bool = False
    durable: bool = True  # the replication rules apply (not to Faust's empty leader topic)
    why_compacted: str = ""


def worker_needs(settings: Settings) -> list[TopicNeed]:
    """Every topic the worker uses, from the catalogue (``stream/topics.py``) and
    ``wanted_topics``, plus Faust's leader topic (which Faust creates itself)."""
    owned = co_partitioned(settings)
    kinds = {settings.topic(name): "input" for name in INPUT_TOPICS}
    kinds |= {settings.topic(name): "internal" for name in INTERNAL_TOPICS}
    kinds |= {settings.topic(name): "output" for name in OUTPUT_TOPICS}
    kinds |= {settings.topic(LABELS): "labels", settings.topic(MODEL_REGISTRY): "registry"}
    why = {
        settings.topic(MEMBER_PROFILES): "the latest profile of a quiet member would be deleted",
        settings.topic(LABELS): "analysts' labels would be deleted, and with them build-set's",
        settings.topic(MODEL_REGISTRY): "the champion build would be deleted, and a "
        "restarted worker serve its default",
    }
    needs = []
    for name, configs in wanted_topics(settings).items():
        kind = kinds.get(name, "changelog")
        needs.append(
            TopicNeed(
                name,
                kind,
                co_partitioned=name in owned,
                compacted="compact" in configs.get("cleanup.policy", ""),
                reads=kind != "output",
                writes=kind in ("internal", "output", "changelog"),
                why_compacted=why.get(
                    name,
                    "a restarted worker would recover tables without "
                    "the state of members and subjects quiet longer than retention",
                ),
            )
        )
    leader = f"{settings.topic(settings.app_id)}-__assignor-__leader"
    needs.append(TopicNeed(leader, "leader", writes=True, durable=False))
    return needs


def _kafka_configs(settings: Settings, topic: str, config: str) -> str:
    server = settings.kafka_broker.split(";")[0].split(",")[0].removeprefix("kafka://")
    return (
        f"kafka-configs.sh --bootstrap-server {server} --alter --entity-type topics "
        f"--entity-name {topic} --add-config {config}"
    )


def replication_level(replication: int, brokers: int) -> str:
    """pass at min(3, brokers) replicas or more; 1 on a cluster of several brokers fails;
    else warn."""
    if replication >= min(3, brokers):
        return PASS
    return FAIL if replication == 1 else WARN


def check(
    settings: Settings,
    snapshot: ClusterSnapshot,
    *,
    principal: str | None = None,
    min_input_retention_ms: int = 24 * HOUR_MS,
) -> list[Finding]:
    """The findings for ``snapshot`` (no I/O), worst first within each kind of check."""
    needs = worker_needs(settings)
    findings = [_cluster_finding(snapshot)]
    present = [n for n in needs if n.name in snapshot.topics]
    missing = [n for n in needs if n.name not in snapshot.topics]
    findings += _missing_findings(settings, snapshot, missing)
    on_topics: list[Finding] = []
    owned_counts = {snapshot.topics[n.name].partitions for n in present if n.co_partitioned}
    for need in present:
        state = snapshot.topics[need.name]
        on_topics += _partition_findings(settings, need, state, owned_counts)
        if need.durable:
            on_topics += _replication_findings(settings, need, state, snapshot.brokers)
        if state.configs is None:
            on_topics.append(
                Finding(
                    INFO,
                    f"{need.name}: its configs cannot be read (compaction, retention and "
                    "min.insync.replicas unchecked)",
                    "allow this principal DescribeConfigs on the topic",
                )
            )
            continue
        on_topics += _config_findings(settings, need, state, min_input_retention_ms)
    findings += on_topics
    findings += _acl_findings(settings, snapshot, needs, missing, principal)
    if present and not [f for f in on_topics if f.level in (WARN, FAIL)]:
        findings.append(
            Finding(
                PASS,
                f"{len(present)} topics present with their partitions, replication, "
                "min.insync.replicas, compaction and retention as the worker needs",
            )
        )
    return sorted(findings, key=lambda f: -_RANK[f.level])


def exit_code(findings: Iterable[Finding]) -> int:
    worst = max((_RANK[f.level] for f in findings), default=0)
    return (EXIT_PASS, EXIT_WARN, EXIT_FAIL)[worst]


def _cluster_finding(snapshot: ClusterSnapshot) -> Finding:
    name = f" (cluster {snapshot.cluster_id})" if snapshot.cluster_id else ""
    if snapshot.brokers == 1:
        return Finding(
            INFO,
            f"reachable: 1 broker{name}; replication 1 is all it allows, so a lost disk loses "
            "every topic: for development only",
        )
    return Finding(PASS, f"reachable: {snapshot.brokers} brokers{name}")


def _missing_findings(
    settings: Settings, snapshot: ClusterSnapshot, missing: list[TopicNeed]
) -> list[Finding]:
    if not missing:
        return []
    replication = creation_replication(settings, snapshot.brokers)
    findings = []
    inputs = [n.name for n in missing if n.kind == "input"]
    others = [n.name for n in missing if n.kind not in ("input", "leader")]
    leader = [n.name for n in missing if n.kind == "leader"]
    min_isr = ", min.insync.replicas 2" if replication >= 3 else ""
    made = f"{settings.partitions} partitions, replication {replication}{min_isr}"
    if inputs:
        findings.append(
            Finding(
                INFO,
                f"inputs missing: {', '.join(inputs)}; the worker creates them at start "
                f"({made}, the broker's retention)",
                "create them beforehand to choose their partitions and retention",
            )
        )
    if others:
        findings.append(
            Finding(
                INFO, f"missing: {', '.join(others)}; the worker creates them at start ({made})"
            )
        )
    if leader:
        findings.append(
            Finding(
                INFO,
                f"missing: {leader[0]}; Faust creates it at start (1 partition, replication "
                f"{replication})",
            )
        )
    if replication > snapshot.brokers:
        findings.append(
            Finding(
                FAIL,
                f"RISKSTREAM_REPLICATION_FACTOR={replication} but the cluster has "
                f"{snapshot.brokers} broker(s): creating the missing topics will fail",
                f"set RISKSTREAM_REPLICATION_FACTOR={min(3, snapshot.brokers)} or leave it unset",
            )
        )
    elif (level := replication_level(replication, snapshot.brokers)) != PASS:
        findings.append(
            Finding(
                level,
                f"RISKSTREAM_REPLICATION_FACTOR={replication} on {snapshot.brokers} brokers: the "
                "topics the worker creates would not survive a broker's loss",
                f"set RISKSTREAM_REPLICATION_FACTOR={min(3, snapshot.brokers)} or leave it unset",
            )
        )
    return findings


def _partition_findings(
    settings: Settings, need: TopicNeed, state: TopicState, owned_counts: set[int]
) -> list[Finding]:
    wanted = settings.partitions
    if need.co_partitioned and state.partitions != wanted:
        fix = "delete it while it is empty (the worker recreates it)"
        if owned_counts == {state.partitions}:  # every co-partitioned topic agrees
            fix += f", or set RISKSTREAM_PARTITIONS={state.partitions} for every worker"
        else:
            fix += f", or repartition it to {wanted} (re-keying its records)"
        return [
            Finding(
                FAIL,
                f"{need.name}: {state.partitions} partitions, the worker needs {wanted} "
                "(RISKSTREAM_PARTITIONS, as for the member and surge tables it is "
                "co-partitioned with): a worker recreates it while empty, and refuses to "
                "start once it holds records",
                fix,
            )
        ]
    if need.kind == "input" and settings.member_stage == "fused" and state.partitions != wanted:
        return [
            Finding(
                INFO,
                f"{need.name}: {state.partitions} partitions, not RISKSTREAM_PARTITIONS="
                f"{wanted}: every record takes the member-events hop (the fused member stage "
                "needs the same count)",
            )
        ]
    return []


def _replication_findings(
    settings: Settings, need: TopicNeed, state: TopicState, brokers: int
) -> list[Finding]:
    findings = []
    level = replication_level(state.replication, brokers)
    if level != PASS:
        target = min(3, brokers)
        findings.append(
            Finding(
                level,
                f"{need.name}: replication {state.replication} on {brokers} brokers: "
                + (
                    "one broker's loss loses the topic"
                    if state.replication == 1
                    else f"below {target}, two brokers' loss loses it"
                ),
                f"raise it to {target} with kafka-reassign-partitions.sh (a plan listing "
                f"{target} replicas per partition)",
            )
        )
    if state.configs is None:
        return findings
    min_isr = int(state.configs.get("min.insync.replicas", KAFKA_DEFAULTS["min.insync.replicas"]))
    fix_to = max(1, min(2, state.replication - 1))
    if min_isr > state.replication:
        findings.append(
            Finding(
                FAIL,
                f"{need.name}: min.insync.replicas={min_isr} above its {state.replication} "
                "replicas: every acks=all write of the worker is refused (NotEnoughReplicas)",
                _kafka_configs(settings, need.name, f"min.insync.replicas={fix_to}"),
            )
        )
    elif state.replication >= 3 and min_isr < 2:
        findings.append(
            Finding(
                WARN,
                f"{need.name}: min.insync.replicas={min_isr} with {state.replication} replicas: "
                "acks=all is then acknowledged by the leader alone, and a write is lost with it",
                _kafka_configs(settings, need.name, "min.insync.replicas=2"),
            )
        )
    elif state.replication >= 2 and min_isr == state.replication:
        findings.append(
            Finding(
                WARN,
                f"{need.name}: min.insync.replicas={min_isr} equals its replication: one broker "
                "down stops every write of the worker",
                _kafka_configs(settings, need.name, f"min.insync.replicas={fix_to}")
                if state.replication >= 3
                else f"raise its replication to {min(3, brokers)}",
            )
        )
    return findings


def _config_findings(
    settings: Settings, need: TopicNeed, state: TopicState, min_input_retention_ms: int
) -> list[Finding]:
    configs = state.configs or {}
    findings = []
    policy = configs.get("cleanup.policy", KAFKA_DEFAULTS["cleanup.policy"])
    policies = {p.strip() for p in policy.split(",")}
    if need.compacted and "compact" not in policies:
        findings.append(
            Finding(
                FAIL,
                f"{need.name}: cleanup.policy={policy}, not compacted: past its retention "
                f"{need.why_compacted}",
                _kafka_configs(settings, need.name, "cleanup.policy=compact"),
            )
        )
    elif need.compacted and "delete" in policies:
        findings.append(
            Finding(
                WARN,
                f"{need.name}: cleanup.policy={policy}: keys quiet longer than retention.ms "
                f"are deleted, so {need.why_compacted}",
                _kafka_configs(settings, need.name, "cleanup.policy=compact"),
            )
        )
    if need.kind == "input":
        retention = configs.get("retention.ms")
        if retention is None:
            findings.append(
                Finding(
                    INFO,
                    f"{need.name}: retention.ms not reported: the broker's default applies "
                    "(Kafka's is 7 days)",
                )
            )
        elif int(retention) >= 0 and int(retention) < min_input_retention_ms:
            hours = int(retention) / HOUR_MS
            findings.append(
                Finding(
                    WARN,
                    f"{need.name}: retention.ms={retention} ({hours:g} h): a worker down "
                    f"longer, or a replay further back, finds its events deleted",
                    _kafka_configs(settings, need.name, f"retention.ms={7 * 24 * HOUR_MS}"),
                )
            )
    return findings


# ------------------------------------------------------------------------------- ACLs


def client_principal() -> str | None:
    """The principal Kafka's default builder gives this client's ``RISKSTREAM_KAFKA_*``:
    ``User:<name>`` for PLAIN and SCRAM, ``User:ANONYMOUS`` without SASL or a client
    certificate; None where it cannot be told here (OAUTHBEARER: the token's subject; mTLS: the
    certificate's distinguished name, as the broker's ``ssl.principal.mapping.rules`` map it)."""
    from stream.security import KafkaSecurity

    security = KafkaSecurity.from_env()
    if security.uses_sasl:
        if security.sasl_mechanism == "OAUTHBEARER":
            return None
        return f"User:{security.sasl_username}"
    if security.uses_tls and security.ssl_certfile is not None:
        return None
    return "User:ANONYMOUS"


@dataclass(frozen=True)
class _Needed:
    resource_type: int
    name: str
    operation: int


def _needed_acls(settings: Settings, needs: list[TopicNeed], missing: list[TopicNeed]):
    needed = [_Needed(GROUP, settings.topic(settings.app_id), READ)]
    for need in needs:
        if need.reads:
            needed.append(_Needed(TOPIC, need.name, READ))
        if need.writes:
            needed.append(_Needed(TOPIC, need.name, WRITE))
        if not need.reads and not need.writes:
            needed.append(_Needed(TOPIC, need.name, DESCRIBE))
    needed += [_Needed(TOPIC, need.name, CREATE) for need in missing]
    return needed


def _matches(acl: Acl, want: _Needed, principal: str, operations: set[int]) -> bool:
    if acl.resource_type != want.resource_type or acl.operation not in operations:
        return False
    if acl.principal not in (principal, "User:*"):
        return False
    if acl.pattern == PREFIXED:
        return want.name.startswith(acl.name)
    return acl.name in (want.name, "*")


def allowed(acls: Iterable[Acl], want: _Needed, principal: str) -> bool:
    """Kafka's authorizer for one operation: a matching DENY wins, else a matching ALLOW
    (of the operation, ALL, or an operation that implies Describe). Hosts are not compared:
    the address the broker sees is not known here. Create on a topic is also granted by
    Create on the cluster."""
    acls = list(acls)
    deny_ops = {want.operation, ALL}
    allow_ops = {want.operation, ALL} | (_IMPLY_DESCRIBE if want.operation == DESCRIBE else set())
    if any(a.permission == DENY and _matches(a, want, principal, deny_ops) for a in acls):
        return False
    if any(a.permission == ALLOW and _matches(a, want, principal, allow_ops) for a in acls):
        return True
    if want.resource_type == TOPIC and want.operation == CREATE:
        return allowed(acls, _Needed(CLUSTER, "kafka-cluster", CREATE), principal)
    return False


def _acl_findings(
    settings: Settings,
    snapshot: ClusterSnapshot,
    needs: list[TopicNeed],
    missing: list[TopicNeed],
    principal: str | None,
) -> list[Finding]:
    needed = _needed_acls(settings, needs, missing)
    summary = _describe_needed(settings, missing)
    if snapshot.acls == ACLS_NOT_ENFORCED:
        return [Finding(PASS, "ACLs not enforced (the brokers have no authorizer)")]
    if isinstance(snapshot.acls, str):
        reason = (
            "this principal may not list ACLs (Describe on the cluster)"
            if snapshot.acls == ACLS_DENIED
            else snapshot.acls
        )
        return [Finding(INFO, f"ACLs unchecked: {reason}", f"make sure the worker has {summary}")]
    if not snapshot.acls:
        return [
            Finding(
                INFO,
                "the brokers list no ACLs: none are enforced (Tansu answers so), or only super "
                "users may act",
                f"where an authorizer runs, give the worker {summary}",
            )
        ]
    if principal is None:
        return [
            Finding(
                INFO,
                "ACLs unchecked: the principal of OAUTHBEARER or mTLS clients is not known here",
                f"rerun with --principal User:..., or make sure the worker has {summary}",
            )
        ]
    refused = [want for want in needed if not allowed(snapshot.acls, want, principal)]
    if not refused:
        return [Finding(PASS, f"ACLs allow {principal} everything the worker does")]
    findings = []
    for (kind, operation), names in _group(refused).items():
        flag = "--group" if kind == GROUP else "--topic"
        op = _OPERATION_NAMES[operation]
        resource = "group" if kind == GROUP else "topic"
        findings.append(
            Finding(
                FAIL,
                f"ACLs: {principal} may not {op} {resource} {', '.join(names)}",
                "kafka-acls.sh --add --allow-principal "
                f"{principal} --operation {op} " + " ".join(f"{flag} {name}" for name in names),
            )
        )
    return findings


def _group(needed: list[_Needed]) -> dict[tuple[int, int], list[str]]:
    grouped: dict[tuple[int, int], list[str]] = {}
    for want in needed:
        grouped.setdefault((want.resource_type, want.operation), []).append(want.name)
    return grouped


def _describe_needed(settings: Settings, missing: list[TopicNeed]) -> str:
    """The worker's ACLs in one short phrase (the failures name each topic)."""
    group = settings.topic(settings.app_id)
    prefix = settings.topic_prefix
    if prefix:
        topics = (
            f"Read and Write on the topics prefixed {prefix} (--resource-pattern-type prefixed)"
        )
    else:
        topics = (
            f"Read on {', '.join(INPUT_TOPICS)}, {LABELS}, {MODEL_REGISTRY}; Write on "
            f"{', '.join(OUTPUT_TOPICS)}; Read and Write on the {group}-* topics and "
            f"{', '.join(INTERNAL_TOPICS)}"
        )
    create = "; Create on the cluster, as topics are missing" if missing else ""
    return f"{topics}; Read on group {group}{create}"


# --------------------------------------------------------------------------- collector


async def collect(
    settings: Settings,
    *,
    security=None,
    timeout_s: float = 15.0,
) -> ClusterSnapshot:
    """The snapshot of ``settings.kafka_broker`` for the topics the worker needs. A broker that
    cannot be reached, or refuses the credentials, raises ``KafkaAccessError`` (one line). Asks
    for every topic's metadata, never for the needed ones by name: a broker that auto-creates
    topics (Tansu does, with its default count) would create them."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from stream.ops.admin import admin_client

    async with admin_client(settings.kafka_broker, security=security, timeout_s=timeout_s) as admin:
        cluster = await admin.describe_cluster()
        needed = {need.name for need in worker_needs(settings)}
        described = [
            t
            for t in await admin.describe_topics()  # all topics: see above
            if t["topic"] in needed and t["error_code"] == 0
        ]
        configs: dict[str, dict[str, str] | None] = {}
        if described:
            resources = [ConfigResource(ConfigResourceType.TOPIC, t["topic"]) for t in described]
            for response in await admin.describe_configs(resources):
                for resource in response.to_object()["resources"]:
                    configs[resource["resource_name"]] = (
                        None
                        if resource["error_code"]
                        else {
                            entry.get("config_names", entry.get("config_name")): entry[
                                "config_value"
                            ]
                            for entry in resource["config_entries"]
                            if entry["config_value"] is not None
                        }
                    )
        # replicas on distinct brokers: Tansu accepts any replication on one broker and lists
        # that broker as every replica ([111, 111, 111]), which is one copy, not three
        topics = {
            t["topic"]: TopicState(
                partitions=len(t["partitions"]),
                replication=min((len(set(p["replicas"])) for p in t["partitions"]), default=0),
                configs=configs.get(t["topic"]),
            )
            for t in described
        }
        acls = await _describe_acls(admin)
    return ClusterSnapshot(
        brokers=len(cluster["brokers"]),
        topics=topics,
        acls=acls,
        cluster_id=cluster.get("cluster_id"),
    )


async def _describe_acls(admin) -> tuple[Acl, ...] | str:
    """Every ACL binding (a filter matching all), or why there are none to read."""
    from aiokafka.errors import IncompatibleBrokerVersion
    from aiokafka.protocol.admin import DescribeAclsRequest

    try:
        response = await admin._send_request(  # aiokafka has no describe_acls
            DescribeAclsRequest(ANY, None, ANY, None, None, ANY, ANY)
        )
    except IncompatibleBrokerVersion:
        return "the broker does not answer DescribeAcls"
    answer = response.to_object()
    code = answer["error_code"]
    if code == 54:  # SECURITY_DISABLED
        return ACLS_NOT_ENFORCED
    if code == 31:  # CLUSTER_AUTHORIZATION_FAILED
        return ACLS_DENIED
    if code:
        return f"DescribeAcls answered error {code} ({answer.get('error_message')})"
    return tuple(
        Acl(
            resource["resource_type"],
            resource["resource_name"],
            resource.get("resource_pattern_type", LITERAL),
            acl["principal"],
            acl["host"],
            acl["operation"],
            acl["permission_type"],
        )
        for resource in answer["resources"]
        for acl in resource["acls"]
    )


# ------------------------------------------------------------------------------ command


@click.command()
@click.option(
    "--principal",
    default=None,
    help="The worker's Kafka principal for the ACL check, e.g. User:CN=riskstream (default: "
    "User:<SASL user> for PLAIN/SCRAM, User:ANONYMOUS without SASL or client certificate).",
)
@click.option(
    "--min-input-retention-h",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="Inputs keeping less than this warn: the longest outage or replay they cover.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=15.0,
    show_default=True,
    help="Seconds to wait for the brokers.",
)
def doctor(principal: str | None, min_input_retention_h: float, timeout_s: float) -> None:
    """Check the cluster (KAFKA_BROKER, RISKSTREAM_KAFKA_*) before the worker's first run:
    one line per finding with its fix; exit 0 pass, 3 warnings, 4 failures, 2 bad setting."""
    from stream.ops.cli import _settings
    from stream.security import KafkaAccessError

    settings = _settings()
    try:
        snapshot = asyncio.run(collect(settings, timeout_s=timeout_s))
    except KafkaAccessError as exc:
        findings = [Finding(FAIL, f"cannot use {settings.kafka_broker}: {exc.message}")]
    except Exception as exc:  # a broker that answers a request wrongly: one line, not a trace
        findings = [
            Finding(FAIL, f"{settings.kafka_broker}: {type(exc).__name__}: {exc}".rstrip(": "))
        ]
    else:
        findings = check(
            settings,
            snapshot,
            principal=principal or client_principal(),
            min_input_retention_ms=int(min_input_retention_h * HOUR_MS),
        )
    for finding in findings:
        click.echo(finding.line())
    code = exit_code(findings)
    counts = {level: sum(f.level == level for f in findings) for level in (FAIL, WARN)}
    verdict = {EXIT_PASS: "pass", EXIT_WARN: "warn", EXIT_FAIL: "fail"}[code]
    click.echo(f"{verdict}: {counts[FAIL]} failures, {counts[WARN]} warnings (exit {code})")
    sys.exit(code)

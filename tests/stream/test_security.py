"""Kafka security end to end: the ``RISKSTREAM_KAFKA_*`` settings, their one-line errors, and
the worker, ``simulate`` and ``replay`` through SASL and TLS.

The secured brokers are the bundled Tansu behind a TLS + SASL terminator (see
``tests/security_fixtures.py`` for why); Tansu's own ``--authentication`` checks that a
broker's refusal is reported in one line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream.config import Settings, unknown_variables
from stream.ops.admin import ensure_topics
from stream.ops.broker import WORKER_SETTINGS, EmbeddedBroker
from stream.ops.runner import WorkerProcess
from stream.ops.runner import worker_env as worker_env_of
from stream.security import (
    KafkaAccessError,
    KafkaSecurity,
    KafkaSecurityError,
    env_names,
    plaintext_env,
    security_table,
)
from tests.fixtures import worker_env
from tests.kafka_io import collect, produce
from tests.security_fixtures import Pki, SecuredKafka, make_pki, secured_kafka
from tests.stream.test_cli import riskstream

ROOT = Path(__file__).resolve().parents[2]
P = "RISKSTREAM_KAFKA_"
USER, PASSWORD = "riskstream-worker", secrets.token_urlsafe(16)
TOKEN = secrets.token_urlsafe(24)


def security(**env: str) -> KafkaSecurity:
    return KafkaSecurity.from_env({P + name.upper(): value for name, value in env.items()})


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "kafka-password"
    path.write_text(PASSWORD + "\n")  # as a mounted secret often is
    return path


def scram_ssl_env(pki: Pki, password_file: Path, mechanism: str = "SCRAM-SHA-512") -> dict:
    return {
        f"{P}SECURITY_PROTOCOL": "SASL_SSL",
        f"{P}SASL_MECHANISM": mechanism,
        f"{P}SASL_USERNAME": USER,
        f"{P}SASL_PASSWORD_FILE": str(password_file),
        f"{P}SSL_CAFILE": str(pki.ca),
    }


def mtls_env(pki: Pki) -> dict:
    return {
        f"{P}SECURITY_PROTOCOL": "SSL",
        f"{P}SSL_CAFILE": str(pki.ca),
        f"{P}SSL_CERTFILE": str(pki.client_cert),
        f"{P}SSL_KEYFILE": str(pki.client_key),
        f"{P}SSL_KEY_PASSWORD": pki.client_key_password,
    }


# --------------------------------------------------------------------------- settings


def test_plaintext_by_default_and_an_empty_variable_is_unset() -> None:
    assert KafkaSecurity.from_env({}).aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert KafkaSecurity.from_env({}).faust_credentials() is None
    blank = security(security_protocol="", sasl_mechanism="", ssl_cafile="")
    assert blank.security_protocol == "PLAINTEXT"


def test_scram_over_sasl_ssl_and_faust_gets_the_same_client_arguments(
    pki: Pki, password_file: Path
) -> None:
    settings = KafkaSecurity.from_env(
        {**scram_ssl_env(pki, password_file), f"{P}SASL_MECHANISM": "scram-sha-512"}
    )
    kwargs = settings.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (USER, PASSWORD)
    assert kwargs["ssl_context"].check_hostname
    # Faust's aiokafka driver maps broker_credentials to exactly these client arguments
    assert credentials_to_aiokafka_auth(settings.faust_credentials()) == kwargs
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.describe()


def test_mtls_with_an_encrypted_key_and_oauthbearer_map_to_faust(pki: Pki, tmp_path) -> None:
    mtls = KafkaSecurity.from_env({**mtls_env(pki), f"{P}SSL_CHECK_HOSTNAME": "false"})
    assert mtls.ssl_context().check_hostname is False
    assert credentials_to_aiokafka_auth(mtls.faust_credentials()) == mtls.aiokafka_kwargs()
    token_file = tmp_path / "token"
    token_file.write_text("t")
    oauth = security(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_file=str(token_file),
    )
    kwargs = oauth.aiokafka_kwargs()
    assert kwargs["sasl_oauth_token_provider"] is oauth.token_provider()
    assert credentials_to_aiokafka_auth(oauth.faust_credentials()) == kwargs


async def test_oauth_token_file_is_read_at_every_connection(tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    provider = security(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_file=str(token_file),
    ).token_provider()
    assert await provider.token() == "first"
    token_file.write_text("second")  # a sidecar refreshed it
    assert await provider.token() == "second"


async def test_oauth_token_command_is_reused_until_its_jwt_nearly_expires(tmp_path) -> None:
    def jwt(exp: float) -> str:
        claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=")
        return f"e30.{claims.decode()}.sig"

    counter = tmp_path / "runs"
    script = tmp_path / "token.py"
    script.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "print(sys.argv[n])\n"
    )
    fresh, stale = jwt(time.time() + 3600), jwt(time.time() + 30)
    provider = security(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_command=f"{sys.executable} {script} {stale} {fresh} unused",
    ).token_provider()
    assert await provider.token() == stale  # expires within a minute: fetched again next time
    assert await provider.token() == fresh
    assert await provider.token() == fresh  # reused
    assert counter.read_text() == "2"


async def test_a_failing_token_command_says_so_in_one_line() -> None:
    provider = security(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_command=f"{sys.executable} -c \"import sys; sys.exit('no IAM role')\"",
    ).token_provider()
    with pytest.raises(RuntimeError, match=r"TOKEN_COMMAND exited 1: no IAM role$"):
        await provider.token()


BAD = [
    ({"sasl_mechanism": "SCRAM-SHA-512"}, ["SASL_MECHANISM", "need SASL", "SECURITY_PROTOCOL"]),
    (
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256"},
        ["SASL_USERNAME", "SASL_PASSWORD"],
    ),
    ({"security_protocol": "SASL_SSL"}, ["SASL_MECHANISM", "PLAIN, SCRAM-SHA-256"]),
    ({"security_protocol": "TLS"}, ["SECURITY_PROTOCOL='TLS'", "must be one of"]),
    (
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"},
        ["SASL_MECHANISM='GSSAPI'", "OAUTHBEARER"],
    ),
    (
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
        ["SASL_OAUTH_TOKEN_FILE", "SASL_OAUTH_TOKEN_COMMAND"],
    ),
    ({"security_protocol": "SSL", "ssl_cafile": "/no/ca.pem"}, ["SSL_CAFILE='/no/ca.pem'"]),
    ({"ssl_cafile": "/etc/hostname"}, ["SSL_CAFILE", "need TLS"]),
    ({"security_protocol": "SSL", "ssl_keyfile": "/etc/hostname"}, ["needs", "SSL_CERTFILE"]),
    ({"security_protocol": "SSL", "ssl_check_hostname": "maybe"}, ["SSL_CHECK_HOSTNAME"]),
]


@pytest.mark.parametrize(("env", "expected"), BAD)
def test_a_bad_combination_is_one_line_naming_the_variables(env: dict, expected: list) -> None:
    with pytest.raises(KafkaSecurityError) as raised:
        security(**env)
    message = raised.value.message
    assert "\n" not in message and message.startswith("bad setting: ")
    for part in expected:
        assert part in message, message


def test_a_password_is_never_echoed_and_two_sources_are_refused(password_file: Path) -> None:
    with pytest.raises(KafkaSecurityError) as raised:
        security(
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="u",
            sasl_password="hunter2-secret",
            sasl_password_file=str(password_file),
        )
    assert "exactly one of" in raised.value.message
    assert "hunter2-secret" not in raised.value.message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"SSL_KEY_PASSWORD": "wrong"}, "wrong or missing RISKSTREAM_KAFKA_SSL_KEY_PASSWORD"),
        ({"SSL_KEY_PASSWORD": ""}, "wrong or missing RISKSTREAM_KAFKA_SSL_KEY_PASSWORD"),
        ({"SSL_KEYFILE": "server_key"}, "the key is not the certificate's"),
        ({"SSL_CAFILE": "client_key"}, "RISKSTREAM_KAFKA_SSL_CAFILE="),
    ],
)
def test_a_bad_key_or_certificate_is_found_before_connecting(
    pki: Pki, change: dict, expected: str
) -> None:
    # a missing key password must not make OpenSSL prompt on the terminal
    env = mtls_env(pki)
    for name, value in change.items():
        env[P + name] = str(getattr(pki, value)) if hasattr(pki, value) else value
    with pytest.raises(KafkaSecurityError) as raised:
        KafkaSecurity.from_env(env)
    assert expected in raised.value.message and "\n" not in raised.value.message


def test_the_embedded_brokers_env_turns_security_off(
    pki: Pki, password_file: Path, monkeypatch
) -> None:
    secured = scram_ssl_env(pki, password_file)
    for name, value in secured.items():
        monkeypatch.setenv(name, value)
    assert KafkaSecurity.from_env().security_protocol == "SASL_SSL"
    # a child's environment is read as given: this process's variables do not leak into it
    child = worker_env_of({**plaintext_env(), "KAFKA_BROKER": "kafka://127.0.0.1:1"})
    assert KafkaSecurity.from_env(child).security_protocol == "PLAINTEXT"
    assert KafkaSecurity.plaintext().aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert set(plaintext_env()) == set(env_names())


def test_the_variables_are_known_and_documented() -> None:
    names = {name: "x" for name in env_names()}
    assert unknown_variables(names) == []
    assert unknown_variables({f"{P}SASL_PASWORD": "x"}) == [
        f"{P}SASL_PASWORD (did you mean {P}SASL_PASSWORD?)"
    ]
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- security-table:start -->\n") + len("<!-- security-table:start -->\n")
    end = readme.index("\n<!-- security-table:end -->")
    assert readme[start:end] == security_table()


def test_the_worker_stops_on_a_bad_combination_in_one_line() -> None:
    result = riskstream(
        "worker",
        env={
            "KAFKA_BROKER": "kafka://127.0.0.1:1",
            f"{P}SECURITY_PROTOCOL": "SASL_SSL",
            f"{P}SASL_MECHANISM": "SCRAM-SHA-512",
        },
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{P}SASL_USERNAME" in lines[0], result.stderr


# --------------------------------------------------------------------------- against brokers


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[SecuredKafka]:
    with secured_kafka(
        tmp_path_factory.mktemp("secured"), {USER: PASSWORD}, {TOKEN}, pki=pki
    ) as kafka:
        yield kafka


def client_cases(pki: Pki, password_file: Path, token_file: Path) -> dict[str, tuple[str, dict]]:
    plain = {f"{P}SASL_USERNAME": USER, f"{P}SASL_PASSWORD": PASSWORD}
    return {
        "scram-sha-512 over SASL_SSL (password file)": (
            "sasl_ssl",
            scram_ssl_env(pki, password_file),
        ),
        "scram-sha-256 over SASL_SSL": (
            "sasl_ssl",
            scram_ssl_env(pki, password_file, "SCRAM-SHA-256"),
        ),
        "plain over SASL_SSL": (
            "sasl_ssl",
            {
                f"{P}SECURITY_PROTOCOL": "SASL_SSL",
                f"{P}SASL_MECHANISM": "PLAIN",
                f"{P}SSL_CAFILE": str(pki.ca),
                **plain,
            },
        ),
        "oauthbearer over SASL_SSL (token file)": (
            "sasl_ssl",
            {
                f"{P}SECURITY_PROTOCOL": "SASL_SSL",
                f"{P}SASL_MECHANISM": "OAUTHBEARER",
                f"{P}SASL_OAUTH_TOKEN_FILE": str(token_file),
                f"{P}SSL_CAFILE": str(pki.ca),
            },
        ),
        "scram-sha-512 over SASL_PLAINTEXT": (
            "sasl_plaintext",
            {f"{P}SECURITY_PROTOCOL": "SASL_PLAINTEXT", f"{P}SASL_MECHANISM": "SCRAM-SHA-512"}
            | plain,
        ),
        "mTLS, encrypted key": ("mtls", mtls_env(pki)),
    }


@pytest.mark.integration
async def test_every_mechanism_and_tls_mode_creates_topics_produces_and_consumes(
    secured: SecuredKafka, pki: Pki, password_file: Path, tmp_path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    for number, (case, (name, env)) in enumerate(
        client_cases(pki, password_file, token_file).items()
    ):
        listener = secured[name]
        client = KafkaSecurity.from_env(env)
        prefix = f"c{number}."
        settings = Settings(KAFKA_BROKER=listener.url, topic_prefix=prefix, partitions=1)
        assert await ensure_topics(settings, security=client, timeout_s=15), case
        kwargs = client.aiokafka_kwargs()
        await produce(listener.bootstrap, [(f"{prefix}reviews", b"k", case.encode())], **kwargs)
        found = await collect(
            listener.bootstrap, [f"{prefix}reviews"], lambda f: len(f) > 0, 15, **kwargs
        )
        assert [m.value for m in found[f"{prefix}reviews"]] == [case.encode()], case


@pytest.mark.integration
async def test_each_refusal_is_one_line_saying_what_failed(
    secured: SecuredKafka, pki: Pki, password_file: Path
) -> None:
    scram = scram_ssl_env(pki, password_file)
    cases = [
        ("sasl_ssl", {**scram, f"{P}SASL_PASSWORD_FILE": "", f"{P}SASL_PASSWORD": "wrong"},
         ["SASL authentication failed", f"as '{USER}'", f"{P}SASL_PASSWORD"]),
        ("sasl_ssl", {**scram, f"{P}SSL_CAFILE": ""},
         ["certificate is not trusted", f"{P}SSL_CAFILE"]),
        ("sasl_ssl", {}, ["closed the connection", "expects", "SASL_SSL"]),
        ("sasl_plaintext", {}, ["closed the connection at the first request", "SASL or TLS"]),
        ("mtls", {f"{P}SECURITY_PROTOCOL": "SSL", f"{P}SSL_CAFILE": str(pki.ca)},
         ["client certificate", f"{P}SSL_CERTFILE"]),
        ("sasl_plaintext", {f"{P}SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                            f"{P}SASL_MECHANISM": "OAUTHBEARER",
                            f"{P}SASL_OAUTH_TOKEN_COMMAND": "echo not-a-known-token"},
         ["SASL authentication failed", f"{P}SASL_OAUTH_TOKEN_COMMAND"]),
    ]  # fmt: skip
    for name, env, expected in cases:
        settings = Settings(KAFKA_BROKER=secured[name].url, topic_prefix="refused.")
        started = time.monotonic()
        with pytest.raises(KafkaAccessError) as raised:
            await ensure_topics(settings, security=KafkaSecurity.from_env(env), timeout_s=15)
        message = raised.value.message
        assert time.monotonic() - started < 5, message
        assert "\n" not in message
        for part in expected:
            assert part in message, message


@pytest.mark.integration
async def test_tansus_own_authentication_refusal_is_one_line(tmp_path) -> None:
    # Tansu speaks SCRAM when it requires authentication; no user can exist on memory storage
    with EmbeddedBroker(log_path=tmp_path / "tansu-auth.log", authentication=True) as broker:
        client = security(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=USER,
            sasl_password=PASSWORD,
        )
        with pytest.raises(KafkaAccessError, match=r"SASL authentication failed .*SASL_PASSWORD$"):
            await ensure_topics(Settings(KAFKA_BROKER=broker.url), security=client, timeout_s=10)
        with pytest.raises(KafkaAccessError, match="SASL or TLS"):
            await ensure_topics(
                Settings(KAFKA_BROKER=broker.url), security=KafkaSecurity.plaintext(), timeout_s=10
            )


async def _scored(listener, prefix: str, client: KafkaSecurity, timeout_s: float, alive):
    """Input event ids (read back from the input topics) and scored event ids."""
    inputs = [f"{prefix}{t}" for t in ("reviews", "chats", "transactions")]
    scored = f"{prefix}scored-events"

    def ids(found, topics) -> set[str]:
        return {orjson.loads(m.value)["event_id"] for t in topics for m in found.get(t, [])}

    found = await collect(
        listener.bootstrap,
        [*inputs, scored],
        lambda f: bool(ids(f, inputs)) and ids(f, inputs) <= ids(f, [scored]),
        timeout_s,
        alive,
        **client.aiokafka_kwargs(),
    )
    return ids(found, inputs), ids(found, [scored])


@pytest.mark.integration
async def test_worker_and_simulate_over_sasl_ssl_scram(
    secured: SecuredKafka, built_model, pki: Pki, password_file: Path, tmp_path
) -> None:
    listener, prefix = secured["sasl_ssl"], "scram."
    refused_before = len(listener.front.failures)
    env = scram_ssl_env(pki, password_file)
    client = KafkaSecurity.from_env(env)
    worker = WorkerProcess(worker_env(listener, prefix, **env), tmp_path / "worker.log")
    worker.start()
    try:
        sent = await asyncio.to_thread(
            riskstream,
            "simulate", "--broker", listener.url, "--count", "6", "--rate", "50",
            "--malformed-ratio", "0", "--seed", "5",
            env={**env, "RISKSTREAM_TOPIC_PREFIX": prefix, "RISKSTREAM_PARTITIONS": "2"},
            timeout=120,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr[-2000:]
        assert "sent 6 records" in sent.stderr
        produced, scored = await _scored(listener, prefix, client, 90, worker.alive)
        assert len(produced) == 6 and produced <= scored, worker.log_tail()
    finally:
        worker.stop()
    assert len(listener.front.failures) == refused_before  # every client authenticated


def reviews(tag: str) -> list[dict]:
    return [
        {
            "event_id": f"{tag}-{i}",
            "member_id": f"m-{i}",
            "event_time": f"2026-11-23T09:0{i}:00Z",
            "product_id": "B00TLS",
            "brand": "tlsbrand",
            "rating": 5,
            "text": "Arrived quickly and tastes great, would buy again.",
        }
        for i in range(3)
    ]


def replay(env: dict, out: Path, *args: str) -> dict:
    """``riskstream replay ARGS`` in this process with ``env`` set; the report."""
    from stream.ops.cli import main

    fast = {**WORKER_SETTINGS, "RISKSTREAM_PROFILE_THROTTLE_S": "0"}
    result = CliRunner(env=env).invoke(
        main,
        [
            "replay", *args, "--out", str(out), "--no-progress", "--timeout", "120",
            *(arg for name, value in fast.items() for arg in ("--set", f"{name}={value}")),
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["status"] == "complete"
    scored = (out / "outputs-a" / "scored-events.jsonl").read_bytes().splitlines()
    report["scored_ids"] = {orjson.loads(line)["event_id"] for line in scored}
    return report


@pytest.mark.integration
def test_replay_onto_an_mtls_broker(secured: SecuredKafka, built_model, pki: Pki, tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({"topic": "reviews", "value": r}) + b"\n" for r in reviews("mtls"))
    )
    report = replay(
        mtls_env(pki), tmp_path / "bt", "--file", str(source), "--broker", secured["mtls"].url
    )
    assert report["events"]["accounted"] == 3
    assert report["scored_ids"] == {"mtls-0", "mtls-1", "mtls-2"}


@pytest.mark.integration
async def test_replay_of_a_sasl_ssl_source_runs_on_a_plaintext_embedded_broker(
    secured: SecuredKafka, built_model, pki: Pki, password_file: Path, tmp_path
) -> None:
    # the variables describe the source cluster; the embedded backtest broker has no security
    listener, env = secured["sasl_ssl"], scram_ssl_env(pki, password_file)
    records = [("src.reviews", b"k", orjson.dumps(r)) for r in reviews("src")]
    await produce(listener.bootstrap, records, **KafkaSecurity.from_env(env).aiokafka_kwargs())
    report = await asyncio.to_thread(
        replay, env, tmp_path / "bt", "--topics", listener.url, "--source-prefix", "src."
    )
    assert report["events"]["accounted"] == 3
    assert report["scored_ids"] == {"src-0", "src-1", "src-2"}


@pytest.mark.integration
def test_a_wrong_password_stops_the_worker_quickly_in_one_line(
    secured: SecuredKafka, pki: Pki, password_file: Path, tmp_path
) -> None:
    listener = secured["sasl_ssl"]
    env = {**scram_ssl_env(pki, password_file), f"{P}SASL_PASSWORD_FILE": ""}
    env[f"{P}SASL_PASSWORD"] = "not-" + PASSWORD
    worker = WorkerProcess(worker_env(listener, "wrong.", **env), tmp_path / "worker.log")
    started = time.monotonic()
    worker.start()
    try:
        worker.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker hangs on a refused password: {worker.log_tail()}")
    finally:
        worker.stop()
    assert time.monotonic() - started < 30
    assert worker.process.returncode != 0
    lines = [line for line in worker.log_tail(100).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "SASL authentication failed" in lines[0] and f"{P}SASL_PASSWORD" in lines[0]
    assert "not-" + PASSWORD not in lines[0]

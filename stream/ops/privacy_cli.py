"""``riskstream privacy policy|pseudonym|new-key``: the field policy the edge enforces, the
pseudonym a member or device gets (to find its profile and alerts), and new key files.

A pseudonym is ``p1-`` and 26 base32 characters of HMAC-SHA256(key, context, field, value)
(``stream.core.policy.Pseudonymiser``): whoever holds the key can compute it for an id they
know, nobody can reverse it.
"""

from __future__ import annotations

from pathlib import Path

import click

from stream.core.policy import FIELD_POLICY, Pseudonymiser, policy_markdown
from stream.core.sealing import SealingError, create_key_file, load_key

_IDS = sorted(
    {
        f
        for fields in FIELD_POLICY.values()
        for f, c in fields.items()
        if c in ("identifier", "reference")
    }
)


def _cli():  # the CLI's helpers, imported late: stream.ops.cli registers this module
    from stream.ops import cli

    return cli


@click.group("privacy")
def privacy_group() -> None:
    """The field policy, pseudonyms and keys."""


@privacy_group.command("policy")
@click.option("--markdown", is_flag=True, help="The README's field-policy table.")
def policy(markdown: bool) -> None:
    """Print what the edge does with every field of every input."""
    if markdown:
        click.echo(policy_markdown())
        return
    for topic, fields in FIELD_POLICY.items():
        for field, cls in fields.items():
            click.echo(f"{topic}.{field}: {cls}")


@privacy_group.command("pseudonym")
@click.argument("field", type=click.Choice(_IDS))
@click.argument("values", nargs=-1, required=True)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Default: RISKSTREAM_PSEUDONYM_KEY_FILE (the workers' key).",
)
def pseudonym(field: str, values: tuple[str, ...], key_file: Path | None) -> None:
    """Print the pseudonym of each VALUE of FIELD (e.g. member_id m-1042), as the workers
    publish it: what to look up in member-profiles, alerts and scored-events."""
    cli = _cli()
    if key_file is None:
        path = cli._settings().pseudonym_key_file
        if path is None:
            cli._fail("RISKSTREAM_PSEUDONYM_KEY_FILE is 'none': ids are published as sent", 2)
        key_file = path
    try:
        key = load_key(key_file, "pseudonymisation")
    except SealingError as exc:
        cli._fail(str(exc), 2)
        raise
    maker = Pseudonymiser(key.secret, key.key_id)
    for value in values:
        click.echo(f"{value}\t{maker.pseudonym(field, value)}")


@privacy_group.command("new-key")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def new_key(path: Path) -> None:
    """Write a new random 32-byte key to PATH (mode 0600; never overwrites): a pseudonymisation
    key or a dead-letter key, each in a file of its own."""
    if not create_key_file(path):
        _cli()._fail(f"{path} exists: not overwritten", 2)
    key = load_key(path, "new")
    click.echo(f"wrote {path} (key id {key.key_id})")

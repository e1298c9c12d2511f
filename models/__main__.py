"""``python -m models build [--force]`` / ``python -m models info``."""

from __future__ import annotations

import logging
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from models import artefacts
from models.data import riskstream_cache_dir

console = Console()


def _headline_table(card: dict[str, Any]) -> Table:
    table = Table(title=card["model_version"], show_header=False)
    for key, value in card["headline"].items():
        table.add_row(key, f"{value:.4f}")
    for key, value in card["timings_s"].items():
        table.add_row(f"time_{key}_s", f"{value:.1f}")
    return table


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def cli(verbose: bool) -> None:
    """Build and inspect the riskstream text model."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild even if this version is already built.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(force: bool, quiet: bool) -> None:
    """Fetch data, embed with the frozen encoder, fit the heads, write the model card."""
    from models.train import ensure_built

    started = time.perf_counter()
    path = ensure_built(progress=not quiet, force=force)
    console.print(_headline_table(artefacts.read_card(path)))
    console.print(f"artefact: {path}  ({time.perf_counter() - started:.1f}s this run)")


@cli.command()
def info() -> None:
    """Show the current model version, where it lives, and its metrics if built."""
    path = artefacts.artefact_dir()
    console.print(f"model_version: {path.name}")
    console.print(f"cache dir:     {riskstream_cache_dir()}")
    if not artefacts.is_built(path):
        console.print("[yellow]not built[/yellow] - run `python -m models build`")
        return
    console.print(f"artefact:      {path}")
    console.print(_headline_table(artefacts.read_card(path)))


if __name__ == "__main__":
    cli()

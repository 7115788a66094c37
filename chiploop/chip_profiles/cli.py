"""`chiploop profiles`: list the built-in chip profiles, show one resolved, validate files, and print
the profile reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chiploop.chip_profiles.loader import list_profiles, load_profile
from chiploop.chip_profiles.model import ChipProfile

app = typer.Typer(
    help="Chip profiles: list the built-ins, show one, validate your own.",
    no_args_is_help=True,
)


@app.command("list")
def list_command() -> None:
    """Table of the built-in profiles: arithmetic, weight bits, noise and limits."""
    table = Table(title="built-in chip profiles")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("arithmetic")
    table.add_column("weight bits")
    table.add_column("noise")
    table.add_column("limits")
    for name in list_profiles():
        profile = load_profile(name)
        bits = profile.weights.bits
        table.add_row(
            name,
            profile.arithmetic.kind,
            "analog" if bits is None else f"{bits} ({profile.weights.encoding})",
            ", ".join(profile.noise.kinds()) or "none",
            _limits_summary(profile),
        )
    Console(width=max(Console().width, 120)).print(table)


@app.command()
def show(
    name_or_file: Annotated[str, typer.Argument(help="built-in name or YAML file")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="FIELD=VALUE", help="override, repeatable, as `chiploop train --set`"),
    ] = None,
) -> None:
    """Print a profile as resolved YAML (`extends:` merged in, overrides applied)."""
    from chiploop.training.cli import parse_assignments

    profile = load_profile(name_or_file).with_overrides(parse_assignments(set_ or [], "--set"))
    typer.echo(profile.to_yaml(), nl=False)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="profile YAML files")]) -> None:
    """Load and validate profile files; prints `ok: FILE` per file, stops at the first error."""
    for path in files:
        load_profile(path)
        typer.echo(f"ok: {path}")


@app.command()
def reference() -> None:
    """Print the profile reference as Markdown: every field, the settings that cannot act, and
    which built-in hosts which task (docs/profiles.md is this output)."""
    from chiploop.chip_profiles.reference import markdown

    typer.echo(markdown(), nl=False)


def _limits_summary(profile: ChipProfile) -> str:
    limits = profile.limits.model_dump(exclude_none=True)
    return ", ".join(f"{key.removeprefix('max_')} {value}" for key, value in limits.items()) or "none"

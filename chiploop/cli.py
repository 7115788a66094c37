"""The `chiploop` command. Each part of the package contributes a sub-command group.

A ChiploopError anywhere below becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from chiploop import __version__
from chiploop.chip_profiles.cli import app as profiles_app
from chiploop.errors import ChiploopError
from chiploop.firmware_bridge.cli import app as board_app
from chiploop.training.characterize_cli import characterize_command
from chiploop.training.cli import train_command
from chiploop.training.recipes.cli import app as reproduce_app

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class _UserErrorsAsOneLine(TyperGroup):
    """Root group: turns a ChiploopError raised by any command into `error: ...` and exit 2."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except ChiploopError as exc:
            err_console.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from None  # typer vendors click: click's own Exit is not caught


app = typer.Typer(
    cls=_UserErrorsAsOneLine,
    help="Train spiking networks as a neuromorphic chip would.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(profiles_app, name="profiles")
app.add_typer(board_app, name="board")
app.add_typer(reproduce_app, name="reproduce")
app.command("characterize")(characterize_command)
app.command("train")(train_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"chiploop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """chiploop: chip profiles, an emulator, approximate-gradient training and a board bridge."""

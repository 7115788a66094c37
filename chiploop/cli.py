"""The `chiploop` command. Each part of the package contributes a sub-command group.

A ChiploopError anywhere below becomes one line on stderr and exit code 2 (130 for an interrupt,
saying what was saved), never a traceback; a Python warning becomes one `warning:` line.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperGroup, TyperOption

from chiploop import __version__
from chiploop.chip_profiles.cli import app as profiles_app
from chiploop.cost.cli import cost_command
from chiploop.errors import ChiploopError
from chiploop.firmware_bridge.cli import app as board_app
from chiploop.interchange.cli import deploy_command, export_command
from chiploop.training.characterize_cli import characterize_command
from chiploop.training.cli import train_command
from chiploop.training.recipes.cli import app as reproduce_app

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class _UserErrorsAsOneLine(TyperGroup):
    """Root group: plain-word metavars on every command; errors, interrupts and warnings as one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> typer.Context:
        _readable_metavars(self)  # here, not in __init__: typer adds its completion options after that
        return super().make_context(*args, **kwargs)

    def invoke(self, ctx: typer.Context):  # noqa: ANN201 - click's signature
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _warning_line
            try:
                return super().invoke(ctx)
            except ChiploopError as exc:
                err_console.print(f"error: {exc}" if exc.exit_code == 2 else str(exc), markup=False)
                raise typer.Exit(exc.exit_code) from None  # typer vendors click: click's Exit is not caught
            except KeyboardInterrupt:
                err_console.print("interrupted", markup=False)
                raise typer.Exit(130) from None


def _warning_line(message: Warning | str, *args: object, **kwargs: object) -> None:
    err_console.print(f"warning: {message}", markup=False)


HELP_NAMES = ["-h", "--help"]
_METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "Path": "PATH", "path": "PATH"}


def _readable_metavars(command: Any) -> None:
    """TEXT, INTEGER, FLOAT, PATH for parameters typer would show as `<str>`, `<int range>`, `<Path>`;
    nothing for flags. Recurses into sub-command groups."""
    help_option = command.get_help_option(SimpleNamespace(help_option_names=HELP_NAMES))  # made once, cached
    for param in [*command.params, help_option]:
        if isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = "" if param.is_bool_flag else _plain_word(param)
        elif isinstance(param, TyperArgument):
            word = _plain_word(param)
            param.display_type_rich = lambda ctx, word=word: word  # an argument's type column
    for sub in getattr(command, "commands", {}).values():
        _readable_metavars(sub)


def _plain_word(param: TyperOption | TyperArgument) -> str:
    label = param.display_type(None).strip("<>").removesuffix(" range")  # typer's own label
    label = label.removeprefix("list[").removesuffix("]")
    return _METAVARS.get(label, label.upper())


app = typer.Typer(
    cls=_UserErrorsAsOneLine,
    help="Train spiking networks as a neuromorphic chip would.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": HELP_NAMES},
)
app.add_typer(profiles_app, name="profiles")
app.add_typer(board_app, name="board")
app.add_typer(reproduce_app, name="reproduce")
app.command("characterize")(characterize_command)
app.command("train")(train_command)
app.command("cost")(cost_command)
app.command("deploy")(deploy_command)
app.command("export")(export_command)


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

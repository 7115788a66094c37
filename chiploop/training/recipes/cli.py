"""`chiploop reproduce`: one sub-command per recipe, plus `list` and `all`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from chiploop.training.recipes import RECIPES, claim, run_recipe

if TYPE_CHECKING:
    from chiploop.training.recipes.common import RecipeResult

app = typer.Typer(
    help="Reproduce the research behind chiploop: results.csv, figures and REPORT.md per recipe.",
    no_args_is_help=True,
)
console = Console(highlight=False)

QUICK = typer.Option(False, "--quick", help="Small version (a few minutes at most on 2 cores).")
SEED = typer.Option(0, "--seed", help="Seed of every random draw.")
SCALE = typer.Option(1.0, "--scale", help="Multiply sizes (samples, seeds, repeats, epochs) by this.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")
OUT = typer.Option(None, "--out", help="Output directory (default: reproductions/NAME).")
OUT_ALL = typer.Option(Path("reproductions"), "--out", help="Parent directory, one folder per recipe.")


def _summary(result: RecipeResult, out: Path, quick: bool) -> None:
    """The trends as a table; a quick run is too small to refute one, so it reports what it did not see."""
    if result.reproduced:
        verdict = "reproduced"
    else:
        verdict = "not every trend seen at quick scale" if quick else "NOT fully reproduced"
    table = Table(title=f"{result.name}: {verdict}")
    table.add_column("trend")
    table.add_column("agrees", justify="center")
    for trend, ok in result.trends.items():
        table.add_row(trend, "yes" if ok else "not seen (quick)" if quick else "NO")
    console.print(table)
    console.print(f"report: {out / 'REPORT.md'}")


def _command(name: str) -> Callable[..., None]:
    def command(
        out: Path = OUT,
        quick: bool = QUICK,
        seed: int = SEED,
        scale: float = SCALE,
        progress: bool = PROGRESS,
    ) -> None:
        target = out if out is not None else Path("reproductions") / name
        _summary(run_recipe(name, target, quick, seed, progress, scale), target, quick)

    command.__doc__ = claim(name)
    return command


for _name in RECIPES:
    app.command(_name)(_command(_name))


@app.command("list")
def list_recipes() -> None:
    """List the recipes and the claim each reproduces."""
    table = Table(title="recipes (chiploop reproduce NAME [--quick] [--out DIR])")
    table.add_column("name")
    table.add_column("reproduces")
    for name in RECIPES:
        table.add_row(name, claim(name))
    console.print(table)


@app.command("all")
def run_all(
    out: Path = OUT_ALL,
    quick: bool = QUICK,
    seed: int = SEED,
    scale: float = SCALE,
    progress: bool = PROGRESS,
) -> None:
    """Run every recipe in order."""
    for name in RECIPES:
        _summary(run_recipe(name, out / name, quick, seed, progress, scale), out / name, quick)

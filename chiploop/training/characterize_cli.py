"""`chiploop characterize`: a sweep over profile fields, estimators and seeds, with plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chiploop.training.sweeps import SweepError


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def characterize_command(
    sweep: Annotated[list[str], typer.Option("--sweep", help="FIELD=V1,V2,... (repeatable)")],
    profile: Annotated[str, typer.Option(help="built-in profile name or YAML file")] = "pcm_crossbar",
    task: Annotated[str, typer.Option(help="task name")] = "digits",
    kind: Annotated[
        str, typer.Option(help="deploy: train once, evaluate every setting; train: train per cell")
    ] = "deploy",
    estimators: Annotated[str, typer.Option(help="comma-separated estimator names")] = "bptt",
    seeds: Annotated[int, typer.Option(min=1, help="seeds per cell (0..N-1)")] = 2,
    epochs: Annotated[int, typer.Option(min=0, help="training epochs per model")] = 3,
    hidden: Annotated[int, typer.Option(min=1, help="hidden neurons")] = 64,
    mode: Annotated[str, typer.Option(help="training mode: offline or in_the_loop")] = "offline",
    target: Annotated[str, typer.Option(help="chip target for evaluation")] = "emulator",
    draws: Annotated[int, typer.Option(min=1, help="chip instances per deployed evaluation")] = 1,
    scheduler: Annotated[str | None, typer.Option(help="dask scheduler address tcp://HOST:PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, help="local worker processes")] = 2,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("runs/characterize"),
) -> None:
    """Sweep profile fields x estimators x seeds; write results.csv and plots in --out."""
    from chiploop.chip_profiles.loader import load_profile
    from chiploop.training.characterize import CharacterizeConfig, characterize, summarize
    from chiploop.training.estimators import ESTIMATORS
    from chiploop.training.sweep_plots import write_sweep_plots
    from chiploop.training.sweeps import connect_scheduler, make_grid, parse_axis, read_results
    from chiploop.training.tasks import TASKS

    if kind not in ("deploy", "train"):
        raise SweepError(f"--kind must be 'deploy' or 'train', got {kind!r}")
    if mode not in ("offline", "in_the_loop"):
        raise SweepError(f"--mode must be 'offline' or 'in_the_loop', got {mode!r}")
    if task not in TASKS:
        raise SweepError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    names = _split(estimators)
    unknown = [e for e in names if e not in ESTIMATORS]
    if unknown:
        raise SweepError(f"unknown estimator(s) {unknown}; valid estimators: {', '.join(ESTIMATORS)}")
    base = load_profile(profile)
    axes = [parse_axis(s, base) for s in sweep]
    cells = make_grid(axes, names, list(range(seeds)))
    if scheduler:
        connect_scheduler(scheduler).close()  # fail before any work if unreachable
    config = CharacterizeConfig(
        profile=base.model_dump(mode="json"),
        task=task,
        kind=kind,  # type: ignore[arg-type]
        out_dir=str(out),
        epochs=epochs,
        n_hidden=hidden,
        mode=mode,  # type: ignore[arg-type]
        target=target,
        draws=draws,
    )
    console = Console()
    todo = len([c for c in cells if c.key not in read_results(out)])
    with Progress(
        TextColumn("[bold]characterize"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        job = bar.add_task("cells", total=todo)
        results = characterize(
            config,
            axes,
            names,
            list(range(seeds)),
            scheduler=scheduler,
            workers=workers,
            on_done=lambda cell, row: bar.advance(job),
        )
    fields = [a.field for a in axes]
    plots = write_sweep_plots(results, fields)
    table = Table(title=f"{profile} / {task} / {kind}: test metric over {seeds} seed(s)")
    for col in [*fields, "estimator", "mean", "std"]:
        table.add_column(col)
    for row in summarize(list(read_results(out).values()), fields):
        table.add_row(
            *[str(row[f]) for f in fields], row["estimator"], f"{row['mean']:.4f}", f"{row['std']:.4f}"
        )
    console.print(table)
    console.print(f"results: {results}\nplots: {', '.join(str(p) for p in plots)}")

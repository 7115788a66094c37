"""`chiploop characterize`: a sweep over profile fields, estimators and seeds, with plots.

Progress goes to stderr, the summary table and file paths to stdout. Ctrl-C stops the workers and
is one `Interrupted` line saying what was saved (exit 130); the same command resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chiploop.errors import Interrupted
from chiploop.training.sweeps import SweepError

if TYPE_CHECKING:
    from chiploop.training.characterize import CharacterizeConfig
    from chiploop.training.sweeps import SweepAxis


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _check_choices(kind: str, mode: str, task: str, estimators: list[str]) -> None:
    """Refuse an unknown kind, mode, task or estimator with one line."""
    from chiploop.training.estimators import ESTIMATORS
    from chiploop.training.tasks import TASKS

    if kind not in ("deploy", "train"):
        raise SweepError(f"--kind must be 'deploy' or 'train', got {kind!r}")
    if mode not in ("offline", "in_the_loop"):
        raise SweepError(f"--mode must be 'offline' or 'in_the_loop', got {mode!r}")
    if task not in TASKS:
        raise SweepError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise SweepError(f"unknown estimator(s) {unknown}; valid estimators: {', '.join(ESTIMATORS)}")


def _run_with_progress(
    config: CharacterizeConfig,
    axes: list[SweepAxis],
    estimators: list[str],
    seeds: list[int],
    scheduler: str | None,
    workers: int,
) -> Path:
    """run_characterize with a progress bar per table on stderr."""
    from chiploop.training.characterize import run_characterize, saved_counts

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        jobs = {
            label: bar.add_task(label, total=total, completed=done)
            for label, (_, done, total) in saved_counts(config, axes, estimators, seeds).items()
        }
        return run_characterize(
            config,
            axes,
            estimators,
            seeds,
            scheduler=scheduler,
            workers=workers,
            on_done=lambda cell, row: bar.advance(jobs["cells"]),
            on_model=lambda cell, row: bar.advance(jobs["models"]),
        )


def _interrupted(
    config: CharacterizeConfig, axes: list[SweepAxis], estimators: list[str], seeds: list[int]
) -> str:
    """What an interrupted sweep saved, and how to go on."""
    from chiploop.training.characterize import saved_counts

    counts = saved_counts(config, axes, estimators, seeds)
    saved = [
        f"{done} of {total} {label} saved in {Path(config.out_dir) / table}"
        for label, (table, done, total) in reversed(counts.items())
        if label == "cells" or done < total
    ]
    return f"interrupted: {', '.join(saved)}; run the same command again to resume"


def _print_summary(results: Path, fields: list[str], title: str, plots: list[Path]) -> None:
    """The test metric per setting and estimator (mean ± std over seeds), then the files written."""
    from chiploop.training.characterize import summarize
    from chiploop.training.sweeps import read_results

    table = Table(title=title)
    for col in [*fields, "estimator", "mean", "std"]:
        table.add_column(col)
    for row in summarize(list(read_results(results.parent).values()), fields):
        table.add_row(
            *[str(row[f]) for f in fields], row["estimator"], f"{row['mean']:.4f}", f"{row['std']:.4f}"
        )
    console = Console()
    console.print(table)
    console.print(f"results: {results}\nplots: {', '.join(str(p) for p in plots)}")


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
    hidden: Annotated[str, typer.Option(help="hidden neurons; several hidden layers: 64,32")] = "64",
    mode: Annotated[str, typer.Option(help="training mode: offline or in_the_loop")] = "offline",
    target: Annotated[str, typer.Option(help="chip target for evaluation")] = "emulator",
    draws: Annotated[int, typer.Option(min=1, help="chip instances per deployed evaluation")] = 1,
    scheduler: Annotated[str | None, typer.Option(help="dask scheduler address tcp://HOST:PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, help="local worker processes")] = 2,
    out: Annotated[Path, typer.Option(help="output directory (one sweep; re-running resumes it)")] = Path(
        "runs/characterize"
    ),
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="replace the sweep already in --out (results, models, cells, plots)"
        ),
    ] = False,
) -> None:
    """Sweep profile fields x estimators x seeds; write results.csv and plots in --out."""
    from chiploop.chip_profiles.loader import load_profile
    from chiploop.training.characterize import MODELS, CharacterizeConfig, sweep_directory
    from chiploop.training.cli import parse_hidden
    from chiploop.training.sweep_plots import write_sweep_plots
    from chiploop.training.sweeps import connect_scheduler, parse_axes

    names = _split(estimators)
    _check_choices(kind, mode, task, names)
    base = load_profile(profile)
    axes = parse_axes(sweep, base)
    seed_list = list(range(seeds))
    if scheduler:
        connect_scheduler(scheduler).close()  # fail before any work if unreachable
    config = CharacterizeConfig(
        profile=base.model_dump(mode="json"),
        task=task,
        kind=kind,  # type: ignore[arg-type]
        out_dir=str(out),
        epochs=epochs,
        n_hidden=parse_hidden(hidden),
        mode=mode,  # type: ignore[arg-type]
        target=target,
        draws=draws,
    )
    fields = [a.field for a in axes]
    try:
        with sweep_directory(config, axes, names, seed_list, overwrite=overwrite):
            results = _run_with_progress(config, axes, names, seed_list, scheduler, workers)
            models = out / MODELS if kind == "deploy" else None
            plots = write_sweep_plots(results, fields, models)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted(config, axes, names, seed_list)) from None
    title = f"{profile} / {task} / {kind}: test metric over {seeds} seed(s)"
    _print_summary(results, fields, title, plots)

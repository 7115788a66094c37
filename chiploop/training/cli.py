"""`chiploop train`: train a network on a chip (emulated by default) and keep the run on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chiploop.errors import TrainingError

DEFAULT_EPOCHS = 6


def train_command(
    profile: Annotated[str, typer.Option(help="built-in profile name or YAML file")] = "loihi2",
    task: Annotated[str, typer.Option(help="task name")] = "digits",
    estimator: Annotated[str, typer.Option(help="gradient estimator name")] = "bptt",
    mode: Annotated[str, typer.Option(help="in_the_loop or offline (hardware-aware)")] = "in_the_loop",
    target: Annotated[str, typer.Option(help="chip: emulator, twin, serial://PORT, socket://HOST:PORT")] = (
        "emulator"
    ),
    epochs: Annotated[
        int | None, typer.Option(min=0, help=f"epochs in total (default {DEFAULT_EPOCHS})")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="seed of data order, init and chip")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/PROFILE-TASK-ESTIMATOR-SEED)")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="continue the run in --out from its checkpoint (config.yaml sets the rest)")
    ] = False,
    lr: Annotated[float, typer.Option(min=0.0, help="learning rate, in weight units per step")] = 0.02,
    lr_decay: Annotated[float, typer.Option(min=0.0, help="learning-rate factor per epoch")] = 0.7,
    batch_size: Annotated[int, typer.Option(min=1, help="samples per step")] = 64,
    hidden: Annotated[int, typer.Option(min=1, help="hidden neurons")] = 128,
    optimizer: Annotated[str, typer.Option(help="adam or sgd")] = "adam",
    progress: Annotated[bool, typer.Option(help="show a progress bar and a summary table")] = True,
    plots: Annotated[bool, typer.Option(help="write PNG plots into the run directory")] = True,
) -> None:
    """Train on the chip; write config.yaml, metrics.csv, checkpoint.pt, summary.json and plots.

    With --resume only --out, --epochs, --progress and --plots are read; the rest comes from the
    run's config.yaml.
    """
    from chiploop.training.loop import Trainer

    if resume:
        if out is None:
            raise TrainingError("--resume needs --out: the run directory to continue")
        trainer = Trainer.from_run(out, progress=progress, plots=plots)
    else:
        trainer = Trainer(
            profile,
            None,
            estimator,
            task,
            mode=mode,  # type: ignore[arg-type]
            target=target,
            optimizer=optimizer,  # type: ignore[arg-type]
            lr=lr,
            lr_decay=lr_decay,
            batch_size=batch_size,
            seed=seed,
            out_dir=out,
            progress=progress,
            plots=plots,
            n_hidden=hidden,
            epochs=DEFAULT_EPOCHS,
        )
    try:
        last = trainer.fit(epochs, resume=resume).last
    finally:
        trainer.chip.close()
    typer.echo(
        f"test {trainer.task.metric_name} {last['test_metric']:.4f} after {last['epoch']} epochs "
        f"(on the chip); run in {trainer.run.path}"
    )

"""`chiploop train`: train a network on a chip (emulated by default) and keep the run on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from chiploop.errors import TrainingError

DEFAULT_EPOCHS = 6


def parse_assignments(items: list[str], flag: str) -> dict[str, Any]:
    """`["neuron.model=alif", "neuron.adaptation.beta=2"]` -> {"neuron.model": "alif", ...}.

    Values are YAML (`2` is an int, `null` is None, `[0, 1]` a list); a later KEY wins. `flag`
    names the option in errors.
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TrainingError(f"{flag} expects KEY=VALUE (e.g. {flag} name=3), got {item!r}")
        try:
            parsed[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise TrainingError(f"{flag} {key}: value {text!r} is not valid YAML ({problem})") from None
    return parsed


def train_command(
    profile: Annotated[str, typer.Option(help="built-in profile name or YAML file")] = "loihi2",
    task: Annotated[str, typer.Option(help="task name")] = "digits",
    task_option: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="task option, repeatable, value in YAML: delay_steps=100"),
    ] = None,
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
    recurrent: Annotated[bool, typer.Option(help="recurrent hidden layer (W_rec hidden -> hidden)")] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="profile override, repeatable, value in YAML: --set neuron.model=alif",
        ),
    ] = None,
    optimizer: Annotated[str, typer.Option(help="adam or sgd")] = "adam",
    progress: Annotated[bool, typer.Option(help="show a progress bar and a summary table")] = True,
    plots: Annotated[bool, typer.Option(help="write PNG plots into the run directory")] = True,
) -> None:
    """Train on the chip; write config.yaml, metrics.csv, checkpoint.pt, summary.json and plots.

    With --resume only --out, --epochs, --progress and --plots are read; the rest comes from the
    run's config.yaml (which holds the full profile, overrides included).
    """
    from chiploop.chip_profiles.loader import load_profile
    from chiploop.emulator.network import NetworkSpec
    from chiploop.training.loop import Trainer
    from chiploop.training.tasks import make_task

    if resume:
        if out is None:
            raise TrainingError("--resume needs --out: the run directory to continue")
        if set_ or task_option:
            raise TrainingError(
                "--set and --task-option cannot be combined with --resume: the run's config.yaml holds them"
            )
        trainer = Trainer.from_run(out, progress=progress, plots=plots)
    else:
        chip_profile = load_profile(profile).with_overrides(parse_assignments(set_ or [], "--set"))
        task_options = parse_assignments(task_option or [], "--task-option")
        the_task = make_task(task, seed=seed, **task_options)
        trainer = Trainer(
            chip_profile,
            NetworkSpec(the_task.n_in, hidden, the_task.n_out, recurrent=recurrent),
            estimator,
            the_task,
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
            task_options=task_options,
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

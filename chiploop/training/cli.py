"""`chiploop train`: train a network on a chip (emulated by default) and keep the run on disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from chiploop.errors import DesignRuleError, Interrupted, TrainingError
from chiploop.training import defaults

if TYPE_CHECKING:
    from chiploop.chip.network import NetworkSpec
    from chiploop.chip_profiles.model import ChipProfile
    from chiploop.training.loop import Trainer

RESUME_READS = ("out", "resume", "epochs", "progress", "plots")


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
    ctx: typer.Context,
    profile: Annotated[str, typer.Option(help="built-in profile name or YAML file")] = defaults.PROFILE,
    task: Annotated[str, typer.Option(help="task name")] = defaults.TASK,
    task_option: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="task option, repeatable, value in YAML: delay_steps=100"),
    ] = None,
    estimator: Annotated[str, typer.Option(help="gradient estimator name")] = defaults.ESTIMATOR,
    mode: Annotated[str, typer.Option(help="in_the_loop or offline (hardware-aware)")] = defaults.MODE,
    target: Annotated[str, typer.Option(help="chip: emulator, twin, serial://PORT, socket://HOST:PORT")] = (
        defaults.TARGET
    ),
    epochs: Annotated[
        int | None, typer.Option(min=0, help=f"epochs in total (default {defaults.EPOCHS})")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="seed of data order, init and chip")] = defaults.SEED,
    out: Annotated[
        Path | None,
        typer.Option(help="run directory (default: a new runs/PROFILE-TASK-ESTIMATOR-MODE-hHIDDEN-sSEED)"),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="continue the run in --out from its checkpoint (config.yaml sets the rest)")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="replace a run already in --out")] = False,
    lr: Annotated[float, typer.Option(min=0.0, help="learning rate, in weight units per step")] = defaults.LR,
    lr_decay: Annotated[float, typer.Option(min=0.0, help="learning-rate factor per epoch")] = (
        defaults.LR_DECAY
    ),
    batch_size: Annotated[int, typer.Option(min=1, help="samples per step")] = defaults.BATCH_SIZE,
    hidden: Annotated[
        str, typer.Option(help="hidden neurons; several hidden layers: sizes separated by commas, 256,128")
    ] = str(defaults.HIDDEN),
    recurrent: Annotated[
        bool, typer.Option(help="recurrent hidden layers (each: W_rec hidden -> hidden)")
    ] = (False),
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="profile override, repeatable, value in YAML: --set neuron.model=alif",
        ),
    ] = None,
    optimizer: Annotated[str, typer.Option(help="adam or sgd")] = defaults.OPTIMIZER,
    progress: Annotated[bool, typer.Option(help="show a progress bar (stderr) and a summary table")] = True,
    plots: Annotated[bool, typer.Option(help="write PNG plots into the run directory")] = True,
    init: Annotated[
        Path | None,
        typer.Option(
            metavar="MODEL.nir", help="fine-tune the network of a NIR file (it sets the network's size)"
        ),
    ] = None,
) -> None:
    """Train on the chip; write config.yaml, metrics.csv, checkpoint.pt, summary.json and plots.

    With --resume only --out, --epochs, --progress and --plots are read; the rest comes from the
    run's config.yaml (which holds the full profile, overrides included).
    """
    from chiploop.chip.network import NetworkSpec
    from chiploop.chip_profiles.loader import load_profile
    from chiploop.training.config import NetworkConfig, TrainConfig
    from chiploop.training.loop import Trainer
    from chiploop.training.tasks import make_task

    if resume:
        trainer = _resumed(ctx, out, progress, plots)
    else:
        chip_profile = load_profile(profile)
        task_options = parse_assignments(task_option or [], "--task-option")
        the_task = make_task(task, seed=seed, **task_options)
        imported = None
        if init is not None:
            imported = _imported(ctx, init, chip_profile, the_task)
            chip_profile, spec = imported.profile, imported.spec
        else:
            spec = NetworkSpec(the_task.n_in, parse_hidden(hidden), the_task.n_out, recurrent=recurrent)
        chip_profile = chip_profile.with_overrides(parse_assignments(set_ or [], "--set"))
        _check_fits(chip_profile, spec, task)
        config = TrainConfig.make(
            profile=chip_profile.name,
            profile_spec=chip_profile,
            network=NetworkConfig.of(spec),
            task={"name": task, "seed": seed, "options": task_options},
            estimator={"name": estimator},
            mode=mode,
            target=target,
            optimizer=optimizer,
            lr=lr,
            lr_decay=lr_decay,
            batch_size=batch_size,
            eval_batch_size=batch_size,
            seed=seed,
            epochs=defaults.EPOCHS if epochs is None else epochs,
        )
        trainer = Trainer.from_config(
            config, task=the_task, out_dir=out, progress=progress, plots=plots, overwrite=overwrite
        )
        if imported is not None:
            trainer.load_weights(imported.weights)
    try:
        last = trainer.fit(epochs, resume=resume).last
    except KeyboardInterrupt:
        raise Interrupted(_what_was_saved(trainer)) from None
    finally:
        trainer.chip.close()
    epochs_word = "epoch" if last["epoch"] == 1 else "epochs"
    typer.echo(
        f"test {trainer.task.metric_name} {last['test_metric']:.4f} after {last['epoch']} {epochs_word} "
        f"(on the chip); run in {trainer.run.path}"
    )


def _resumed(ctx: typer.Context, out: Path | None, progress: bool, plots: bool) -> Trainer:
    """The Trainer of the run in `out`; options the run's config.yaml sets are refused, not ignored."""
    from chiploop.training.loop import Trainer

    if out is None:
        raise TrainingError("--resume needs --out: the run directory to continue")
    given = [
        "--" + name.rstrip("_").replace("_", "-")
        for name in ctx.params
        if name not in RESUME_READS and ctx.get_parameter_source(name).name == "COMMANDLINE"
    ]
    if given:
        raise TrainingError(
            f"{', '.join(given)} cannot be combined with --resume: the run's config.yaml sets "
            f"{'them' if len(given) > 1 else 'it'} (start a new run with another --out to change it)"
        )
    return Trainer.from_run(out, progress=progress, plots=plots)


def parse_hidden(text: str) -> int | tuple[int, ...]:
    """`--hidden`: "128" -> 128, "256,128" -> (256, 128); anything else -> one error line."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise TrainingError(
            f"--hidden: expected positive integers separated by commas (256,128), got {text!r}"
        )
    return sizes[0] if len(sizes) == 1 else sizes


def _imported(ctx: typer.Context, path: Path, profile: ChipProfile, task: Any) -> Any:
    """The network of NIR file `path` on `profile`, checked against the task's inputs and outputs."""
    from chiploop.interchange.deploy import check_task
    from chiploop.interchange.importer import import_nir

    given = [
        f"--{name}"
        for name in ("hidden", "recurrent")
        if ctx.get_parameter_source(name).name == "COMMANDLINE"
    ]
    if given:
        raise TrainingError(f"{', '.join(given)} cannot be combined with --init: {path} sets the network")
    mapped = import_nir(path, profile)
    check_task(mapped, task)
    for note in mapped.notes:
        typer.echo(f"{path}: {note.line()}", err=True)
    return mapped


def _check_fits(profile: ChipProfile, spec: NetworkSpec, task: str) -> None:
    """Refuse a network the chip cannot host, saying what would fit (a smaller --hidden, another task)."""
    from chiploop.chip_profiles.fit import suggest
    from chiploop.chip_profiles.rules import check_network

    try:
        check_network(profile, spec)
    except DesignRuleError as exc:
        if len(spec.hidden_sizes) > 1:  # the rule's detail names the layer
            raise
        hint = suggest(profile, task, spec.n_hidden, spec.recurrent, n_in=spec.n_in, n_out=spec.n_out)
        raise DesignRuleError(exc.rule, exc.limit, exc.value, hint) from None


def _what_was_saved(trainer: Trainer) -> str:
    """The line printed on Ctrl-C: what the run directory holds and how to continue."""
    again = f"chiploop train --resume --out {trainer.run.path}"
    if not trainer.run.has_checkpoint():
        return f"interrupted before the first checkpoint; {again} starts the run again"
    saved = trainer.run.load_checkpoint()["epoch"]
    return f"interrupted: epoch {saved} of {trainer.epochs} is saved; continue with {again}"

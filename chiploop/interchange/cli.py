"""`chiploop deploy MODEL.nir` and `chiploop export RUN_DIR MODEL.nir`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from chiploop.errors import TrainingError


def deploy_command(
    model: Annotated[Path, typer.Argument(help="NIR file (HDF5)")],
    profile: Annotated[
        list[str], typer.Option(help="chip profile (built-in name or YAML), repeatable: one row each")
    ],
    task: Annotated[str, typer.Option(help="task whose test split is run")],
    out: Annotated[Path | None, typer.Option(help="write report.json and each chip's profile here")] = None,
    dt: Annotated[
        float | None, typer.Option(help="the step the network was exported for, s (default: from the file)")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="seed of the task data and the chip's device noise")] = 0,
    task_option: Annotated[
        list[str] | None, typer.Option(metavar="KEY=VALUE", help="task option, repeatable, value in YAML")
    ] = None,
) -> None:
    """Accuracy of a NIR network in software (NIR's rules on `ideal`) and on each chip, per layer."""
    from chiploop.chip_profiles.loader import load_profile
    from chiploop.interchange import deploy
    from chiploop.interchange.chain import to_chain
    from chiploop.interchange.mapping import map_chain
    from chiploop.interchange.nirfile import read_nir
    from chiploop.outdir import OutputError, entries
    from chiploop.training.cli import parse_assignments
    from chiploop.training.tasks import make_task

    if out is not None and entries(out):
        raise OutputError(f"--out {out} already holds files ({', '.join(entries(out)[:4])}); choose another")
    chain = to_chain(read_nir(model))
    the_task = make_task(task, seed=seed, **parse_assignments(task_option or [], "--task-option"))
    software = map_chain(chain, load_profile("ideal"), dt_s=dt, software=True)
    deploy.check_task(software, the_task)
    print(f"{model}: dt {software.dt_s:g} s ({software.dt_source}); task {task}", file=sys.stderr)
    reports, profiles = [], {}
    for name in profile:
        print(f"running on {name} ...", file=sys.stderr)
        reports.append(deploy.chip_report(chain, name, the_task, software.dt_s, seed))
        profiles[reports[-1].profile] = map_chain(
            chain, load_profile(name), dt_s=software.dt_s
        ).profile.to_yaml()
    soft_metric = deploy.evaluate(software, the_task, seed, chip=False)
    soft_notes = [n.line() for n in software.notes]
    text = deploy.table(soft_metric, the_task.metric_name, reports, soft_notes)
    if out is not None:
        data = deploy.report_dict(soft_metric, the_task.metric_name, software.dt_s, reports, soft_notes)
        deploy.write_report(out, data, profiles)
    typer.echo(text)


def export_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `chiploop train`")],
    model: Annotated[Path, typer.Argument(help="NIR file to write")],
    overwrite: Annotated[bool, typer.Option(help="replace MODEL if it exists")] = False,
) -> None:
    """Write a trained network to NIR as deployed: the chip's weights and per-neuron parameters."""
    from chiploop.interchange.export import export_run

    if model.exists() and not overwrite:
        raise TrainingError(f"{model} exists; pass --overwrite to replace it")
    export_run(run_dir, model)
    typer.echo(f"wrote {model}")

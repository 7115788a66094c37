"""`chiploop cost RUN_DIR`: the run's network on every chip that can host it, and what it costs."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated

import typer

COST_CSV, COST_PLOT = "cost.csv", "cost_vs_accuracy.png"
DEFAULT_PROFILES = ("loihi2", "xylo", "brainscales2", "dynapse2", "pcm_crossbar", "rram_crossbar")
_SHORT = {  # the table's names for missing cost fields (cost.csv spells them out)
    "cost.energy_per_synop_j": "synop",
    "cost.energy_per_mac_j": "mac",
    "cost.energy_per_neuron_update_j": "neuron",
    "cost.energy_per_spike_j": "spike",
    "cost.static_power_w": "static",
    "cost.time_per_synop_s": "t_synop",
    "cost.time_per_neuron_update_s": "t_neuron",
}


def _number(value: float, fmt: str) -> str:
    return "—" if isinstance(value, float) and math.isnan(value) else format(value, fmt)


def cost_command(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory (config.yaml, checkpoint.pt)")],
    profiles: Annotated[
        str, typer.Option(help="comma-separated profiles (built-in names or YAML files) to deploy on")
    ] = ",".join(DEFAULT_PROFILES),
    target: Annotated[str, typer.Option(help="chip backend to evaluate on: twin or emulator")] = "twin",
    limit: Annotated[
        int | None, typer.Option(min=1, help="evaluate the first N test samples (default all)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help=f"where {COST_CSV} and {COST_PLOT} go (default RUN_DIR)")
    ] = None,
) -> None:
    """Deploy a run's network on each profile: accuracy, synaptic operations, energy and latency per
    inference, footprint, or the design rules it breaks; a table, cost.csv and a plot."""
    from rich.console import Console
    from rich.table import Table

    from chiploop.chip_profiles.loader import load_profile
    from chiploop.cost.deploy import CSV_COLUMNS, RunNetwork, deploy
    from chiploop.cost.plots import plot_pareto
    from chiploop.outdir import atomic_write_bytes
    from chiploop.training.runs import format_value

    network = RunNetwork(run_dir)
    chips = [load_profile(name.strip()) for name in profiles.split(",") if name.strip()]
    err = Console(stderr=True, highlight=False)
    deployments = []
    for profile in chips:
        err.print(f"deploying on {profile.name} ...", markup=False)
        deployments.append(deploy(network, profile, target, limit))
    rows = [d.row() for d in deployments]
    out_dir = run_dir if out is None else out
    out_dir.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row[c] if isinstance(row[c], str) else format_value(row[c]) for c in CSV_COLUMNS])
    atomic_write_bytes(out_dir / COST_CSV, text.getvalue().encode())
    points = [(r["profile"], r["energy_j"], r["test_metric"]) for r in rows if r["hosted"]]
    plot_pareto(
        points, out_dir / COST_PLOT, "test metric", f"{network.task_name}: accuracy vs energy per inference"
    )

    table = Table(title=f"{run_dir}: the {network.profile.name} network on each chip, per inference")
    for col in ("profile", "metric", "synops", "energy J", "latency s", "bytes", "notes"):
        table.add_column(col, justify="left" if col in ("profile", "notes") else "right")
    for d, r in zip(deployments, rows, strict=True):
        if not r["hosted"]:
            table.add_row(r["profile"], "—", "—", "—", "—", "—", "cannot host: " + d.broken_short)
            continue
        notes = f"no figure: {' '.join(_SHORT[m] for m in d.missing)}" if d.missing else ""
        table.add_row(
            r["profile"],
            _number(r["test_metric"], ".3f"),
            _number(r["synops_effective"], ".0f"),
            _number(r["energy_j"], ".2e"),
            _number(r["latency_s"], ".2e"),
            f"{r['footprint_bytes']:.0f}",
            notes,
        )
    Console(soft_wrap=True).print(table)
    typer.echo(f"wrote {out_dir / COST_CSV} and {out_dir / COST_PLOT}")

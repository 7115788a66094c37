"""`chiploop characterize`: what a chip's noise, quantization and limits do to learning.

Two kinds of sweep over a grid of profile overrides x estimators x seeds:
- `deploy`: train one model per (estimator, seed) on the base profile, then evaluate it deployed
  under every cell's settings (fresh chip instances: new mismatch, faults, programming noise);
- `train`: train in every cell under that cell's constraints.
Every row also carries the trained model's gradient quality (vs bptt), leading Hessian
eigenvalue, generalization gap and spikes per neuron. Cells run through `sweeps.run_sweep`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from chiploop.chip_profiles.model import ChipProfile
from chiploop.training.sweeps import Cell, SweepAxis, SweepError, make_grid, read_results, run_sweep

MODELS = "models.csv"


@dataclass(frozen=True)
class CharacterizeConfig:
    """Everything a cell needs to run; travels with the cell to any worker."""

    profile: dict[str, Any]  # the base ChipProfile as JSON data (picklable, exact)
    task: str
    kind: Literal["deploy", "train"]
    out_dir: str
    epochs: int = 3
    n_hidden: int = 64
    mode: Literal["offline", "in_the_loop"] = "offline"
    target: str = "emulator"
    draws: int = 1
    quality_repeats: int = 4
    batch_size: int = 64
    lr: float = 0.02

    @property
    def base_profile(self) -> ChipProfile:
        """The base profile as a model."""
        return ChipProfile.model_validate(self.profile)


def _cell_dir(config: CharacterizeConfig, cell: Cell) -> Path:
    digest = hashlib.sha1(cell.key.encode()).hexdigest()[:12]
    return Path(config.out_dir) / "cells" / f"{cell.estimator}-s{cell.seed}-{digest}"


def _model_stats(trainer: Any, config: CharacterizeConfig, seed: int) -> dict[str, float]:
    """Gradient quality, λ_max, generalization gap and activity of a trained model."""
    import torch

    from chiploop.training.analysis import generalization_gap, gradient_quality, loss_curvature

    last = trainer.history.last
    batch = next(trainer.task.batches("train", min(config.batch_size, 32)))
    batch.inputs = batch.inputs.to(next(iter(trainer.twin.weights.values())).dtype)
    quality = gradient_quality(
        trainer.estimator, trainer.twin, batch, trainer.readout, repeats=config.quality_repeats
    )
    curvature = loss_curvature(trainer.twin, batch, trainer.readout, seed=seed)
    torch.set_grad_enabled(True)
    return {
        "train_metric": last["train_metric"],
        "trained_test_metric": last["test_metric"],
        "gen_gap": generalization_gap(last["train_metric"], last["test_metric"]),
        "spikes_per_neuron": last["spikes_per_neuron_per_sample"],
        "lambda_max": curvature.value,
        **quality.as_row(),
    }


def _trainer(config: CharacterizeConfig, cell: Cell, profile: ChipProfile) -> Any:
    from chiploop.training.loop import Trainer

    return Trainer(
        profile,
        estimator=cell.estimator,
        task=config.task,
        mode=config.mode,
        target=config.target,
        seed=cell.seed,
        lr=config.lr,
        batch_size=config.batch_size,
        out_dir=_cell_dir(config, cell),
        progress=False,
        n_hidden=config.n_hidden,
    )


def train_cell(cell: Cell) -> dict[str, float]:
    """Train under the cell's overrides and measure the trained model."""
    import torch

    torch.set_num_threads(1)
    config: CharacterizeConfig = cell.params["config"]
    trainer = _trainer(config, cell, config.base_profile.with_overrides(dict(cell.overrides)))
    try:
        trainer.fit(config.epochs)
        stats = _model_stats(trainer, config, cell.seed)
    finally:
        trainer.chip.close()
    return {"test_metric": stats["trained_test_metric"], "test_metric_std": 0.0, **stats}


def deploy_cell(cell: Cell) -> dict[str, float]:
    """Evaluate the base model of (estimator, seed) deployed under the cell's overrides."""
    import torch

    from chiploop.emulator.network import NetworkSpec
    from chiploop.training.analysis import deployed_metric
    from chiploop.training.loop import ScaledReadout
    from chiploop.training.runs import RunDir
    from chiploop.training.tasks import make_task

    torch.set_num_threads(1)
    config: CharacterizeConfig = cell.params["config"]
    run = RunDir(_cell_dir(config, Cell((), cell.estimator, cell.seed)))
    trained = run.read_config()
    weights = {k: w.double().numpy() for k, w in run.load_checkpoint()["weights"].items()}
    profile = config.base_profile.with_overrides(dict(cell.overrides))
    task = make_task(trained["task"]["name"], seed=trained["task"]["seed"], **trained["task"]["options"])
    deployed = deployed_metric(
        weights,
        profile,
        NetworkSpec(**trained["network"]),
        ScaledReadout(task, profile.readout_scale),
        draws=config.draws,
        target=config.target,
        batch_size=config.batch_size,
    )
    return {
        "test_metric": deployed["metric_mean"],
        "test_metric_std": deployed["metric_std"],
        **cell.params["model_stats"],
    }


def _load_model_stats(out_dir: Path) -> dict[str, dict[str, float]]:
    rows = read_results(out_dir, MODELS)
    return {
        key: {k: float(v) for k, v in row.items() if k not in ("cell", "estimator", "seed")}
        for key, row in rows.items()
    }


def characterize(
    config: CharacterizeConfig,
    axes: Sequence[SweepAxis],
    estimators: Sequence[str],
    seeds: Sequence[int],
    *,
    scheduler: str | None = None,
    workers: int = 2,
    on_done: Callable[[Cell, dict[str, Any]], None] | None = None,
) -> Path:
    """Run the sweep; returns the path of results.csv (resumes what is already there)."""
    if not axes:
        raise SweepError("empty grid: give at least one --sweep FIELD=V1,V2,...")
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = make_grid(axes, estimators, seeds)
    if config.kind == "train":
        cells = [replace(c, params={"config": config}) for c in cells]
        return run_sweep(cells, train_cell, out_dir, scheduler=scheduler, workers=workers, on_done=on_done)
    bases = [replace(c, params={"config": config}) for c in make_grid([], estimators, seeds)]
    run_sweep(bases, train_cell, out_dir, scheduler=scheduler, workers=workers, results=MODELS)
    stats = _load_model_stats(out_dir)
    cells = [
        replace(
            c,
            params={
                "config": config,
                "model_stats": _without_metric(stats[Cell((), c.estimator, c.seed).key]),
            },
        )
        for c in cells
    ]
    return run_sweep(cells, deploy_cell, out_dir, scheduler=scheduler, workers=workers, on_done=on_done)


def _without_metric(stats: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in stats.items() if k not in ("test_metric", "test_metric_std")}


def config_dict(config: CharacterizeConfig) -> dict[str, Any]:
    """The config as plain data (for the run's config file)."""
    return asdict(config)


def summarize(results: list[dict[str, str]], fields: Sequence[str]) -> list[dict[str, Any]]:
    """Mean ± std of the test metric over seeds, per setting and estimator."""
    groups: dict[tuple, list[float]] = {}
    for row in results:
        key = (*(row[f] for f in fields), row["estimator"])
        groups.setdefault(key, []).append(float(row["test_metric"]))
    return [
        {
            **dict(zip([*fields, "estimator"], key, strict=True)),
            "mean": float(np.mean(v)),
            "std": float(np.std(v)),
            "n": len(v),
        }
        for key, v in sorted(groups.items())
    ]

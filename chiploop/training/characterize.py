"""`chiploop characterize`: what a chip's noise, quantization and limits do to learning.

Two kinds of sweep over a grid of profile overrides x estimators x seeds:
- `deploy`: train one model per (estimator, seed) on the base profile (`models.csv`: its gradient
  quality vs bptt, leading Hessian eigenvalue, generalization gap, spikes per neuron), then
  evaluate it deployed under every cell's settings (`results.csv`: fresh chip instances, new
  mismatch, faults, programming noise; each row names its model);
- `train`: train in every cell under that cell's constraints (`results.csv` holds each cell's
  model figures).
Cells run through `sweeps.run_sweep`. An output directory holds one sweep (`sweep_directory`):
`sweep.yaml` records it, a re-run resumes it, a different sweep is refused. The columns are
defined in docs/characterize.md.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from fnmatch import fnmatch
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from chiploop.chip_profiles.model import ChipProfile
from chiploop.cost import COST_COLUMNS
from chiploop.outdir import OutputError, claim, write_guard
from chiploop.training.sweep_plots import PLOT_FILES
from chiploop.training.sweeps import (
    RESULTS,
    Cell,
    Record,
    SweepAxis,
    SweepError,
    local_pool,
    make_grid,
    read_results,
    run_sweep,
    save,
)

MODELS = "models.csv"
SWEEP = "sweep.yaml"
CELLS = "cells"
SWEEP_FILES = (SWEEP, RESULTS, MODELS, CELLS, *PLOT_FILES)  # what `--overwrite` deletes (glob patterns)
PROFILE_NOTES = ("description", "checked_against", "source")  # profile text that changes no result
_ELSEWHERE = "choose a new --out, or --overwrite to replace it"


@dataclass(frozen=True)
class CharacterizeConfig:
    """Everything a cell needs to run; travels with the cell to any worker."""

    profile: dict[str, Any]  # the base ChipProfile as JSON data (picklable, exact)
    task: str
    kind: Literal["deploy", "train"]
    out_dir: str
    epochs: int = 3
    n_hidden: int | tuple[int, ...] = 64  # several hidden layers: their sizes
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
    return Path(config.out_dir) / CELLS / f"{cell.estimator}-s{cell.seed}-{digest}"


def _model_stats(trainer: Any, config: CharacterizeConfig, seed: int) -> dict[str, float]:
    """Test metric, gradient quality, λ_max, generalization gap and activity of a trained model."""
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
        "test_metric": last["test_metric"],
        "train_metric": last["train_metric"],
        "gen_gap": generalization_gap(last["train_metric"], last["test_metric"]),
        "spikes_per_neuron": last["spikes_per_neuron_per_sample"],
        **{c: last[f"test_{c}"] for c in COST_COLUMNS},
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
        plots=False,
    )


def train_cell(cell: Cell) -> dict[str, float]:
    """Train under the cell's overrides (continuing a run a killed sweep left) and measure the model."""
    import torch

    torch.set_num_threads(1)
    config: CharacterizeConfig = cell.params["config"]
    trainer = _trainer(config, cell, config.base_profile.with_overrides(dict(cell.overrides)))
    try:
        trainer.fit(config.epochs, resume=True)
        return _model_stats(trainer, config, cell.seed)
    finally:
        trainer.chip.close()


def _model(cell: Cell) -> Cell:
    """The base-profile model a deploy cell evaluates (its key is the model's row in models.csv)."""
    return Cell((), cell.estimator, cell.seed)


def deploy_cell(cell: Cell) -> dict[str, Any]:
    """Evaluate the base model of (estimator, seed) deployed under the cell's overrides."""
    import torch

    from chiploop.chip.network import NetworkSpec
    from chiploop.training.analysis import deployed_metric
    from chiploop.training.loop import ScaledReadout
    from chiploop.training.runs import RunDir
    from chiploop.training.tasks import make_task

    torch.set_num_threads(1)
    config: CharacterizeConfig = cell.params["config"]
    run = RunDir(_cell_dir(config, _model(cell)))
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
        **{c: deployed[c] for c in COST_COLUMNS},
        "test_metric": deployed["metric_mean"],
        "test_metric_std": deployed["metric_std"],
        "model": _model(cell).key,
    }


def config_dict(config: CharacterizeConfig) -> dict[str, Any]:
    """The config as plain data (for the run's config file; layer sizes as a list)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def sweep_identity(
    config: CharacterizeConfig, axes: Sequence[SweepAxis], estimators: Sequence[str], seeds: Sequence[int]
) -> dict[str, Any]:
    """What makes two sweeps the same one: every setting but where it is written, what runs it and
    the profile's notes (`PROFILE_NOTES`), as it reads back from sweep.yaml."""
    settings = {k: v for k, v in config_dict(config).items() if k not in ("out_dir", "profile")}
    data = {
        "sweep": [a.text for a in axes],
        "estimators": list(estimators),
        "seeds": list(seeds),
        **settings,
        "profile": {k: v for k, v in config.profile.items() if k not in PROFILE_NOTES},
    }
    return yaml.safe_load(yaml.safe_dump(data, sort_keys=False))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted paths."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _show(value: Any) -> str:
    """A setting's value, short and on one line."""
    if isinstance(value, list):
        return f"[{' '.join(map(str, value))}]"
    return str(value)


def _differences(old: dict[str, Any], new: dict[str, Any], shown: int = 3) -> str:
    """`path: old → new` for the first `shown` settings that differ."""
    a, b = _flatten(old), _flatten(new)
    keys = [k for k in dict.fromkeys([*b, *a]) if k not in a or k not in b or a[k] != b[k]]
    text = "; ".join(
        f"{k}: {_show(a.get(k, '(unset)'))} → {_show(b.get(k, '(unset)'))}" for k in keys[:shown]
    )
    return text + (f"; and {len(keys) - shown} more" if len(keys) > shown else "")


def _sweep_files(out: Path) -> list[Path]:
    """What a sweep wrote in `out` (anything else there is not the sweep's and is left alone)."""
    return sorted(p for p in out.iterdir() if any(fnmatch(p.name, pattern) for pattern in SWEEP_FILES))


def _clear(out: Path) -> None:
    """Delete the previous sweep's files."""
    for path in _sweep_files(out):
        with write_guard(path):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def _recorded(out: Path) -> dict[str, Any] | None:
    """The identity in `out`'s sweep.yaml, None without one."""
    path = out / SWEEP
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise OutputError(f"cannot read {path} ({reason}): {_ELSEWHERE}") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path} is not a sweep record: {_ELSEWHERE}")
    return data


def _check_or_record(out: Path, identity: dict[str, Any]) -> None:
    """Accept `out` if it holds this sweep or none (then record it); refuse anything else."""
    recorded = _recorded(out)
    if recorded is None:
        held = [p.name for p in _sweep_files(out)]
        if held:
            raise OutputError(
                f"{out} holds sweep files ({', '.join(held[:4])}) but no {SWEEP}, so they cannot be resumed"
                f" safely: {_ELSEWHERE}"
            )
        save(out / SWEEP, yaml.safe_dump(identity, sort_keys=False, allow_unicode=True).encode())
    elif recorded != identity:
        raise OutputError(f"{out} holds another sweep ({_differences(recorded, identity)}): {_ELSEWHERE}")


@contextmanager
def sweep_directory(
    config: CharacterizeConfig,
    axes: Sequence[SweepAxis],
    estimators: Sequence[str],
    seeds: Sequence[int],
    *,
    overwrite: bool = False,
) -> Iterator[Path]:
    """Hold `config.out_dir` for this sweep while the block runs.

    A second process is refused; so is a directory holding a different sweep, or sweep files
    without sweep.yaml. `overwrite` first deletes the previous sweep's files (`SWEEP_FILES`).
    The sweep is recorded in sweep.yaml; the same sweep resumes.
    """
    if not axes:
        raise SweepError("empty grid: give at least one --sweep FIELD=V1,V2,...")
    make_grid(axes, estimators, seeds)  # an empty grid fails before the directory is touched
    out = Path(config.out_dir)
    identity = sweep_identity(config, axes, estimators, seeds)
    with claim(out, "sweep directory"):
        if overwrite:
            _clear(out)
        _check_or_record(out, identity)
        yield out


def _tables(
    config: CharacterizeConfig, axes: Sequence[SweepAxis], estimators: Sequence[str], seeds: Sequence[int]
) -> dict[str, tuple[str, list[Cell]]]:
    """What the sweep fills, in run order: label -> (table, cells)."""
    cells = {"cells": (RESULTS, make_grid(axes, estimators, seeds))}
    if config.kind == "train":
        return cells
    return {"models": (MODELS, make_grid([], estimators, seeds)), **cells}


def saved_counts(
    config: CharacterizeConfig, axes: Sequence[SweepAxis], estimators: Sequence[str], seeds: Sequence[int]
) -> dict[str, tuple[str, int, int]]:
    """label -> (table, rows of this sweep saved in it, rows it will hold): "models" (deploy
    sweeps) and "cells"."""
    out = Path(config.out_dir)
    counts = {}
    for label, (table, cells) in _tables(config, axes, estimators, seeds).items():
        done = read_results(out, table)
        counts[label] = (table, sum(c.key in done for c in cells), len(cells))
    return counts


def run_characterize(
    config: CharacterizeConfig,
    axes: Sequence[SweepAxis],
    estimators: Sequence[str],
    seeds: Sequence[int],
    *,
    scheduler: str | None = None,
    workers: int = 2,
    on_done: Record | None = None,
    on_model: Record | None = None,
) -> Path:
    """Run what is not saved yet in a directory held by `sweep_directory`; returns results.csv's path.

    Deploy sweeps train their models first (`on_model` after each), then evaluate the cells
    (`on_done` after each), on one local pool or on the dask scheduler.
    """
    out = Path(config.out_dir)
    tables = _tables(config, axes, estimators, seeds)
    with ExitStack() as stack:
        pool = None if scheduler else stack.enter_context(local_pool(workers))
        run = partial(run_sweep, out_dir=out, scheduler=scheduler, pool=pool)
        if "models" in tables:
            models = [replace(c, params={"config": config}) for c in tables["models"][1]]
            run(models, train_cell, on_done=on_model, results=MODELS)
        cells = [replace(c, params={"config": config}) for c in tables["cells"][1]]
        return run(cells, train_cell if config.kind == "train" else deploy_cell, on_done=on_done)


def characterize(
    config: CharacterizeConfig,
    axes: Sequence[SweepAxis],
    estimators: Sequence[str],
    seeds: Sequence[int],
    *,
    scheduler: str | None = None,
    workers: int = 2,
    on_done: Record | None = None,
    overwrite: bool = False,
) -> Path:
    """Run the sweep into `config.out_dir` (resuming it there); returns the path of results.csv."""
    with sweep_directory(config, axes, estimators, seeds, overwrite=overwrite):
        return run_characterize(
            config, axes, estimators, seeds, scheduler=scheduler, workers=workers, on_done=on_done
        )


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

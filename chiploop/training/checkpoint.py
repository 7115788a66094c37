"""Checkpointing: the state a run resumes from (weights, optimizer, generators, history) and back."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from chiploop.errors import TrainingError
from chiploop.training.history import History
from chiploop.training.runs import CHECKPOINT_FORMAT, METRIC_COLUMNS, METRICS, TIMING, TIMING_COLUMNS, RunDir

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin


def save_checkpoint(
    run: RunDir,
    epoch: int,
    twin: TorchTwin,
    optimizer: torch.optim.Optimizer,
    generators: Mapping[str, torch.Generator],
    history: History,
) -> None:
    """Write `checkpoint.pt`: everything a resumed run needs to continue exactly."""
    run.save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "weights": {k: w.detach().clone() for k, w in twin.weights.items()},
            "optimizer": optimizer.state_dict(),
            "rng": {name: gen.get_state() for name, gen in generators.items()},
            "history": history.rows,
            "timing": history.timing,
        }
    )


def restore_checkpoint(
    run: RunDir,
    state: Mapping[str, Any],
    twin: TorchTwin,
    optimizer: torch.optim.Optimizer,
    generators: Mapping[str, torch.Generator],
) -> tuple[int, History]:
    """Load `state` into the twin, optimizer and generators; rewrite the CSV tables from it.

    Returns the epoch it holds and its history."""
    try:
        with torch.no_grad():
            for name, p in twin.weights.items():
                p.copy_(state["weights"][name])
        optimizer.load_state_dict(state["optimizer"])
        for name, gen in generators.items():
            gen.set_state(state["rng"][name])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise TrainingError(f"checkpoint {run.file('checkpoint.pt')} does not fit this run: {exc}") from None
    # a run checkpointed before a column existed gets it as NaN (not measured then)
    rows = [{**dict.fromkeys(METRIC_COLUMNS, math.nan), **row} for row in state["history"]]
    history = History(rows, list(state["timing"]))
    write_tables(run, history)
    return int(state["epoch"]), history


def write_tables(run: RunDir, history: History) -> None:
    """(Re)write metrics.csv and timing.csv from `history`."""
    run.write_rows(METRICS, METRIC_COLUMNS, history.rows)
    run.write_rows(TIMING, TIMING_COLUMNS, history.timing)


def append_tables(run: RunDir, history: History) -> None:
    """Append the last row of `history` to metrics.csv and timing.csv."""
    run.append_row(METRICS, METRIC_COLUMNS, history.rows[-1])
    run.append_row(TIMING, TIMING_COLUMNS, history.timing[-1])

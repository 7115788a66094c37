"""Evaluation on the chip: loss, metric, activity and inference cost of a split, and an epoch's row."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip
from chiploop.cost import COST_COLUMNS, ActivityCounter, cost_metrics
from chiploop.errors import TrainingError


def evaluate_on_chip(
    chip: Chip, task: Any, spec: NetworkSpec, split: str, batch_size: int, limit: int | None = None
) -> dict[str, float]:
    """Loss, metric, hidden spikes per neuron per sample and the cost of one inference
    (`chiploop.cost.COST_COLUMNS`) of `split` (first `limit` samples).

    Runs the weights the chip holds now; every batch is padded to `batch_size` (one compiled shape
    on the emulator). Loss and metric are computed once over the whole split.
    """
    n = task.split_size(split) if limit is None else min(limit, task.split_size(split))
    outs, targets, spikes, seen = [], [], 0, 0
    counter = ActivityCounter(spec, chip.read_weights())
    for batch in task.batches(split, batch_size):
        take = min(len(batch.inputs), n - seen)
        if take <= 0:
            break
        x = np.zeros((batch_size, *batch.inputs.shape[1:]), np.uint8)
        x[:take] = batch.inputs[:take].numpy()
        rec = chip.run(x)
        outs.append(torch.from_numpy(np.asarray(rec.v["out"][:take], dtype=np.float64)))
        targets.append(batch.targets[:take])
        spikes += sum(int(rec.spikes[name][:take].sum(dtype=np.int64)) for name in spec.layer_names)
        counter.add(x, rec, take)
        seen += take
    if seen == 0:
        raise TrainingError(f"nothing to evaluate: split {split!r} with limit {limit!r} holds no sample")
    out_v, y = torch.cat(outs), torch.cat(targets)
    return {
        "loss": float(task.loss(out_v, y)),
        "metric": float(task.metric(out_v, y)),
        "spikes_per_neuron_per_sample": spikes / (seen * spec.n_hidden_total),
        **cost_metrics(chip.profile, spec, counter),
    }


def epoch_row(
    train: dict[str, float], test: dict[str, float], epoch: int, chip_runs: int
) -> dict[str, float]:
    """The metrics.csv row of an epoch from its train and test evaluations."""
    return {
        "epoch": epoch,
        "train_loss": train["loss"],
        "train_metric": train["metric"],
        "test_loss": test["loss"],
        "test_metric": test["metric"],
        "spikes_per_neuron_per_sample": test["spikes_per_neuron_per_sample"],
        "chip_runs": chip_runs,
        **{f"test_{k}": test[k] for k in COST_COLUMNS},
    }

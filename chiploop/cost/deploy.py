"""A run's network deployed on other chips: accuracy and cost on each one that can host it.

The trained weights are carried over in per-layer weight units (`layer_units`: what a weight of one
unit does to its target), so a weight that moved a hidden neuron by a tenth of its threshold on the
run's chip does so on every chip; each chip then quantizes and clips them itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.chip_profiles.rules import RULES
from chiploop.cost import COST_COLUMNS
from chiploop.cost.counts import footprint_bytes
from chiploop.cost.energy import estimate
from chiploop.errors import DesignRuleError, TrainingError
from chiploop.training.runs import CHECKPOINT, RunDir

CSV_COLUMNS = (
    "profile",
    "hosted",
    "test_metric",
    *COST_COLUMNS,
    "footprint_by_layer",
    "cost_missing",
    "rules_broken",
)


@dataclass
class Deployment:
    """One row of the cost table."""

    profile: str
    hosted: bool
    values: dict[str, float] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    broken: tuple[DesignRuleError, ...] = ()
    footprint: dict[str, float] = field(default_factory=dict)

    @property
    def broken_short(self) -> str:
        """The broken rules as `rule value > limit`, comma-separated."""
        return ", ".join(f"{e.rule} {e.value} > {e.limit}" for e in self.broken)

    def row(self) -> dict[str, Any]:
        blank = {c: math.nan for c in ("test_metric", *COST_COLUMNS)}
        return {
            "profile": self.profile,
            "hosted": int(self.hosted),
            **blank,
            **self.values,
            "footprint_by_layer": " ".join(f"{k}={v:g}" for k, v in self.footprint.items()),
            "cost_missing": " ".join(self.missing),
            "rules_broken": "; ".join(map(str, self.broken)),
        }


def broken_rules(profile: ChipProfile, spec: NetworkSpec) -> tuple[DesignRuleError, ...]:
    """Every design rule `spec` breaks on `profile` (empty when it fits)."""
    out = []
    for rule in RULES:
        try:
            rule(profile, spec)
        except DesignRuleError as exc:
            out.append(exc)
    return tuple(out)


class RunNetwork:
    """A trained run's network: its profile, spec, task and float weights, from the run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        run = RunDir(run_dir)
        if not run.file("config.yaml").is_file():
            raise TrainingError(f"{run.file('config.yaml')}: missing, {run_dir} is not a run directory")
        if not run.has_checkpoint():
            raise TrainingError(f"{run.file(CHECKPOINT)}: missing, the run has no trained weights to deploy")
        config = run.read_config()
        state = run.load_checkpoint()
        try:
            self.profile = ChipProfile.model_validate(config["profile_spec"])
            self.spec = NetworkSpec(**config["network"])
            self.task_name, self.task_options = config["task"]["name"], dict(config["task"]["options"])
            self.seed, self.batch_size = int(config["seed"]), int(config["eval_batch_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainingError(f"{run.file('config.yaml')} is not a usable run config: {exc}") from None
        self.weights = {k: w.detach().cpu().numpy().astype(np.float64) for k, w in state["weights"].items()}

    def weights_for(self, profile: ChipProfile) -> dict[str, np.ndarray]:
        """The trained weights in `profile`'s model units (same per-layer units), clipped to its range."""
        from chiploop.training.units import layer_units

        mine, theirs = layer_units(self.profile, self.spec), layer_units(profile, self.spec)
        lo, hi = profile.weights.value_range
        return {k: np.clip(w / mine[k] * theirs[k], lo, hi) for k, w in self.weights.items()}


def deploy(
    network: RunNetwork, profile: ChipProfile, target: str = "twin", limit: int | None = None
) -> Deployment:
    """Run `network` on `profile` over the test split (first `limit` samples) and measure its cost."""
    from chiploop.chip.targets import open_chip
    from chiploop.training.loop import evaluate_on_chip
    from chiploop.training.tasks import make_task
    from chiploop.training.units import ScaledReadout

    broken = broken_rules(profile, network.spec)
    if broken:
        return Deployment(profile.name, False, broken=broken)
    task = make_task(network.task_name, seed=network.seed, **network.task_options)
    chip = open_chip(target, profile, network.spec, seed=network.seed)
    try:
        chip.write_weights(network.weights_for(profile))
        result = evaluate_on_chip(
            chip, ScaledReadout.of(task, profile), network.spec, "test", network.batch_size, limit
        )
    finally:
        chip.close()
    values = {"test_metric": result["metric"], **{c: result[c] for c in COST_COLUMNS}}
    footprint = footprint_bytes(network.spec, profile)
    return Deployment(profile.name, True, values, missing_figures(profile, network.spec), footprint=footprint)


def missing_figures(profile: ChipProfile, spec: NetworkSpec) -> tuple[str, ...]:
    """The cost fields an estimate on `profile` needs but the profile leaves null."""
    ones = {"synops_dense": 1.0, "synops_effective": 1.0, "spikes": 1.0}
    return estimate(profile, spec, ones, 1).missing

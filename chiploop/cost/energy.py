"""Energy and latency per inference from operation counts and a profile's `cost` figures.

energy  = synaptic ops x energy per op (accumulate: effective ops; mac: dense MACs)
        + neuron updates x energy per update + spikes x energy per spike + static power x latency
latency = steps x time_per_step_s; physical-time chips: steps x dt_s x time_scale; else the
          operations' times added up (one core doing everything: an upper bound).
A term whose figure is null is left out and named in `missing`; with no known term the value is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.cost.counts import layer_sizes


@dataclass(frozen=True)
class Estimate:
    """Energy (J) and latency (s) of one inference, and the cost fields that were missing."""

    energy_j: float
    latency_s: float
    missing: tuple[str, ...]


def _sum(terms: list[tuple[str, float | None, float]], missing: list[str]) -> float:
    """Sum of `count x figure` over terms with a count; a null figure is recorded as missing."""
    total, known = 0.0, False
    for name, figure, count in terms:
        if count == 0:
            continue
        if figure is None:
            missing.append(f"cost.{name}")
        else:
            total, known = total + figure * count, True
    return total if known else math.nan


def estimate(profile: ChipProfile, spec: NetworkSpec, counts: dict[str, float], steps: int) -> Estimate:
    """Energy and latency of one inference of `steps` steps with per-sample `counts` (`ActivityCounter`)."""
    c, missing = profile.cost, []
    updates = sum(layer_sizes(spec).values()) * steps
    synops, op_figure, op_name = (
        (counts["synops_dense"], c.energy_per_mac_j, "energy_per_mac_j")
        if c.synapse_op == "mac"
        else (counts["synops_effective"], c.energy_per_synop_j, "energy_per_synop_j")
    )
    if c.time_per_step_s is not None:
        latency = steps * c.time_per_step_s
    elif c.physical_time:
        latency = steps * profile.timing.dt_s * profile.timing.time_scale
    else:
        times = [("time_per_neuron_update_s", c.time_per_neuron_update_s, updates)]
        if c.synapse_op == "accumulate":
            times.insert(0, ("time_per_synop_s", c.time_per_synop_s, synops))
        latency = _sum(times, missing)
    terms = [
        (op_name, op_figure, synops),
        ("energy_per_neuron_update_j", c.energy_per_neuron_update_j, updates),
        ("energy_per_spike_j", c.energy_per_spike_j, counts["spikes"]),
    ]
    if not math.isnan(latency):
        terms.append(("static_power_w", c.static_power_w, latency))
    return Estimate(_sum(terms, missing), latency, tuple(missing))

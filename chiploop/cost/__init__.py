"""What a network costs on a chip: operation counts, sparsity, footprint, energy and latency."""

from __future__ import annotations

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.cost.counts import ActivityCounter, connection_sparsity, footprint_bytes
from chiploop.cost.energy import Estimate, estimate

COST_COLUMNS = (
    "synops_dense",
    "synops_effective",
    "synops_acs",
    "synops_macs",
    "activation_sparsity",
    "connection_sparsity",
    "footprint_bytes",
    "energy_j",
    "latency_s",
)


def cost_metrics(profile: ChipProfile, spec: NetworkSpec, counter: ActivityCounter) -> dict[str, float]:
    """The `COST_COLUMNS` of an evaluation counted by `counter` (per inference)."""
    counts = counter.metrics()
    est = estimate(profile, spec, counts, counter.steps)
    out = {k: counts[k] for k in COST_COLUMNS if k in counts}
    out["connection_sparsity"] = connection_sparsity(counter.weights)
    out["footprint_bytes"] = sum(footprint_bytes(spec, profile).values())
    out["energy_j"], out["latency_s"] = est.energy_j, est.latency_s
    return {k: out[k] for k in COST_COLUMNS}


__all__ = ["COST_COLUMNS", "ActivityCounter", "Estimate", "cost_metrics", "estimate", "footprint_bytes"]

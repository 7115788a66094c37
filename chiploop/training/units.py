"""Units that make one set of training defaults serve every chip's scale.

The readout is read in units of the firing threshold (`ScaledReadout`), and weights are initialised
and stepped in per-layer units (`layer_units`): what a weight of 1 unit does to its target. The
Trainer uses these; a hand-built loop uses them too, and then reports the same losses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin
    from chiploop.training.tasks import Task


class ScaledReadout:
    """A task whose loss and metric see the readout in units of the threshold (`out_v / scale`)."""

    def __init__(self, task: Task, scale: float) -> None:
        self.task, self.scale = task, float(scale)

    @classmethod
    def of(cls, task: Task, profile: ChipProfile) -> ScaledReadout:
        """`task` read against `profile`'s readout scale (its threshold in state units)."""
        return cls(task, profile.readout_scale)

    def loss(self, out_v: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.task.loss(out_v / self.scale, targets)

    def metric(self, out_v: torch.Tensor, targets: torch.Tensor) -> float:
        return self.task.metric(out_v / self.scale, targets)

    def logits(self, out_v: torch.Tensor) -> torch.Tensor:
        """Class scores of a classification task, from the scaled readout."""
        return self.task.logits(out_v / self.scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


def layer_units(profile: ChipProfile, spec: NetworkSpec) -> dict[str, float]:
    """The natural weight unit of each layer: what a weight of 1 unit does to its target.

    Hidden layers: the threshold. Readout: the threshold times `(1 − κ)(1 − α_out)`, the inverse of
    the readout's steady-state gain (synaptic filter times leaky membrane), so that a readout
    weight of 1 unit driven every step settles at one threshold. Init and learning rates are
    expressed in these units, which makes the defaults work on every profile's scale.
    A unit is at least `weight_floor · sqrt(fan_in)`, so that the initial weights (std
    `unit / sqrt(fan_in)`) are neither all rounded to zero on a coarse grid nor buried in noise.
    """
    n, dt = profile.neuron, profile.timing.dt_s
    tau_syn, tau_out, theta = n.nominal("tau_syn_s"), n.nominal("tau_out_s"), n.nominal("threshold")
    kappa = math.exp(-dt / tau_syn) if tau_syn > 0 else 0.0
    alpha_out = math.exp(-dt / tau_out)
    floor = weight_floor(profile)
    units = {}
    for name, (fan_in, _) in spec.weight_shapes().items():
        natural = theta * ((1.0 - kappa) * (1.0 - alpha_out) if name.endswith("_out") else 1.0)
        units[name] = max(natural, floor * math.sqrt(fan_in))
    return units


def weight_floor(profile: ChipProfile) -> float:
    """The smallest weight the chip resolves: half its grid step, or its absolute noise at w = 0."""
    from chiploop.chip.devices import quantization_step

    noise, w_max = profile.noise, profile.weights.value_range[1]
    prog = {
        "gaussian_absolute": noise.programming.sigma,
        "pcm": noise.programming.coefficients[0] / noise.programming.g_max_us * w_max,
    }.get(noise.programming.model, 0.0)
    read = noise.read.sigma if noise.read.model == "gaussian_absolute" else 0.0
    return max((quantization_step(profile.weights) or 0.0) / 2, prog, read)


def init_weights(twin: TorchTwin, generator: torch.Generator, scale: float = 1.0) -> None:
    """The Trainer's initialisation: N(0, (scale · unit)² / fan_in) per layer (`layer_units`),
    clipped to the profile's weight range; every draw from `generator`."""
    twin.init_weights(generator, scale=scale)
    units = layer_units(twin.profile, twin.spec)
    theta = twin.profile.neuron.nominal("threshold")
    lo, hi = twin.profile.weights.value_range
    with torch.no_grad():
        for name, p in twin.weights.items():
            p.mul_(units[name] / theta).clamp_(lo, hi)

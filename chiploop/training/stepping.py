"""One training step on a batch: estimate gradients, check them, optimizer step, clip, write back.

The Trainer and the research recipes share this step. Where the forward pass runs decides what the
estimator sees: on a `chip` (in the loop: the chip runs the batch and gets the updated weights
back), on hardware weights drawn from `hardware` (offline, hardware-aware), or on the twin's own
weights (neither).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from chiploop.errors import TrainingError
from chiploop.training.tasks import Batch

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin
    from chiploop.training.estimators import GradEstimate, GradientEstimator

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def layer_optimizer(name: str, twin: TorchTwin, rates: Mapping[str, float]) -> torch.optim.Optimizer:
    """Adam or SGD with one parameter group per weight matrix, learning rate `rates[layer]`."""
    if name not in OPTIMIZERS:
        raise TrainingError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {name!r}")
    groups = [{"params": [p], "lr": rates[k]} for k, p in twin.weights.items()]
    return OPTIMIZERS[name](groups)


def set_layer_rates(optimizer: torch.optim.Optimizer, twin: TorchTwin, rates: Mapping[str, float]) -> None:
    """Set the learning rate of each layer's parameter group (groups in `twin.weights` order)."""
    for group, name in zip(optimizer.param_groups, twin.weights, strict=True):
        group["lr"] = rates[name]


def float_weights(twin: TorchTwin) -> dict[str, np.ndarray]:
    """The twin's shadow weights as float64 arrays (what a chip is programmed with)."""
    return {k: w.detach().cpu().numpy().astype(np.float64) for k, w in twin.weights.items()}


@dataclass
class Stepper:
    """Trains `twin` one batch at a time with `estimator`'s gradients and `optimizer`.

    readout: what turns the output into a loss (a task, or a `ScaledReadout`).
    chip: in the loop: the estimator runs the batch on it; it gets the new weights after each step.
    hardware: offline: each step's forward runs on `twin.hardware_weights(hardware, noise=True)`.
    clip: (low, high) weight range the weights are clamped to after each step (None: no clamp).
    """

    twin: TorchTwin
    estimator: GradientEstimator
    readout: Any
    optimizer: torch.optim.Optimizer
    chip: Any = None
    hardware: torch.Generator | None = None
    clip: tuple[float, float] | None = None

    def step(self, batch: Batch, check: Callable[[GradEstimate], None] | None = None) -> GradEstimate:
        """One optimizer step on `batch`; `check` sees the estimate before it is applied (it raises to
        stop training). Returns the estimate (loss, gradients, chip runs)."""
        if self.hardware is not None:
            weights = self.twin.hardware_weights(self.hardware, noise=True)
            est = self.estimator.estimate(self.twin, batch, self.readout, None, weights=weights)
        else:
            est = self.estimator.estimate(self.twin, batch, self.readout, self.chip)
        if check is not None:
            check(est)
        for name, p in self.twin.weights.items():
            p.grad = est.grads[name].to(p.dtype).clone()
        self.optimizer.step()
        if self.clip is not None:
            with torch.no_grad():
                for p in self.twin.weights.values():
                    p.clamp_(*self.clip)
        if self.chip is not None:
            self.chip.write_weights(float_weights(self.twin))
        return est

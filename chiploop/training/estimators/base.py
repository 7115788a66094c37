"""What every gradient estimator shares: the result type, the protocol and the objective.

An estimator turns one batch into a gradient for `model.weights` (keyed like them) without stepping
any optimizer. With a `chip` (in-the-loop) the forward values come from the chip; without one,
everything runs on the twin. `weights` (optional) are the tensors the twin's forward uses instead
of `model.weights` — e.g. `model.hardware_weights(generator)` for hardware-aware training; the
gradient is always taken w.r.t. the parameters in `model.weights`.

The objective is `task.loss(out_v, targets) + rate_reg · mean_j((rate_j − rate_target)²)`, rate_j
the hidden neuron j's spikes per step averaged over batch and time (j over every hidden layer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip, Recording
from chiploop.errors import TrainingError
from chiploop.training.tasks import Batch, Task

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin

Weights = dict[str, Tensor]


@dataclass
class GradEstimate:
    """The loss at the current weights, gradients keyed like `model.weights`, chip runs used."""

    loss: float
    grads: dict[str, Tensor]
    chip_runs: int


class GradientEstimator(Protocol):
    """Anything with a `name` and an `estimate` of this signature."""

    name: str

    def estimate(
        self,
        model: TorchTwin,
        batch: Batch,
        task: Task,
        chip: Chip | None = None,
        *,
        weights: Weights | None = None,
    ) -> GradEstimate: ...


class Estimator(ABC):
    """Base of the built-in estimators: the objective and the plumbing they share."""

    name: ClassVar[str]

    def __init__(self, rate_reg: float = 0.0, rate_target: float = 0.0) -> None:
        if rate_reg < 0 or rate_target < 0:
            raise TrainingError(
                f"{self.name}: rate_reg and rate_target must be >= 0, got {rate_reg}, {rate_target}"
            )
        self.rate_reg, self.rate_target = float(rate_reg), float(rate_target)

    @abstractmethod
    def estimate(
        self,
        model: TorchTwin,
        batch: Batch,
        task: Task,
        chip: Chip | None = None,
        *,
        weights: Weights | None = None,
    ) -> GradEstimate:
        """Gradient estimate for `model.weights` on `batch` (see module doc)."""

    def objective(self, task: Task, out_v: Tensor, hidden_spikes: Tensor, targets: Tensor) -> Tensor:
        """Task loss plus the firing-rate regulariser."""
        loss = task.loss(out_v, targets)
        if self.rate_reg:
            rate = hidden_spikes.mean(dim=(0, 1))
            loss = loss + self.rate_reg * ((rate - self.rate_target) ** 2).mean()
        return loss

    def value(
        self, task: Task, rec: Recording, targets: Tensor, dtype: torch.dtype, spec: NetworkSpec
    ) -> float:
        """The objective at the forward values of a recording of a `spec` network."""
        out_v = torch.as_tensor(np.asarray(rec.v["out"]), dtype=dtype)
        layers = {k: torch.as_tensor(np.asarray(a), dtype=dtype) for k, a in rec.spikes.items()}
        z = hidden_spikes(layers, spec)
        return float(self.objective(task, out_v, z, targets))

    def loss_at(
        self,
        model: TorchTwin,
        inputs: Tensor,
        weights: Weights,
        task: Task,
        targets: Tensor,
        chip: Chip | None,
    ) -> float:
        """The objective with `weights`: a no-grad twin forward, or write + run on the chip."""
        if chip is None:
            with torch.no_grad():
                out = model(inputs, weights=weights)
            return float(self.objective(task, out.v["out"], hidden_spikes(out.spikes, model.spec), targets))
        chip.write_weights(numpy_weights(weights))
        return self.value(task, run_on_chip(chip, inputs), targets, model_dtype(model), model.spec)

    def zero_order(
        self,
        model: TorchTwin,
        batch: Batch,
        task: Task,
        chip: Chip | None,
        weights: Weights | None,
        rule: Callable[[Callable[[Weights], float], Weights], Weights],
    ) -> tuple[float, Weights]:
        """The loss at the current weights and `rule(loss_fn, weights)` for a rule that only
        evaluates losses (on the chip, if given); the chip is re-programmed with the starting
        weights afterwards, whatever happens."""
        x = inputs_of(batch, model)
        w = {k: v.detach() for k, v in forward_weights(model, weights).items()}

        def loss_fn(trial: Weights) -> float:
            return self.loss_at(model, x, trial, task, batch.targets, chip)

        try:
            return loss_fn(w), rule(loss_fn, w)
        finally:
            if chip is not None:
                chip.write_weights(numpy_weights(w))


def hidden_spikes(spikes: Mapping[str, Tensor], spec: NetworkSpec) -> Tensor:
    """Every hidden layer's spikes as one `[B, T, H]` tensor, layer after layer."""
    layers = [spikes[name] for name in spec.layer_names]
    return layers[0] if len(layers) == 1 else torch.cat(layers, dim=2)


def model_dtype(model: TorchTwin) -> torch.dtype:
    """The floating dtype of the model's weights."""
    return next(iter(model.weights.values())).dtype


def forward_weights(model: TorchTwin, weights: Weights | None) -> Weights:
    """The weights the twin's forward should use: `weights`, else `model.weights`."""
    return dict(model.weights) if weights is None else dict(weights)


def inputs_of(batch: Batch, model: TorchTwin) -> Tensor:
    """The batch inputs in the model's dtype."""
    return batch.inputs.to(model_dtype(model))


def run_on_chip(chip: Chip, inputs: Tensor) -> Recording:
    """One chip forward pass of the batch `inputs` (forward values for replay or a loss)."""
    return chip.run(inputs.detach().cpu().numpy().astype(np.uint8))


def grads_of(loss: Tensor, model: TorchTwin) -> dict[str, Tensor]:
    """d loss / d model.weights (zeros where the loss does not depend on a layer)."""
    names = list(model.weights)
    params = [model.weights[k] for k in names]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {
        k: (g.detach() if g is not None else torch.zeros_like(p))
        for k, p, g in zip(names, params, grads, strict=True)
    }


def numpy_weights(weights: Weights) -> dict[str, np.ndarray]:
    """Weights as float64 numpy arrays, for `Chip.write_weights`."""
    return {k: w.detach().cpu().numpy().astype(np.float64) for k, w in weights.items()}

"""Backpropagation through time: exact surrogate gradients (bptt) and the truncated kind (tbptt)."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from chiploop.chip.protocol import Chip
from chiploop.errors import TrainingError
from chiploop.training.estimators.base import (
    Estimator,
    GradEstimate,
    Weights,
    forward_weights,
    grads_of,
    hidden_spikes,
    inputs_of,
    run_on_chip,
)
from chiploop.training.estimators.unroll import Credit, unroll
from chiploop.training.tasks import Batch, Task

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin


class BPTT(Estimator):
    """Autograd through the twin's forward; with a chip, through `model(inputs, replay=recording)`."""

    name = "bptt"

    def estimate(
        self,
        model: TorchTwin,
        batch: Batch,
        task: Task,
        chip: Chip | None = None,
        *,
        weights: Weights | None = None,
    ) -> GradEstimate:
        x, w = inputs_of(batch, model), forward_weights(model, weights)
        replay = run_on_chip(chip, x) if chip is not None else None
        out = model(x, weights=w, replay=replay)
        loss = self.objective(task, out.v["out"], hidden_spikes(out.spikes, model.spec), batch.targets)
        return GradEstimate(float(loss.detach()), grads_of(loss, model), int(chip is not None))


class CreditEstimator(Estimator):
    """An estimator that is BPTT with a cut or rerouted backward pass (see `unroll.Credit`).

    With a chip, forward values come from the chip and `unroll` replays them; without one, `unroll`
    computes them itself (identical to the twin's forward). The backward follows `self.credit(model)`.
    `cuts_only_recurrence`: the cut touches nothing but W_rec, so without recurrence this is BPTT.
    """

    cuts_only_recurrence: bool = False

    @abstractmethod
    def credit(self, model: TorchTwin) -> Credit:
        """How this estimator's backward pass is cut for `model`."""

    def estimate(
        self,
        model: TorchTwin,
        batch: Batch,
        task: Task,
        chip: Chip | None = None,
        *,
        weights: Weights | None = None,
    ) -> GradEstimate:
        x, w = inputs_of(batch, model), forward_weights(model, weights)
        replay = run_on_chip(chip, x) if chip is not None else None
        out_v, z = unroll(model, x, w, replay, self.credit(model))
        loss = self.objective(task, out_v, z, batch.targets)
        return GradEstimate(float(loss.detach()), grads_of(loss, model), int(chip is not None))


class TBPTT(CreditEstimator):
    """BPTT with all state detached every `k` steps (the loss still covers every step)."""

    name = "tbptt"

    def __init__(self, k: int = 10, **base: float) -> None:
        super().__init__(**base)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise TrainingError(f"tbptt: k must be a positive int (steps), got {k!r}")
        self.k = k

    def credit(self, model: TorchTwin) -> Credit:
        return Credit(truncation=self.k)

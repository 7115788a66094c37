"""STDP as stochastic gradient descent (Christensen & Kallsen; docs/science.md §4).

The zero-order local rule Z ← Z − (α/n)·[ℓ(Z + U) − ℓ(Z − U)]·U, U ~ Unif[−A, A]^d, applied n
times in sequence to one learning opportunity (here: one batch, ℓ its objective). Its expected
drift is −(2/3)·A²·α·∇ℓ (exactly, for a quadratic ℓ and small α).

As an estimator it returns the displacement as a gradient: grads = w − Z_n, so that an SGD step
`w -= lr * grad` with lr = 1 applies the rule exactly (lr scales it). With a chip, every ℓ is a
chip forward pass (weights written, batch run); the starting weights are written back at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from chiploop.chip.protocol import Chip
from chiploop.errors import TrainingError
from chiploop.training.estimators.base import (
    Estimator,
    GradEstimate,
    Weights,
)
from chiploop.training.tasks import Batch, Task

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin


def stdp_sgd_displacement(
    loss_fn: Callable[[Weights], float],
    weights: Weights,
    A: float,
    n: int,
    alpha: float,
    generator: torch.Generator,
) -> Weights:
    """Z_n − Z_0 after n sequential local updates from Z_0 = `weights` (2n calls of `loss_fn`)."""
    z = {k: w.detach().clone() for k, w in weights.items()}
    for _ in range(n):
        u = {k: (2 * torch.rand(w.shape, generator=generator, dtype=w.dtype) - 1) * A for k, w in z.items()}
        diff = loss_fn({k: w + u[k] for k, w in z.items()}) - loss_fn({k: w - u[k] for k, w in z.items()})
        z = {k: w - (alpha / n) * diff * u[k] for k, w in z.items()}
    return {k: z[k] - weights[k].detach() for k in z}


class STDPSGD(Estimator):
    """The rule above with amplitude `A`, `n` local updates per batch and rate `alpha`, seeded."""

    name = "stdp_sgd"

    def __init__(
        self, A: float = 0.01, n: int = 10, alpha: float = 1.0, seed: int = 0, **base: float
    ) -> None:
        super().__init__(**base)
        if not A > 0 or not alpha > 0:
            raise TrainingError(f"stdp_sgd: A and alpha must be > 0, got A={A!r}, alpha={alpha!r}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise TrainingError(f"stdp_sgd: n must be a positive int, got {n!r}")
        self.A, self.n, self.alpha = float(A), n, float(alpha)
        self.generator = torch.Generator().manual_seed(seed)

    def estimate(
        self,
        model: TorchTwin,
        batch: Batch,
        task: Task,
        chip: Chip | None = None,
        *,
        weights: Weights | None = None,
    ) -> GradEstimate:
        loss, step = self.zero_order(
            model,
            batch,
            task,
            chip,
            weights,
            lambda loss_fn, w: stdp_sgd_displacement(loss_fn, w, self.A, self.n, self.alpha, self.generator),
        )
        runs = 0 if chip is None else 1 + 2 * self.n
        return GradEstimate(loss, {k: -s for k, s in step.items()}, runs)

"""The noisy oracle of Ghosh et al. (ICLR 2023): the exact gradient with controlled bias and variance.

ĝ = g + ε − b·1 over all N synapses (all layers as one vector), g the bptt gradient:
- bias: every synapse offset by −b (absolute) or −b·‖g‖ (relative); the bias norm is b√N.
- variance: ε a uniformly random direction of norm σ (absolute) or σ·‖g‖ (relative).
- zero_sum with repeats R > 1: the estimator keeps a cycle of R unit noise vectors that sum to zero
  (the vertices of a randomly rotated regular simplex: equal norms, each uniformly distributed on the
  sphere), used by R consecutive calls — meant to be R repeats from the same weights, so the
  first-order sampling error cancels. Otherwise every call draws a fresh direction.
`relative` applies to both bias and variance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from chiploop.emulator.chip import Chip
from chiploop.errors import TrainingError
from chiploop.training.estimators.base import Estimator, GradEstimate, Weights
from chiploop.training.estimators.bptt import BPTT
from chiploop.training.tasks import Batch, Task

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin


def zero_sum_directions(n_vectors: int, dim: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """`[n_vectors, dim]` unit vectors summing to zero, each uniform on the sphere (n_vectors ≥ 2)."""
    if not 2 <= n_vectors <= dim:
        raise TrainingError(
            f"noisy_oracle: zero-sum cycles need 2 <= repeats <= {dim} synapses, got {n_vectors}"
        )
    gauss = torch.randn(dim, n_vectors, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)  # orthonormal columns; sign fix makes the rotation Haar-uniform
    q = q * torch.sign(torch.diagonal(r))
    centre = torch.eye(n_vectors, dtype=torch.float64) - 1.0 / n_vectors  # rows sum to zero
    simplex = centre @ q.T * (n_vectors / (n_vectors - 1)) ** 0.5
    return simplex.to(dtype)


def random_direction(dim: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """A unit vector uniform on the sphere of R^dim."""
    g = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (g / g.norm()).to(dtype)


class NoisyOracle(Estimator):
    """bptt gradient + bias `bias` + noise of norm `sigma` (see module doc), seeded."""

    name = "noisy_oracle"

    def __init__(
        self,
        bias: float = 0.0,
        sigma: float = 0.0,
        relative: bool = False,
        repeats: int = 1,
        zero_sum: bool = True,
        seed: int = 0,
        **base: float,
    ) -> None:
        super().__init__(**base)
        if sigma < 0:
            raise TrainingError(f"noisy_oracle: sigma must be >= 0, got {sigma!r}")
        if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
            raise TrainingError(f"noisy_oracle: repeats must be a positive int, got {repeats!r}")
        self.bias, self.sigma, self.relative = float(bias), float(sigma), bool(relative)
        self.repeats, self.zero_sum = repeats, bool(zero_sum)
        self.generator = torch.Generator().manual_seed(seed)
        self.exact = BPTT(**base)
        self._cycle: list[Tensor] = []

    def _direction(self, dim: int, dtype: torch.dtype) -> Tensor:
        if self.zero_sum and self.repeats > 1:
            if not self._cycle or self._cycle[0].numel() != dim:
                self._cycle = list(zero_sum_directions(self.repeats, dim, self.generator, dtype))
            return self._cycle.pop(0)
        return random_direction(dim, self.generator, dtype)

    def estimate(
        self,
        model: TorchTwin,
        batch: Batch,
        task: Task,
        chip: Chip | None = None,
        *,
        weights: Weights | None = None,
    ) -> GradEstimate:
        exact = self.exact.estimate(model, batch, task, chip, weights=weights)
        names = list(exact.grads)
        flat = torch.cat([exact.grads[k].reshape(-1) for k in names])
        scale = float(flat.norm()) if self.relative else 1.0
        noisy = flat - self.bias * scale
        if self.sigma:
            noisy = noisy + self.sigma * scale * self._direction(flat.numel(), flat.dtype)
        grads, start = {}, 0
        for k in names:
            n = exact.grads[k].numel()
            grads[k] = noisy[start : start + n].reshape(exact.grads[k].shape)
            start += n
        return GradEstimate(exact.loss, grads, exact.chip_runs)

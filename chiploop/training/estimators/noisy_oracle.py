"""The noisy oracle of Ghosh et al. (ICLR 2023): the exact gradient with controlled bias and variance.

ĝ = g + ε − b·1 over all N synapses (all layers as one vector), g the bptt gradient:
- bias: every synapse offset by −b (absolute) or −b·‖g‖ (relative); the bias norm is b√N.
- variance: ε a uniformly random direction of norm σ (absolute) or σ·‖g‖ (relative).
- zero_sum with repeats R > 1: the estimator keeps a cycle of R unit noise vectors that sum to zero
  (the vertices of a randomly rotated regular simplex: equal norms, each uniformly distributed on the
  sphere), used by R consecutive calls — meant to be R repeats from the same weights, so the
  first-order sampling error cancels. Otherwise every call draws a fresh direction.
`relative` applies to both bias and variance.
- where the noise goes: `layers` (names, default all) restricts ε to those layers (N counts their
  synapses only); `frame="units"` draws ε isotropic in each layer's own units (`layer_units`):
  ε_l = unit_l·ε̃_l with ε̃ as above over the noisy layers, so σ is a norm in units, E[εεᵀ] =
  (σ²/N)·diag(unit²) and the expected harm is (η²σ²/2)·Σ_l unit_l²·tr(H_ll)/N; with `relative`
  the scale is ‖g‖ measured in the same units (‖g_l/unit_l‖). Bias is always in raw coordinates.
- `frame="gradient"`: each noisy layer l gets its own direction, of norm σ·‖g_l‖ (every layer's
  estimate has the same signal-to-noise ratio 1/σ, whatever its stiffness): E[ε_lε_lᵀ] =
  (σ²‖g_l‖²/N_l)·I, the expected harm (η²σ²/2)·Σ_l ‖g_l‖²·tr(H_ll)/N_l, the total noise norm
  σ·‖g‖. Zero-sum cycles are kept per layer (each layer's R directions sum to zero; a layer with
  fewer synapses than R gets a cycle of several zero-sum groups). σ is relative by construction,
  so `relative` then applies to the bias only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from chiploop.chip.protocol import Chip
from chiploop.errors import TrainingError
from chiploop.training.estimators.base import Estimator, GradEstimate, Weights
from chiploop.training.estimators.bptt import BPTT
from chiploop.training.tasks import Batch, Task
from chiploop.training.units import layer_units

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin

FRAMES = ("raw", "units", "gradient")


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


def zero_sum_cycle(n_vectors: int, dim: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """`zero_sum_directions`, also for more vectors than dimensions (dim ≥ 2): then the cycle is made
    of as few zero-sum groups as fit, of near-equal sizes, so it still sums to zero (a group of one
    vector cannot: refused)."""
    groups = -(-n_vectors // dim) if dim >= 2 else n_vectors  # dim < 2: let the simplex refuse it
    sizes = [n_vectors // groups + (k < n_vectors % groups) for k in range(groups)]
    return torch.cat([zero_sum_directions(n, dim, generator, dtype) for n in sizes])


def random_direction(dim: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """A unit vector uniform on the sphere of R^dim."""
    g = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (g / g.norm()).to(dtype)


class NoisyOracle(Estimator):
    """bptt gradient + bias `bias` + noise of norm `sigma` on `layers` in `frame` (module doc), seeded."""

    name = "noisy_oracle"

    def __init__(
        self,
        bias: float = 0.0,
        sigma: float = 0.0,
        relative: bool = False,
        repeats: int = 1,
        zero_sum: bool = True,
        seed: int = 0,
        layers: Sequence[str] | None = None,
        frame: str = "raw",
        **base: float,
    ) -> None:
        super().__init__(**base)
        if sigma < 0:
            raise TrainingError(f"noisy_oracle: sigma must be >= 0, got {sigma!r}")
        if frame not in FRAMES:
            raise TrainingError(f"noisy_oracle: frame must be one of {FRAMES}, got {frame!r}")
        if layers is not None and (isinstance(layers, str) or not layers):
            raise TrainingError(f"noisy_oracle: layers must be a non-empty sequence of names, got {layers!r}")
        self.layers = None if layers is None else tuple(layers)
        self.frame = frame
        if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
            raise TrainingError(f"noisy_oracle: repeats must be a positive int, got {repeats!r}")
        self.bias, self.sigma, self.relative = float(bias), float(sigma), bool(relative)
        self.repeats, self.zero_sum = repeats, bool(zero_sum)
        self.generator = torch.Generator().manual_seed(seed)
        self.exact = BPTT(**base)
        self._cycles: dict[str, list[Tensor]] = {}

    def _direction(self, key: str, dim: int, dtype: torch.dtype) -> Tensor:
        """The next unit direction of cycle `key` (one cycle for all layers, or one per layer)."""
        if self.zero_sum and self.repeats > 1:
            cycle = self._cycles.get(key)
            if not cycle or cycle[0].numel() != dim:
                cycle = self._cycles[key] = list(zero_sum_cycle(self.repeats, dim, self.generator, dtype))
            return cycle.pop(0)
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
        grads = {k: g - self.bias * scale for k, g in exact.grads.items()}
        if self.sigma and self.frame == "gradient":
            for k in self._noisy_layers(names):
                g = exact.grads[k]
                eps = self.sigma * float(g.norm()) * self._direction(k, g.numel(), flat.dtype)
                grads[k] = grads[k] + eps.reshape(g.shape)
        elif self.sigma:
            noisy = self._noisy_layers(names)
            units = self._units(model, noisy)
            if self.relative:
                scale = float(torch.cat([exact.grads[k].reshape(-1) / units[k] for k in noisy]).norm())
            dim = sum(exact.grads[k].numel() for k in noisy)
            eps, start = self.sigma * scale * self._direction("all", dim, flat.dtype), 0
            for k in noisy:
                n = exact.grads[k].numel()
                grads[k] = grads[k] + units[k] * eps[start : start + n].reshape(exact.grads[k].shape)
                start += n
        return GradEstimate(exact.loss, grads, exact.chip_runs)

    def _noisy_layers(self, names: list[str]) -> list[str]:
        if self.layers is None:
            return names
        unknown = sorted(set(self.layers) - set(names))
        if unknown:
            raise TrainingError(f"noisy_oracle: unknown layer(s) {unknown}; the model has {names}")
        return [k for k in names if k in self.layers]

    def _units(self, model: TorchTwin, names: list[str]) -> dict[str, float]:
        if self.frame == "raw":
            return dict.fromkeys(names, 1.0)
        units = layer_units(model.profile, model.spec)
        return {k: units[k] for k in names}

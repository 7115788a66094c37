"""Zero-order estimators: weight perturbation and node perturbation (antithetic, seeded).

weight_perturbation: ĝ = (1/n) Σ_k [L(w + ε_k) − L(w − ε_k)] / (2σ²) · ε_k, ε_k ~ N(0, σ² I) over
all synapses — unbiased for a quadratic loss, to O(σ²) otherwise. With a chip, every L is a chip
forward pass: the perturbed weights are written, the batch run, and the unperturbed weights written
back at the end (so the chip ends up programmed with the weights the estimate was taken at).

node_perturbation: the same with noise ξ ~ N(0, σ²) added to every neuron's synaptic input at every
step (hidden and readout), giving ĝ_s = dL/ds per neuron and step; the weight gradient follows from
the presynaptic activity of the clean pass, dL/dW = Σ_t pre_{t−1}ᵀ ĝ_s(t). Currents cannot be
injected into a chip, so it runs on the twin's float dynamics only (TrainingError with a chip or
with fixed arithmetic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from chiploop.chip.dynamics import arriving_inputs
from chiploop.chip.protocol import Chip
from chiploop.errors import TrainingError
from chiploop.training.estimators.base import (
    Estimator,
    GradEstimate,
    Weights,
    forward_weights,
    hidden_spikes,
    inputs_of,
)
from chiploop.training.estimators.unroll import unroll_trace
from chiploop.training.tasks import Batch, Task

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin

LossFn = Callable[[Weights], float]


def _check(name: str, sigma: float, n_samples: int) -> None:
    if not sigma > 0:
        raise TrainingError(f"{name}: sigma must be > 0, got {sigma!r}")
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise TrainingError(f"{name}: n_samples must be a positive int, got {n_samples!r}")


def perturbation_gradient(
    loss_fn: LossFn, weights: Weights, sigma: float, n_samples: int, generator: torch.Generator
) -> Weights:
    """Antithetic Gaussian weight-perturbation estimate of ∇L at `weights` (2·n_samples calls)."""
    grads = {k: torch.zeros_like(w) for k, w in weights.items()}
    for _ in range(n_samples):
        eps = {
            k: sigma * torch.randn(w.shape, generator=generator, dtype=w.dtype) for k, w in weights.items()
        }
        plus = loss_fn({k: w + eps[k] for k, w in weights.items()})
        minus = loss_fn({k: w - eps[k] for k, w in weights.items()})
        coef = (plus - minus) / (2 * sigma**2 * n_samples)
        for k in grads:
            grads[k] += coef * eps[k]
    return grads


class WeightPerturbation(Estimator):
    """Antithetic weight perturbation with `n_samples` pairs of N(0, sigma²) draws, seeded."""

    name = "weight_perturbation"

    def __init__(self, sigma: float = 0.01, n_samples: int = 16, seed: int = 0, **base: float) -> None:
        super().__init__(**base)
        _check(self.name, sigma, n_samples)
        self.sigma, self.n_samples = float(sigma), n_samples
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
        loss, grads = self.zero_order(
            model,
            batch,
            task,
            chip,
            weights,
            lambda loss_fn, w: perturbation_gradient(loss_fn, w, self.sigma, self.n_samples, self.generator),
        )
        runs = 0 if chip is None else 1 + 2 * self.n_samples
        return GradEstimate(loss, grads, runs)


class NodePerturbation(Estimator):
    """Antithetic node perturbation of the hidden and readout input currents, on the twin."""

    name = "node_perturbation"

    def __init__(self, sigma: float = 0.05, n_samples: int = 16, seed: int = 0, **base: float) -> None:
        super().__init__(**base)
        _check(self.name, sigma, n_samples)
        self.sigma, self.n_samples = float(sigma), n_samples
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
        if chip is not None:
            raise TrainingError(
                "node_perturbation injects currents into neurons, which a chip does not expose: "
                "run it without a chip (offline, on the twin), or use weight_perturbation in the loop"
            )
        if model.spec.synapses > 1:
            raise TrainingError(
                "node_perturbation perturbs the first synaptic current only: it cannot estimate the "
                "weights of a second one (use weight_perturbation)"
            )
        x = inputs_of(batch, model)
        w = {k: v.detach() for k, v in forward_weights(model, weights).items()}

        spec = model.spec

        def loss_of(noise: dict[str, Tensor] | None) -> tuple[float, dict[str, Tensor]]:
            with torch.no_grad():
                trace = unroll_trace(model, x, w, node_noise=noise)
                z = hidden_spikes(trace.spikes, spec)
                return float(self.objective(task, trace.v["out"], z, batch.targets)), trace.spikes

        loss, spikes = loss_of(None)
        n_b, n_t, _ = x.shape
        sizes = dict(zip(spec.layer_names, spec.hidden_sizes, strict=True)) | {"out": spec.n_out}
        shapes = {k: (n_b, n_t, n) for k, n in sizes.items()}
        dtype = spikes["hidden"].dtype
        g_s = {k: torch.zeros(s, dtype=dtype) for k, s in shapes.items()}
        for _ in range(self.n_samples):
            xi = {
                k: self.sigma * torch.randn(s, generator=self.generator, dtype=dtype)
                for k, s in shapes.items()
            }
            plus, _ = loss_of(xi)
            minus, _ = loss_of({k: -v for k, v in xi.items()})
            coef = (plus - minus) / (2 * self.sigma**2 * self.n_samples)
            for k in g_s:
                g_s[k] += coef * xi[k]
        x_in = arriving_inputs(x.to(dtype), model.params.rules)
        grads = {}
        for name in w:  # "pre_post": the clean pass's presynaptic activity times dL/ds of post
            pre, post = name.split("_", 1)
            if pre == "in":
                grads[name] = torch.einsum("bti,btj->ij", x_in, g_s[post])
            else:  # a hidden layer's spikes arrive one step later
                grads[name] = torch.einsum("bti,btj->ij", spikes[pre][:, :-1], g_s[post][:, 1:])
        return GradEstimate(loss, {k: grads[k].to(model.weights[k].dtype) for k in model.weights}, 0)

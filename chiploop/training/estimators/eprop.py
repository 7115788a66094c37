"""Truncated online rules: e-prop (Bellec et al. 2020), its random-feedback form (RFLO), SnAp-1.

Implemented as autograd through `unroll` with the cross-neuron temporal terms cut, which is exact
by construction: the gradient each hidden synapse gets is Σ_t L_t^j · e_t^{ij}, where the
eligibility trace e_t^{ij} = dz_t^j/dW_ij follows neuron j's OWN dynamics (synaptic filter,
membrane, reset, refractoriness, adaptation — the twin's, step by step) and the learning signal
L_t^j = ∂L/∂z_t^j is the readout error routed through the readout filter and W_out (or a fixed
random B). The spikes z_{t−1} fed back through W_rec are stop-gradiented ("none"), or all but the
self-connections ("diag", SnAp-1). Without recurrence and with B = W_out, e-prop equals BPTT.
The readout weights get their exact gradient.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from chiploop.training.estimators.bptt import CreditEstimator
from chiploop.training.estimators.unroll import Credit
from chiploop.training.units import layer_units

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin


class RandomFeedback:
    """A fixed random feedback matrix B `[H, O]` per shape, N(0, 1)·scale/sqrt(H), from `seed`.

    `scale` None: the readout's weight unit (`layer_units`), so that B is drawn like the Trainer
    draws W_out and the hidden layer's gradients keep bptt's size (a B larger than W_out would act
    as a larger learning rate of the hidden layers).
    """

    def __init__(self, seed: int = 0, scale: float | None = None) -> None:
        self.seed, self.scale = seed, scale
        self._cache: dict[tuple[int, int, torch.dtype], Tensor] = {}

    def matrix(self, model: TorchTwin) -> Tensor:
        w_out = model.weights["hidden_out"]
        key = (*w_out.shape, w_out.dtype)
        if key not in self._cache:
            scale = layer_units(model.profile, model.spec)["hidden_out"] if self.scale is None else self.scale
            gen = torch.Generator().manual_seed(self.seed)
            b = (
                torch.randn(tuple(w_out.shape), generator=gen, dtype=torch.float64)
                * scale
                / math.sqrt(w_out.shape[0])
            )
            self._cache[key] = b.to(w_out.dtype)
        return self._cache[key]


class EProp(CreditEstimator):
    """e-prop with symmetric feedback B = W_outᵀ."""

    name = "eprop"
    cuts_only_recurrence = True

    def credit(self, model: TorchTwin) -> Credit:
        return Credit(recurrent="none")


class EPropRandom(CreditEstimator):
    """e-prop with a fixed random feedback matrix (RFLO-type), seeded."""

    name = "eprop_random"

    def __init__(self, seed: int = 0, feedback_scale: float | None = None, **base: float) -> None:
        super().__init__(**base)
        self.feedback = RandomFeedback(seed, feedback_scale)

    def credit(self, model: TorchTwin) -> Credit:
        return Credit(recurrent="none", feedback=self.feedback.matrix(model))


class SnAp1(CreditEstimator):
    """SnAp-1: only diag(W_rec) carries gradient through time across the recurrence."""

    name = "snap1"
    cuts_only_recurrence = True

    def credit(self, model: TorchTwin) -> Credit:
        return Credit(recurrent="diag")

"""Truncated online rules: e-prop (Bellec et al. 2020), its random-feedback form (RFLO), SnAp-1.

Implemented as autograd through `unroll` with the cross-neuron temporal terms cut, which is exact
by construction: the gradient each hidden synapse gets is Σ_t L_t^j · e_t^{ij}, where the
eligibility trace e_t^{ij} = dz_t^j/dW_ij follows neuron j's OWN dynamics (synaptic filter,
membrane, reset, refractoriness, adaptation — the twin's, step by step) and the learning signal
L_t^j = ∂L/∂z_t^j is the readout error routed through the readout filter and W_out (or a fixed
random B). The spikes z_{t−1} fed back through W_rec are stop-gradiented ("none"), or all but the
self-connections ("diag", SnAp-1). Without recurrence and with B = W_out, e-prop equals BPTT.
The readout weights get their exact gradient. With several hidden layers each layer has its own
learning signal: the error of the layer above, sent down through that layer's weights (symmetric)
or a fixed random B per layer (eprop_random), and the cut applies to every layer's recurrence.
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
    from chiploop.chip.network import NetworkSpec
    from chiploop.emulator.twin import TorchTwin


class RandomFeedback:
    """Fixed random feedback matrices, N(0, 1)·scale/sqrt(pre) each, drawn from one `seed`.

    `matrices`: one B per feed-forward matrix leaving a hidden layer ("hidden_out" with one hidden
    layer; "hidden_hidden2", ..., "<last>_out" with several), shaped like it: the error crosses every
    layer through a B instead of Wᵀ. `direct`: one B `[H_k, O]` per hidden layer, sending the readout
    error straight to it (direct feedback alignment). `scale` None: the weight unit of the matrix B
    stands for (`layer_units`; the readout's for `direct`), so that B is drawn like the Trainer draws
    W and the gradients keep bptt's size (a larger B would act as a larger learning rate).
    """

    def __init__(self, seed: int = 0, scale: float | None = None) -> None:
        self.seed, self.scale = seed, scale
        self._cache: dict[tuple, dict[str, Tensor]] = {}

    def matrices(self, model: TorchTwin) -> dict[str, Tensor]:
        """One B per feed-forward matrix leaving a hidden layer, keyed like it."""
        spec = model.spec
        shapes = {k: s for k, s in spec.weight_shapes().items() if _leaves_a_hidden_layer(k, spec)}
        return self._draw(model, "through", shapes, {k: k for k in shapes})

    def direct(self, model: TorchTwin) -> dict[str, Tensor]:
        """One B `[H_k, O]` per hidden layer, keyed by its name."""
        spec = model.spec
        shapes = {name: (n, spec.n_out) for name, n in zip(spec.layer_names, spec.hidden_sizes, strict=True)}
        readout = f"{spec.layer_names[-1]}_out"
        return self._draw(model, "direct", shapes, dict.fromkeys(shapes, readout))

    def _draw(
        self, model: TorchTwin, kind: str, shapes: dict[str, tuple[int, int]], unit_of: dict[str, str]
    ) -> dict[str, Tensor]:
        dtype = next(iter(model.weights.values())).dtype
        key = (kind, tuple(shapes.items()), dtype)
        if key not in self._cache:
            units = layer_units(model.profile, model.spec)
            gen = torch.Generator().manual_seed(self.seed)
            drawn = {}
            for name, shape in shapes.items():
                scale = units[unit_of[name]] if self.scale is None else self.scale
                b = torch.randn(shape, generator=gen, dtype=torch.float64) * scale / math.sqrt(shape[0])
                drawn[name] = b.to(dtype)
            self._cache[key] = drawn
        return self._cache[key]


def _leaves_a_hidden_layer(name: str, spec: NetworkSpec) -> bool:
    """A feed-forward matrix whose presynaptic layer is hidden ("hidden_out", "hidden_hidden2", ...)."""
    pre, post = name.split("_", 1)
    return pre in spec.layer_names and post != pre


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
        return Credit(recurrent="none", feedback=self.feedback.matrices(model))


class SnAp1(CreditEstimator):
    """SnAp-1: only diag(W_rec) carries gradient through time across the recurrence."""

    name = "snap1"
    cuts_only_recurrence = True

    def credit(self, model: TorchTwin) -> Credit:
        return Credit(recurrent="diag")

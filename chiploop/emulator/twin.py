"""TorchTwin: the chip's dynamics (docs/dynamics.md) in torch — batched, differentiable, replayable.

The learner: `forward(inputs, weights=..., replay=...)` runs the exact dynamics on trainable
weights with surrogate-gradient spikes; `replay` takes a chip's Recording so that forward values
are the chip's while gradients flow through the twin (in-the-loop training). Its chip counterpart,
`TwinChip` (`open_chip("twin")`), runs the same definition behind a DeviceModel.

Both run `chiploop.chip.dynamics.simulate`, the one Python definition of the dynamics. Float
arithmetic runs in the twin's dtype; fixed arithmetic always in float64 holding integers, bit-identical
to the spec, with straight-through gradients (see `chiploop.chip.dynamics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from chiploop.chip.device_model import NeuronConstants, neuron_constants
from chiploop.chip.devices import deployment_noise, layer_scale, quantize, round_half_away
from chiploop.chip.dynamics import network_params, simulate
from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Recording
from chiploop.chip.surrogates import SuperSpike, Surrogate
from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ChipError

_FLOAT64_MANTISSA_BITS = 53
_SUPERSPIKE = SuperSpike()  # frozen, so one shared default is safe


@dataclass
class TwinOutput:
    """A forward pass: per-layer `[B, T, N]` tensors.

    spikes: each hidden layer's ("hidden", "hidden2", ...: delivered spike counts), and "out" for a
    spiking readout; surrogate gradient. v: every layer's membrane after the step's reset, in state
    units.
    """

    spikes: dict[str, Tensor]
    v: dict[str, Tensor]


def check_exact(profile: ChipProfile) -> None:
    """Refuse fixed arithmetic whose products float64 cannot hold exactly (ChipError)."""
    arith = profile.arithmetic
    if arith.kind == "fixed" and arith.decay == "multiplier":
        needed = arith.state_bits - 1 + arith.decay_bits
        if needed > _FLOAT64_MANTISSA_BITS:
            raise ChipError(
                f"TorchTwin computes fixed arithmetic exactly in float64: state_bits - 1 + decay_bits "
                f"must be <= {_FLOAT64_MANTISSA_BITS}, got {arith.state_bits} - 1 + {arith.decay_bits}"
            )


class TorchTwin(torch.nn.Module):
    """The torch twin of a chip: trainable weights + exact dynamics (the learner, not a Chip).

    `weights` is an `nn.ParameterDict` keyed like `spec.weight_shapes()` (`[pre, post]`, zeros until
    `init_weights`). `constants` are the neuron constants the learner assumes (default: nominal, no
    mismatch); the chip (`TwinChip`) draws its own mismatch from `DeviceModel(profile, spec, seed)`.
    """

    def __init__(
        self,
        profile: ChipProfile,
        spec: NetworkSpec,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        surrogate: Surrogate = _SUPERSPIKE,
        constants: NeuronConstants | None = None,
    ) -> None:
        super().__init__()
        check_exact(profile)
        arith = profile.arithmetic
        self.profile = profile
        self.spec = spec
        self.seed = seed
        self.dtype = dtype
        self.surrogate = surrogate
        self.compute_dtype = torch.float64 if arith.kind == "fixed" else dtype
        self.constants = constants if constants is not None else neuron_constants(profile, spec)
        shapes = spec.weight_shapes()
        self.weights = torch.nn.ParameterDict(
            {name: torch.nn.Parameter(torch.zeros(shape, dtype=dtype)) for name, shape in shapes.items()}
        )
        self.params = network_params(profile, self.constants, spec, self.compute_dtype)
        self._generator = torch.Generator().manual_seed(seed)

    def init_weights(self, generator: torch.Generator, scale: float = 1.0) -> None:
        """Gaussian weights with std `scale · threshold / sqrt(fan_in)`, drawn from `generator`."""
        with torch.no_grad():
            for p in self.weights.values():
                std = scale * self.profile.neuron.nominal("threshold") / math.sqrt(p.shape[0])
                p.normal_(0.0, std, generator=generator)

    def forward(
        self,
        inputs: Tensor,
        *,
        weights: dict[str, Tensor] | None = None,
        replay: Recording | None = None,
    ) -> TwinOutput:
        """Run inputs `[B, T, n_in]` (0/1) through the dynamics of docs/dynamics.md, batched.

        weights: tensors keyed like `spec.weight_shapes()` (default: `self.weights`), e.g.
        `hardware_weights(...)` for hardware-aware training. Input and hidden spike caps apply.
        replay: a chip's Recording. Spike values become the chip's (`z + (z_chip - z).detach()`) and
        drive this layer's reset, refractoriness and adaptation, the recurrence and the readout, so
        the twin's state follows the chip's history; `v["out"]`, if recorded, replaces the readout
        membrane the same way. Recorded spikes are the delivered ones, so caps are not re-applied.
        """
        x = self._check_inputs(inputs)
        w = self._check_weights(dict(self.weights) if weights is None else weights)
        forced = None if replay is None else self._replay_tensors(replay, x.shape[0], x.shape[1])
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in w.values())
        trace = simulate(self.params, x, w, self.surrogate if grad else None, replay=forced)
        return TwinOutput(spikes=trace.spikes, v=trace.v)

    def hardware_weights(
        self, generator: torch.Generator | None = None, noise: bool = True
    ) -> dict[str, Tensor]:
        """The trainable weights as the chip would hold them, for hardware-aware training.

        Quantized by the profile's quantizer with a straight-through estimator
        (`w + (q(w) - w).detach()`); with `noise`, the noise of one run on a freshly programmed chip:
        gaussian programming, read and periphery noise as torch noise; PCM as the perturbation of
        `devices.deployment_noise` (programming, read noise at t0, periphery) added as a constant.
        Drift and stuck-at faults are deployment effects and are not applied here.
        Draws come from `generator`, or the twin's own generator seeded from `seed`.
        """
        gen = self._generator if generator is None else generator
        return {name: self._hardware_weight(w, gen, noise) for name, w in self.weights.items()}

    def _hardware_weight(self, w: Tensor, gen: torch.Generator, noise: bool) -> Tensor:
        q_np = quantize(w.detach().cpu().numpy().astype(np.float64), self.profile.weights, _numpy_rng(gen))
        out = _straight_through(w, q_np)
        if noise:
            n = self.profile.noise
            if n.programming.model == "pcm":  # conductances: the device functions' perturbation
                out = out + torch.as_tensor(
                    deployment_noise(q_np, self.profile, _numpy_rng(gen)) - q_np, dtype=w.dtype
                )
            else:
                out = _train_noise(out, n.programming.model, n.programming.sigma, gen)
                out = _train_noise(out, n.read.model, n.read.sigma, gen)
                sigma = n.periphery.weight_sigma * layer_scale(q_np, self.profile.weights)
                out = _train_noise(out, "gaussian_absolute", sigma * self.profile.weights.value_range[1], gen)
        if self.profile.arithmetic.kind == "fixed":  # the chip stores integers, as DeviceModel does
            out = _straight_through(out, round_half_away(out.detach().cpu().numpy()))
        return out

    def _check_inputs(self, inputs: Tensor) -> Tensor:
        if not isinstance(inputs, Tensor) or inputs.ndim != 3 or inputs.shape[2] != self.spec.n_in:
            got = tuple(inputs.shape) if hasattr(inputs, "shape") else type(inputs).__name__
            raise ChipError(f"inputs must be a tensor [B, T, {self.spec.n_in}], got {got}")
        if inputs.shape[0] < 1 or inputs.shape[1] < 1:
            raise ChipError(f"inputs need B >= 1 and T >= 1, got shape {tuple(inputs.shape)}")
        return inputs.to(self.compute_dtype)

    def _check_weights(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        shapes = self.spec.weight_shapes()
        if set(weights) != set(shapes):
            raise ChipError(f"weights must have keys {sorted(shapes)}, got {sorted(weights)}")
        for name, shape in shapes.items():
            got = tuple(weights[name].shape)
            if got != shape:
                raise ChipError(f"weights[{name!r}] must have shape {shape}, got {got}")
        return {name: w.to(self.compute_dtype) for name, w in weights.items()}

    def _replay_tensors(self, rec: Recording, B: int, T: int) -> dict[str, Tensor]:
        expected = dict(zip(self.spec.layer_names, self.spec.hidden_sizes, strict=True))
        if self.spec.readout == "spiking":
            expected["out"] = self.spec.n_out
        forced = {}
        for name, n in expected.items():
            if name not in rec.spikes or rec.spikes[name].shape != (B, T, n):
                got = rec.spikes[name].shape if name in rec.spikes else "nothing"
                raise ChipError(f"replay spikes[{name!r}] must be [{B}, {T}, {n}], got {got}")
            forced[name] = torch.tensor(np.asarray(rec.spikes[name]), dtype=self.compute_dtype)
        if "out" in rec.v:
            got = rec.v["out"].shape
            if got != (B, T, self.spec.n_out):
                raise ChipError(f"replay v['out'] must be [{B}, {T}, {self.spec.n_out}], got {got}")
            forced["v_out"] = torch.tensor(np.asarray(rec.v["out"]), dtype=self.compute_dtype)
        return forced


def _straight_through(w: Tensor, value: np.ndarray) -> Tensor:
    """Forward `value`, gradient of identity w.r.t. `w`."""
    return w + (torch.as_tensor(value, dtype=w.dtype) - w).detach()


def _numpy_rng(gen: torch.Generator) -> np.random.Generator:
    """A numpy Generator seeded by one draw from a torch Generator."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen).item()))


def _train_noise(w: Tensor, model: str, sigma: float, gen: torch.Generator) -> Tensor:
    """One gaussian training-time noise step in torch (model "none": none)."""
    if model == "gaussian_absolute" and sigma:
        return w + sigma * torch.randn(w.shape, generator=gen, dtype=w.dtype)
    if model == "gaussian_relative" and sigma:
        return w * (1.0 + sigma * torch.randn(w.shape, generator=gen, dtype=w.dtype))
    return w

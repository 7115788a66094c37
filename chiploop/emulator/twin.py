"""TorchTwin: the chip's dynamics (docs/dynamics.md) in torch — batched, differentiable, replayable.

Two roles in one object:
- **learner**: `forward(inputs, weights=..., replay=...)` runs the exact dynamics on trainable
  weights with surrogate-gradient spikes; `replay` takes a chip's Recording so that forward values
  are the chip's while gradients flow through the twin (in-the-loop training).
- **Chip** (the `chiploop.emulator.chip.Chip` protocol, `open_chip("twin")`): `write_weights` /
  `run` go through a DeviceModel (quantization, device noise, faults, drift, frozen mismatch) and
  return a numpy Recording, like every other backend.

Float arithmetic runs in the twin's dtype. Fixed arithmetic always runs in float64 holding integers
(trunc toward zero, saturation), bit-identical to the spec; its gradients are straight-through:
trunc passes the gradient unchanged, saturation passes none outside the range.
As in docs/dynamics.md the output layer takes `s_o` without gain;
under fixed arithmetic it takes `trunc(s_o)`, which is `s_o` for the integer weights a chip holds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from chiploop.chip_profiles.model import ChipProfile
from chiploop.chip_profiles.rules import check_network
from chiploop.emulator.chip import Recording
from chiploop.emulator.device_model import DeviceModel, NeuronConstants, neuron_constants, validate_inputs
from chiploop.emulator.devices import (
    layer_scale,
    programming_noise,
    quantize,
    read_noise,
    round_half_away,
)
from chiploop.emulator.network import NetworkSpec
from chiploop.emulator.surrogates import SuperSpike, Surrogate
from chiploop.errors import ChipError

_FLOAT64_MANTISSA_BITS = 53
_SUPERSPIKE = SuperSpike()  # frozen, so one shared default is safe


@dataclass
class TwinOutput:
    """A forward pass: per-layer `[B, T, N]` tensors.

    spikes: "hidden" (delivered spikes), and "out" for a spiking readout; 0/1 with surrogate grad.
    v: "hidden", "out": membrane after the step's reset.
    """

    spikes: dict[str, Tensor]
    v: dict[str, Tensor]


@dataclass(frozen=True)
class _Layer:
    """One layer's per-neuron constants as tensors; decay factors already in multiply form."""

    mem: Tensor
    syn: Tensor | None  # None: tau_syn = 0, the synaptic current is this step's input only
    theta: Tensor
    inv_theta: Tensor
    gain: Tensor
    ada: Tensor | None = None  # ALIF only (hidden layer with some beta != 0)
    beta: Tensor | None = None


@dataclass(frozen=True)
class _Dynamics:
    """Everything the step loop needs: arithmetic flags, saturation bounds, layer constants."""

    fixed: bool
    shift: bool
    lo: float
    hi: float
    reset_zero: bool
    refractory_steps: int
    hidden: _Layer
    out: _Layer

    def trunc(self, x: Tensor) -> Tensor:
        """Round toward zero; straight-through gradient."""
        if x.requires_grad:
            return x + (torch.trunc(x) - x).detach()
        return torch.trunc(x)

    def sat(self, x: Tensor) -> Tensor:
        """Saturate to the state range (fixed arithmetic only)."""
        return x.clamp(self.lo, self.hi) if self.fixed else x

    def decay(self, x: Tensor, factor: Tensor) -> Tensor:
        """D(x): alpha·x (float), trunc(x·m/2^q) (multiplier) or x − trunc(x/2^s) (shift)."""
        if not self.fixed:
            return x * factor
        if self.shift:
            return x - self.trunc(x * factor)
        return self.trunc(x * factor)


def _dynamics(c: NeuronConstants, dtype: torch.dtype) -> _Dynamics:
    """Tensors of the per-neuron constants for the step loop (see docs/dynamics.md, Decays)."""
    fixed = c.arithmetic == "fixed"
    shift = c.decay == "shift"

    def factor(values: np.ndarray) -> Tensor:
        a = np.asarray(values, dtype=np.float64)
        if fixed:  # multiplier m -> m / 2^q; shift s -> 2^-s; both exact in float64
            a = np.ldexp(1.0, -a.astype(np.int64)) if shift else np.ldexp(a, -c.decay_bits)
        return torch.tensor(a, dtype=dtype)

    def layer(mem, syn, theta, gain, ada=None, beta=None) -> _Layer:
        theta_t = torch.tensor(np.asarray(theta, dtype=np.float64), dtype=dtype)
        adaptive = beta is not None and np.any(np.asarray(beta) != 0)
        return _Layer(
            mem=factor(mem),
            syn=factor(syn) if c.syn_enabled else None,
            theta=theta_t,
            inv_theta=theta_t.reciprocal(),
            gain=torch.tensor(np.asarray(gain, dtype=np.float64), dtype=dtype),
            ada=factor(ada) if adaptive else None,
            beta=torch.tensor(np.asarray(beta, dtype=np.float64), dtype=dtype) if adaptive else None,
        )

    half = 2.0 ** (c.state_bits - 1)
    return _Dynamics(
        fixed=fixed,
        shift=shift,
        lo=-half,
        hi=half - 1,
        reset_zero=c.reset == "zero",
        refractory_steps=int(c.refractory_steps),
        hidden=layer(c.mem_h, c.syn_h, c.threshold_h, c.gain_h, c.ada_h, c.beta_h),
        out=layer(c.mem_o, c.syn_o, c.threshold_o, np.ones_like(c.threshold_o)),  # s_o has no gain
    )


def _ge(a: Tensor, b: Tensor | float) -> Tensor:
    """`a >= b` as 0/1 in a's dtype (comparing into a float `out` is ~5x faster than a bool cast)."""
    return torch.ge(a, b, out=torch.empty_like(a))


def _cap(z: Tensor, k: int | None) -> Tensor:
    """Keep the first k events of each [.., N] row in index order (docs/dynamics.md `cap`)."""
    if k is None:
        return z
    count = torch.cumsum(_ge(z.detach(), 0.5), dim=-1)  # events so far, exact small integers
    return z * (k + 1 - count).clamp_(0, 1)


class _Trace:
    """Per-step `[B, N]` states gathered into `[T, B, N]`: a list stacked at the end under autograd,
    a preallocated buffer otherwise (no final copy)."""

    def __init__(self, T: int, like: Tensor, grad: bool) -> None:
        self.buf = None if grad else like.new_empty((T, *like.shape))
        self.items: list[Tensor] = []

    def put(self, t: int, x: Tensor) -> None:
        if self.buf is None:
            self.items.append(x)
        else:
            self.buf[t] = x

    def result(self) -> Tensor:
        return torch.stack(self.items) if self.buf is None else self.buf


def _run_layer(
    dyn: _Dynamics,
    layer: _Layer,
    surrogate: Surrogate,
    presyn: Tensor,
    spiking: bool,
    rec: Tensor | None = None,
    cap: int | None = None,
    forced: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run one layer for all T steps, time-major.

    presyn: `[T, B, N]` synaptic input *sent* at each step (it arrives one step later), before the
    gain for fixed arithmetic, gain-scaled for float. rec: recurrent weights `[N, N]` (gain-scaled
    for float). forced: `[T, B, N]` spikes whose values replace the layer's own (replay).
    Returns (delivered spikes `[T, B, N]`, or empty for a leaky layer; v `[T, B, N]`; n_dropped).
    """
    T, B, N = presyn.shape
    zeros = presyn.new_zeros(B, N)
    fixed, trunc, sat, decay = dyn.fixed, dyn.trunc, dyn.sat, dyn.decay
    mem, syn, theta, inv_theta, gain = layer.mem, layer.syn, layer.theta, layer.inv_theta, layer.gain
    ada, beta = layer.ada, layer.beta
    refractory = dyn.refractory_steps if spiking else 0
    current, v, b, z, r = zeros, zeros, zeros, zeros, zeros  # r: refractory steps left (float)
    dropped = presyn.new_zeros(())
    grad = torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in (presyn, rec))
    zs, vs = _Trace(T, zeros, grad), _Trace(T, zeros, grad)
    sent = presyn.unbind(0)  # one backward node for all steps (indexing presyn[t] would be O(T^2))
    for t in range(T):
        if t == 0:
            s = zeros
        else:
            s = sent[t - 1] if rec is None else torch.addmm(sent[t - 1], z, rec)
            if fixed:
                s = trunc(gain * s)
        current = sat(decay(current, syn) + s if syn is not None else s)
        v_new = sat(decay(v, mem) + current)
        if not spiking:
            v = v_new
            vs.put(t, v)
            continue
        if refractory:  # 0/1 blends instead of torch.where: exact, and far faster on CPU
            ref = r.clamp(max=1)
            free = 1 - ref
            v = v * ref + v_new * free
        else:
            v = v_new
        thresh = theta + b if ada is not None else theta
        z = surrogate((v - thresh) * inv_theta) if grad else _ge(v, thresh)
        if refractory:
            z = z * free
        if forced is not None:
            z = z + (forced[t] - z).detach()
        v = v * (1 - z) if dyn.reset_zero else v - z * thresh
        if refractory:
            left = (r - 1).clamp_(min=0)
            r = left + z.detach() * (refractory - left)
        if ada is not None:
            b = sat(decay(b, ada) + beta * z)
        if cap is not None and forced is None:
            delivered = _cap(z, cap)
            dropped = dropped + (z.detach() - delivered.detach()).sum()
            z = delivered
        zs.put(t, z)
        vs.put(t, v)
    v_all = vs.result()
    z_all = zs.result() if spiking else v_all.new_zeros(0)
    return z_all, v_all, dropped


def _matmul(spikes: Tensor, w: Tensor) -> Tensor:
    """`[D0, D1, pre] @ [pre, post]` (contiguous spikes) as one 2-D matmul."""
    d0, d1, pre = spikes.shape
    return (spikes.reshape(d0 * d1, pre) @ w).reshape(d0, d1, w.shape[1])


def _simulate(
    dyn: _Dynamics,
    spec: NetworkSpec,
    profile: ChipProfile,
    surrogate: Surrogate,
    x: Tensor,
    w: dict[str, Tensor],
    replay: dict[str, Tensor] | None,
) -> tuple[TwinOutput, int, int]:
    """The whole network on a batch `x [B, T, n_in]`; returns the output and the numbers of dropped
    hidden and input events (input caps count every step, the last one included, as the firmware does).

    Runs time-major inside (per-step slices `[B, N]`); replay tensors are `[B, T, N]`.
    """
    limits = profile.limits
    x_capped = _cap(x, limits.max_input_spikes_per_step)
    dropped_in = int((x - x_capped).sum().item()) if limits.max_input_spikes_per_step else 0
    hid, out = dyn.hidden, dyn.out
    w_in, w_rec, w_out = w["in_hidden"], w.get("hidden_hidden"), w["hidden_out"]
    if not dyn.fixed:  # G(gain ⊙ s) = s @ (W ⊙ gain): fold the gain into the weights once
        w_in = w_in * hid.gain
        w_rec = None if w_rec is None else w_rec * hid.gain
    forced = {k: r.transpose(0, 1) for k, r in (replay or {}).items()}
    z_h, v_h, dropped_h = _run_layer(
        dyn,
        hid,
        surrogate,
        _matmul(x_capped.contiguous(), w_in).transpose(0, 1),
        True,
        w_rec,
        limits.max_spikes_per_step,
        forced.get("hidden"),
    )
    spiking_out = spec.readout == "spiking"
    z_o, v_o, _ = _run_layer(dyn, out, surrogate, _matmul(z_h, w_out), spiking_out, forced=forced.get("out"))
    if "v_out" in forced:
        v_o = v_o + (forced["v_out"] - v_o).detach()
    spikes = {"hidden": z_h, "out": z_o} if spiking_out else {"hidden": z_h}
    output = TwinOutput(
        spikes={k: z.transpose(0, 1) for k, z in spikes.items()},
        v={"hidden": v_h.transpose(0, 1), "out": v_o.transpose(0, 1)},
    )
    return output, int(dropped_h.item()), dropped_in


class TorchTwin(torch.nn.Module):
    """The torch twin of a chip: trainable weights + exact dynamics, and a Chip of its own.

    `weights` is an `nn.ParameterDict` keyed like `spec.weight_shapes()` (`[pre, post]`, zeros until
    `init_weights`). `constants` are the neuron constants the learner assumes (default: nominal, no
    mismatch); the Chip role uses its own DeviceModel(profile, spec, seed) with frozen mismatch.
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
        arith = profile.arithmetic
        if arith.kind == "fixed" and arith.decay == "multiplier":
            needed = arith.state_bits - 1 + arith.decay_bits
            if needed > _FLOAT64_MANTISSA_BITS:
                raise ChipError(
                    f"TorchTwin computes fixed arithmetic exactly in float64: state_bits - 1 + decay_bits "
                    f"must be <= {_FLOAT64_MANTISSA_BITS}, got {arith.state_bits} - 1 + {arith.decay_bits}"
                )
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
        self.device_model = DeviceModel(profile, spec, seed=seed)
        self._dyn = _dynamics(self.constants, self.compute_dtype)
        self._chip_dyn = _dynamics(self.device_model.constants, torch.float64)
        self._generator = torch.Generator().manual_seed(seed)
        self._chip_state = "new"  # Chip role: "new" -> "open" (design rules passed) -> "closed"

    # ------------------------------------------------------------------ learner role
    def init_weights(self, generator: torch.Generator, scale: float = 1.0) -> None:
        """Gaussian weights with std `scale · threshold / sqrt(fan_in)`, drawn from `generator`."""
        with torch.no_grad():
            for p in self.weights.values():
                std = scale * self.profile.neuron.threshold / math.sqrt(p.shape[0])
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
        out, _, _ = _simulate(self._dyn, self.spec, self.profile, self.surrogate, x, w, forced)
        return out

    def hardware_weights(
        self, generator: torch.Generator | None = None, noise: bool = True
    ) -> dict[str, Tensor]:
        """The trainable weights as the chip would hold them, for hardware-aware training.

        Quantized by the profile's quantizer with a straight-through estimator
        (`w + (q(w) - w).detach()`); with `noise`, training-time programming then read noise
        (gaussian models as torch noise, pcm models as the device functions' perturbation added as a
        constant). Drift and stuck-at faults are deployment effects and are not applied here.
        Draws come from `generator`, or the twin's own generator seeded from `seed`.
        """
        gen = self._generator if generator is None else generator
        return {name: self._hardware_weight(w, gen, noise) for name, w in self.weights.items()}

    def _hardware_weight(self, w: Tensor, gen: torch.Generator, noise: bool) -> Tensor:
        q_np = quantize(w.detach().cpu().numpy().astype(np.float64), self.profile.weights, _numpy_rng(gen))
        out = _straight_through(w, q_np)
        if noise:
            prog, read = self.profile.noise.programming, self.profile.noise.read
            t_read_s = self.profile.noise.drift.t0_s
            scale = layer_scale(q_np, self.profile.weights)  # fixed at write, as in DeviceModel
            out = _train_noise(
                out, prog.model, prog.sigma, gen, lambda a, rng: programming_noise(a, self.profile, rng)
            )
            out = _train_noise(
                out,
                read.model,
                read.sigma,
                gen,
                lambda a, rng: read_noise(a, self.profile, rng, t_read_s, scale),
            )
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
        expected = {"hidden": self.spec.n_hidden}
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

    # ------------------------------------------------------------------ Chip role
    def _check_chip(self) -> None:
        """The Chip role refuses networks the chip cannot host (DesignRuleError) and use after close."""
        if self._chip_state == "closed":
            raise ChipError("TorchTwin: expected an open chip, got one that was closed")
        if self._chip_state == "new":
            check_network(self.profile, self.spec)
            self._chip_state = "open"

    def write_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Program the chip role's weights through the DeviceModel (ChipError leaves them unchanged)."""
        self._check_chip()
        self.device_model.write(weights)

    def read_weights(self) -> dict[str, np.ndarray]:
        """Effective weights on the chip role (no read noise)."""
        return self.device_model.read()

    def run(self, inputs: np.ndarray, record_v: bool = True) -> Recording:
        """Run `[B, T, n_in]` 0/1 inputs on the chip role: mismatch, device weights, caps; float64."""
        self._check_chip()
        start = time.perf_counter()
        x = torch.from_numpy(validate_inputs(inputs, self.spec)).to(torch.float64)
        w = {k: torch.tensor(v, dtype=torch.float64) for k, v in self.device_model.for_run().items()}
        with torch.no_grad():
            out, dropped_h, dropped_in = _simulate(
                self._chip_dyn, self.spec, self.profile, self.surrogate, x, w, None
            )
        v_dtype = np.int64 if self._chip_dyn.fixed else np.float32
        spikes = {k: z.numpy().astype(np.uint8) for k, z in out.spikes.items()}
        v = {k: _to_numpy(m, v_dtype) for k, m in out.v.items()} if record_v else {}
        meta = {
            "dropped_spikes": dropped_h + dropped_in,
            "dropped_hidden_spikes": dropped_h,
            "dropped_input_spikes": dropped_in,
            "weights_generation": self.device_model.generation,
            "wall_time_s": time.perf_counter() - start,
        }
        return Recording(spikes=spikes, v=v, meta=meta)

    def advance_time(self, seconds: float) -> None:
        """Let the chip role's clock run (drift)."""
        self.device_model.advance_time(seconds)

    def close(self) -> None:
        """End the Chip role (later `run` / `write_weights` raise ChipError); the learner role stays."""
        self._chip_state = "closed"


def _to_numpy(v: Tensor, dtype: type) -> np.ndarray:
    a = v.numpy()
    return np.rint(a).astype(np.int64) if dtype is np.int64 else a.astype(dtype)


def _straight_through(w: Tensor, value: np.ndarray) -> Tensor:
    """Forward `value`, gradient of identity w.r.t. `w`."""
    return w + (torch.as_tensor(value, dtype=w.dtype) - w).detach()


def _numpy_rng(gen: torch.Generator) -> np.random.Generator:
    """A numpy Generator seeded by one draw from a torch Generator."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen).item()))


def _train_noise(w: Tensor, model: str, sigma: float, gen: torch.Generator, device_fn) -> Tensor:
    """One training-time noise step: gaussian models in torch, other models via the device function."""
    if model == "none":
        return w
    if model == "gaussian_absolute":
        return w + sigma * torch.randn(w.shape, generator=gen, dtype=w.dtype)
    if model == "gaussian_relative":
        return w * (1.0 + sigma * torch.randn(w.shape, generator=gen, dtype=w.dtype))
    base = w.detach().cpu().numpy().astype(np.float64)
    delta = device_fn(base, _numpy_rng(gen)) - base
    return w + torch.as_tensor(delta, dtype=w.dtype)

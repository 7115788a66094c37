"""A differentiable unroll of docs/dynamics.md whose backward pass can be cut and rerouted.

The truncated and feedback-replacing estimators (tbptt, e-prop, RFLO, SnAp-1, feedback alignment)
and node perturbation need control over the backward pass that the twin's forward does not offer.
`unroll` recomputes the twin's dynamics step by step with the twin's constants and surrogate:

- `values` given (replay): forward VALUES come from a recording (hidden spikes, and the readout's
  membrane and spikes); gradients flow through the surrogate dynamics, exactly as in
  `TorchTwin(replay=...)`: state (reset, refractoriness, adaptation, recurrence, readout input)
  follows the recorded spikes, and the recorded readout membrane replaces the output values.
- `values` None: the forward values are the dynamics themselves (spike caps included).

Float arithmetic runs in the weights' dtype; fixed arithmetic in float64 holding integers, with the
twin's straight-through gradients (trunc passes the gradient, saturation none outside the range).

`Credit` says how gradients flow backward:
- `recurrent`: "full" (BPTT), "none" (e-prop/RFLO: stop-gradient on z_{t−1} fed back through
  W_rec — the neuron's own temporal dependence, i.e. its eligibility trace, is kept), or "diag"
  (SnAp-1: only the self-connections diag(W_rec) carry gradient through z_{t−1}).
- `feedback`: a fixed `[H, O]` matrix B sending the readout error to the hidden spikes instead of
  W_out (dL/dz = δ_o Bᵀ); W_out itself still gets its exact gradient.
- `truncation` k: all state is detached every k steps (truncated BPTT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from chiploop.emulator.chip import Recording
from chiploop.errors import TrainingError

if TYPE_CHECKING:
    from chiploop.emulator.device_model import NeuronConstants
    from chiploop.emulator.twin import TorchTwin


@dataclass(frozen=True)
class Credit:
    """How the backward pass of `unroll` is cut (see module doc)."""

    recurrent: Literal["full", "diag", "none"] = "full"
    feedback: Tensor | None = None
    truncation: int | None = None

    def __post_init__(self) -> None:
        if self.recurrent not in ("full", "diag", "none"):
            raise TrainingError(f"Credit.recurrent must be 'full', 'diag' or 'none', got {self.recurrent!r}")
        if self.truncation is not None and (not isinstance(self.truncation, int) or self.truncation < 1):
            raise TrainingError(f"truncation must be a positive int (steps), got {self.truncation!r}")


class _Arithmetic:
    """Decay, gain and saturation of docs/dynamics.md; fixed arithmetic with straight-through trunc."""

    def __init__(self, c: NeuronConstants) -> None:
        self.fixed, self.shift = c.arithmetic == "fixed", c.decay == "shift"
        self.decay_bits = c.decay_bits
        self.lo, self.hi = -(2.0 ** (c.state_bits - 1)), 2.0 ** (c.state_bits - 1) - 1

    def factor(self, values: np.ndarray) -> np.ndarray:
        """Multiply form of a decay constant: alpha (float), m / 2^q (multiplier), 2^−s (shift)."""
        a = np.array(values, dtype=np.float64)
        if not self.fixed:
            return a
        return np.ldexp(1.0, -a.astype(np.int64)) if self.shift else np.ldexp(a, -self.decay_bits)

    @staticmethod
    def trunc(x: Tensor) -> Tensor:
        return x + (torch.trunc(x) - x).detach()

    def decay(self, x: Tensor, factor: Tensor) -> Tensor:
        if not self.fixed:
            return x * factor
        return x - self.trunc(x * factor) if self.shift else self.trunc(x * factor)

    def gain(self, s: Tensor, gain: Tensor) -> Tensor:
        return self.trunc(gain * s) if self.fixed else gain * s

    def sat(self, x: Tensor) -> Tensor:
        return x.clamp(self.lo, self.hi) if self.fixed else x


def _recurrent_drive(z_prev: Tensor, w_rec: Tensor, mode: str) -> Tensor:
    if mode == "full":
        return z_prev @ w_rec
    if mode == "none":
        return z_prev.detach() @ w_rec
    eye = torch.eye(w_rec.shape[0], dtype=w_rec.dtype, device=w_rec.device)
    return z_prev.detach() @ (w_rec * (1 - eye)) + z_prev @ (w_rec * eye)


def _readout_drive(z_prev: Tensor, w_out: Tensor, feedback: Tensor | None) -> Tensor:
    if feedback is None:
        return z_prev @ w_out
    fb = feedback.detach().to(w_out.dtype)
    return z_prev @ fb + z_prev.detach() @ (w_out - fb)


def cap_spikes(z: Tensor, cap: int | None) -> Tensor:
    """Keep the first `cap` events per sample and step in index order (value mask, gradient kept)."""
    if cap is None:
        return z
    keep = (torch.cumsum(z.detach(), dim=-1) <= cap).to(z.dtype)
    return z * keep


def _replayed(twin_value: Tensor, recorded: Tensor | None) -> Tensor:
    return twin_value if recorded is None else twin_value + (recorded - twin_value).detach()


def unroll(
    model: TorchTwin,
    inputs: Tensor,
    weights: dict[str, Tensor],
    values: Recording | None = None,
    credit: Credit = Credit(),
    node_noise: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Readout membrane `[B, T, O]` and hidden spikes `[B, T, H]` (see module doc).

    `node_noise`: optional currents added to the synaptic input of the hidden ("hidden" `[B, T, H]`)
    and readout ("out" `[B, T, O]`) neurons, before the gain.
    """
    c: NeuronConstants = model.constants
    ar = _Arithmetic(c)
    dtype = torch.float64 if ar.fixed else weights["in_hidden"].dtype

    def tensor(a: np.ndarray) -> Tensor:
        return torch.tensor(np.array(a, dtype=np.float64), dtype=dtype)

    alpha, kappa, rho = (tensor(ar.factor(a)) for a in (c.mem_h, c.syn_h, c.ada_h))
    alpha_o, kappa_o = tensor(ar.factor(c.mem_o)), tensor(ar.factor(c.syn_o))
    theta, gain, beta = tensor(c.threshold_h), tensor(c.gain_h), tensor(c.beta_h)
    theta_o = tensor(c.threshold_o)
    spiking_out = model.spec.readout == "spiking"
    subtract = c.reset == "subtract"
    cap = model.profile.limits.max_spikes_per_step
    rec = _recorded(values, dtype)

    n_b, n_t, _ = inputs.shape
    w = {k: v.to(dtype) for k, v in weights.items()}
    w_in, w_rec, w_out = w["in_hidden"], w.get("hidden_hidden"), w["hidden_out"]
    n_h, n_o = w_in.shape[1], w_out.shape[1]
    drive = torch.zeros(n_b, n_t, n_h, dtype=dtype)
    x = cap_spikes(inputs.to(dtype), model.profile.limits.max_input_spikes_per_step)
    drive[:, 1:] = x[:, :-1] @ w_in
    zeros_h, zeros_o = torch.zeros(n_b, n_h, dtype=dtype), torch.zeros(n_b, n_o, dtype=dtype)
    i_h, v_h, b_h, r_h, z_prev = zeros_h, zeros_h, zeros_h, zeros_h, zeros_h
    i_o, v_o, r_o = zeros_o, zeros_o, zeros_o
    outs, spikes = [], []
    for t in range(n_t):
        if credit.truncation and t and t % credit.truncation == 0:
            i_h, v_h, b_h, z_prev, i_o, v_o = (s.detach() for s in (i_h, v_h, b_h, z_prev, i_o, v_o))
        s_h = drive[:, t]
        if w_rec is not None:
            s_h = s_h + _recurrent_drive(z_prev, w_rec, credit.recurrent)
        s_o = _readout_drive(z_prev, w_out, credit.feedback)
        if node_noise is not None:
            s_h, s_o = s_h + node_noise["hidden"][:, t], s_o + node_noise["out"][:, t]
        # hidden layer
        s_h = ar.gain(s_h, gain)
        i_h = ar.sat(ar.decay(i_h, kappa) + s_h) if c.syn_enabled else s_h
        ref = r_h > 0
        v_h = torch.where(ref, v_h, ar.sat(ar.decay(v_h, alpha) + i_h))
        thr = theta + b_h
        fired = model.surrogate((v_h - thr) / theta) * (~ref).to(dtype)
        fired = _replayed(fired, rec["hidden"][:, t] if rec["hidden"] is not None else None)
        v_h = v_h - fired * thr if subtract else v_h * (1 - fired)
        r_h = torch.where(fired.detach() > 0, float(c.refractory_steps), (r_h - 1).clamp(min=0))
        b_h = ar.sat(ar.decay(b_h, rho) + beta * fired)
        z = fired if rec["hidden"] is not None else cap_spikes(fired, cap)
        # readout layer
        i_o = ar.sat(ar.decay(i_o, kappa_o) + s_o) if c.syn_enabled else s_o
        v_new = ar.sat(ar.decay(v_o, alpha_o) + i_o)
        if spiking_out:
            ref_o = r_o > 0
            v_o = torch.where(ref_o, v_o, v_new)
            z_o = model.surrogate((v_o - theta_o) / theta_o) * (~ref_o).to(dtype)
            z_o = _replayed(z_o, rec["out_spikes"][:, t] if rec["out_spikes"] is not None else None)
            v_o = v_o - z_o * theta_o if subtract else v_o * (1 - z_o)
            r_o = torch.where(z_o.detach() > 0, float(c.refractory_steps), (r_o - 1).clamp(min=0))
        else:
            v_o = v_new
        outs.append(_replayed(v_o, rec["out"][:, t] if rec["out"] is not None else None))
        spikes.append(z)
        z_prev = z
    return torch.stack(outs, dim=1), torch.stack(spikes, dim=1)


def _recorded(values: Recording | None, dtype: torch.dtype) -> dict[str, Tensor | None]:
    if values is None:
        return {"hidden": None, "out": None, "out_spikes": None}

    def get(d: dict, key: str) -> Tensor | None:
        return torch.tensor(np.array(d[key]), dtype=dtype) if key in d else None

    rec = {
        "hidden": get(values.spikes, "hidden"),
        "out": get(values.v, "out"),
        "out_spikes": get(values.spikes, "out"),
    }
    if rec["hidden"] is None or rec["out"] is None:
        raise TrainingError(
            "replay needs recorded spikes['hidden'] and v['out'] (run the chip with record_v=True)"
        )
    return rec

"""The chip's dynamics, written once in Python: one pure torch step under a profile's `Rules`.

`step(drive, state, params, rules) -> (spikes, state)` is one layer's update of docs/dynamics.md
(Norse style: state in, state out, nothing hidden). `simulate` loops it over a network and time and
is what every Python user of the dynamics runs: TorchTwin (the learner), TwinChip, the gradient
estimators (through `Credit`, which only reroutes gradients) and the board simulator. The C
definition (`chiploop/chip/csrc/net.c`: the firmware's, compiled into the Brian2 emulator too)
runs the same rules; the conformance suite pins the two to each other bit for bit under fixed
arithmetic, and the vendor tests pin both to XyloSim and to Lava's bit-accurate Loihi models.

Fixed arithmetic runs in float64 holding integers (exact below 2^53); its gradients are
straight-through: rounding passes the gradient unchanged, saturation passes none outside the range,
a wrap passes it unchanged, and a per-addition saturation gets the gradient of the plain sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from chiploop.chip.rules import Rules

if TYPE_CHECKING:
    from chiploop.chip.device_model import NeuronConstants
    from chiploop.chip.network import NetworkSpec
    from chiploop.chip.surrogates import Surrogate
    from chiploop.chip_profiles.model import ChipProfile


# ---------------------------------------------------------------- per-layer parameters
@dataclass(frozen=True)
class LayerParams:
    """One layer's per-neuron constants as tensors (decays in multiply form: alpha, m/2^q or 2^-s).

    syn None: no synaptic filter, the current is the step's input; syn2 None: no second current;
    gain None: G(x) = x; ada/beta None: not adaptive; bias None: no bias. theta is in state units.
    rate: leaky tanh units (`neuron.model: rate`, float only): h <- mem·h + (1 − mem)·tanh(I + bias),
    and the rate h is the layer's output where spikes would be.
    """

    mem: Tensor
    theta: Tensor
    syn: Tensor | None = None
    syn2: Tensor | None = None
    gain: Tensor | None = None
    bias: Tensor | None = None
    ada: Tensor | None = None
    beta: Tensor | None = None
    spiking: bool = True
    max_spike_count: int = 1
    rate: bool = False

    @cached_property
    def inv_theta(self) -> Tensor:
        """1/theta: the surrogate sees `(v − A) · inv_theta`, the distance in thresholds."""
        return self.theta.reciprocal()


@dataclass(frozen=True)
class NetworkParams:
    """The whole network's rules and layer constants, ready for `simulate`: the hidden layers
    (input side first, named "hidden", "hidden2", ...) and the readout."""

    rules: Rules
    layers: tuple[LayerParams, ...]
    out: LayerParams

    @property
    def names(self) -> tuple[str, ...]:
        """The hidden layers' names, as in `NetworkSpec.layer_names`."""
        return tuple("hidden" if k == 0 else f"hidden{k + 1}" for k in range(len(self.layers)))


def network_params(
    profile: ChipProfile, c: NeuronConstants, spec: NetworkSpec, dtype: torch.dtype
) -> NetworkParams:
    """Tensors of the neuron constants `c` of `spec`'s neurons under `profile`'s rules (fixed
    arithmetic: float64); the hidden constants are split layer by layer."""
    rules = Rules.of(profile)
    dtype = torch.float64 if rules.fixed else dtype

    def tensor(a: np.ndarray) -> Tensor:
        return torch.tensor(np.asarray(a, dtype=np.float64), dtype=dtype)

    def factor(values: np.ndarray) -> Tensor:
        a = np.asarray(values, dtype=np.float64)
        if rules.fixed:  # multiplier m -> m / 2^q; shift s -> 2^-s; both exact in float64
            a = np.ldexp(1.0, -a.astype(np.int64)) if rules.decay == "shift" else np.ldexp(a, -c.decay_bits)
        return tensor(a)

    def nonzero(a: np.ndarray) -> Tensor | None:
        return tensor(a) if np.any(np.asarray(a) != 0) else None

    layers = []
    for s in spec.hidden_slices():
        beta = c.beta_h[s]
        adaptive = bool(np.any(beta != 0))
        gain = c.gain_h[s]
        layers.append(
            LayerParams(
                mem=factor(c.mem_h[s]),
                theta=tensor(c.threshold_h[s]),
                syn=factor(c.syn_h[s]) if c.syn_enabled else None,
                syn2=None if c.syn2_h is None else factor(c.syn2_h[s]),
                gain=None if np.all(gain == 1.0) else tensor(gain),
                bias=nonzero(c.bias_h[s]),
                ada=factor(c.ada_h[s]) if adaptive else None,
                beta=tensor(beta) if adaptive else None,
                spiking=True,
                max_spike_count=rules.max_spike_count,
                rate=profile.neuron.model == "rate",
            )
        )
    out = LayerParams(
        mem=factor(c.mem_o),
        theta=tensor(c.threshold_o),
        syn=factor(c.syn_o) if c.syn_enabled else None,
        bias=nonzero(c.bias_o),
        spiking=spec.readout == "spiking",
        max_spike_count=1,
    )
    return NetworkParams(rules, tuple(layers), out)


# ---------------------------------------------------------------- arithmetic
def _round(x: Tensor, how: Literal["trunc", "floor"]) -> Tensor:
    """Round toward zero or down; straight-through gradient."""
    r = torch.trunc(x) if how == "trunc" else torch.floor(x)
    return x + (r - x).detach() if x.requires_grad else r


def decay(x: Tensor, factor: Tensor, rules: Rules) -> Tensor:
    """D(x): alpha·x (float); multiplier: round(x·m/2^q); shift: x − round(x/2^s) (docs/dynamics.md)."""
    if not rules.fixed:
        return x * factor
    how: Literal["trunc", "floor"] = "trunc" if rules.decay_rounding == "truncate" else "floor"
    if rules.decay == "multiplier":
        return _round(x * factor, how)
    step = _round(x * factor, how)
    if rules.decay_rounding == "floor_min_step":  # a non-zero state moves by at least 1 (Xylo)
        step = step + (torch.where(step.detach() == 0, torch.sign(x.detach()), step.detach()) - step.detach())
    return x - step


def _saturate(x: Tensor, lo: float, hi: float) -> Tensor:
    return x.clamp(lo, hi)


def _wrap(x: Tensor, rules: Rules) -> Tensor:
    """Lava's 24-bit wrap of u: once by 2^state_bits into (−2^(b−1), 2^(b−1)] (lava/proc/lif/models.py)."""
    span, half = 2.0**rules.state_bits, 2.0 ** (rules.state_bits - 1)
    d = x.detach()
    if float(d.abs().max()) < half:  # nothing to wrap: the common case, two cheap reductions
        return x
    return x - span * (d > half).to(x.dtype) + span * (d <= -half).to(x.dtype)


def _bound_current(x: Tensor, rules: Rules) -> Tensor:
    if not rules.fixed:
        return x
    return _wrap(x, rules) if rules.wrap_current else _saturate(x, rules.lo, rules.hi)


def _bound_membrane(x: Tensor, rules: Rules) -> Tensor:
    return _saturate(x, rules.v_lo, rules.hi) if rules.fixed else x


def saturating_sum(
    start: Tensor, terms: list[tuple[Tensor, Tensor]], scale: float, lo: float, hi: float
) -> Tensor:
    """`start` plus every event of `terms`, saturating to [lo, hi] after each single addition (values only).

    terms: (spike counts `[B, pre]`, weights `[pre, N]`) in delivery order; a neuron's count of k
    adds k·w at once (equal to k saturating additions of w). Exact, and cheap where nothing
    saturates: entries whose every partial sum stays in range take the plain sum (first bounded by
    all positive / all negative additions, then checked step by step); the others walk through
    their additions with a clamp after each (`_clamped_walk`).
    """
    start = start.detach()
    counts = torch.cat([z.detach() for z, _ in terms], dim=1)  # [B, K]
    weights = torch.cat([w.detach() for _, w in terms], dim=0) * scale  # [K, N]
    plain = start + counts @ weights
    up = start + counts @ weights.clamp(min=0)
    down = start + counts @ weights.clamp(max=0)
    b, n = ((up > hi) | (down < lo)).nonzero(as_tuple=True)
    if not b.numel():
        return plain
    add = counts[b] * weights[:, n].T  # [M, K] each event's addition, in delivery order
    partial = start[b, n, None] + add.cumsum(1)
    leaves = ((partial > hi) | (partial < lo)).any(1)
    b, n, add = b[leaves], n[leaves], add[leaves]
    if not b.numel():
        return plain
    exact = plain.clone()
    exact[b, n] = _clamped_walk(start[b, n], add, lo, hi)
    return exact


def _clamped_walk(start: Tensor, add: Tensor, lo: float, hi: float) -> Tensor:
    """`x = clamp(x + add[:, k], lo, hi)` for k in order, from `start` `[M]` (`add`: `[M, K]`).

    Few walks: compose the clamp-adds in a log-depth reduction (few, large kernels); many walks:
    step through the K additions (fewer operations in all).
    """
    m, k = add.shape
    if m > 4096:
        x = start
        for column in add.unbind(1):
            x = (x + column).clamp_(lo, hi)
        return x
    width = 1 << max(0, (k - 1).bit_length())
    add = torch.nn.functional.pad(add, (0, width - k))
    low, high = torch.full_like(add, lo), torch.full_like(add, hi)
    while add.shape[1] > 1:  # f2 ∘ f1 of neighbours: (a1 + a2, clamp(l1 + a2), clamp(h1 + a2))
        a1, a2 = add[:, 0::2], add[:, 1::2]
        l2, h2 = low[:, 1::2], high[:, 1::2]
        low = torch.minimum(torch.maximum(low[:, 0::2] + a2, l2), h2)
        high = torch.minimum(torch.maximum(high[:, 0::2] + a2, l2), h2)
        add = a1 + a2
    return torch.minimum(torch.maximum(start + add[:, 0], low[:, 0]), high[:, 0])


# ---------------------------------------------------------------- one layer, one step
@dataclass
class Drive:
    """A layer's synaptic input for one step, in model units, before gain and fractional shift.

    s, s2: summed weighted spike counts into the first and second synaptic current (`[B, N]`,
    carrying the gradient). terms, terms2: the same as (counts `[B, pre]`, weights `[pre, N]`) in
    delivery order, needed only under per-addition saturation (their sum must equal s, s2).
    """

    s: Tensor
    s2: Tensor | None = None
    terms: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    terms2: list[tuple[Tensor, Tensor]] = field(default_factory=list)


@dataclass
class LayerState:
    """A layer's state: currents i (and i2), membrane v, adaptation b, refractory steps left r."""

    i: Tensor
    v: Tensor
    i2: Tensor | None = None
    b: Tensor | None = None
    r: Tensor | None = None

    @classmethod
    def rest(cls, batch: int, p: LayerParams, rules: Rules, dtype: torch.dtype) -> LayerState:
        zeros = torch.zeros(batch, p.theta.shape[0], dtype=dtype)
        return cls(
            i=zeros,
            v=zeros,
            i2=zeros if p.syn2 is not None else None,
            b=zeros if p.ada is not None else None,
            r=zeros if rules.refractory_steps and p.spiking else None,
        )

    def detached(self) -> LayerState:
        return LayerState(
            *(None if t is None else t.detach() for t in (self.i, self.v, self.i2, self.b, self.r))
        )


def _current(i: Tensor, s: Tensor, terms: list, factor: Tensor | None, rules: Rules) -> Tensor:
    """One synaptic current's update: I <- bound(D(I) + s), or I <- D(bound(I + s)) (add_then_decay).

    factor None (no synaptic filter): I <- bound(s)."""
    if factor is None:
        start = torch.zeros_like(s)
    else:
        start = i if rules.add_then_decay else decay(i, factor, rules)
    total = start + s
    if rules.per_addition:
        exact = saturating_sum(start, terms, 2.0**rules.fractional_bits, rules.lo, rules.hi)
        total = total + (exact - total).detach()
    else:
        total = _bound_current(total, rules)
    return decay(total, factor, rules) if rules.add_then_decay and factor is not None else total


def _input(s: Tensor | None, p: LayerParams, rules: Rules) -> Tensor | None:
    """G(s) then the fractional shift: trunc(gain·s)·2^f (fixed), gain·s (float)."""
    if s is None:
        return None
    if p.gain is not None:
        s = _round(p.gain * s, "trunc") if rules.fixed else p.gain * s
    return s * 2.0**rules.fractional_bits if rules.fractional_bits else s


def _fires(v: Tensor, a: Tensor, rules: Rules) -> Tensor:
    """`v > A` or `v >= A` as 0/1 in v's dtype (comparing into a float `out` beats a bool cast)."""
    op = torch.gt if rules.strict_threshold else torch.ge
    return op(v, a, out=torch.empty_like(v))


def _count(v: Tensor, a: Tensor, p: LayerParams, rules: Rules) -> Tensor:
    """Spikes this step: 0/1, or up to `max_spike_count` (each subtracting A once)."""
    if p.max_spike_count == 1:
        return _fires(v, a, rules)
    q = v / a
    n = torch.ceil(q) - 1 if rules.strict_threshold else torch.floor(q)
    return n.clamp_(0, p.max_spike_count)


def step(
    drive: Drive,
    state: LayerState,
    p: LayerParams,
    rules: Rules,
    surrogate: Surrogate | None = None,
    forced: Tensor | None = None,
) -> tuple[Tensor, LayerState]:
    """One step of one layer (docs/dynamics.md): currents, membrane, threshold, reset, refractoriness,
    adaptation. Returns (spike counts `[B, N]`, new state); a leaky layer returns empty spikes.

    surrogate: spikes carry its gradient (None: no gradient, plain comparisons). forced: spike
    values replacing the layer's own (replay of a chip's recording), gradients kept.
    """
    i = _current(state.i, _input(drive.s, p, rules), drive.terms, p.syn, rules)
    i2 = None
    if p.syn2 is not None:
        s2 = _input(drive.s2, p, rules)
        i2 = _current(state.i2, s2 if s2 is not None else torch.zeros_like(i), drive.terms2, p.syn2, rules)
    current = i if i2 is None else i + i2
    v = state.v
    if p.rate:  # leaky tanh: differentiable, no threshold, no surrogate; the rate goes where spikes go
        pre = current + p.bias if p.bias is not None else current
        h = decay(v, p.mem, rules) + (1 - p.mem) * torch.tanh(pre)
        if forced is not None:
            h = h + (forced - h).detach()
        return h, LayerState(i=i, i2=i2, v=h, b=state.b, r=state.r)
    if rules.per_addition:  # Xylo: dv = sat(D(v) − v + I); dv = sat(dv + bias); v = sat(v + dv)
        leak = decay(v, p.mem, rules) - v  # a state-width register: -(-2^(b-1)) wraps to -2^(b-1)
        leak = leak - 2.0**rules.state_bits * (leak.detach() > rules.hi).to(leak.dtype)
        dv = _saturate(leak + current, rules.v_lo, rules.hi)
        if p.bias is not None:
            dv = _saturate(dv + p.bias, rules.v_lo, rules.hi)
        v_new = _bound_membrane(v + dv, rules)
    else:
        v_new = decay(v, p.mem, rules) + current
        v_new = _bound_membrane(v_new + p.bias if p.bias is not None else v_new, rules)
    new = LayerState(i=i, i2=i2, v=v_new, b=state.b, r=state.r)
    if not p.spiking:
        return v_new.new_zeros(0), new
    free = None
    if state.r is not None:  # 0/1 blends instead of torch.where: exact, and far faster on CPU
        held = state.r.clamp(max=1)
        free = 1 - held
        v_new = v * held + v_new * free
    a = p.theta + state.b if state.b is not None else p.theta
    count = _count(v_new.detach(), a.detach(), p, rules)
    z = count if surrogate is None else surrogate((v_new - a) * p.inv_theta)
    if surrogate is not None and (p.max_spike_count > 1 or rules.strict_threshold):
        z = z + (count - z).detach()  # value: the rule's count; gradient: the first threshold's
    if free is not None:
        z = z * free
    if forced is not None:
        z = z + (forced - z).detach()
    if rules.reset_zero:
        v_new = v_new * (1 - z)
    else:
        v_new = v_new - z * a
    if state.r is not None:
        left = (state.r - 1).clamp_(min=0)
        new.r = left + (z.detach() > 0).to(z.dtype) * (rules.refractory_steps - left)
    if state.b is not None:
        assert p.ada is not None and p.beta is not None
        b = decay(state.b, p.ada, rules) + p.beta * z
        new.b = _saturate(b, rules.lo, rules.hi) if rules.fixed else b
    new.v = v_new
    return z, new


# ---------------------------------------------------------------- a network over time
@dataclass(frozen=True)
class Credit:
    """How gradients flow backward through `simulate` (forward values never change).

    recurrent: "full" (BPTT); "none" (e-prop/RFLO: stop-gradient on z_{t−1} fed back through W_rec,
    each neuron's own temporal dependence, its eligibility trace, is kept); "diag" (SnAp-1: only
    diag(W_rec) carries gradient through z_{t−1}); the mode applies to every hidden layer.
    feedback: fixed matrices B sending the gradient backward in place of feed-forward weights (which
    keep their own exact gradient): a `[H_last, O]` tensor for the readout's weights, or a dict
    keyed by matrix name ("hidden_out", "hidden_hidden2", ...: feedback alignment across layers).
    direct: fixed `[H_k, O]` matrices by hidden layer name: that layer's spikes get the readout's
    error through B_k (zero forward value, one step later like the readout's input), and no gradient
    crosses from a hidden layer to the one below (direct feedback alignment; the last layer reaches
    the readout through its own weights or `feedback`, so its entry is not used).
    truncation k: all state is detached every k steps (truncated BPTT).
    """

    recurrent: Literal["full", "diag", "none"] = "full"
    feedback: Tensor | dict[str, Tensor] | None = None
    direct: dict[str, Tensor] | None = None
    truncation: int | None = None

    def __post_init__(self) -> None:
        from chiploop.errors import TrainingError

        if self.recurrent not in ("full", "diag", "none"):
            raise TrainingError(f"Credit.recurrent must be 'full', 'diag' or 'none', got {self.recurrent!r}")
        if self.truncation is not None and (not isinstance(self.truncation, int) or self.truncation < 1):
            raise TrainingError(f"truncation must be a positive int (steps), got {self.truncation!r}")


def cap_spikes(z: Tensor, cap: int | None) -> Tensor:
    """Keep per row `[.., N]` the first `cap` neurons that fired, in index order (gradient kept)."""
    if cap is None:
        return z
    fired = torch.gt(z.detach(), 0, out=torch.empty_like(z))
    return z * (cap + 1 - torch.cumsum(fired, dim=-1)).clamp_(0, 1)


@dataclass
class Trace:
    """A run of the network: per layer `[B, T, N]` tensors, the events the caps dropped per sample
    (`[B]`: hidden neurons not delivered, input spikes refused), the end state.

    spikes of each hidden layer ("hidden", "hidden2", ...: delivered counts) and "out" (spiking
    readout); v and currents of each layer (and "hidden_2", the second synaptic current) after the
    step; currents only if asked for.
    """

    spikes: dict[str, Tensor]
    v: dict[str, Tensor]
    currents: dict[str, Tensor]
    dropped_hidden: Tensor
    dropped_input: Tensor
    final: NetworkState


class _Steps:
    """Per-step `[B, N]` tensors gathered into `[T, B, N]` (a list stacked under autograd, else a buffer)."""

    def __init__(self, steps: int, like: Tensor, grad: bool) -> None:
        self.buf = None if grad else like.new_empty((steps, *like.shape))
        self.items: list[Tensor] = []

    def put(self, t: int, x: Tensor) -> None:
        if self.buf is None:
            self.items.append(x)
        else:
            self.buf[t] = x

    def result(self) -> Tensor:
        return torch.stack(self.items) if self.buf is None else self.buf


def _matmul(spikes: Tensor, w: Tensor) -> Tensor:
    """`[D0, D1, pre] @ [pre, post]` as one 2-D matmul (on a contiguous copy if need be)."""
    d0, d1, pre = spikes.shape
    return (spikes.reshape(d0 * d1, pre) @ w).reshape(d0, d1, w.shape[1])


def _arriving(sent: list[Tensor], last: Tensor, delay: int) -> list[Tensor]:
    """Per-step values sent at each step, as they arrive `delay` (0 or 1) steps later (`last`: what
    the step before the run sent). A list of views: nothing is copied."""
    return [last, *sent[:-1]] if delay else sent


def arriving_inputs(x: Tensor, rules: Rules, last: Tensor | None = None) -> Tensor:
    """The input spikes `[B, T, n_in]` that reach the hidden currents at each step: capped, and
    delayed by `input_delay` (`last [B, n_in]`: the capped input of the step before, default none)."""
    capped = cap_spikes(x, rules.input_cap)
    if not rules.input_delay:
        return capped
    head = capped.new_zeros(capped.shape[0], 1, capped.shape[2]) if last is None else last[:, None]
    return torch.cat([head.to(capped.dtype), capped[:, :-1]], dim=1)


def _recurrent(z_prev: Tensor, w: Tensor, mode: str) -> Tensor:
    if mode == "full":
        return z_prev @ w
    if mode == "none":
        return z_prev.detach() @ w
    eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
    return z_prev.detach() @ (w * (1 - eye)) + z_prev @ (w * eye)


@dataclass
class Feed:
    """Spikes arriving at a layer from one source, per step: their counts `[B, pre]`, the weights
    onto the first (w) and second (w2, or None) synaptic current, and the drive of the first current
    `[B, N]` computed with whatever gradient path the caller wants (its value is `spikes @ w`)."""

    spikes: list[Tensor]
    w: Tensor
    w2: Tensor | None
    drive: list[Tensor]


def _run_layer(
    p: LayerParams,
    rules: Rules,
    surrogate: Surrogate | None,
    feed: Feed,
    recurrent: tuple[Tensor, Tensor | None] | None,
    credit: Credit,
    forced: Tensor | None,
    noise: Tensor | None,
    record_currents: bool,
    state: LayerState,
    z_prev: Tensor,
    cap: int | None = None,
) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor, LayerState]:
    """One layer over all steps from `state` (its spikes of the step before: `z_prev`), given the
    spikes arriving from below (`feed`) and its recurrent weights (W, W2); `cap`: neurons that may
    deliver spikes per step. forced, noise: `[T, B, N]`.
    Returns time-major (delivered spikes, v, currents ("" and "_2"), dropped neurons per sample,
    final state)."""
    steps = len(feed.drive)
    grad = surrogate is not None
    zs, vs = _Steps(steps, state.v, grad), _Steps(steps, state.v, grad)
    cur = {"": _Steps(steps, state.v, grad)} if record_currents else {}
    if record_currents and p.syn2 is not None:
        cur["_2"] = _Steps(steps, state.v, grad)
    dropped = state.v.new_zeros(state.v.shape[0])
    w_rec, w_rec2 = recurrent if recurrent is not None else (None, None)
    for t in range(steps):
        if credit.truncation and t and t % credit.truncation == 0:
            state, z_prev = state.detached(), z_prev.detach()
        s = feed.drive[t]
        if w_rec is not None:
            s = torch.addmm(s, z_prev, w_rec) if credit.recurrent == "full" else s + _recurrent(
                z_prev, w_rec, credit.recurrent)  # fmt: skip
        s2 = feed.spikes[t] @ feed.w2 if feed.w2 is not None else None
        if w_rec2 is not None:
            s2 = _recurrent(z_prev, w_rec2, credit.recurrent) + (0 if s2 is None else s2)
        if noise is not None:
            s = s + noise[t]
        d = Drive(s=s, s2=s2)
        if rules.per_addition:
            d.terms = [(feed.spikes[t], feed.w)]
            d.terms2 = [(feed.spikes[t], feed.w2)] if feed.w2 is not None else []
            if w_rec is not None:
                d.terms.append((z_prev, w_rec))
            if w_rec2 is not None:
                d.terms2.append((z_prev, w_rec2))
        z, state = step(d, state, p, rules, surrogate, None if forced is None else forced[t])
        if cap is not None and forced is None:
            delivered = cap_spikes(z, cap)
            dropped = dropped + (torch.gt(z.detach(), 0).sum(1) - torch.gt(delivered.detach(), 0).sum(1))
            z = delivered
        if p.spiking:
            zs.put(t, z)
        vs.put(t, state.v)
        if record_currents:
            cur[""].put(t, state.i)
            if "_2" in cur:
                cur["_2"].put(t, state.i2)
        z_prev = z
    z_all = zs.result() if p.spiking else state.v.new_zeros(0)
    return z_all, vs.result(), {k: c.result() for k, c in cur.items()}, dropped, state


@dataclass
class NetworkState:
    """Where a run left the network: every layer's state (hidden layers, readout), the capped input
    of the last step (it arrives next step when inputs are delayed) and the spikes each hidden layer
    delivered at the last step (they arrive at the next layer next step)."""

    hidden: tuple[LayerState, ...]
    out: LayerState
    x_last: Tensor
    z_last: tuple[Tensor, ...]

    @classmethod
    def rest(cls, net: NetworkParams, batch: int, n_in: int, dtype: torch.dtype) -> NetworkState:
        hidden = tuple(LayerState.rest(batch, p, net.rules, dtype) for p in net.layers)
        out = LayerState.rest(batch, net.out, net.rules, dtype)
        z_last = tuple(torch.zeros_like(h.v) for h in hidden)
        return cls(hidden, out, torch.zeros(batch, n_in, dtype=dtype), z_last)


def _feedback(credit: Credit, name: str, w: Tensor) -> Tensor | None:
    """The fixed matrix sending gradients backward through feed-forward matrix `name`, if any."""
    fb = credit.feedback
    if isinstance(fb, dict):
        fb = fb.get(name)
    elif fb is not None and not name.endswith("_out"):
        fb = None  # one matrix: the readout's
    return None if fb is None else fb.detach().to(w.dtype)


def simulate(
    net: NetworkParams,
    x: Tensor,
    w: dict[str, Tensor],
    surrogate: Surrogate | None = None,
    *,
    replay: dict[str, Tensor] | None = None,
    credit: Credit = Credit(),
    node_noise: dict[str, Tensor] | None = None,
    record_currents: bool = False,
    state: NetworkState | None = None,
) -> Trace:
    """The network of docs/dynamics.md on inputs `x [B, T, n_in]` with weights `w` (model units).

    w: keyed like `NetworkSpec.weight_shapes` ("in_hidden", "hidden_out", optionally
    "hidden_hidden", further layers' "hidden_hidden2", ..., and the second current's "in_hidden_2",
    "hidden_hidden_2"). surrogate None: values only. replay: recorded spikes of each hidden layer
    (and "out") replacing the layers' own, and "v_out" replacing the readout membrane, as values
    (gradients through the twin). node_noise: per layer name ("hidden", ..., "out") `[B, T, N]`
    currents added to the synaptic input before the gain (node perturbation). state: where to start
    (default: rest); `Trace.final` is where the run ends. Runs time-major inside.
    """
    rules, replay = net.rules, replay or {}
    start = state or NetworkState.rest(net, x.shape[0], x.shape[2], x.dtype)
    capped = cap_spikes(x, rules.input_cap)
    dropped_in = (x - capped).sum((1, 2))
    x_tm = capped.transpose(0, 1)
    tm = {k: r.transpose(0, 1) for k, r in replay.items()}
    noise = {k: n.transpose(0, 1) for k, n in (node_noise or {}).items()}
    spikes, vs, currents, ends = {}, {}, {}, []
    dropped_h = x.new_zeros(x.shape[0])
    pre, z_pre, last = "in", x_tm, start.x_last  # spikes sent by the layer below, and before the run
    shortcut = None  # direct feedback alignment: B_k paths from the hidden layers to the readout
    for k, (name, p) in enumerate(zip(net.names, net.layers, strict=True)):
        w_ff, delay = w[f"{pre}_{name}"], rules.input_delay if k == 0 else 1
        fb = _feedback(credit, f"{pre}_{name}", w_ff)
        below = z_pre.detach() if credit.direct is not None and k else z_pre
        feed = _feed(below, last, w_ff, fb, delay, w.get("in_hidden_2") if k == 0 else None)
        w_rec = w.get(f"{name}_{name}")
        recurrent = (w_rec, w.get("hidden_hidden_2") if k == 0 else None) if w_rec is not None else None
        z, v, i, dropped, end = _run_layer(
            p, rules, surrogate, feed, recurrent, credit, tm.get(name), noise.get(name),
            record_currents, start.hidden[k], start.z_last[k], rules.spike_cap,
        )  # fmt: skip
        spikes[name], vs[name], dropped_h, ends = z, v, dropped_h + dropped, [*ends, end]
        currents |= {f"{name}{key}": c for key, c in i.items()}
        if credit.direct is not None and k < len(net.layers) - 1:
            path = _matmul(z, credit.direct[name].detach().to(z.dtype))
            shortcut = (path - path.detach()) + (0 if shortcut is None else shortcut)
        pre, z_pre, last = name, z, start.z_last[k]
    w_out = w[f"{pre}_out"]
    out_feed = _feed(z_pre, last, w_out, _feedback(credit, f"{pre}_out", w_out), 1, None, shortcut)
    z_o, v_o, i_o, _, end_o = _run_layer(
        net.out, rules, surrogate, out_feed, None, credit, tm.get("out"), noise.get("out"),
        record_currents, start.out, z_pre.new_zeros(0),
    )  # fmt: skip
    if "v_out" in tm:
        v_o = v_o + (tm["v_out"] - v_o).detach()
    vs["out"] = v_o
    if net.out.spiking:
        spikes["out"] = z_o
    if "" in i_o:
        currents["out"] = i_o[""]
    final = NetworkState(tuple(ends), end_o, capped[:, -1], tuple(spikes[n][-1] for n in net.names))
    return Trace(
        {k: a.transpose(0, 1) for k, a in spikes.items()}, {k: a.transpose(0, 1) for k, a in vs.items()},
        {k: c.transpose(0, 1) for k, c in currents.items()}, dropped_h.detach(), dropped_in.detach(), final,
    )  # fmt: skip


def _feed(
    z: Tensor,
    last: Tensor,
    w: Tensor,
    feedback: Tensor | None,
    delay: int,
    w2: Tensor | None,
    shortcut: Tensor | None = None,
) -> Feed:
    """What reaches a layer from spikes `z [T, B, pre]` sent through `w` (`last`: sent the step
    before the run), `delay` steps later; `feedback`: a fixed matrix carrying the gradient to `z`
    instead of `w` (w keeps its own gradient); `shortcut`: `[T, B, N]` added to the drive (zero
    values carrying gradients elsewhere)."""
    if feedback is None:
        drive = _matmul(z.contiguous(), w)
    else:
        drive = _matmul(z, feedback) + _matmul(z.detach(), w - feedback)
    if shortcut is not None:
        drive = drive + shortcut
    arriving = _arriving(list(drive.unbind(0)), last @ w, delay)
    return Feed(_arriving(list(z.unbind(0)), last, delay), w, w2, arriving)

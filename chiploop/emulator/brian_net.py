"""The Brian2 network of a batched chip: one simulation, B block-diagonal copies of a NetworkSpec.

Everything that changes between runs lives in two TimedArrays, so a compiled project is reused:
`chiploop_params` (one row: per-neuron constants, shared weights, scalars; see `ParamLayout`; read
through `chiploop_p(k)`, a direct load) and `chiploop_raster` (row t: the input spikes of step t,
32 inputs packed per value). Weights are shared by the copies and looked up from the synapse's
pre/post index; connectivity is all-to-all inside each copy, generated in C++ from a formula, or a
fixed mask's pairs. Synapses have no delay: spikes of step t are summed into `s` during step t and
integrated by the next step's update — the one-step delay of docs/dynamics.md.

One update serves float and fixed arithmetic (flags in the params, no recompilation):
`D(x) = sh*x + dsg*tr(x*f)`, `tr(y) = fx*trunc(y) + nfx*y`, state clipped to [lo, hi] (the
synaptic current to [ilo, ihi]: unbounded without a synaptic filter, as in the twin).
Float: sh=0, dsg=1, fx=0 -> `f*x`. Fixed multiplier: sh=0, f=m/2^q -> `trunc(x*m/2^q)`.
Fixed shift: sh=1, dsg=-1, f=2^-s -> `x - trunc(x/2^s)`. Each term is exact in float64.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

PARAMS_NAME = "chiploop_params"
RASTER_NAME = "chiploop_raster"
BITS_PER_WORD = 32
SCALARS = ("fx", "nfx", "sh", "dsg", "lo", "hi", "ilo", "ihi", "refractory", "sub", "cap")


@dataclass(frozen=True)
class Shape:
    """What a compiled project is specialised for; everything else is a run-time parameter."""

    batch: int
    steps: int
    n_in: int
    n_hidden: int
    n_out: int
    recurrent: bool
    capped: bool
    record_v: bool
    connectivity: str = ""  # "": every pair of each copy connected; else `masks_key` of the masks

    @property
    def raster_words(self) -> int:
        """Values per raster row (32 input channels packed per value)."""
        return -(-self.batch * self.n_in // BITS_PER_WORD)


@dataclass(frozen=True)
class ParamLayout:
    """Offsets of each block in the flat `chiploop_params` row."""

    offsets: dict[str, int]
    size: int

    @classmethod
    def of(cls, shape: Shape) -> ParamLayout:
        h, o, n = shape.n_hidden, shape.n_out, shape.n_in
        blocks = [(name, h) for name in ("mem_h", "syn_h", "ada_h", "theta_h", "gain_h", "beta_h")]
        blocks += [(name, o) for name in ("mem_o", "syn_o", "theta_o")]
        blocks += [("w_in", n * h), ("w_rec", h * h if shape.recurrent else 0), ("w_out", h * o)]
        blocks += [(name, 1) for name in SCALARS]
        offsets, pos = {}, 0
        for name, size in blocks:
            offsets[name] = pos
            pos += size
        return cls(offsets, pos)


def masks_key(masks: dict[str, np.ndarray]) -> str:
    """Digest of connectivity masks (layer -> bool `[pre, post]`), part of a compiled project's Shape."""
    h = hashlib.sha256()
    for name in sorted(masks):
        m = np.asarray(masks[name], dtype=bool)
        h.update(f"{name}{m.shape}".encode() + np.packbits(m).tobytes())
    return h.hexdigest()[:16]


def _decay(x: str, f: str) -> str:
    """Abstract code of D(x) with the per-neuron factor expression `f` (see module docstring)."""
    y = f"({x}*{f})"
    return f"(sh*{x} + dsg*(fx*sign({y})*floor(abs({y})) + nfx*{y}))"


def _layer_update(syn_f: str, mem_f: str, gain: str | None) -> str:
    """Per-step update of one layer, before its threshold (`s`: input summed last step)."""
    g = "s" if gain is None else f"({gain}*s)"
    return "\n".join(
        [
            f"I = clip({_decay('I', syn_f)} + fx*sign({g})*floor(abs({g})) + nfx*{g}, ilo, ihi)",
            "s = 0",
            "refr = int(r > 0.5)",
            "nrefr = 1 - refr",
            f"v = refr*v + nrefr*clip({_decay('v', mem_f)} + I, lo, hi)",
            "r = clip(r - 1, 0, refractory)",
        ]
    )


def _runtime_gate(hidden, params, cap_offset: int, n_hidden: int):
    """Runtime mode's spike-cap gate (numpy would vectorise the C++ counter away): before the
    synapses of each step, `dlv` = 1 for the first `cap` spiking neurons of each sample."""
    from brian2 import NetworkOperation

    def gate() -> None:
        spikes = np.asarray(hidden.spikes)
        if spikes.size:
            sample = spikes // n_hidden
            rank = np.arange(spikes.size) - np.searchsorted(sample, sample)
            hidden.dlv_[spikes] = (rank < params.values[0, cap_offset]).astype(float)

    return NetworkOperation(gate, dt=hidden.clock.dt, when="synapses", order=-10, name="capper")


def build_network(shape: Shape, runtime: bool = False, masks: dict[str, np.ndarray] | None = None):
    """The Brian2 network for `shape` on the active device (`runtime`: Brian2's runtime mode).

    masks: connectivity per layer (bool `[pre, post]`, same in every copy); None = all-to-all.
    Returns a brian2.Network (Brian2 is imported here, so that a cache hit never imports it).
    """
    from brian2 import (
        Function,
        Network,
        NeuronGroup,
        SpikeMonitor,
        StateMonitor,
        Synapses,
        TimedArray,
        ms,
    )

    b, n, h, o = shape.batch, shape.n_in, shape.n_hidden, shape.n_out
    lay = ParamLayout.of(shape).offsets
    dt = 1 * ms  # every object gets it explicitly: the caller's defaultclock stays untouched
    params = TimedArray(np.zeros((1, ParamLayout.of(shape).size)), dt=1 * ms, name=PARAMS_NAME)
    raster = TimedArray(np.zeros((shape.steps, shape.raster_words)), dt=1 * ms, name=RASTER_NAME)
    bit = Function(
        lambda word, k: (np.asarray(word).astype(np.int64) >> np.asarray(k)) & 1,
        arg_units=[1, 1],
        return_unit=1,
        arg_types=["float", "integer"],
        return_type="integer",
    )
    bit.implementations.add_implementation(
        "cpp",
        "static inline int chiploop_bit(const double word, const int k)"
        "{ return (int)((((int64_t)word) >> k) & 1); }",
        name="chiploop_bit",
    )

    # Direct load from the params row: the TimedArray call would recompute its time index each time.
    param = Function(
        lambda k: params.values[0, np.asarray(k)], arg_units=[1], return_unit=1,
        arg_types=["integer"], return_type="float",
    )
    param.implementations.add_implementation(
        "cpp",
        f"static inline double chiploop_p(const int k) {{ return brian::{PARAMS_NAME}_values[k]; }}",
        name="chiploop_p", dependencies={PARAMS_NAME: params},
    )

    def p(block: str, index: str = "0") -> str:
        return f"chiploop_p({lay[block]} + {index})"

    scalars = "\n".join(f"{name} = {p(name)}" for name in SCALARS)
    ns = {PARAMS_NAME: params, RASTER_NAME: raster, "chiploop_bit": bit, "chiploop_p": param}
    inputs = NeuronGroup(
        b * n, "", threshold=f"chiploop_bit({RASTER_NAME}(t, i // 32), i % 32) == 1",
        reset="", namespace=ns, dt=dt, name="inputs",
    )
    state = "v : 1\nI : 1\ns : 1\nr : 1\nrefr : 1\n"
    hidden = NeuronGroup(
        b * h, state + "b : 1\nA : 1\ndlv : 1\n", threshold="v >= A and refr < 0.5",
        reset=f"{scalars}\nv = sub*(v - A)\nr = refractory\nb = clip(b + {p('beta_h', f'i % {h}')}, lo, hi)",
        namespace=ns, dt=dt, name="hidden",
    )
    k = f"i % {h}"
    hidden.run_regularly(
        f"{scalars}\n{_layer_update(p('syn_h', k), p('mem_h', k), p('gain_h', k))}\n"
        f"A = {p('theta_h', k)} + b\nb = {_decay('b', p('ada_h', k))}",
        when="groups", name="hidden_update",
    )
    out = NeuronGroup(
        b * o, state, threshold=f"v >= {p('theta_o', f'i % {o}')} and refr < 0.5",
        reset=f"{scalars}\nv = sub*(v - {p('theta_o', f'i % {o}')})\nr = refractory",
        namespace=ns, dt=dt, name="out",
    )
    k = f"i % {o}"
    out.run_regularly(
        f"{scalars}\n{_layer_update(p('syn_o', k), p('mem_o', k), None)}", when="groups", name="out_update",
    )
    objects = [inputs, hidden, out]

    delivered = "dlv_pre*" if shape.capped else ""
    if shape.capped and runtime:
        objects.append(_runtime_gate(hidden, params, lay["cap"], h))
    elif shape.capped:  # sequential in C++: the k-th spike of a sample this step sees count == k
        counter = NeuronGroup(b, "count : 1", namespace=ns, dt=dt, name="counter")
        counter.run_regularly("count = 0", when="groups", name="counter_reset")
        capper = Synapses(
            hidden, counter, on_pre=f"count_post += 1\ndlv_pre = int(count_post <= {p('cap')})",
            namespace=ns, order=0, delay=0 * ms, dt=dt, name="capper",
        )
        capper.connect(j=f"i // {h}")
        objects += [counter, capper]

    def layer(src, dst, n_pre: int, n_post: int, block: str, gate: str, name: str) -> None:
        """One layer in every copy; the weight is looked up from (i, j) in the shared params row."""
        mask = None if masks is None else masks.get(name)
        if mask is not None and not np.any(mask):
            return  # no synapse at all in this layer
        syn = Synapses(
            src, dst, on_pre=f"s_post += {gate}{p(block, f'(i % {n_pre})*{n_post} + j % {n_post}')}",
            namespace=ns, order=1, delay=0 * ms, dt=dt, name=f"syn_{block[2:]}",
        )
        if mask is None:  # all to all inside each copy, generated in C++
            syn.connect(j=f"k for k in range((i // {n_pre})*{n_post}, (i // {n_pre} + 1)*{n_post})")
        else:  # the mask's pairs, repeated in each copy (pre-major, as the all-to-all order)
            pre, post = np.nonzero(mask)
            copies = np.arange(b)[:, None]
            syn.connect(i=(copies * n_pre + pre).ravel(), j=(copies * n_post + post).ravel())
        objects.append(syn)

    layer(inputs, hidden, n, h, "w_in", "", "in_hidden")
    if shape.recurrent:
        layer(hidden, hidden, h, h, "w_rec", delivered, "hidden_hidden")
    layer(hidden, out, h, o, "w_out", delivered, "hidden_out")
    objects += [SpikeMonitor(hidden, variables=[], name="spikes_hidden"),
                SpikeMonitor(out, variables=[], name="spikes_out")]
    if shape.record_v:
        objects += [StateMonitor(hidden, "v", record=True, when="end", dt=dt, name="v_hidden"),
                    StateMonitor(out, "v", record=True, when="end", dt=dt, name="v_out")]
    return Network(*objects)

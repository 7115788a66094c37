"""The Brian2 network of a batched chip: one simulation, B block-diagonal copies of a NetworkSpec.

Everything that changes between runs lives in two TimedArrays, so a compiled project is reused:
`chiploop_params` (one row: per-neuron constants, shared weights, scalars; see `ParamLayout`; read
through `chiploop_p(k)`, a direct load) and `chiploop_raster` (row t: the input spikes of step t,
32 inputs packed per value). The hidden and output layers are NeuronGroups of B*N neurons. Weights
are shared by the copies, so spikes are not delivered by Brian2 `Synapses` (a synapse per pair and
copy: B-fold index arrays, an indirect load per event; ~6x slower here) but by `chiploop_route`, a
user function run once per step after the thresholds: each input spike (read from the raster row)
and each hidden spike of copy b adds its neuron's weight row (the mask's columns, if the layer has
one) to the input `s` of copy b — contiguous, cache-resident adds. Its numpy twin serves Brian2's
runtime mode. Spikes of step t are summed into `s` during step t and integrated by the next step's
update: the one-step delay of docs/dynamics.md.

One update serves float and fixed arithmetic (flags in the params, no recompilation):
`D(x) = x - tr(x*f)` if sh else `tr(x*f)`, `tr(y) = trunc(y)` if fx else `y` (`chiploop_decay`,
`chiploop_tr`), state clipped to [lo, hi] (the synaptic current to [ilo, ihi]: unbounded without a
synaptic filter, as in the twin). Float: sh=0, fx=0 -> `f*x`. Fixed multiplier: sh=0, f=m/2^q ->
`trunc(x*m/2^q)`. Fixed shift: sh=1, f=2^-s -> `x - trunc(x/2^s)`. Each is exact in float64.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PARAMS_NAME = "chiploop_params"
RASTER_NAME = "chiploop_raster"
BITS_PER_WORD = 32
WEIGHT_BLOCKS = {"in_hidden": "w_in", "hidden_hidden": "w_rec", "hidden_out": "w_out"}  # layer -> block
SCALARS = ("fx", "sh", "lo", "hi", "ilo", "ihi", "refractory", "sub", "cap")


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
    """Offsets of each block in the flat `chiploop_params` row: neuron constants, scalars, then the
    weights (row-major `[pre, post]`; a layer with a connectivity mask holds only the mask's pairs,
    in row-major order, so a sparse layer costs its synapses in every run's I/O too)."""

    offsets: dict[str, int]
    size: int

    @classmethod
    def of(cls, shape: Shape, masks: dict[str, np.ndarray] | None = None) -> ParamLayout:
        h, o, n = shape.n_hidden, shape.n_out, shape.n_in
        blocks = [(name, h) for name in ("mem_h", "syn_h", "ada_h", "theta_h", "gain_h", "beta_h")]
        blocks += [(name, o) for name in ("mem_o", "syn_o", "theta_o")]
        blocks += [(name, 1) for name in SCALARS]
        dense = {"in_hidden": n * h, "hidden_hidden": h * h if shape.recurrent else 0, "hidden_out": h * o}
        for layer, block in WEIGHT_BLOCKS.items():
            mask = None if masks is None else masks.get(layer)
            blocks.append((block, dense[layer] if mask is None else int(np.count_nonzero(mask))))
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
    return f"chiploop_decay({x}, {f}, sh, fx)"


def _layer_update(syn_f: str, mem_f: str, gain: str | None) -> str:
    """Per-step update of one layer, before its threshold (`s`: input summed last step)."""
    g = "s" if gain is None else f"({gain}*s)"
    return "\n".join(
        [
            f"I = clip({_decay('I', syn_f)} + chiploop_tr({g}, fx), ilo, ihi)",
            "s = 0",
            "refr = int(r > 0.5)",
            "nrefr = 1 - refr",
            f"v = refr*v + nrefr*clip({_decay('v', mem_f)} + I, lo, hi)",
            "r = clip(r - 1, 0, refractory)",
        ]
    )


@dataclass(frozen=True)
class Route:
    """One layer's delivery: a spike of `src` neuron i (copy b) adds row i of the shared weight
    block to the input `s` of `dst` copy b (only the mask's columns when the layer has a mask)."""

    name: str  # the NetworkSpec layer, key of its connectivity mask
    src: str
    dst: str
    n_pre: int
    n_post: int

    @property
    def block(self) -> str:
        """Its weights' block in the params row."""
        return WEIGHT_BLOCKS[self.name]


def routes(shape: Shape, masks: dict[str, np.ndarray] | None) -> list[Route]:
    """The layers that carry spikes (a layer whose mask has no pair carries none)."""
    n, h, o = shape.n_in, shape.n_hidden, shape.n_out
    layers = [Route("in_hidden", "inputs", "hidden", n, h)]
    if shape.recurrent:
        layers.append(Route("hidden_hidden", "hidden", "hidden", h, h))
    layers.append(Route("hidden_out", "hidden", "out", h, o))
    return [r for r in layers if masks is None or masks.get(r.name) is None or np.any(masks[r.name])]


def _csr(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pointers and column indices of a bool `[pre, post]` mask."""
    pre, post = np.nonzero(mask)
    return np.concatenate([[0], np.cumsum(np.bincount(pre, minlength=mask.shape[0]))]), post


def _add_row(r: Route, offset: int, mask: np.ndarray | None, support: list[str]) -> str:
    """C++ adding row i of `r`'s weights (at params `offset`) to the input `s` of copy b; a mask's
    CSR arrays are appended to `support` (its weights are packed in the same order)."""
    s = f"double* s = brian::_array_{r.dst}_s + b*{r.n_post};"
    if mask is None:
        return (f"{{ const double* w = p + {offset} + i*{r.n_post}; {s} "
                f"for (int j = 0; j < {r.n_post}; j++) s[j] += w[j]; }}")
    ptr, idx = _csr(mask)
    name = f"chiploop_{r.block}"
    support.append(f"static const int32_t {name}_ptr[] = {{{','.join(map(str, ptr))}}};")
    support.append(f"static const int32_t {name}_idx[] = {{{','.join(map(str, idx))}}};")
    return (f"{{ const double* w = p + {offset}; {s} for (int q = {name}_ptr[i]; q < {name}_ptr[i + 1]; q++) "
            f"s[{name}_idx[q]] += w[q]; }}")


def router_cpp(shape: Shape, masks: dict[str, np.ndarray] | None) -> str:
    """C++ of `chiploop_route(step)`: delivers step's spikes of every copy, layer by layer.

    Input spikes are read from the raster's row (set bits in ascending order), then hidden spikes
    from the spike space (index order); with a spike cap, a sample's hidden spikes beyond the first
    `cap` of the step are not delivered. Weights are read from the params row.
    """
    lay = ParamLayout.of(shape, masks).offsets
    support: list[str] = []
    adds: dict[str, list[str]] = {"inputs": [], "hidden": []}
    for r in routes(shape, masks):
        mask = None if masks is None else masks.get(r.name)
        adds[r.src].append(" " * 16 + _add_row(r, lay[r.block], mask, support))
    n, h = shape.n_in, shape.n_hidden
    body = [f"    const double* p = brian::{PARAMS_NAME}_values;"]
    if adds["inputs"]:
        body += [
            f"    const double* row = brian::{RASTER_NAME}_values + (size_t)step*{shape.raster_words};",
            f"    for (int word = 0; word < {shape.raster_words}; word++) {{",
            "        for (uint32_t bits = (uint32_t)row[word]; bits; bits &= bits - 1) {",
            f"            const int g = {BITS_PER_WORD}*word + __builtin_ctz(bits);",
            f"            const int b = g / {n}, i = g % {n};",
            *adds["inputs"],
            "        }",
            "    }",
        ]
    if adds["hidden"]:
        body += [
            "    const int32_t* sp = brian::_array_hidden__spikespace;",
            "    int sample = -1, count = 0;",
            f"    for (int k = 0; k < sp[{shape.batch * h}]; k++) {{",
            f"        const int b = sp[k] / {h}, i = sp[k] % {h};",
        ]
        if shape.capped:
            body += ["        if (b != sample) { sample = b; count = 0; }",
                     f"        if (++count > p[{lay['cap']}]) continue;"]
        body += [a[8:] for a in adds["hidden"]] + ["    }"]
    return "\n".join([*support, "static inline double chiploop_route(const int64_t step)", "{", *body,
                      "    return 0.0;", "}"])


def router_numpy(shape: Shape, masks: dict[str, np.ndarray] | None, groups: dict, params, raster) -> Callable:
    """The same delivery as `router_cpp` for Brian2's runtime mode (numpy target)."""
    lay = ParamLayout.of(shape, masks).offsets
    layers = routes(shape, masks)
    csr = {r.name: _csr(masks[r.name]) for r in layers if masks is not None and r.name in masks}

    def route(step: np.ndarray) -> np.ndarray:
        p = params.values[0]
        row = raster.values[int(np.ravel(step)[0])].astype("<u4")
        bits = np.unpackbits(row.view(np.uint8), bitorder="little")[: shape.batch * shape.n_in]
        spikes = {"inputs": np.flatnonzero(bits), "hidden": np.asarray(groups["hidden"].spikes)}
        if shape.capped:
            z = spikes["hidden"]
            sample = z // shape.n_hidden
            rank = np.arange(z.size) - np.searchsorted(sample, sample)
            spikes["hidden"] = z[rank < p[lay["cap"]]]
        for r in layers:
            b, i = np.divmod(spikes[r.src], r.n_pre)
            s = groups[r.dst].variables["s"].get_value()
            if r.name in csr:  # every (spike, pair of its row): target b*n_post + j, weight w[q]
                ptr, idx = csr[r.name]
                counts = ptr[i + 1] - ptr[i]
                q = np.repeat(ptr[i] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
                np.add.at(s, np.repeat(b, counts) * r.n_post + idx[q], p[lay[r.block] + q])
            else:
                w = p[lay[r.block] : lay[r.block] + r.n_pre * r.n_post].reshape(r.n_pre, r.n_post)
                np.add.at(s.reshape(shape.batch, r.n_post), b, w[i])
        return np.zeros(np.shape(step))

    return route


def _arithmetic_functions() -> dict:
    """`chiploop_tr(y, fx)` and `chiploop_decay(x, f, sh, fx)` of the module docstring."""
    from brian2 import Function

    def tr(y, fx):
        return np.where(fx != 0, np.trunc(y), y)

    def decay(x, f, sh, fx):
        t = tr(np.asarray(x) * f, fx)
        return np.where(sh != 0, x - t, t)

    functions = {
        "chiploop_tr": (tr, ["float"] * 2,
                        "static inline double chiploop_tr(const double y, const double fx)"
                        "{ return fx != 0.0 ? std::trunc(y) : y; }"),
        "chiploop_decay": (decay, ["float"] * 4,
                           "static inline double chiploop_decay(const double x, const double f, "
                           "const double sh, const double fx)"
                           "{ const double y = x*f; const double t = fx != 0.0 ? std::trunc(y) : y; "
                           "return sh != 0.0 ? x - t : t; }"),
    }
    out = {}
    for name, (py, types, cpp) in functions.items():
        fn = Function(py, arg_units=[1] * len(types), return_unit=1, arg_types=types, return_type="float")
        fn.implementations.add_implementation("cpp", cpp, name=name)
        out[name] = fn
    return out


def build_network(shape: Shape, masks: dict[str, np.ndarray] | None = None):
    """The Brian2 network for `shape` on the active device (cpp_standalone, or runtime mode).

    masks: connectivity per layer (bool `[pre, post]`, same in every copy); None = all-to-all.
    Returns a brian2.Network (Brian2 is imported here, so that a cache hit never imports it).
    """
    from brian2 import (
        Function,
        Network,
        NeuronGroup,
        SpikeMonitor,
        StateMonitor,
        TimedArray,
        ms,
    )

    b, h, o = shape.batch, shape.n_hidden, shape.n_out
    layout = ParamLayout.of(shape, masks)
    lay = layout.offsets
    dt = 1 * ms  # every object gets it explicitly: the caller's defaultclock stays untouched
    params = TimedArray(np.zeros((1, layout.size)), dt=1 * ms, name=PARAMS_NAME)
    raster = TimedArray(np.zeros((shape.steps, shape.raster_words)), dt=1 * ms, name=RASTER_NAME)
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
    ns = {PARAMS_NAME: params, "chiploop_p": param, **_arithmetic_functions()}
    state = "v : 1\nI : 1\ns : 1\nr : 1\nrefr : 1\n"
    hidden = NeuronGroup(
        b * h, state + "b : 1\nA : 1\n", threshold="v >= A and refr < 0.5",
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
    route = Function(
        router_numpy(shape, masks, {"hidden": hidden, "out": out}, params, raster),
        arg_units=[1], return_unit=1, arg_types=["integer"], return_type="float", stateless=False,
    )
    route.implementations.add_implementation(
        "cpp", router_cpp(shape, masks), name="chiploop_route",
        dependencies={PARAMS_NAME: params, RASTER_NAME: raster},
    )
    router_ns = {"chiploop_route": route, PARAMS_NAME: params, RASTER_NAME: raster}  # runtime mode sets them
    router = NeuronGroup(1, "routed : 1", namespace=router_ns, dt=dt, name="router")
    router.run_regularly("routed = chiploop_route(t_in_timesteps)", when="synapses", name="router_deliver")
    objects = [hidden, out, router]
    objects += [SpikeMonitor(hidden, variables=[], name="spikes_hidden"),
                SpikeMonitor(out, variables=[], name="spikes_out")]
    if shape.record_v:
        objects += [StateMonitor(hidden, "v", record=True, when="end", dt=dt, name="v_hidden"),
                    StateMonitor(out, "v", record=True, when="end", dt=dt, name="v_out")]
    return Network(*objects)

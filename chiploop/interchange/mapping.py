"""Put a Chain of NIR layers on a chip profile: a NetworkSpec, weights and a derived profile.

NIR's equations are continuous in time; chiploop reads them by forward Euler at step `dt`, the
discretisation Norse's LIFBox/LIBox and snnTorch's Leaky/Synaptic run (each exports them so):
```
LIF      v <- v + dt/tau (v_leak - v + r I)                    decay a = 1 - dt/tau, gain r dt/tau
CubaLIF  I <- I + dt/tau_syn (-I + w_in x);  v as LIF on the new I   k = 1 - dt/tau_syn
LI, CubaLI  as LIF and CubaLIF without threshold (the leaky readout)
IF, I    v <- v + dt r I                                       a = 1, gain dt r
```
with I the layer's weighted input plus its Affine bias, and a spike when v > v_threshold, then
v <- v_reset. On chiploop's dynamics (I <- k I + s; v <- a v + I + bias) this is exact: weights
take the input gain, taus are chosen so the chip's decay factors equal a and k, v_leak and the
bias of a LIF layer become the per-neuron bias. What cannot be expressed is reported as a Note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chiploop.chip.network import MAX_LAYERS, NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.interchange.chain import Chain, Layer
from chiploop.interchange.nirfile import NirError

DEFAULT_DT_S = 1e-3
NO_DECAY_TAU_S = 1e300  # exp(-dt/tau) == 1.0 in float64 for any dt below 1e280 s
SOFTWARE_RULES = {  # NIR's semantics on chiploop's dynamics (docs/interchange.md)
    "neuron.model": "lif",
    "neuron.reset": "zero",
    "neuron.threshold_compare": "gt",
    "neuron.refractory_steps": 0,
    "neuron.max_spike_count": 1,
    "neuron.update_order": "decay_then_add",
    "timing.input_delay_steps": 0,
}


@dataclass(frozen=True)
class Note:
    """One thing the mapping changed: layer, NIR node and field, kind and what happened."""

    layer: str
    node: str
    field: str
    kind: str  # "quantized", "clipped", "dropped", "approximated", "rule", "scaled", "timing"
    detail: str

    def line(self) -> str:
        return f"{self.layer} ({self.node}.{self.field}) {self.kind}: {self.detail}"


@dataclass
class Mapped:
    """A NIR network on a profile: weights in model units, the derived profile, notes."""

    spec: NetworkSpec
    weights: dict[str, np.ndarray]
    profile: ChipProfile
    dt_s: float
    dt_source: str
    scales: dict[str, float]
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class _Euler:
    """One layer's forward-Euler coefficients, per neuron."""

    mem: np.ndarray
    syn: np.ndarray | None
    gain: np.ndarray
    bias: np.ndarray  # added to v each step, model units
    threshold: np.ndarray | None
    notes: tuple[Note, ...]


def resolve_dt(chain: Chain, dt_s: float | None) -> tuple[float, str]:
    """The NIR step: given, the graph's metadata "dt", snnTorch's convention r = tau/dt, or 1 ms."""
    if dt_s is not None:
        if not (math.isfinite(dt_s) and dt_s > 0):
            raise NirError(f"dt: expected a positive number of seconds, got {dt_s}")
        return float(dt_s), "given"
    meta = chain.metadata.get("dt")
    if meta is not None:
        value = float(np.asarray(meta).ravel()[0])
        if math.isfinite(value) and value > 0:
            return value, "graph metadata"
    ratios = []
    for layer in chain.layers:
        tau = layer.params.get("tau", layer.params.get("tau_mem"))
        if tau is None or np.allclose(layer.params["r"], 1.0):
            ratios = []
            break
        ratios.append(tau / layer.params["r"])
    if ratios:
        all_ratios = np.concatenate(ratios)
        if np.allclose(all_ratios, all_ratios[0], rtol=1e-4):
            return float(np.float32(all_ratios.mean())), "r = tau/dt (snnTorch's export convention)"
    return DEFAULT_DT_S, "default (1 ms)"


def map_chain(chain: Chain, base: ChipProfile, dt_s: float | None = None, software: bool = False) -> Mapped:
    """`chain` on `base`: the software reference (`software`: NIR's rules, exact) or the chip as is.

    Under `software` the profile's rules become NIR's (reset to v_reset, spike when v > threshold,
    inputs in the same step) and an unquantized weight range is widened to fit. On a chip, its
    own rules stay and each one that differs from NIR's is reported.
    """
    if len(chain.layers) < 2:
        raise NirError(f"node '{chain.layers[0].name}': a network needs a hidden spiking layer and a readout")
    *hidden, out = chain.layers
    if len(hidden) > MAX_LAYERS:
        raise NirError(f"graph: {len(hidden)} hidden layers, chiploop runs 1 to {MAX_LAYERS}")
    for layer in hidden:
        if not layer.spiking:
            raise NirError(f"node '{layer.name}' field type: a hidden layer must spike (LIF, CubaLIF or IF), "
                           f"got {layer.kind}")  # fmt: skip
    if out.recurrent is not None:
        raise NirError(f"node '{out.recurrent_node}': chiploop's readout has no recurrence")
    dt, dt_source = resolve_dt(chain, dt_s)
    eh, eo = [_euler(layer, dt) for layer in hidden], _euler(out, dt)
    notes = [note for e in (*eh, eo) for note in e.notes]
    spec = NetworkSpec(
        n_in=chain.n_in,
        n_hidden=tuple(layer.size for layer in hidden),
        n_out=out.size,
        recurrent=tuple(layer.recurrent is not None for layer in hidden),
        readout="spiking" if out.spiking else "leaky",
    )
    weights: dict[str, np.ndarray] = {}
    scales: dict[str, float] = {}
    pre = "in"
    for name, layer, e in zip(spec.layer_names, hidden, eh, strict=True):
        mats = {f"{pre}_{name}": layer.weight * e.gain}
        if layer.recurrent is not None:
            mats[f"{name}_{name}"] = layer.recurrent * e.gain
        scales[name], scale_notes = _scale(base, list(mats.values()), e.threshold, layer.name, software)
        weights |= {m: w * scales[name] for m, w in mats.items()}
        notes += scale_notes
        pre = name
    scales["out"], scale_notes = _scale(base, [out.weight * eo.gain], eo.threshold, out.name, software)
    weights[f"{pre}_out"] = out.weight * eo.gain * scales["out"]
    notes += scale_notes
    overrides = _overrides(base, eh, eo, [scales[n] for n in spec.layer_names], scales["out"])
    if not software and base.neuron.update_order == "add_then_decay":
        own = base.neuron.nominal("tau_syn_s")
        for layer, e in zip(chain.layers, (*eh, eo), strict=True):
            if e.syn is None:
                detail = (
                    f"{base.name} decays every input through a synaptic current (add, then decay): "
                    f"this layer has none in NIR and gets {base.name}'s {own:g} s"
                )
                notes.append(Note(layer.name, layer.name, "tau", "approximated", detail))
        overrides["neuron.tau_syn_s"] = [own if t == 0 else t for t in overrides["neuron.tau_syn_s"]]
    if software:
        overrides.update(SOFTWARE_RULES)
        overrides.update(_chiploop_rules(chain.metadata))
        peak = max(float(np.abs(w).max()) for w in weights.values())
        lo, hi = base.weights.range
        if base.weights.bits is None and not base.weights.map_to_range and peak > min(-lo, hi):
            overrides["weights.range"] = [-peak, peak]
    else:
        notes += _rule_notes(base, hidden, out)
    for layer in hidden[1:]:
        notes.append(Note(layer.name, layer.weight_node, "input", "timing",
                          "this layer sees the spikes of the layer below one step later than in NIR "
                          "(chiploop delays every synapse between layers by one step)"))  # fmt: skip
    notes.append(Note(out.name, out.name, "input", "timing",
                      "the readout sees the hidden spikes one step later than in NIR (chiploop delays every "
                      "hidden-to-readout synapse by one step)"))  # fmt: skip
    if np.any(eo.bias != 0):
        notes.append(Note(out.name, out.weight_node, "bias", "approximated",
                          "the readout's extra first step already integrates its bias: an offset a^(t+1) b "
                          "that fades with the readout's time constant"))  # fmt: skip
    overrides["description"] = f"{base.name} running an imported NIR network (dt {dt:g} s)"
    profile = base.with_overrides(overrides)
    if not software:
        layers = [*zip(spec.layer_names, hidden, eh, strict=True), ("out", out, eo)]
        notes += _quantization_notes(profile, spec, weights, scales, layers)
    return Mapped(spec, weights, profile, dt, dt_source, scales, notes)


def _quantization_notes(
    profile: ChipProfile,
    spec: NetworkSpec,
    weights: dict,
    scales: dict,
    layers: list[tuple[str, Layer, _Euler]],
) -> list[Note]:
    """What the chip's registers round or clip: decay factors, thresholds, weights beyond the range."""
    from chiploop.chip.device_model import neuron_constants

    c = neuron_constants(profile, spec)
    ar = profile.arithmetic
    notes = []
    lo, hi = profile.weights.range
    slices = dict(zip(spec.layer_names, spec.hidden_slices(), strict=True))
    for key, layer, e in layers:
        mem = c.mem_o if key == "out" else c.mem_h[slices[key]]
        thr = c.threshold_o if key == "out" else c.threshold_h[slices[key]]
        if ar.kind == "fixed":
            factor = (1.0 - np.ldexp(1.0, -mem.astype(np.int64)) if ar.decay == "shift"
                      else np.ldexp(mem.astype(np.float64), -ar.decay_bits))  # fmt: skip
            err = float(np.max(np.abs(factor - e.mem)))
            if err > 0:
                detail = f"membrane decay factor off by up to {err:.3g} ({ar.decay} decay)"
                notes.append(Note(layer.name, layer.name, "tau", "quantized", detail))
            if e.threshold is not None:
                want = e.threshold * scales[key] * profile.state_scale
                rel = float(np.max(np.abs(thr - want) / want))
                if rel > 0:
                    detail = f"thresholds rounded to integers, off by up to {100 * rel:.2g} %"
                    notes.append(Note(layer.name, layer.name, "v_threshold", "quantized", detail))
        names = [m for m in weights if m.split("_", 1)[1] == key]
        outside = sum(int(np.sum((weights[m] < lo) | (weights[m] > hi))) for m in names)
        if outside and not profile.weights.map_to_range:
            notes.append(Note(layer.name, layer.weight_node, "weight", "clipped",
                              f"{outside} weights outside the chip's range {lo:g}..{hi:g}"))  # fmt: skip
    return notes


def _chiploop_rules(metadata: dict) -> dict[str, Any]:
    """The rules a chiploop export recorded in its metadata (what NIR cannot say), to run it as before."""
    if str(metadata.get("source", "")) != "chiploop":
        return {}
    keys = {"reset": "neuron.reset", "threshold_compare": "neuron.threshold_compare",
            "input_delay_steps": "timing.input_delay_steps"}  # fmt: skip
    out = {}
    for key, path in keys.items():
        if key in metadata:
            value = (
                np.asarray(metadata[key]).ravel()[0] if not isinstance(metadata[key], str) else metadata[key]
            )
            out[path] = value if isinstance(value, str) else int(value)
    return out


def _euler(layer: Layer, dt: float) -> _Euler:
    """The forward-Euler coefficients of `layer` at step `dt`, and what does not map."""
    p, name, notes = layer.params, layer.name, []
    bias = layer.bias if layer.recurrent_bias is None else layer.bias + layer.recurrent_bias
    syn = None
    if layer.kind in ("LIF", "LI"):
        step = _step(p["tau"], dt, name, "tau")
        mem, gain = 1.0 - step, p["r"] * step
        v_bias = step * p["v_leak"] + gain * bias
    elif layer.kind in ("CubaLIF", "CubaLI"):
        step, step_syn = _step(p["tau_mem"], dt, name, "tau_mem"), _step(p["tau_syn"], dt, name, "tau_syn")
        mem, syn = 1.0 - step, 1.0 - step_syn
        gain = p["r"] * step * step_syn * p["w_in"]
        v_bias = step * p["v_leak"] + p["r"] * step * p["w_in"] * bias
        if np.any(bias != 0):
            notes.append(Note(name, layer.weight_node, "bias", "approximated",
                              "a bias into a synaptic current enters the membrane directly (same steady "
                              "state, no synaptic rise)"))  # fmt: skip
    else:  # IF, I: no leak
        mem, gain = np.ones(layer.size), p["r"] * dt
        v_bias = gain * bias
    if np.any(p.get("v_leak", 0.0) != 0):
        notes.append(
            Note(
                name,
                name,
                "v_leak",
                "initial",
                "the membrane starts at 0 (NIR leaves the initial state open; Norse starts at v_leak)",
            )
        )
    threshold = None
    if layer.spiking:
        threshold = p["v_threshold"]
        if np.any(threshold <= 0):
            raise NirError(f"node '{name}' field v_threshold: must be positive, got {threshold.min():g}")
        if np.any(p["v_reset"] != 0):
            notes.append(
                Note(
                    name,
                    name,
                    "v_reset",
                    "dropped",
                    f"chiploop resets to 0, not to v_reset (up to {np.abs(p['v_reset']).max():g})",
                )
            )
    return _Euler(mem, syn, gain, v_bias, threshold, tuple(notes))


def _step(tau: np.ndarray, dt: float, name: str, field: str) -> np.ndarray:
    if np.any(tau <= 0):
        raise NirError(f"node '{name}' field {field}: must be positive, got {tau.min():g}")
    if np.any(tau <= dt):
        raise NirError(
            f"node '{name}' field {field}: {tau.min():g} s is not longer than the step dt {dt:g} s, "
            "so forward Euler does not decay (pass the step the network ran at)"
        )
    return dt / tau


def _chip_tau(factor: np.ndarray, dt_chip: float) -> list[float]:
    """Per neuron, the tau whose decay exp(-dt_chip/tau) is `factor` (no decay: a very long tau)."""
    return [NO_DECAY_TAU_S if f >= 1.0 else -dt_chip / math.log(f) for f in factor.tolist()]


def _scale(
    base: ChipProfile, mats: list[np.ndarray], threshold: np.ndarray | None, name: str, software: bool
) -> tuple[float, list[Note]]:
    """One factor for a layer's weights, threshold and bias (the dynamics are linear in them, so
    spikes are unchanged): 1 on unquantized float weights, else the weights fill the chip's range
    as far as the threshold register allows."""
    lo, hi = base.weights.range
    peak = max(float(np.abs(m).max()) for m in mats)
    quantized = base.weights.bits is not None or base.arithmetic.kind == "fixed"
    if software or not quantized or base.weights.map_to_range or peak == 0:
        return 1.0, []
    k = min(-lo, hi) / peak
    if threshold is not None and base.arithmetic.kind == "fixed":
        bits = base.arithmetic.threshold_bits or base.arithmetic.state_bits
        room = (2 ** (bits - 1) - 1) / base.state_scale / float(threshold.max())
        k = min(k, room)
    return k, [
        Note(
            name,
            name,
            "weight",
            "scaled",
            f"weights, threshold and bias x {k:.6g} to use the chip's weight range {lo:g}..{hi:g}",
        )
    ]


def _overrides(
    base: ChipProfile, eh: list[_Euler], eo: _Euler, k_h: list[float], k_o: float
) -> dict[str, Any]:
    """Per-neuron profile values: the hidden layers' neurons in order, then the readout's."""
    dt_chip = base.timing.dt_s
    scale = base.state_scale

    def syn(e: _Euler) -> list[float]:
        return [0.0] * len(e.mem) if e.syn is None else _chip_tau(e.syn, dt_chip)

    thr_h = np.concatenate([e.threshold * k for e, k in zip(eh, k_h, strict=True)])  # hidden layers spike
    bias_h = np.concatenate([e.bias * k * scale for e, k in zip(eh, k_h, strict=True)])
    thr_o = (eo.threshold * k_o).tolist() if eo.threshold is not None else [max(1.0, k_o)] * len(eo.mem)
    return {
        "neuron.tau_mem_s": [t for e in eh for t in _chip_tau(e.mem, dt_chip)],
        "neuron.tau_out_s": _chip_tau(eo.mem, dt_chip),
        "neuron.tau_syn_s": [t for e in eh for t in syn(e)] + syn(eo),
        "neuron.threshold": thr_h.tolist() + thr_o,
        "neuron.bias": bias_h.tolist() + (eo.bias * k_o * scale).tolist(),
    }


def _rule_notes(base: ChipProfile, hidden: list[Layer], out: Layer) -> list[Note]:
    """NIR's rules the chip does not follow, as notes on the layers they touch."""
    n = base.neuron
    notes = []
    spiking = [layer for layer in (*hidden, out) if layer.spiking]
    for layer in spiking:
        if n.reset == "subtract":
            notes.append(
                Note(
                    layer.name,
                    layer.name,
                    "v_reset",
                    "rule",
                    f"{base.name} subtracts the threshold at a spike instead of resetting to v_reset",
                )
            )
        if n.threshold_compare == "ge":
            notes.append(
                Note(
                    layer.name,
                    layer.name,
                    "v_threshold",
                    "rule",
                    f"{base.name} spikes at v >= threshold, NIR's exporters at v > threshold",
                )
            )
        if n.max_spike_count > 1 and layer is not out:
            notes.append(
                Note(
                    layer.name,
                    layer.name,
                    "v_threshold",
                    "rule",
                    f"{base.name} sends up to {n.max_spike_count} spikes per step",
                )
            )
    first = hidden[0]
    if base.timing.input_delay_steps:
        notes.append(
            Note(
                first.name,
                first.weight_node,
                "input",
                "timing",
                f"inputs reach {base.name}'s currents one step later than in NIR",
            )
        )
    if n.update_order == "add_then_decay":
        notes.append(
            Note(
                first.name,
                first.name,
                "tau",
                "rule",
                f"{base.name} decays a step's input with the current (add, then decay)",
            )
        )
    if n.refractory_steps:
        notes.append(
            Note(
                first.name,
                first.name,
                "v_reset",
                "rule",
                f"{base.name} holds a neuron {n.refractory_steps} steps after a spike",
            )
        )
    return notes

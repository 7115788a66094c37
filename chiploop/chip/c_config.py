"""A network's configuration as the C definition of the dynamics takes it (`csrc/cl_net.h`).

`net_config` gives the fields of `cl_net_cfg` and `neuron_vectors` the per-neuron constants of
`cl_net_params`. The Brian2 emulator packs them into its parameter row, the serial protocol sends
them as CONFIG_NET / CONFIG_RULES and WRITE_PARAM vectors: one encoding for both.
"""

from __future__ import annotations

import numpy as np

from chiploop.chip.device_model import NeuronConstants
from chiploop.chip.network import MAX_LAYERS, NetworkSpec
from chiploop.chip.rules import Rules, spiking_only
from chiploop.chip_profiles.model import ChipProfile

DECAY_ROUNDING = ("truncate", "floor", "floor_min_step")  # enum cl_decay_rounding


def net_config(profile: ChipProfile, spec: NetworkSpec) -> dict[str, int]:
    """The `cl_net_cfg` fields for `spec` under `profile` (caps: 0 = unlimited)."""
    spiking_only(profile, "C dynamics (firmware, emulator)")
    r = Rules.of(profile)
    return {
        "n_in": spec.n_in, "n_hidden": spec.n_hidden_total, "n_out": spec.n_out,
        "recurrent": recurrent_bits(spec), "spiking_readout": int(spec.readout == "spiking"),
        "reset_zero": int(r.reset_zero), "decay_kind": int(r.decay == "shift"), "state_bits": r.state_bits,
        "decay_bits": r.decay_bits, "refractory_steps": r.refractory_steps,
        "max_spikes_per_step": r.spike_cap or 0, "max_input_spikes_per_step": r.input_cap or 0,
        "input_delay": r.input_delay, "add_then_decay": int(r.add_then_decay),
        "decay_rounding": DECAY_ROUNDING.index(r.decay_rounding), "per_addition": int(r.per_addition),
        "wrap_current": int(r.wrap_current), "symmetric_membrane": int(r.symmetric_membrane),
        "fractional_bits": r.fractional_bits, "strict_threshold": int(r.strict_threshold),
        "max_spike_count": r.max_spike_count, "synapses": spec.synapses,
    }  # fmt: skip


def recurrent_bits(spec: NetworkSpec) -> int:
    """`cl_net_cfg.recurrent`: bit k set when hidden layer k is recurrent."""
    return sum(1 << k for k, rec in enumerate(spec.hidden_recurrent) if rec)


def matrix_slots(spec: NetworkSpec) -> dict[str, int]:
    """Each weight matrix's slot in `enum cl_net_matrix`: 2k feed-forward into hidden layer k,
    2k + 1 its recurrence, then the readout's and the second current's after the last layer's slots."""
    out = 2 * MAX_LAYERS
    slots = {"in_hidden_2": out + 1, "hidden_hidden_2": out + 2}
    pre = "in"
    for k, name in enumerate(spec.layer_names):
        slots |= {f"{pre}_{name}": 2 * k, f"{name}_{name}": 2 * k + 1}
        pre = name
    slots[f"{pre}_out"] = out
    return {name: slots[name] for name in spec.weight_shapes()}


def decay_codes(c: NeuronConstants, constant: np.ndarray) -> np.ndarray:
    """A decay constant as C takes it: the code d of the multiplier `2^q - d` (fixed, multiplier),
    the shift s (fixed, shift) or the factor itself (float)."""
    if c.arithmetic == "fixed" and c.decay == "multiplier":
        return (1 << c.decay_bits) - np.asarray(constant)
    return np.asarray(constant)


def neuron_vectors(c: NeuronConstants) -> dict[str, np.ndarray]:
    """`cl_net_params` as arrays over hidden then output neurons (hidden-only constants: 0 for the
    output neurons, gain 1); decay codes as `decay_codes` gives them."""
    o = c.mem_o.shape[0]

    def both(hidden: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(hidden), np.asarray(out)])

    zeros = np.zeros(o, dtype=np.asarray(c.ada_h).dtype)
    syn2 = c.syn2_h if c.syn2_h is not None else np.zeros_like(c.syn_h)
    return {
        "d_mem": both(decay_codes(c, c.mem_h), decay_codes(c, c.mem_o)),
        "d_syn": both(decay_codes(c, c.syn_h), decay_codes(c, c.syn_o)),
        "d_syn2": both(decay_codes(c, syn2), zeros),
        "d_ada": both(decay_codes(c, c.ada_h), zeros),
        "theta": both(c.threshold_h, c.threshold_o),
        "beta": both(c.beta_h, np.zeros(o, dtype=np.asarray(c.beta_h).dtype)),
        "bias": both(c.bias_h, c.bias_o),
        "gain": both(c.gain_h, np.ones(o)),
    }

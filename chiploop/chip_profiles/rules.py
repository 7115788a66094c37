"""Design rules: does a NetworkSpec fit a chip's limits?

Each rule is a small named function `check_x(profile, spec)` that returns None or raises
DesignRuleError(rule, limit, value, detail). A limit of None means unlimited and always passes.
Counting conventions (dense layers, `W[pre, post]`):
- fan-in of a hidden neuron = the layer below's size (n_in for the first) (+ its own layer's if
  recurrent); of an output neuron = the last hidden layer's size;
- fan-out of a hidden neuron = the next layer's size (n_out for the last) (+ its own layer's if
  recurrent); input channels are external;
- a neuron's incoming synapses are stored on its core; layers are placed on separate cores.
A violation names the layer ("hidden", "hidden2", ..., "output").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import DesignRuleError

if TYPE_CHECKING:  # no runtime import: chiploop.chip imports the profiles
    from chiploop.chip.network import NetworkSpec


def check_neuron_count(profile: ChipProfile, spec: NetworkSpec) -> None:
    """Hidden + output neurons must fit on the chip."""
    limit = profile.limits.max_neurons
    if limit is not None and spec.n_neurons > limit:
        hidden = " + ".join(str(n) for n in spec.hidden_sizes)
        detail = f"{hidden} hidden + {spec.n_out} output neurons on {profile.name}"
        raise DesignRuleError("max_neurons", limit, spec.n_neurons, detail)


def check_input_count(profile: ChipProfile, spec: NetworkSpec) -> None:
    """Input channels must not exceed the chip's inputs."""
    limit = profile.limits.max_inputs
    if limit is not None and spec.n_in > limit:
        raise DesignRuleError("max_inputs", limit, spec.n_in, f"input channels on {profile.name}")


def check_output_count(profile: ChipProfile, spec: NetworkSpec) -> None:
    """Readout neurons must not exceed the chip's outputs."""
    limit = profile.limits.max_outputs
    if limit is not None and spec.n_out > limit:
        raise DesignRuleError("max_outputs", limit, spec.n_out, f"readout neurons on {profile.name}")


def check_fan_in(profile: ChipProfile, spec: NetworkSpec) -> None:
    """No neuron may receive more synapses than the chip allows."""
    limit = profile.limits.max_fan_in
    if limit is None:
        return
    layer, value = _max_fan_in(spec)
    if value > limit:
        raise DesignRuleError("max_fan_in", limit, value, f"synapses into one {layer} neuron")


def check_fan_out(profile: ChipProfile, spec: NetworkSpec) -> None:
    """No hidden neuron may send to more neurons than the chip allows."""
    limit = profile.limits.max_fan_out
    if limit is None:
        return
    sizes, names = spec.hidden_sizes, spec.layer_names
    for k, (name, n, rec) in enumerate(zip(names, sizes, spec.hidden_recurrent, strict=True)):
        last = k == len(sizes) - 1
        value = (spec.n_out if last else sizes[k + 1]) + (n if rec else 0)
        if value > limit:
            targets = f"{spec.n_out} output" if last else f"{sizes[k + 1]} {names[k + 1]}"
            targets += f" + {n} recurrent" if rec else ""
            raise DesignRuleError("max_fan_out", limit, value, f"one {name} neuron targets {targets} neurons")


def check_synapses_per_core(profile: ChipProfile, spec: NetworkSpec) -> None:
    """The synapses into one neuron must fit in one core's synapse memory."""
    limit = profile.limits.synapses_per_core
    if limit is None:
        return
    layer, value = _max_fan_in(spec)
    if value > limit:
        detail = f"one {layer} neuron has {value} incoming synapses, a core stores at most {limit}"
        raise DesignRuleError("synapses_per_core", limit, value, detail)


def check_neurons_per_core(profile: ChipProfile, spec: NetworkSpec) -> None:
    """The cores the layers need must not exceed the chip's cores (max_neurons / neurons_per_core).

    A core holds at most `neurons_per_core` neurons and, when `synapses_per_core` is set, only as
    many neurons as its synapse memory can feed (`synapses_per_core // fan_in`).
    """
    per_core, max_neurons = profile.limits.neurons_per_core, profile.limits.max_neurons
    if per_core is None or max_neurons is None:
        return
    cores = max_neurons // per_core
    needed = sum(math.ceil(n / _neurons_per_core(profile, fan_in)) for _, n, fan_in in _layers(spec))
    if needed > cores:
        detail = f"layer-wise placement with at most {per_core} neurons per core on {profile.name}"
        raise DesignRuleError("neurons_per_core", f"{cores} cores", f"{needed} cores", detail)


def check_synaptic_currents(profile: ChipProfile, spec: NetworkSpec) -> None:
    """A second synaptic current needs a chip that has one (`neuron.tau_syn2_s`)."""
    if spec.synapses == 2 and profile.neuron.tau_syn2_s is None:
        raise DesignRuleError("synaptic_currents", 1, 2, f"{profile.name} has no second synaptic current")


def check_neuron_parameter_lengths(profile: ChipProfile, spec: NetworkSpec) -> None:
    """A per-neuron parameter list has one entry per neuron it applies to (hidden first)."""
    h, o = spec.n_hidden_total, spec.n_out
    for field, n in (
        ("tau_mem_s", h),
        ("tau_syn2_s", h),
        ("tau_out_s", o),
        ("tau_syn_s", h + o),
        ("threshold", h + o),
        ("bias", h + o),
    ):
        value = getattr(profile.neuron, field)
        if isinstance(value, tuple) and len(value) != n:
            raise DesignRuleError(
                f"neuron.{field}",
                f"{n} entries",
                f"{len(value)} entries",
                "one per neuron it applies to, hidden layers first, then readout",
            )


# The chip's resources (`limits`): a network that breaks one is too large for the chip.
LIMIT_RULES: list[Callable[[ChipProfile, NetworkSpec], None]] = [
    check_input_count,
    check_output_count,
    check_neuron_count,
    check_fan_in,
    check_fan_out,
    check_synapses_per_core,
    check_neurons_per_core,
]
RULES: list[Callable[[ChipProfile, NetworkSpec], None]] = [
    check_synaptic_currents,
    check_neuron_parameter_lengths,
    *LIMIT_RULES,
]


def check_network(profile: ChipProfile, spec: NetworkSpec) -> None:
    """Run every rule in `RULES`; the first violation raises DesignRuleError."""
    for rule in RULES:
        rule(profile, spec)


def _layers(spec: NetworkSpec) -> list[tuple[str, int, int]]:
    """(name, neurons, fan-in per neuron) of the hidden layers and the output layer."""
    layers, below = [], spec.n_in
    for name, n, rec in zip(spec.layer_names, spec.hidden_sizes, spec.hidden_recurrent, strict=True):
        layers.append((name, n, below + (n if rec else 0)))
        below = n
    return [*layers, ("output", spec.n_out, below)]


def _max_fan_in(spec: NetworkSpec) -> tuple[str, int]:
    """The layer whose neurons receive the most synapses (the first on a tie) and that count."""
    name, _, fan_in = max(_layers(spec), key=lambda layer: layer[2])
    return name, fan_in


def _neurons_per_core(profile: ChipProfile, fan_in: int) -> int:
    per_core = profile.limits.neurons_per_core
    assert per_core is not None
    synapses = profile.limits.synapses_per_core
    return per_core if synapses is None else max(1, min(per_core, synapses // fan_in))

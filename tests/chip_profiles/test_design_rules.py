"""Design rules: each named check passes at its limit and raises DesignRuleError one past it."""

from __future__ import annotations

import inspect

import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles import ChipProfile, check_network, load_profile, rules
from chiploop.errors import DesignRuleError

IDEAL = load_profile("ideal")


def limited(**limits: int) -> ChipProfile:
    return IDEAL.with_overrides({f"limits.{key}": value for key, value in limits.items()})


def violation(check, profile: ChipProfile, spec: NetworkSpec) -> DesignRuleError:
    with pytest.raises(DesignRuleError) as info:
        check(profile, spec)
    return info.value


def test_rules_lists_every_check_function() -> None:
    checks = {fn for name, fn in inspect.getmembers(rules, inspect.isfunction) if name.startswith("check_")}
    assert set(rules.RULES) == checks - {rules.check_network}


def test_no_limits_means_anything_fits() -> None:
    spec = NetworkSpec(10_000, 50_000, 1_000, recurrent=True)
    for check in rules.RULES:
        check(IDEAL, spec)
    check_network(IDEAL, spec)


def test_neuron_count() -> None:
    profile = limited(max_neurons=100)
    rules.check_neuron_count(profile, NetworkSpec(5, 90, 10))
    err = violation(rules.check_neuron_count, profile, NetworkSpec(5, 91, 10))
    assert (err.rule, err.limit, err.value) == ("max_neurons", 100, 101)
    assert "91 hidden + 10 output" in str(err)


def test_input_and_output_count() -> None:
    profile = limited(max_inputs=16, max_outputs=8)
    rules.check_input_count(profile, NetworkSpec(16, 4, 8))
    rules.check_output_count(profile, NetworkSpec(16, 4, 8))
    err = violation(rules.check_input_count, profile, NetworkSpec(17, 4, 8))
    assert (err.rule, err.limit, err.value) == ("max_inputs", 16, 17)
    err = violation(rules.check_output_count, profile, NetworkSpec(16, 4, 9))
    assert (err.rule, err.limit, err.value) == ("max_outputs", 8, 9)


def test_fan_in_counts_recurrent_synapses() -> None:
    profile = limited(max_fan_in=64)
    rules.check_fan_in(profile, NetworkSpec(64, 64, 10))
    rules.check_fan_in(profile, NetworkSpec(32, 32, 10, recurrent=True))
    err = violation(rules.check_fan_in, profile, NetworkSpec(32, 33, 10, recurrent=True))
    assert (err.rule, err.limit, err.value) == ("max_fan_in", 64, 65)
    assert "hidden" in str(err)


def test_fan_in_of_output_neurons_is_the_hidden_width() -> None:
    err = violation(rules.check_fan_in, limited(max_fan_in=64), NetworkSpec(10, 65, 2))
    assert err.value == 65 and "output" in str(err)


def test_fan_out_of_hidden_neurons() -> None:
    profile = limited(max_fan_out=64)
    rules.check_fan_out(profile, NetworkSpec(1000, 500, 64))  # inputs are external: not counted
    rules.check_fan_out(profile, NetworkSpec(16, 56, 8, recurrent=True))
    err = violation(rules.check_fan_out, profile, NetworkSpec(16, 57, 8, recurrent=True))
    assert (err.rule, err.limit, err.value) == ("max_fan_out", 64, 65)
    assert "8 output + 57 recurrent" in str(err)


def test_rules_name_the_layer_of_a_layered_network() -> None:
    """Each hidden layer's fan-in is the layer below (+ its own recurrence), its fan-out the layer above."""
    spec = NetworkSpec(10, (20, 40, 5), 3, recurrent=(False, True, False))
    err = violation(rules.check_fan_in, limited(max_fan_in=59), spec)
    assert err.value == 60 and "synapses into one hidden2 neuron" in str(err)
    err = violation(rules.check_fan_out, limited(max_fan_out=44), spec)
    assert err.value == 45 and "one hidden2 neuron targets 5 hidden3 + 40 recurrent" in str(err)
    err = violation(rules.check_neuron_count, limited(max_neurons=67), spec)
    assert "20 + 40 + 5 hidden + 3 output" in str(err)


def test_synapses_per_core_holds_one_neurons_fan_in() -> None:
    profile = limited(synapses_per_core=1000)
    rules.check_synapses_per_core(profile, NetworkSpec(1000, 10, 2))
    err = violation(rules.check_synapses_per_core, profile, NetworkSpec(900, 101, 2, recurrent=True))
    assert (err.rule, err.limit, err.value) == ("synapses_per_core", 1000, 1001)


def test_neurons_per_core_counts_cores_layer_by_layer() -> None:
    profile = limited(max_neurons=512, neurons_per_core=256)  # 2 cores
    rules.check_neurons_per_core(profile, NetworkSpec(10, 256, 256))
    rules.check_neuron_count(profile, NetworkSpec(10, 300, 10))  # 310 neurons fit in total...
    err = violation(rules.check_neurons_per_core, profile, NetworkSpec(10, 300, 10))  # ...not in 2 cores
    assert (err.rule, err.limit, err.value) == ("neurons_per_core", "2 cores", "3 cores")


def test_neurons_per_core_packs_fewer_neurons_when_synapse_memory_is_short() -> None:
    profile = limited(max_neurons=1024, neurons_per_core=256, synapses_per_core=256 * 64)  # 4 cores
    rules.check_neurons_per_core(profile, NetworkSpec(64, 512, 10))  # 2 + 1 cores
    err = violation(rules.check_neurons_per_core, profile, NetworkSpec(128, 512, 10))  # 128/core: 4 + 1
    assert err.value == "5 cores"


def test_check_network_raises_the_first_violation() -> None:
    err = violation(check_network, load_profile("xylo"), NetworkSpec(64, 100, 10))
    assert err.rule == "max_inputs"
    assert "design rule 'max_inputs' violated: limit 16, got 64" in str(err)


def test_dynapse2_refuses_a_fan_in_over_64() -> None:
    err = violation(check_network, load_profile("dynapse2"), NetworkSpec(64, 64, 10, recurrent=True))
    assert (err.rule, err.limit, err.value) == ("max_fan_in", 64, 128)

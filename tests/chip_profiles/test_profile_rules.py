"""The rules chips differ on: defaults that keep chiploop's own dynamics, and profiles a backend
cannot honour or whose values exceed the chip's registers refused in one line naming the field and
the limit, before anything runs."""

from __future__ import annotations

import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip.rules import Rules
from chiploop.chip_profiles.loader import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.chip_profiles.rules import check_network
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import DesignRuleError, ProfileError


def refusal(base: str, overrides: dict) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(base).with_overrides(overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_chiploops_rules() -> None:
    assert Rules.of(ChipProfile(name="t")) == Rules(refractory_steps=0)
    assert Rules.of(load_profile("ideal")).input_delay == 1


@pytest.mark.parametrize(
    ("base", "overrides", "words"),
    [
        ("xylo", {"neuron.threshold": 40000}, "neuron.threshold: must be <= 32767"),
        ("loihi2", {"neuron.threshold": 140000}, "neuron.threshold: must be <= 131071"),
        ("xylo", {"neuron.tau_mem_s": 65.0},
         "neuron.tau_mem_s: 65.0 s is a shift of 16, the 4-bit shift register holds at most 15"),
        ("xylo", {"neuron.tau_syn_s": [0.004] * 8 + [70.0]}, "neuron.tau_syn_s: 70.0 s is a shift of 16"),
        ("xylo", {"weights.shift": 9}, "weights.shift: weights up to [-65536, 65024]"),
        ("xylo", {"weights.range": [-40000, 40000]}, "weights.range: weights up to [-40000, 40000]"),
        ("xylo", {"neuron.bias": 40000}, "neuron.bias: must be within ±32767"),
        ("xylo", {"neuron.reset": "zero"}, "neuron.max_spike_count: above 1 needs neuron.reset 'subtract'"),
        ("loihi2", {"arithmetic.decay_rounding": "floor_min_step"},
         "arithmetic.decay_rounding: floor_min_step is a rule of shift decays"),
        ("xylo", {"arithmetic.fractional_bits": 15},
         "arithmetic.fractional_bits: must be < state_bits - 1 = 15"),
        ("xylo", {"noise.mismatch.gain": 0.1},
         "arithmetic.saturation: per_addition cannot apply a gain mismatch"),
        ("ideal", {"arithmetic.current_overflow": "wrap"},
         "arithmetic.current_overflow: only integer arithmetic"),
        ("ideal", {"neuron.update_order": "add_then_decay", "neuron.tau_syn_s": 0.0},
         "neuron.update_order: add_then_decay with tau_syn_s 0 would discard every input"),
        ("ideal", {"noise.read.model": "pcm_1f"}, "noise.read.model: pcm_1f acts on PCM device conductances"),
        ("xylo", {"neuron.threshold": [100, -5]}, "neuron.threshold[1]: must be > 0.0, got -5"),
    ],
)  # fmt: skip
def test_impossible_rules_and_registers_are_refused(base: str, overrides: dict, words: str) -> None:
    message = refusal(base, overrides)
    assert message.startswith("overrides: ") and words in message, message


def test_a_file_names_itself(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("extends: xylo\nneuron: {threshold: 99999}\n")
    with pytest.raises(ProfileError, match=r"^.*mine\.yaml: neuron\.threshold: must be <= 32767"):
        load_profile(path)


def test_network_rules_refuse_before_anything_runs() -> None:
    with pytest.raises(DesignRuleError, match="synaptic_currents.*loihi2 has no second synaptic current"):
        check_network(load_profile("loihi2"), NetworkSpec(8, 16, 2, synapses=2))
    p = load_profile("xylo").with_overrides({"neuron.threshold": [100.0] * 5})
    with pytest.raises(DesignRuleError, match=r"neuron\.threshold.*limit 18 entries, got 5 entries"):
        check_network(p, NetworkSpec(8, 16, 2))
    with pytest.raises(DesignRuleError, match="max_fan_out"):
        TwinChip(load_profile("xylo"), NetworkSpec(8, 70, 2, recurrent=True, synapses=2))


def test_checked_against_survives_parameter_changes_only() -> None:
    xylo = load_profile("xylo")
    assert xylo.checked_against.startswith("xylosim 0.1.3")
    assert xylo.with_overrides(
        {"neuron.threshold": 300, "noise.read.model": "gaussian_absolute", "noise.read.sigma": 2}
    ).checked_against
    assert xylo.with_overrides({"arithmetic.saturation": "per_update"}).checked_against == ""
    assert xylo.with_overrides({"weights.bits": 6}).checked_against == ""

"""The built-in profiles: they load, round-trip, cite their numbers and give trainable scales."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from chiploop.chip.devices import quantization_step
from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles import ChipProfile, check_network, list_profiles, load_profile
from chiploop.chip_profiles.loader import BUILTIN_DIR

BUILTINS = ["brainscales2", "dynapse2", "ideal", "loihi2", "pcm_crossbar", "rram_crossbar", "xylo"]

# A network each chip can host (xylo: 16 inputs, 8 outputs, hidden fan-out 64).
TYPICAL_SPEC = {
    "ideal": NetworkSpec(64, 128, 10, recurrent=True),
    "loihi2": NetworkSpec(64, 128, 10, recurrent=True),
    "xylo": NetworkSpec(16, 56, 8, recurrent=True),
    "brainscales2": NetworkSpec(64, 128, 10, recurrent=True),
    "dynapse2": NetworkSpec(64, 64, 10),
    "pcm_crossbar": NetworkSpec(64, 128, 10, recurrent=True),
    "rram_crossbar": NetworkSpec(64, 128, 10, recurrent=True),
}


def test_list_profiles_is_the_sorted_seven() -> None:
    assert list_profiles() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_under_its_file_name(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, ChipProfile)
    assert profile.name == name
    assert profile.description


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_round_trips_yaml_model_yaml_model(name: str, tmp_path: Path) -> None:
    first = load_profile(name)
    text = first.to_yaml()
    path = tmp_path / "copy.yaml"
    path.write_text(text)
    second = load_profile(path)
    assert second == first
    assert second.to_yaml() == text


def _leaf_paths(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_leaf_paths(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _is_field_path(path: str) -> bool:
    model: type = ChipProfile
    for part in path.split("."):
        if not (isinstance(model, type) and part in getattr(model, "model_fields", {})):
            return False
        model = model.model_fields[part].annotation
    return True


@pytest.mark.parametrize("name", BUILTINS)
def test_every_number_in_a_builtin_file_cites_a_source(name: str) -> None:
    raw = yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text())
    sources = raw.pop("source")
    numbers = {
        path
        for path, value in _leaf_paths(raw).items()
        if isinstance(value, (int, float, list)) and not isinstance(value, bool)
    }
    assert numbers, "a built-in profile sets numbers"
    assert numbers - set(sources) == set()
    assert all(isinstance(cite, str) and len(cite) > 8 for cite in sources.values())


@pytest.mark.parametrize("name", BUILTINS)
def test_every_source_key_is_a_field_path(name: str) -> None:
    bad = [key for key in load_profile(name).source if not _is_field_path(key)]
    assert bad == []


def _psp_peak(profile: ChipProfile) -> float:
    """Peak membrane response (dynamics.md, float decays) to one input spike of weight 1."""
    neuron, dt = profile.neuron, profile.timing.dt_s
    alpha = math.exp(-dt / neuron.tau_mem_s)
    kappa = math.exp(-dt / neuron.tau_syn_s) if neuron.tau_syn_s else 0.0
    current, v, peak = 1.0, 0.0, 0.0
    for _ in range(500):
        v = alpha * v + current
        peak = max(peak, v)
        current *= kappa
    return peak


@pytest.mark.parametrize("name", BUILTINS)
def test_weight_range_reaches_threshold_in_a_few_input_spikes(name: str) -> None:
    profile = load_profile(name)
    spikes_needed = profile.neuron.threshold / (profile.weights.range[1] * _psp_peak(profile))
    assert spikes_needed <= 3


@pytest.mark.parametrize("name", BUILTINS)
def test_init_weights_survive_quantization(name: str) -> None:
    """threshold / sqrt(fan_in) is inside the range and spans at least two quantization steps."""
    profile, spec = load_profile(name), TYPICAL_SPEC[name]
    fan_in = spec.n_in + (spec.n_hidden if spec.recurrent else 0)
    w_init = profile.neuron.threshold / math.sqrt(fan_in)
    assert w_init < profile.weights.range[1]
    step = quantization_step(profile.weights)
    assert step is None or w_init >= 2 * step


@pytest.mark.parametrize("name", BUILTINS)
def test_typical_network_passes_the_design_rules(name: str) -> None:
    check_network(load_profile(name), TYPICAL_SPEC[name])


@pytest.mark.parametrize("name", ["loihi2", "xylo"])
def test_fixed_point_profiles_use_integer_units(name: str) -> None:
    profile = load_profile(name)
    assert profile.arithmetic.kind == "fixed"
    assert float(profile.neuron.threshold).is_integer()
    assert profile.neuron.threshold < 2 ** (profile.arithmetic.state_bits - 1)
    step = quantization_step(profile.weights)
    lo, hi = profile.weights.range
    assert step is not None and float(step).is_integer()
    assert (lo / step).is_integer() and (hi / step).is_integer()


def test_loihi2_weights_are_minus_256_to_254_in_steps_of_2() -> None:
    weights = load_profile("loihi2").weights
    assert (weights.bits, weights.range, quantization_step(weights)) == (8, (-256.0, 254.0), 2.0)


def test_noisy_profiles_switch_their_noise_on() -> None:
    assert load_profile("ideal").noise.kinds() == []
    assert load_profile("loihi2").noise.kinds() == []
    assert load_profile("pcm_crossbar").noise.kinds() == [
        "program:pcm",
        "read:pcm_1f",
        "drift:pcm",
        "periphery",
    ]
    assert "stuck-at" in load_profile("rram_crossbar").noise.kinds()
    assert "mismatch" in load_profile("brainscales2").noise.kinds()
    assert "mismatch" in load_profile("dynapse2").noise.kinds()

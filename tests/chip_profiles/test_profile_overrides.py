"""Dotted-path overrides: `apply_overrides` and `ChipProfile.with_overrides`."""

from __future__ import annotations

import numpy as np
import pytest

from chiploop.chip_profiles import ProfileError, load_profile
from chiploop.chip_profiles.loader import apply_overrides


def override_error(overrides: dict) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile("loihi2").with_overrides(overrides)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_override_returns_a_new_validated_profile() -> None:
    base = load_profile("rram_crossbar")
    changed = apply_overrides(base, {"noise.read.sigma": 0.05, "neuron.threshold": 2})
    assert changed.noise.read.sigma == 0.05 and changed.neuron.threshold == 2.0
    assert base.noise.read.sigma == 0.01  # frozen original untouched
    assert changed.with_overrides({}) == changed


def test_with_overrides_is_apply_overrides() -> None:
    base = load_profile("xylo")
    assert base.with_overrides({"weights.bits": 6}) == apply_overrides(base, {"weights.bits": 6})


def test_mapping_value_merges_into_the_section() -> None:
    profile = load_profile("dynapse2").with_overrides({"noise.mismatch": {"tau": 0.3}})
    assert profile.noise.mismatch.tau == 0.3 and profile.noise.mismatch.gain == 0.1


def test_numpy_scalars_are_accepted() -> None:
    profile = load_profile("ideal").with_overrides(
        {"weights.bits": np.int64(4), "neuron.threshold": np.float32(2)}
    )
    assert profile.weights.bits == 4 and profile.neuron.threshold == 2.0


def test_list_replaces_the_tuple() -> None:
    assert load_profile("ideal").with_overrides({"weights.range": [-2, 3]}).weights.range == (-2.0, 3.0)


def test_unknown_top_level_key_lists_the_sections() -> None:
    message = override_error({"nois.read.sigma": 0.1})
    assert "'nois'" in message and "the top level" in message and "noise, limits" in message


def test_unknown_nested_key_lists_the_keys_at_that_level() -> None:
    message = override_error({"noise.red.sigma": 0.1})
    assert (
        "'red' under noise" in message and "programming, read, drift, periphery, faults, mismatch" in message
    )
    message = override_error({"noise.read.sigmaa": 0.1})
    assert "under noise.read" in message and "model, sigma, t_read_s" in message


def test_path_through_a_value_is_refused() -> None:
    assert "neuron.threshold is a value, not a section" in override_error({"neuron.threshold.x": 1})


@pytest.mark.parametrize("path", ["", "noise..sigma", ".noise", "noise."])
def test_malformed_path(path: str) -> None:
    assert "dotted field path" in override_error({path: 1})


def test_invalid_value_names_the_field() -> None:
    message = override_error({"noise.read.sigma": -1})
    assert message == "overrides: noise.read.sigma: must be >= 0.0, got -1"


def test_overridden_field_loses_its_stale_citation() -> None:
    profile = load_profile("loihi2").with_overrides({"weights.bits": 6})
    assert "weights.bits" not in profile.source and "weights.range" in profile.source


def test_citation_can_be_given_with_the_override() -> None:
    profile = load_profile("loihi2").with_overrides({"weights.bits": 6, "source.weights.bits": "ablation"})
    assert profile.source["weights.bits"] == "ablation"


def test_overriding_a_section_drops_the_citations_inside_it() -> None:
    profile = load_profile("pcm_crossbar").with_overrides({"noise.read": {"model": "none"}})
    assert not any(key.startswith("noise.read.") for key in profile.source)
    assert "noise.drift.t0_s" in profile.source


def test_numeric_strings_are_converted_in_overrides() -> None:
    profile = load_profile("rram_crossbar").with_overrides({"noise.read.sigma": "1e-3", "weights.bits": "6"})
    assert profile.noise.read.sigma == 0.001 and profile.weights.bits == 6

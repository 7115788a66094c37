"""A profile's `source:` keys are field paths: a misspelled one is refused with the nearest match."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiploop.chip_profiles import ChipProfile, ProfileError, list_profiles, load_profile
from chiploop.chip_profiles.model import field_paths


def load_error(path: Path) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_misspelled_key_names_file_key_and_nearest_field(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: loihi2\nneuron: {tau_mem_s: 0.03}\nsource: {neuron.tau_mem: measured}\n")
    assert load_error(mine) == (
        f"{mine}: source: unknown key 'neuron.tau_mem', not a profile field; did you mean 'neuron.tau_mem_s'?"
    )


def test_a_key_like_no_field_says_what_keys_are(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("source: {datasheet: p. 12}\n")
    assert "unknown key 'datasheet', not a profile field; keys are field paths like" in load_error(mine)


@pytest.mark.parametrize("key", ["name", "description", "source", "checked_against"])
def test_metadata_is_no_field_to_cite(key: str) -> None:
    with pytest.raises(ValueError, match=f"unknown key '{key}'"):
        ChipProfile(name="t", source={key: "a citation"})


def test_sections_and_fields_can_be_cited() -> None:
    profile = ChipProfile(name="t", source={"noise.mismatch": "one paper", "neuron.adaptation.beta": "fit"})
    assert set(profile.source) == {"noise.mismatch", "neuron.adaptation.beta"}


def test_a_misspelled_citation_override_is_refused() -> None:
    with pytest.raises(ProfileError, match="did you mean 'weights.bits'"):
        load_profile("loihi2").with_overrides({"weights.bits": 6, "source.weights.bit": "ablation"})


@pytest.mark.parametrize("name", list_profiles())
def test_builtin_citations_name_fields(name: str) -> None:
    assert set(load_profile(name).source) <= set(field_paths())

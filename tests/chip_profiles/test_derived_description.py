"""A derived profile (overrides, `extends:`) does not keep a description that is now false: it says
what it changed ("loihi2 with weights.bits=4") unless it gives its own."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from chiploop.chip_profiles import load_profile
from chiploop.cli import app

runner = CliRunner()


def test_an_override_describes_itself() -> None:
    assert "8-bit" in load_profile("loihi2").description
    assert (
        load_profile("loihi2").with_overrides({"weights.bits": 4}).description == "loihi2 with weights.bits=4"
    )


def test_overrides_of_overrides_append() -> None:
    once = load_profile("loihi2").with_overrides({"weights.bits": 4})
    twice = once.with_overrides({"neuron.threshold": 2048})
    assert twice.description == "loihi2 with weights.bits=4, neuron.threshold=2048"


def test_a_section_override_lists_the_fields_it_changed() -> None:
    profile = load_profile("pcm_crossbar").with_overrides({"noise.read": {"model": "none"}})
    assert profile.description == "pcm_crossbar with noise.read.model=none"


def test_many_changes_are_counted() -> None:
    changes = {"neuron.tau_mem_s": 0.03, "neuron.tau_out_s": 0.03, "neuron.threshold": 2, "weights.bits": 4}
    profile = load_profile("ideal").with_overrides(
        {**changes, "noise.mismatch.tau": 0.1, "limits.max_inputs": 8}
    )
    assert profile.description.endswith("weights.bits=4 and 2 more")


def test_no_change_keeps_the_description() -> None:
    loihi = load_profile("loihi2")
    assert loihi.with_overrides({}).description == loihi.description
    assert loihi.with_overrides({"weights.bits": 8}).description == loihi.description


def test_a_given_description_is_kept(tmp_path: Path) -> None:
    assert (
        load_profile("loihi2").with_overrides({"weights.bits": 4, "description": "mine"}).description
        == "mine"
    )
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: loihi2\ndescription: four-bit Loihi\nweights: {bits: 4}\n")
    assert load_profile(mine).description == "four-bit Loihi"


def test_profiles_show_of_a_derived_file_says_what_changed(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: loihi2\nweights: {bits: 4}\n")
    result = runner.invoke(app, ["profiles", "show", str(mine)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["description"] == "loihi2 with weights.bits=4"


def test_profiles_show_with_set_says_what_changed() -> None:
    result = runner.invoke(app, ["profiles", "show", "loihi2", "--set", "weights.bits=4"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert data["description"] == "loihi2 with weights.bits=4" and data["weights"]["bits"] == 4

"""`extends:` chains: deep merge (child wins, lists replace), relative paths, cycles, missing parents."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiploop.chip_profiles import ProfileError, load_profile


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """leaf.yaml -> ../base/mid.yaml -> loihi_base.yaml -> built-in loihi2 (3 files + a built-in)."""
    write(
        tmp_path / "base" / "loihi_base.yaml",
        "extends: loihi2\nname: loihi_base\nneuron: {threshold: 2048}\nweights: {range: [-128, 126]}\n",
    )
    write(
        tmp_path / "base" / "mid.yaml",
        "extends: loihi_base.yaml\nneuron: {reset: subtract}\n"
        "noise: {read: {model: gaussian_absolute, sigma: 2}}\n",
    )
    return write(
        tmp_path / "exp" / "leaf.yaml",
        "extends: ../base/mid.yaml\nname: leaf\nneuron: {tau_mem_s: 0.05}\nnoise: {read: {sigma: 4}}\n",
    )


def test_three_level_chain_merges_child_over_parent(chain: Path) -> None:
    loihi, leaf = load_profile("loihi2"), load_profile(chain)
    assert leaf.name == "leaf"
    assert leaf.neuron.tau_mem_s == 0.05  # leaf
    assert leaf.noise.read.sigma == 4  # leaf over mid
    assert leaf.noise.read.model == "gaussian_absolute"  # mid, kept by the deep merge
    assert leaf.neuron.reset == "subtract"  # mid over loihi2
    assert leaf.neuron.threshold == 2048  # loihi_base
    assert leaf.weights.range == (-128.0, 126.0)  # list replaced whole
    assert leaf.weights.bits == loihi.weights.bits and leaf.arithmetic == loihi.arithmetic  # built-in
    assert leaf.description == "mid with neuron.tau_mem_s=0.05, noise.read.sigma=4"  # what leaf changed


def test_chain_resolves_relative_to_each_file_not_the_cwd(
    chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_profile(chain).neuron.threshold == 2048


def test_resolved_profile_has_no_extends_and_round_trips(chain: Path, tmp_path: Path) -> None:
    profile = load_profile(chain)
    text = profile.to_yaml()
    assert "extends" not in text
    copy = write(tmp_path / "copy.yaml", text)
    assert load_profile(copy) == profile


def test_stale_citations_are_dropped_and_others_kept(chain: Path) -> None:
    source = load_profile(chain).source
    assert "neuron.threshold" not in source and "weights.range" not in source and "neuron.reset" not in source
    assert source["weights.bits"] == load_profile("loihi2").source["weights.bits"]


def test_child_citation_replaces_the_parent_one(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml", "extends: xylo\nweights: {bits: 6}\nsource: {weights.bits: 'my measurement'}\n"
    )
    assert load_profile(path).source["weights.bits"] == "my measurement"


def test_name_defaults_to_the_child_stem(tmp_path: Path) -> None:
    assert load_profile(write(tmp_path / "my_xylo.yaml", "extends: xylo\n")).name == "my_xylo"


def test_cycle_is_detected(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: ./a.yaml\n")
    message = load_error(tmp_path / "a.yaml")
    assert "cycle" in message and "a.yaml" in message and "b.yaml" in message


def test_self_extension_is_a_cycle(tmp_path: Path) -> None:
    assert "cycle" in load_error(write(tmp_path / "me.yaml", "extends: me.yaml\n"))


def test_missing_parent_names_the_file_and_where_it_looked(tmp_path: Path) -> None:
    path = write(tmp_path / "child.yaml", "extends: gone.yaml\n")
    message = load_error(path)
    assert message.startswith(f"{path}: extends:") and str(tmp_path / "gone.yaml") in message


def test_unknown_builtin_parent(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "child.yaml", "extends: loihi9\n"))
    assert "'loihi9'" in message and "loihi2" in message


@pytest.mark.parametrize("value", ["[loihi2]", "3", "''"])
def test_extends_must_be_a_name_or_path(tmp_path: Path, value: str) -> None:
    assert "extends: must be" in load_error(write(tmp_path / "child.yaml", f"extends: {value}\n"))


def test_error_in_a_parent_names_the_parent_file(tmp_path: Path) -> None:
    parent = write(tmp_path / "parent.yaml", "weights: {bits: 99}\n")
    write(tmp_path / "child.yaml", "extends: parent.yaml\n")
    assert load_error(tmp_path / "child.yaml").startswith(f"{parent}: weights.bits")


def test_syntax_error_in_a_parent_names_the_parent_file(tmp_path: Path) -> None:
    parent = write(tmp_path / "parent.yaml", "weights: {bits: 8\n")
    write(tmp_path / "child.yaml", "extends: parent.yaml\n")
    assert load_error(tmp_path / "child.yaml").startswith(f"{parent}:")


def test_child_can_reset_a_field_to_null(tmp_path: Path) -> None:
    path = write(tmp_path / "analog.yaml", "extends: rram_crossbar\nweights: {bits: null}\n")
    assert load_profile(path).weights.bits is None

"""The `chiploop` command: version, and the `profiles` group (list / show / validate / reference)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from chiploop import __version__
from chiploop.chip_profiles import list_profiles, load_profile
from chiploop.chip_profiles.loader import BUILTIN_DIR
from chiploop.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"chiploop {__version__}"


def test_profiles_list_shows_all_seven() -> None:
    result = runner.invoke(app, ["profiles", "list"])
    assert result.exit_code == 0, result.output
    for name in list_profiles():
        assert name in result.stdout
    assert len(list_profiles()) == 7
    assert "fixed" in result.stdout and "program:pcm" in result.stdout and "fan_out 64" in result.stdout


def test_profiles_show_prints_yaml_that_loads_back(tmp_path: Path) -> None:
    result = runner.invoke(app, ["profiles", "show", "loihi2"])
    assert result.exit_code == 0, result.output
    copy = tmp_path / "loihi2_copy.yaml"
    copy.write_text(result.stdout)
    assert load_profile(copy) == load_profile("loihi2")


def test_profiles_show_resolves_extends(tmp_path: Path) -> None:
    child = tmp_path / "mine.yaml"
    child.write_text("extends: xylo\nneuron: {threshold: 300}\n")
    result = runner.invoke(app, ["profiles", "show", str(child)])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert "extends" not in data
    assert data["name"] == "mine" and data["neuron"]["threshold"] == 300 and data["weights"]["bits"] == 8


def test_profiles_validate_ok() -> None:
    files = [str(BUILTIN_DIR / f"{name}.yaml") for name in ("ideal", "xylo")]
    result = runner.invoke(app, ["profiles", "validate", *files])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"ok: {f}" for f in files]


def test_profiles_validate_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    good = BUILTIN_DIR / "ideal.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("noise:\n  programming:\n    sigma: -0.5\n")
    result = runner.invoke(app, ["profiles", "validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [f"ok: {good}"]
    assert result.stderr.splitlines() == [f"error: {bad}: noise.programming.sigma: must be >= 0.0, got -0.5"]
    assert "Traceback" not in result.output


def test_profiles_show_unknown_name_is_exit_2() -> None:
    result = runner.invoke(app, ["profiles", "show", "truenorth"])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "truenorth" in result.stderr
    assert "Traceback" not in result.output


def test_profiles_validate_yaml_bomb_is_exit_2(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    levels = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    levels += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels) + "\n")
    result = runner.invoke(app, ["profiles", "validate", str(bomb)])
    assert result.exit_code == 2 and "aliases" in result.stderr


def test_profiles_validate_misspelled_source_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: xylo\nneuron: {threshold: 300}\nsource: {neuron.treshold: measured}\n")
    result = runner.invoke(app, ["profiles", "validate", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {bad}: source: unknown key 'neuron.treshold', not a profile field; "
        "did you mean 'neuron.threshold'?"
    ]


def test_profiles_show_set_applies_overrides_and_refuses_inert_ones() -> None:
    result = runner.invoke(app, ["profiles", "show", "xylo", "--set", "neuron.threshold=300"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert data["neuron"]["threshold"] == 300 and data["description"] == "xylo with neuron.threshold=300"
    result = runner.invoke(app, ["profiles", "show", "xylo", "--set", "noise.drift.nu=0.05"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: overrides: noise.drift.nu=0.05 does nothing while noise.drift.model is none; "
        "set noise.drift.model to power_law"
    ]


def test_profiles_reference_is_markdown_with_every_section() -> None:
    result = runner.invoke(app, ["profiles", "reference"])
    assert result.exit_code == 0, result.output
    for heading in (
        "# Chip profile reference",
        "## Fields",
        "## Settings that cannot act",
        "hosts which task",
    ):
        assert heading in result.stdout

"""Settings that cannot act are refused in one line (the field, why, what to set); one that barely
acts is warned about; values a profile merely keeps are never refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chiploop.chip.device_model import neuron_constants
from chiploop.chip.devices import draw_mismatch
from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles import ProfileError, load_profile
from chiploop.chip_profiles.inert import RULES, InertSettingError
from chiploop.chip_profiles.model import Mismatch
from chiploop.cli import app

runner = CliRunner()

# (profile, overrides, the field refused, why): one case per field of every rule.
REFUSED = [
    ("loihi2", {"neuron.adaptation.tau_s": 0.5}, "neuron.adaptation.tau_s", "neuron.model is lif"),
    ("loihi2", {"neuron.adaptation.beta": 1}, "neuron.adaptation.beta", "neuron.model is lif"),
    ("loihi2", {"neuron.adaptation.fraction": 0.5}, "neuron.adaptation.fraction", "neuron.model is lif"),
    ("loihi2", {"neuron.model": "alif"}, "neuron.model", "neuron.adaptation.beta is 0"),
    (
        "loihi2",
        {"neuron.model": "alif", "neuron.adaptation.beta": 300, "neuron.adaptation.fraction": 0},
        "neuron.model",
        "neuron.adaptation.fraction is 0",
    ),
    ("ideal", {"arithmetic.state_bits": 16}, "arithmetic.state_bits", "arithmetic.kind is float"),
    ("ideal", {"arithmetic.decay": "shift"}, "arithmetic.decay", "arithmetic.kind is float"),
    ("ideal", {"arithmetic.decay_bits": 8}, "arithmetic.decay_bits", "arithmetic.kind is float"),
    ("ideal", {"weights.rounding": "stochastic"}, "weights.rounding", "weights.bits is null"),
    ("ideal", {"weights.exponent_bits": 2}, "weights.exponent_bits", "weights.bits is null"),
    ("rram_crossbar", {"weights.map_to_range": True}, "weights.map_to_range", "pcm or periphery noise"),
    ("loihi2", {"noise.programming.sigma": 2}, "noise.programming.sigma", "noise.programming.model is none"),
    (
        "pcm_crossbar",
        {"noise.programming.sigma": 0.1},
        "noise.programming.sigma",
        "noise.programming.model is pcm",
    ),
    (
        "rram_crossbar",
        {"noise.programming.g_max_us": 10},
        "noise.programming.g_max_us",
        "is gaussian_relative",
    ),
    ("loihi2", {"noise.programming.coefficients": [0.1, 1, -1]}, "noise.programming.coefficients", "is none"),
    (
        "loihi2",
        {"noise.programming.reference_g_max_us": 10},
        "noise.programming.reference_g_max_us",
        "is none",
    ),
    ("loihi2", {"noise.programming.model": "gaussian_relative"}, "noise.programming.model", "sigma is 0"),
    ("loihi2", {"noise.read.sigma": 0.05}, "noise.read.sigma", "noise.read.model is none"),
    (
        "rram_crossbar",
        {"noise.read.t_read_s": 1e-6},
        "noise.read.t_read_s",
        "noise.read.model is gaussian_absolute",
    ),
    ("loihi2", {"noise.read.model": "gaussian_absolute"}, "noise.read.model", "noise.read.sigma is 0"),
    ("loihi2", {"noise.drift.nu": 0.05}, "noise.drift.nu", "noise.drift.model is none"),
    ("pcm_crossbar", {"noise.drift.nu_sigma": 0.01}, "noise.drift.nu_sigma", "noise.drift.model is pcm"),
    ("loihi2", {"noise.drift.t0_s": 10}, "noise.drift.t0_s", "noise.drift.model is none"),
    ("loihi2", {"noise.drift.model": "power_law"}, "noise.drift.model", "nu and noise.drift.nu_sigma are 0"),
]

ACTING = [
    ("loihi2", {"noise.read.model": "gaussian_absolute", "noise.read.sigma": 2}),
    ("loihi2", {"neuron.model": "alif", "neuron.adaptation.beta": 300, "neuron.adaptation.fraction": 0.5}),
    ("loihi2", {"noise.read.sigma": 0}),  # no change at all
    ("rram_crossbar", {"noise.read.sigma": 0}),  # switches the read noise off
    ("pcm_crossbar", {"noise.read": {"model": "none"}}),  # its sigma and t_read_s are merely kept
    ("pcm_crossbar", {"noise.drift.model": "none", "noise.drift.t0_s": 10}),  # t0 times the 1/f noise
    ("ideal", {"weights.bits": 4, "weights.rounding": "stochastic"}),
    ("ideal", {"noise.periphery.weight_sigma": 0.01, "weights.map_to_range": True}),
    ("xylo", {"arithmetic.state_bits": 20}),
]


def refusal(profile: str, overrides: dict) -> str:
    with pytest.raises(InertSettingError) as info:
        load_profile(profile).with_overrides(overrides)
    assert isinstance(info.value, ProfileError) and "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(("profile", "overrides", "field", "why"), REFUSED)
def test_a_setting_that_cannot_act_is_refused(profile: str, overrides: dict, field: str, why: str) -> None:
    message = refusal(profile, overrides)
    assert message.startswith(f"overrides: {field}=")
    assert "does nothing" in message and why in message and "; set " in message


def test_every_rule_field_has_a_refusal_case() -> None:
    refusing = {field for rule in RULES if rule.refuse for field in rule.fields}
    assert {field for _, _, field, _ in REFUSED} == refusing


def test_refusals_name_the_fix() -> None:
    assert refusal("loihi2", {"noise.read.sigma": 0.05}) == (
        "overrides: noise.read.sigma=0.05 does nothing while noise.read.model is none; "
        "set noise.read.model to gaussian_absolute, gaussian_relative or pcm_1f"
    )
    assert refusal("loihi2", {"neuron.model": "alif"}) == (
        "overrides: neuron.model=alif does nothing while neuron.adaptation.beta is 0 (an alif neuron "
        "that does not adapt is a lif neuron); set neuron.adaptation.beta > 0 and "
        "neuron.adaptation.fraction > 0"
    )


def test_every_refusal_of_one_override_is_on_one_line() -> None:
    message = refusal("loihi2", {"noise.read.sigma": 0.05, "noise.drift.nu": 0.1})
    assert "noise.read.sigma=0.05" in message and "noise.drift.nu=0.1" in message


@pytest.mark.parametrize(("profile", "overrides"), ACTING)
def test_settings_that_act_are_accepted(profile: str, overrides: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_profile(profile).with_overrides(overrides)


def test_a_validation_error_comes_before_the_inert_check() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("loihi2").with_overrides({"noise.read.sigma": -1})
    assert not isinstance(info.value, InertSettingError)


def test_a_tau_spread_that_moves_almost_no_shift_decay_is_warned_about() -> None:
    with pytest.warns(UserWarning, match=r"noise\.mismatch\.tau=0\.05 changes the decay of under 1%"):
        load_profile("xylo").with_overrides({"noise.mismatch.tau": 0.05})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_profile("xylo").with_overrides({"noise.mismatch.tau": 0.3})
        load_profile("loihi2").with_overrides({"noise.mismatch.tau": 0.05})  # multiplier decays


@pytest.mark.parametrize(("sigma", "few"), [(0.05, True), (0.3, False)])
def test_the_warning_matches_the_decays_the_emulator_draws(sigma: float, few: bool) -> None:
    profile, spec = load_profile("xylo"), NetworkSpec(16, 2000, 8)
    mismatch = draw_mismatch(spec.n_neurons, Mismatch(tau=sigma), np.random.default_rng(0))
    moved = np.mean(neuron_constants(profile, spec, mismatch).mem_h != neuron_constants(profile, spec).mem_h)
    assert (moved < 0.01) == few


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_file_setting_that_cannot_act_is_one_line_exit_2(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine.yaml", "extends: loihi2\nnoise: {read: {sigma: 0.05}}\n")
    result = runner.invoke(app, ["profiles", "validate", str(mine)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {mine}: noise.read.sigma=0.05 does nothing while noise.read.model is none; "
        "set noise.read.model to gaussian_absolute, gaussian_relative or pcm_1f"
    ]


def test_a_standalone_file_is_checked_against_the_defaults(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine.yaml", "neuron: {adaptation: {beta: 1}}\n")
    with pytest.raises(InertSettingError, match=r"mine\.yaml: neuron\.adaptation\.beta=1 does nothing"):
        load_profile(mine)


def test_a_child_may_switch_off_what_its_parent_set(tmp_path: Path) -> None:
    write(tmp_path / "noisy.yaml", "extends: loihi2\nnoise: {read: {model: gaussian_absolute, sigma: 2}}\n")
    quiet = write(tmp_path / "quiet.yaml", "extends: noisy.yaml\nnoise: {read: {model: none}}\n")
    assert load_profile(quiet).noise.read.sigma == 2  # kept, not set by quiet.yaml


def test_train_refuses_the_readme_alif_override_before_any_work() -> None:
    result = runner.invoke(app, ["train", "--set", "neuron.model=alif"])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert "neuron.model=alif does nothing" in line and "set neuron.adaptation.beta > 0" in line


def test_characterize_refuses_a_sweep_of_a_noise_the_profile_has_not(tmp_path: Path) -> None:
    sweep = [
        "characterize",
        "--profile",
        "loihi2",
        "--sweep",
        "noise.read.sigma=0,0.05",
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(app, sweep)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert "noise.read.sigma=0.05 does nothing while noise.read.model is none" in line
    assert not any(tmp_path.iterdir())

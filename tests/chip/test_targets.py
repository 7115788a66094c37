"""open_chip: one entry point, backends by name or URL, clear errors for the rest."""

from __future__ import annotations

import sys

import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip.targets import open_chip
from chiploop.chip_profiles.loader import load_profile
from chiploop.emulator.brian import BrianChip
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import ChipError, ProfileError

SPEC = NetworkSpec(4, 6, 2)


def test_emulator_is_the_default_and_takes_profile_names() -> None:
    chip = open_chip(profile="ideal", spec=SPEC, seed=3, batch_size=4)
    assert isinstance(chip, BrianChip)
    assert chip.profile == load_profile("ideal") and chip.batch_size == 4 and chip.device.seed == 3


def test_twin_target() -> None:
    chip = open_chip("twin", load_profile("loihi2"), SPEC, seed=2)
    assert isinstance(chip, TwinChip) and chip.device.seed == 2 and chip.profile.name == "loihi2"


@pytest.mark.parametrize(
    ("target", "url"),
    [("serial:///dev/ttyACM0", "/dev/ttyACM0"), ("socket://127.0.0.1:5555", "socket://127.0.0.1:5555")],
)
def test_board_targets_open_a_serial_chip(monkeypatch: pytest.MonkeyPatch, target: str, url: str) -> None:
    import chiploop.firmware_bridge.serial_chip as serial_chip

    opened = {}

    class FakeSerialChip:
        def __init__(self, url, profile, spec, seed=0, **kw):
            opened.update(url=url, profile=profile, spec=spec, seed=seed, kw=kw)

    monkeypatch.setattr(serial_chip, "SerialChip", FakeSerialChip)
    chip = open_chip(target, "loihi2", SPEC, seed=5, baud=9600)
    assert isinstance(chip, FakeSerialChip)
    expected = {"url": url, "profile": load_profile("loihi2"), "spec": SPEC, "seed": 5, "kw": {"baud": 9600}}
    assert opened == expected


def test_missing_bridge_names_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "chiploop.firmware_bridge.serial_chip", None)
    with pytest.raises(ChipError, match="socket://host:1"):
        open_chip("socket://host:1", "loihi2", SPEC)


def test_unknown_target_lists_the_valid_ones() -> None:
    with pytest.raises(ChipError, match="'gpu'.*emulator, twin, serial://"):
        open_chip("gpu", "ideal", SPEC)


def test_bad_arguments() -> None:
    with pytest.raises(ChipError, match="NetworkSpec"):
        open_chip("emulator", "ideal", None)
    with pytest.raises(ProfileError):
        open_chip("emulator", "no_such_chip", SPEC)

"""Chip backends under conformance test. Adding a backend is one entry in CHIP_FACTORIES."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.brian import BrianChip
from chiploop.emulator.twin_chip import TwinChip
from chiploop.firmware_bridge.board_sim import serve_in_background
from chiploop.firmware_bridge.serial_chip import SerialChip


@dataclass(frozen=True)
class ChipFactory:
    """make(profile, spec, seed) -> Chip; `arithmetic`: the profile kinds the backend can run."""

    make: Callable[[ChipProfile, NetworkSpec, int], Chip]
    arithmetic: tuple[str, ...] = ("float", "fixed")


CHIP_FACTORIES: dict[str, ChipFactory] = {
    "brian": ChipFactory(lambda profile, spec, seed: BrianChip(profile, spec, seed=seed)),
    "twin": ChipFactory(lambda profile, spec, seed: TwinChip(profile, spec, seed=seed)),
    "serial": ChipFactory(lambda profile, spec, seed: SerialChip(serve_in_background(), profile, spec, seed)),
}

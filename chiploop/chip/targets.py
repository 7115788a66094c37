"""`open_chip`: one entry point for every Chip backend, addressed like pyserial's `serial_for_url`.

"emulator" -> BrianChip, "twin" -> TwinChip, "serial://..." / "socket://..." -> SerialChip
(a board, or the board simulator, over a pyserial URL). Backends are imported when asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip
from chiploop.chip_profiles.loader import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ChipError

TARGETS = ("emulator", "twin", "serial://<port>", "socket://<host>:<port>")
_BOARD_SCHEMES = ("serial://", "socket://")


def open_chip(
    target: str = "emulator",
    profile: ChipProfile | str | Path = "ideal",
    spec: NetworkSpec | None = None,
    seed: int = 0,
    **kw: Any,
) -> Chip:
    """Open the Chip named by `target` for `spec` under `profile` (a ChipProfile, built-in name or YAML).

    Extra keywords go to the backend (e.g. `batch_size`, `cache_dir` for the emulator, `baud`,
    `timeout` for a board).
    """
    if not isinstance(spec, NetworkSpec):
        raise ChipError(f"open_chip: expected spec to be a NetworkSpec, got {type(spec).__name__}")
    if not isinstance(target, str):
        raise ChipError(f"open_chip: expected target to be one of {', '.join(TARGETS)}, got {target!r}")
    prof = profile if isinstance(profile, ChipProfile) else load_profile(profile)
    if target == "emulator":
        from chiploop.emulator.brian import BrianChip

        return BrianChip(prof, spec, seed=seed, **kw)
    if target == "twin":
        from chiploop.emulator.twin_chip import TwinChip

        return TwinChip(prof, spec, seed=seed, **kw)
    if target.startswith(_BOARD_SCHEMES):
        try:
            from chiploop.firmware_bridge.serial_chip import SerialChip
        except ModuleNotFoundError as exc:
            if exc.name != "chiploop.firmware_bridge.serial_chip":
                raise
            raise ChipError(
                f"open_chip: target {target!r} needs chiploop.firmware_bridge.serial_chip, which is missing"
            ) from None
        url = target.removeprefix("serial://") if target.startswith("serial://") else target
        return SerialChip(url, prof, spec, seed=seed, **kw)
    raise ChipError(f"open_chip: unknown target {target!r}; expected one of {', '.join(TARGETS)}")

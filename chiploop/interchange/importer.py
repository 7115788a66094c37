"""`import_nir`: a NIR file on a chip profile in one call (read, check, chain, map)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chiploop.chip_profiles.loader import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.interchange.chain import to_chain
from chiploop.interchange.mapping import Mapped, map_chain
from chiploop.interchange.nirfile import graph_node, read_nir

REFERENCE_PROFILE = "ideal"


def import_nir(
    source: str | Path | Any,
    profile: ChipProfile | str | Path = REFERENCE_PROFILE,
    dt_s: float | None = None,
    nir_rules: bool | None = None,
) -> Mapped:
    """The network in NIR file `source` (or a `nir.NIRGraph` in memory) on `profile`.

    nir_rules: take NIR's reset, threshold comparison and input timing instead of the profile's
    (default: only on the `ideal` reference, where the result is then exact). dt_s: the step the
    network was exported for (default: see `mapping.resolve_dt`).
    """
    base = profile if isinstance(profile, ChipProfile) else load_profile(profile)
    if nir_rules is None:
        nir_rules = base.name == REFERENCE_PROFILE
    root = read_nir(source) if isinstance(source, str | Path) else graph_node(source)
    return map_chain(to_chain(root), base, dt_s=dt_s, software=nir_rules)

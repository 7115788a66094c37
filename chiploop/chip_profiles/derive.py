"""A profile derived from another (overrides, a file over its `extends:` parent or the defaults):
the fields it changes, checked to act (`inert`), and a description that says what changed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chiploop.chip_profiles.inert import check_settings, show
from chiploop.chip_profiles.model import ChipProfile, leaf_paths

MAX_LISTED = 4  # changes a derived description names before "and N more"


def changes(base: ChipProfile, profile: ChipProfile, paths: Iterable[str]) -> dict[str, Any]:
    """The fields at or under the dotted `paths` whose value in `profile` differs from `base`'s:
    field path -> new value, in model order (metadata such as `name` and `source` is no field)."""
    before, after = base.model_dump(mode="json"), profile.model_dump(mode="json")
    prefixes = tuple(paths)
    out = {}
    for leaf in leaf_paths():
        if any(leaf == p or leaf.startswith(f"{p}.") for p in prefixes):
            new = _at(after, leaf)
            if new != _at(before, leaf):
                out[leaf] = new
    return out


def derive(
    base: ChipProfile, profile: ChipProfile, paths: Iterable[str], origin: str, describe: bool
) -> ChipProfile:
    """`profile`, made from `base` by setting `paths`: its changes must act (InertSettingError
    naming `origin` otherwise); with `describe`, its description says what changed from `base`."""
    changed = changes(base, profile, paths)
    check_settings(profile, changed, origin)
    if not describe or not changed:
        return profile
    return profile.model_copy(update={"description": description(base, changed)})


def description(base: ChipProfile, changed: dict[str, Any]) -> str:
    """`loihi2 with weights.bits=4, ...`: what `changed` did to `base` (appended to `base`'s own
    list when `base` is itself described that way)."""
    items = [f"{path}={show(value)}" for path, value in changed.items()]
    listed = ", ".join(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        listed += f" and {len(items) - MAX_LISTED} more"
    prefix = f"{base.name} with "
    return f"{base.description}, {listed}" if base.description.startswith(prefix) else prefix + listed


def _at(data: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        data = data[key]
    return data

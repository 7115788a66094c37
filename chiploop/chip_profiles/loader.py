"""Load chip profiles from YAML: built-in names or files, `extends:` chains, dotted overrides.

A profile file is a mapping of ChipProfile sections. `extends: <built-in name | path relative to
the file>` deep-merges the file over its parent (mappings merge, the child wins; lists replace).
Files are read defensively: at most `MAX_FILE_BYTES`, safe YAML only, `MAX_NESTING` levels deep,
and documents whose aliases would expand past `MAX_EXPANDED_NODES` nodes (a "billion laughs") are
refused before they are built.
Every problem is a ProfileError on one line naming the file, the field path and what is allowed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from chiploop.chip_profiles.derive import derive
from chiploop.chip_profiles.model import ChipProfile, section_of
from chiploop.errors import ProfileError

BUILTIN_DIR = Path(__file__).parent / "builtin"
MAX_FILE_BYTES = 1_000_000
MAX_EXPANDED_NODES = 100_000
MAX_EXTENDS_DEPTH = 16
MAX_NESTING = 32
_METADATA_KEYS = ("extends", "name", "description", "source", "checked_against")
# Changes that keep a profile the chip its vendor simulator was checked against: parameter values
# and noise or limits. Any other change (a rule, the arithmetic, the weight format) drops the claim.
_SAME_CHIP = (
    "neuron.tau_",
    "neuron.threshold",
    "neuron.bias",
    "neuron.adaptation",
    "neuron.model",
    "noise.",
    "limits.",
    "timing.dt_s",
    "timing.time_scale",
)


class _ProfileYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and reads YAML 1.2 floats such as `1e-3`."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        """Compose one node, at most `MAX_NESTING` levels deep (no recursion-limit crash)."""
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_ProfileYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def list_profiles() -> list[str]:
    """Names of the built-in profiles, sorted."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> ChipProfile:
    """A built-in profile by name, or a profile file (with its `extends:` chain resolved)."""
    if isinstance(name_or_path, str) and name_or_path in list_profiles():
        return _load_file(BUILTIN_DIR / f"{name_or_path}.yaml")
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and not _looks_like_path(name_or_path) and not path.exists():
        builtins = ", ".join(list_profiles())
        raise ProfileError(f"unknown profile {name_or_path!r}: not a built-in ({builtins}) and no such file")
    return _load_file(path)


def apply_overrides(profile: ChipProfile, overrides: dict[str, Any]) -> ChipProfile:
    """A copy of `profile` with dotted-path fields replaced and the result validated.

    `{"noise.read.sigma": 0.05}` sets one field; a mapping value merges into a section.
    `"source.<field path>"` sets one citation. Citations of overridden fields are dropped unless
    the overrides give new ones. An unknown path names the valid keys at that level. Numeric
    strings are converted (`"1e-3"` -> 0.001), unlike in files. A change that cannot act is
    refused (`inert`); unless `description` is overridden, the result's says what changed.
    """
    data = profile.model_dump(mode="json")
    citations = {k.removeprefix("source."): v for k, v in overrides.items() if str(k).startswith("source.")}
    fields = {k: v for k, v in overrides.items() if not str(k).startswith("source.")}
    for dotted, value in fields.items():
        _set_field(data, dotted, value)
    if isinstance(data["source"], dict):
        data["source"] = _drop_stale_sources(data["source"], set(fields), citations)
    if "checked_against" not in fields:
        data["checked_against"] = _still_checked(data.get("checked_against", ""), set(fields))
    changed = validate_profile_data(data, "overrides", strict=False)
    return derive(profile, changed, fields, "overrides", describe="description" not in fields)


def validate_profile_data(data: dict[str, Any], origin: str, *, strict: bool = True) -> ChipProfile:
    """Validate a resolved profile mapping; errors name `origin` (a file), field paths and limits.

    strict (files): a number must be a number, `"8"` or `true` is no integer. Not strict
    (overrides, often typed on a command line): numeric strings such as `"1e-3"` are converted.
    """
    try:
        return ChipProfile.model_validate_json(json.dumps(data, default=_json_scalar), strict=strict)
    except ValidationError as exc:
        errors = _without_union_branches(exc.errors())
        raise ProfileError(f"{origin}: " + "; ".join(_describe(err) for err in errors)) from None
    except (TypeError, ValueError) as exc:  # json.dumps of a value no profile field can hold
        raise ProfileError(f"{origin}: unsupported value in profile: {exc}") from None


# ---------------------------------------------------------------- files and `extends`
def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".yaml", ".yml"))


def _load_file(path: Path) -> ChipProfile:
    return _resolve(path, ())[1]


def _resolve(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], ChipProfile]:
    """The file's mapping merged over its `extends:` parents (`extends` removed), and its profile.

    Every file of a chain is validated on its own, so an error names the file that brought it.
    A file without `name:` is named after its file stem. The fields a file changes (from its
    parent, or from the defaults) must act (`inert`); a file over a parent without its own
    `description:` is described by what it changes.
    """
    real = path.resolve()
    if real in chain:
        cycle = " -> ".join(str(p) for p in (*chain, real))
        raise ProfileError(f"{path}: extends: cycle {cycle}")
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise ProfileError(f"{path}: extends: chain longer than {MAX_EXTENDS_DEPTH} files")
    data = _read_mapping(path)
    data.setdefault("name", path.stem)
    parent_ref = data.pop("extends", None)
    own = _leaf_paths(data)
    if parent_ref is None:
        profile = validate_profile_data(data, str(path))
        return data, derive(ChipProfile(name=profile.name), profile, own, str(path), describe=False)
    if not isinstance(parent_ref, str) or not parent_ref:
        raise ProfileError(f"{path}: extends: must be a built-in name or a file path, got {parent_ref!r}")
    parent_data, parent = _resolve(_parent_path(path, parent_ref), (*chain, real))
    merged = _deep_merge(parent_data, data)
    parent_src, own_src = parent_data.get("source", {}), data.get("source", {})
    if isinstance(parent_src, dict) and isinstance(own_src, dict):
        merged["source"] = _drop_stale_sources(parent_src, own, own_src)
    if "checked_against" not in data:
        merged["checked_against"] = _still_checked(parent_data.get("checked_against", ""), own)
    profile = derive(
        parent, validate_profile_data(merged, str(path)), own, str(path), "description" not in data
    )
    merged["description"] = profile.description
    return merged, profile


def _parent_path(child: Path, ref: str) -> Path:
    if not _looks_like_path(ref) and ref in list_profiles():
        return BUILTIN_DIR / f"{ref}.yaml"
    candidate = child.parent / ref
    if not candidate.is_file():
        raise ProfileError(
            f"{child}: extends: {ref!r} is neither a built-in ({', '.join(list_profiles())}) "
            f"nor a file (looked for {candidate})"
        )
    return candidate


def _read_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a profile file, read within the size and expansion budgets."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ProfileError(f"{path}: not a regular file")
        if size > MAX_FILE_BYTES:
            raise ProfileError(f"{path}: file is {size} bytes, a profile may have at most {MAX_FILE_BYTES}")
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ProfileError(f"{path}: file is larger than {MAX_FILE_BYTES} bytes, the limit for a profile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    data = _parse_yaml(text, path)
    if data is None:
        raise ProfileError(f"{path}: file is empty; expected a mapping of profile sections")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ProfileError(f"{path}: top level must be a mapping of profile sections, got {kind}")
    return data


def _parse_yaml(text: str, path: Path) -> Any:
    """Compose the YAML node graph, check its expanded size, then construct it (safe tags only)."""
    loader = _ProfileYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), path)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ProfileError(f"{where}: invalid YAML: {' '.join(what.split())}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int], path: Path) -> int:
    """Nodes the document would have with every alias expanded; refuses cycles and explosions."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise ProfileError(f"{path}: YAML alias refers to itself (recursive anchor)")
    active.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        _refuse_duplicate_keys(node, path)
        children = [item for pair in node.value for item in pair]
    else:
        children = []
    size = 1 + sum(_expanded_size(child, memo, active, path) for child in children)
    active.discard(key)
    if size > MAX_EXPANDED_NODES:
        raise ProfileError(
            f"{path}: YAML expands to more than {MAX_EXPANDED_NODES} nodes through aliases (refused)"
        )
    memo[key] = size
    return size


def _refuse_duplicate_keys(node: yaml.MappingNode, path: Path) -> None:
    """A key given twice in one mapping is an error (plain YAML would keep the last silently)."""
    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value != "<<":
            if key.value in seen:
                mark = key.start_mark
                raise ProfileError(f"{path}:{mark.line + 1}:{mark.column + 1}: duplicate key {key.value!r}")
            seen.add(key.value)


# ---------------------------------------------------------------- merging
def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`: mappings merge recursively, anything else (lists too) is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _leaf_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the fields a mapping sets (profile metadata excluded)."""
    paths: set[str] = set()
    for key, value in data.items():
        if not prefix and key in _METADATA_KEYS:
            continue
        dotted = f"{prefix}{key}"
        paths |= _leaf_paths(value, f"{dotted}.") if isinstance(value, dict) and value else {dotted}
    return paths


def _still_checked(claim: Any, changed: set[str]) -> Any:
    """A parent's `checked_against` if every change keeps the vendor's chip (`_SAME_CHIP`), else ""."""
    return claim if all(path.startswith(_SAME_CHIP) for path in changed) else ""


def _drop_stale_sources(sources: dict[str, Any], changed: set[str], new: dict[str, Any]) -> dict[str, Any]:
    """Citations of `sources` not about a `changed` field (or its section), updated with `new`."""
    kept = {
        field: cite
        for field, cite in sources.items()
        if not any(field == c or field.startswith(f"{c}.") or c.startswith(f"{field}.") for c in changed)
    }
    return {**kept, **new}


# ---------------------------------------------------------------- overrides
def _set_field(data: dict[str, Any], dotted: Any, value: Any) -> None:
    """Set `data` at a dotted field path, checking every key against the model."""
    if not isinstance(dotted, str) or not dotted or any(not part for part in dotted.split(".")):
        raise ProfileError(f"override {dotted!r}: expected a dotted field path like 'noise.read.sigma'")
    *parents, leaf = dotted.split(".")
    node, model = data, ChipProfile
    for depth, key in enumerate(parents):
        _check_key(dotted, parents[:depth], key, model)
        section = section_of(model, key)
        if section is None:
            where = ".".join(parents[: depth + 1])
            raise ProfileError(f"override {dotted!r}: {where} is a value, not a section")
        node, model = node[key], section
    _check_key(dotted, parents, leaf, model)
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        node[leaf] = _deep_merge(node[leaf], value)
    else:
        node[leaf] = value


def _check_key(dotted: str, parents: list[str], key: str, model: type[BaseModel]) -> None:
    if key not in model.model_fields:
        where = ".".join(parents) or "the top level"
        valid = ", ".join(model.model_fields)
        raise ProfileError(f"override {dotted!r}: unknown key {key!r} under {where}; valid keys: {valid}")


# ---------------------------------------------------------------- error messages
def _json_scalar(value: Any) -> Any:
    """numpy scalars as plain numbers; anything else cannot be a profile value."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not a number, string, list or mapping")


def _without_union_branches(errors: list[Any]) -> list[dict[str, Any]]:
    """Errors of a one-or-per-neuron field reported once, from the branch the value meant.

    pydantic tries every member of a union (`number | list of numbers`) and adds the member's name
    to the error location; keep the list member's errors if the value is a list, else the scalar's.
    """
    out, seen = [], set()
    for err in errors:
        loc = tuple(err["loc"])
        tag = next((k for k in range(1, len(loc)) if _is_per_neuron(loc[:k])), None)
        if tag is None or tag == len(loc):
            out.append(err)
            continue
        list_branch = loc[tag].startswith("tuple")
        list_given = not any(
            e["loc"][: tag + 1] == (*loc[:tag], e["loc"][tag]) and e["type"] == "tuple_type" for e in errors
        )
        if list_branch == list_given:
            fixed = {**err, "loc": loc[:tag] + loc[tag + 1 :]}
            key = (fixed["loc"], fixed["type"])
            if key not in seen:
                seen.add(key)
                out.append(fixed)
    return out


def _is_per_neuron(loc: tuple[Any, ...]) -> bool:
    """Whether `loc` names a field that takes one number or a list (a union with a tuple member)."""
    parent = _model_at(loc[:-1])
    if parent is None or loc[-1] not in parent.model_fields:
        return False
    members = get_args(parent.model_fields[loc[-1]].annotation)
    return any(get_origin(get_args(m)[0] if get_args(m) else m) is tuple for m in members)


def _describe(err: dict[str, Any]) -> str:
    """One pydantic error as `field.path: what is allowed, got X`."""
    loc = _format_loc(err["loc"])
    kind, ctx = err["type"], err.get("ctx") or {}
    got = f", got {_short(err['input'])}" if "input" in err and kind != "missing" else ""
    if kind == "extra_forbidden":
        return f"{loc}: unknown key; allowed here: {', '.join(_allowed_keys(err['loc'][:-1]))}"
    if kind == "missing":
        return f"{loc}: required field missing"
    if kind in ("model_type", "dict_type"):
        return f"{loc}: must be a mapping{got}"
    if kind == "literal_error":
        return f"{loc}: must be one of {ctx['expected'].replace(' or ', ', ')}{got}"
    if kind in _BOUND_WORDS:
        lo, hi = _bounds(err["loc"])
        both = lo is not None and hi is not None
        rule = f"in [{lo}, {hi}]" if both else f"{_BOUND_WORDS[kind]} {next(iter(ctx.values()))}"
        return f"{loc}: must be {rule}{got}"
    if kind == "value_error":
        text = str(ctx.get("error", err["msg"]))
        return text if not err["loc"] else f"{loc}: {text}"
    return f"{loc}: {err['msg'][0].lower()}{err['msg'][1:]}{got}"


_BOUND_WORDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section class at a field path, or None if the path does not lead to a section."""
    model: type[BaseModel] | None = ChipProfile
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        model = section_of(model, part)
    return model


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _bounds(loc: tuple[Any, ...]) -> tuple[Any, Any]:
    """Inclusive (ge, le) bounds of the field at `loc`, looking inside Optional[Annotated[...]]."""
    parent = _model_at(loc[:-1])
    if parent is None or loc[-1] not in parent.model_fields:
        return None, None
    info = parent.model_fields[loc[-1]]
    metadata = list(info.metadata)
    for arg in get_args(info.annotation):  # Annotated[int, Field(ge=.., le=..)] | None
        for meta in getattr(arg, "__metadata__", ()):
            metadata += getattr(meta, "metadata", [meta])
    lo = next((m.ge for m in metadata if getattr(m, "ge", None) is not None), None)
    hi = next((m.le for m in metadata if getattr(m, "le", None) is not None), None)
    return lo, hi

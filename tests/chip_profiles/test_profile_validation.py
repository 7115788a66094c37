"""Every field's validation: a bad value is a one-line ProfileError naming file, path and rule."""

from __future__ import annotations

import math
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from chiploop.chip_profiles import ChipProfile, ProfileError, load_profile
from chiploop.chip_profiles.loader import validate_profile_data

ORIGIN = "bad.yaml"


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, typing.Any, list]]:
    """(dotted path, annotation, constraint metadata) of every leaf field of the profile."""
    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _fields(ann, f"{prefix}{name}.")
            continue
        metadata = list(info.metadata)
        for arg in typing.get_args(ann):
            for meta in getattr(arg, "__metadata__", ()):
                metadata += getattr(meta, "metadata", [meta])
        out.append((f"{prefix}{name}", ann, metadata))
    return out


LEAVES = _fields(ChipProfile)


def _base_type(ann: typing.Any) -> type | None:
    if ann in (int, float):
        return ann
    if typing.get_origin(ann) is tuple:
        return None
    for arg in typing.get_args(ann):
        inner = typing.get_args(arg)[0] if typing.get_origin(arg) is typing.Annotated else arg
        if inner in (int, float):
            return inner
    return None


def _bounds(metadata: list) -> list:
    return [m for m in metadata if any(getattr(m, a, None) is not None for a in ("ge", "gt", "le"))]


def _per_neuron(ann: typing.Any) -> bool:
    """One number or a list of numbers (one per neuron)."""
    return any(
        typing.get_origin(typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a) is tuple
        for a in typing.get_args(ann)
    )


NUMERIC = [
    (path, _base_type(ann), _bounds(meta)) for path, ann, meta in LEAVES if _base_type(ann) and _bounds(meta)
]
LITERALS = [
    (path, typing.get_args(ann)) for path, ann, _ in LEAVES if typing.get_origin(ann) is typing.Literal
]


def _nest(path: str, value: object) -> dict:
    data: dict = {"name": "bad"}
    node = data
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


def _error(data: dict) -> str:
    with pytest.raises(ProfileError) as info:
        validate_profile_data(data, ORIGIN)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{ORIGIN}: ")
    return message


def test_the_walk_finds_the_constrained_fields() -> None:
    numeric, literal = {path for path, _, _ in NUMERIC}, {path for path, _ in LITERALS}
    assert {
        "weights.bits",
        "noise.programming.sigma",
        "noise.faults.stuck_at_zero",
        "limits.max_fan_in",
    } <= numeric
    assert len(NUMERIC) >= 25
    assert {"neuron.reset", "weights.encoding", "noise.read.model", "arithmetic.kind"} <= literal


def _violations(kind: type, metadata: list) -> st.SearchStrategy:
    """Values breaking one bound of a field (ge / gt / le)."""
    options = []
    for meta in metadata:
        for attr, below in (("ge", True), ("gt", True), ("le", False)):
            bound = getattr(meta, attr, None)
            if bound is None:
                continue
            if kind is int:
                edge = bound - 1 if attr == "ge" else bound if attr == "gt" else bound + 1
                ints = st.integers(-(10**12), edge) if below else st.integers(edge, 10**12)
                options.append(ints)
            else:
                exclusive = attr != "gt"
                floats = (
                    st.floats(max_value=bound, exclude_max=exclusive, allow_nan=False, allow_infinity=False)
                    if below
                    else st.floats(min_value=bound, exclude_min=True, allow_nan=False, allow_infinity=False)
                )
                options.append(floats)
    return st.one_of(options)


@pytest.mark.parametrize(("path", "kind", "metadata"), NUMERIC, ids=[p for p, _, _ in NUMERIC])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_out_of_bounds_number_names_field_and_bound(path: str, kind: type, metadata: list, data) -> None:
    value = data.draw(_violations(kind, metadata))
    message = _error(_nest(path, value))
    assert f"{path}: must be " in message
    assert f"got {value!r}" in message


@pytest.mark.parametrize(("path", "choices"), LITERALS, ids=[p for p, _ in LITERALS])
@settings(max_examples=15, deadline=None)
@given(bad=st.text(min_size=1, max_size=12))
def test_bad_choice_lists_the_choices(path: str, choices: tuple, bad: str) -> None:
    if bad in choices:
        return
    message = _error(_nest(path, bad))
    assert f"{path}: must be one of " in message
    assert all(f"'{choice}'" in message for choice in choices)


NUMERIC_ALL = [(path, _base_type(ann), _per_neuron(ann)) for path, ann, _ in LEAVES if _base_type(ann)]


@pytest.mark.parametrize(("path", "kind", "per_neuron"), NUMERIC_ALL, ids=[p for p, _, _ in NUMERIC_ALL])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_wrong_type_names_the_field(path: str, kind: type, per_neuron: bool, data) -> None:
    lists = (
        st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=2)
        if per_neuron
        else st.lists(st.integers(), max_size=2)
    )  # a list of numbers is a valid per-neuron value
    bad = data.draw(st.one_of(st.text(max_size=5), st.booleans(), lists))
    message = _error(_nest(path, bad))
    assert f"{path}: " in message or (per_neuron and f"{path}[" in message)
    assert "integer" in message if kind is int else "number" in message


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_are_refused(value: float) -> None:
    assert "neuron.tau_mem_s: " in _error(_nest("neuron.tau_mem_s", value))


def test_integer_field_refuses_a_float() -> None:
    assert "weights.bits: " in _error(_nest("weights.bits", 8.5))


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("weights.bits", 0, "weights.bits: must be in [1, 32], got 0"),
        ("weights.bits", 33, "weights.bits: must be in [1, 32], got 33"),
        ("noise.programming.sigma", -0.1, "noise.programming.sigma: must be >= 0.0, got -0.1"),
        ("noise.faults.stuck_at_max", 1.5, "noise.faults.stuck_at_max: must be in [0.0, 1.0], got 1.5"),
        ("neuron.threshold", 0, "neuron.threshold: must be > 0.0, got 0"),
        ("neuron.reset", "none", "neuron.reset: must be one of 'zero', 'subtract', got 'none'"),
        ("weights.range", [1, 1], "weights.range: min must be < max, got [1.0, 1.0]"),
        ("weights.range", [-2, 0], "weights.range: max must be > 0, got 0.0"),
        ("weights.range", [1], "weights.range[1]: required field missing"),
    ],
)
def test_messages_read_well(path: str, value: object, expected: str) -> None:
    assert _error(_nest(path, value)) == f"{ORIGIN}: {expected}"


def test_stuck_fractions_summing_over_one() -> None:
    message = _error(_nest("noise.faults", {"stuck_at_zero": 0.6, "stuck_at_max": 0.5}))
    assert "noise.faults: stuck_at_zero + stuck_at_max must be <= 1" in message


@pytest.mark.parametrize(
    ("data", "path", "allowed"),
    [
        ({"nueron": {}}, "nueron", "neuron, timing"),
        ({"neuron": {"thresh": 1}}, "neuron.thresh", "threshold"),
        ({"noise": {"read": {"sigma_abs": 1}}}, "noise.read.sigma_abs", "model, sigma, t_read_s"),
    ],
)
def test_unknown_key_lists_the_allowed_keys(data: dict, path: str, allowed: str) -> None:
    message = _error({"name": "bad", **data})
    assert f"{path}: unknown key; allowed here: " in message and allowed in message


def test_section_of_the_wrong_type() -> None:
    assert "noise: must be a mapping, got 5" in _error({"name": "bad", "noise": 5})


@pytest.mark.parametrize("value", ["wide", 1.0, [0, "a"], [-1, 0, 1]])
def test_tuple_field_of_the_wrong_shape(value: object) -> None:
    assert "weights.range" in _error(_nest("weights.range", value))


def test_several_errors_on_one_line() -> None:
    message = _error({"name": "bad", "weights": {"bits": 0}, "neuron": {"threshold": -1}})
    assert "weights.bits" in message and "neuron.threshold" in message


@pytest.mark.parametrize(
    ("snippet", "path"),
    [
        ("noise: {programming: {sigma: -1}}", "noise.programming.sigma"),
        ("weights: {bits: 40}", "weights.bits"),
        ("weights: {range: [1, -1]}", "weights.range"),
        ("noise: {faults: {stuck_at_zero: 2}}", "noise.faults.stuck_at_zero"),
        ("neuron: {reset: hold}", "neuron.reset"),
        ("limits: {max_fan_in: many}", "limits.max_fan_in"),
        ("name: 'has space'", "name"),
    ],
)
def test_file_errors_name_the_file_and_the_path(tmp_path: Path, snippet: str, path: str) -> None:
    file = tmp_path / "mychip.yaml"
    file.write_text(snippet + "\n")
    with pytest.raises(ProfileError) as info:
        load_profile(file)
    assert str(info.value).startswith(f"{file}: {path}")
    assert "\n" not in str(info.value)

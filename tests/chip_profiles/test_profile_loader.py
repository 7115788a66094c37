"""Reading profile files: names vs paths, malformed YAML, size and alias-bomb guards."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chiploop.chip_profiles import ProfileError, load_profile
from chiploop.chip_profiles.loader import MAX_FILE_BYTES


def write(tmp_path: Path, text: str, name: str = "chip.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path | str) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_load_by_path_string_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, "name: mine\nneuron: {threshold: 2.5}\n")
    assert load_profile(path).neuron.threshold == 2.5
    assert load_profile(str(path)).name == "mine"


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    assert load_profile(write(tmp_path, "neuron: {threshold: 2}\n", "my_chip.yaml")).name == "my_chip"


def test_unknown_name_lists_the_builtins() -> None:
    message = load_error("loihi3")
    assert "'loihi3'" in message and "loihi2" in message and "xylo" in message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    message = load_error(tmp_path / "absent.yaml")
    assert "absent.yaml" in message


def test_directory_is_refused(tmp_path: Path) -> None:
    assert "not a regular file" in load_error(tmp_path)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    message = load_error(write(tmp_path, text))
    assert "chip.yaml" in message and "empty" in message


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("42\n", "int"), ("just text\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    message = load_error(write(tmp_path, text))
    assert "chip.yaml" in message and "mapping" in message and kind in message


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nneuron:\n  threshold: [1, 2\n  reset: zero\n")
    message = load_error(path)
    assert message.startswith(f"{path}:")
    line = int(message[len(str(path)) + 1 :].split(":")[0])
    assert line in (3, 4, 5)
    assert "invalid YAML" in message


def test_tab_indentation_is_a_syntax_error(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "neuron:\n\tthreshold: 1\n"))
    assert "chip.yaml:2:" in message


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chip.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    assert "UTF-8" in load_error(path)


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    assert "invalid YAML" in load_error(path)


def test_yaml12_exponent_floats_are_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "timing: {time_scale: 1e-3}\nnoise: {read: {t_read_s: 250e-9}}\n")
    profile = load_profile(path)
    assert profile.timing.time_scale == pytest.approx(1e-3)
    assert profile.noise.read.t_read_s == pytest.approx(250e-9)


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    text = "neuron: {tau_mem_s: &tau 0.03, tau_out_s: *tau}\nweights: {range: &r [-2, 2]}\n"
    profile = load_profile(write(tmp_path, text))
    assert profile.neuron.tau_out_s == profile.neuron.tau_mem_s == 0.03
    assert profile.weights.range == (-2.0, 2.0)


def test_file_over_the_size_cap_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:  # sparse 50 MB file: cheap to make, costly to read
        fh.truncate(50 * 1024 * 1024)
    start = time.perf_counter()
    message = load_error(path)
    assert time.perf_counter() - start < 0.5
    assert "huge.yaml" in message and str(MAX_FILE_BYTES) in message


def test_file_just_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "description: '" + "x" * MAX_FILE_BYTES + "'\n")
    assert str(MAX_FILE_BYTES) in load_error(path)


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_is_refused_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    message = load_error(write(tmp_path, BILLION_LAUGHS))
    assert time.perf_counter() - start < 1.0
    assert "chip.yaml" in message and "aliases" in message


def test_recursive_anchor_is_refused(tmp_path: Path) -> None:
    assert "itself" in load_error(write(tmp_path, "source: &s {x: *s}\n"))


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    start = time.perf_counter()
    message = load_error(write(tmp_path, "source: " + "[" * 400_000 + "]" * 400_000 + "\n"))
    assert time.perf_counter() - start < 1.0
    assert "chip.yaml:1:" in message and "nested deeper" in message


def test_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "neuron:\n  threshold: 1\n  reset: zero\n  threshold: 2\n"))
    assert "chip.yaml:4:3: duplicate key 'threshold'" in message


def test_several_documents_are_refused(tmp_path: Path) -> None:
    assert "invalid YAML" in load_error(write(tmp_path, "name: a\n---\nname: b\n"))


@pytest.mark.parametrize(
    ("snippet", "path"),
    [
        ("weights: {bits: '8'}", "weights.bits"),
        ("neuron: {threshold: '1'}", "neuron.threshold"),
        ("weights: {bits: true}", "weights.bits"),
    ],
)
def test_files_are_strict_about_types(tmp_path: Path, snippet: str, path: str) -> None:
    assert f"chip.yaml: {path}: input should be a valid" in load_error(write(tmp_path, snippet + "\n"))

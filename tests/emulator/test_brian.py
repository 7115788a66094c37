"""BrianChip specifics: disk cache across processes, padding and chunking, record_v, the runtime
fallback, the run-array packing and its errors. Dynamics are checked in tests/conformance."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from chiploop.chip.device_model import DeviceModel
from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.emulator import brian
from chiploop.emulator.brian import BrianChip
from chiploop.emulator.brian_cache import _patch_writer, cache_key, default_cache_dir
from chiploop.emulator.brian_net import ParamLayout, Shape
from chiploop.emulator.brian_run import pack_raster, run_compiled
from chiploop.emulator.twin import TorchTwin
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import ChipError, DesignRuleError

T = 50
SPEC = NetworkSpec(12, 24, 4, recurrent=True)  # the conformance shape: its project is usually cached


def _weights(spec: NetworkSpec, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.01, 1.5 / np.sqrt(s[0]), s) for k, s in spec.weight_shapes().items()}


def _inputs(b: int, seed: int = 2, spec: NetworkSpec = SPEC) -> np.ndarray:
    return (np.random.default_rng(seed).random((b, T, spec.n_in)) < 0.25).astype(np.uint8)


def _twin(spec: NetworkSpec, w: dict, x: np.ndarray, profile=None):
    twin = TwinChip(profile or load_profile("ideal"), spec)
    twin.write_weights(w)
    return twin.run(x)


@pytest.fixture(scope="module")
def chip() -> BrianChip:
    c = BrianChip(load_profile("ideal"), SPEC)
    c.write_weights(_weights(SPEC))
    return c


def test_second_process_reuses_the_compiled_project(chip: BrianChip) -> None:
    x = _inputs(6)
    here = chip.run(x)
    code = textwrap.dedent(f"""
        import time; t0 = time.perf_counter()
        import json, sys, numpy as np
        from chiploop.chip_profiles.loader import load_profile
        from chiploop.emulator.brian import BrianChip
        from chiploop.chip.network import NetworkSpec
        chip = BrianChip(load_profile("ideal"), NetworkSpec(12, 24, 4, recurrent=True))
        chip.write_weights({{k: np.array(v) for k, v in json.loads(sys.stdin.read()).items()}})
        rec = chip.run(np.array({x.tolist()}, dtype=np.uint8))
        print(json.dumps({{"s": time.perf_counter() - t0, "brian2": "brian2" in sys.modules,
                           "spikes": rec.spikes["hidden"].tolist()}}))
    """)
    w = json.dumps({k: v.tolist() for k, v in _weights(SPEC).items()})
    done = subprocess.run([sys.executable, "-c", code], input=w, capture_output=True, text=True, check=True)
    child = json.loads(done.stdout)
    assert not child["brian2"], "a cache hit must not even import Brian2"
    assert child["s"] <= 3.0
    np.testing.assert_array_equal(np.array(child["spikes"], dtype=np.uint8), here.spikes["hidden"])
    assert (default_cache_dir() / cache_key(chip._shape(6, T, True)) / "main").exists()


def test_short_batch_is_padded_not_recompiled(chip: BrianChip) -> None:
    x = _inputs(6)
    full = chip.run(x)
    shapes = set(chip._projects)
    part = chip.run(x[:2])
    assert set(chip._projects) == shapes
    for layer in full.v:
        np.testing.assert_array_equal(part.v[layer], full.v[layer][:2])
    np.testing.assert_array_equal(part.spikes["hidden"], full.spikes["hidden"][:2])


def test_large_batch_runs_in_chunks_of_batch_size() -> None:
    chip = BrianChip(load_profile("ideal"), SPEC, batch_size=6)
    w, x = _weights(SPEC), _inputs(10)
    chip.write_weights(w)
    got, ref = chip.run(x), _twin(SPEC, w, x)
    assert got.spikes["hidden"].shape == (10, T, SPEC.n_hidden) and ref.spikes["hidden"].sum() > 0
    np.testing.assert_array_equal(got.spikes["hidden"], ref.spikes["hidden"])
    np.testing.assert_allclose(got.v["out"], ref.v["out"], atol=1e-6, rtol=0)
    assert {s.batch for s in chip._projects} == {6}


def test_record_v_false_records_spikes_only(chip: BrianChip) -> None:
    x = _inputs(6)
    with_v, without = chip.run(x), chip.run(x, record_v=False)
    assert without.v == {}
    np.testing.assert_array_equal(without.spikes["hidden"], with_v.spikes["hidden"])
    assert {"dropped_spikes", "weights_generation", "wall_time_s"} <= without.meta.keys()
    assert without.meta["backend"] == "cpp_standalone"


def test_runtime_fallback_runs_the_same_network() -> None:
    spec = NetworkSpec(5, 8, 2, recurrent=True, readout="spiking")
    profile = load_profile("ideal").with_overrides({"limits.max_spikes_per_step": 2})
    chip = BrianChip(profile, spec, force_runtime=True)
    w, x = _weights(spec, seed=4), _inputs(2, seed=5, spec=spec)
    w["in_hidden"] *= 3
    chip.write_weights(w)
    got, ref = chip.run(x), _twin(spec, w, x, profile)
    assert got.meta["backend"] == "runtime" and ref.meta["dropped_spikes"] > 0
    assert got.meta["dropped_spikes"] == ref.meta["dropped_spikes"]
    for layer in ref.spikes:
        np.testing.assert_array_equal(got.spikes[layer], ref.spikes[layer])
    np.testing.assert_allclose(got.v["hidden"], ref.v["hidden"], atol=1e-6, rtol=0)


def test_sparse_connectivity_equals_dense_with_zeros() -> None:
    rng = np.random.default_rng(9)
    masks = {k: rng.random(s) < 0.3 for k, s in SPEC.weight_shapes().items() if k != "in_hidden"}
    w = {k: v * masks.get(k, 1) for k, v in _weights(SPEC).items()}
    w = {k: v * 3 if k == "hidden_hidden" else v for k, v in w.items()}
    sparse = BrianChip(load_profile("ideal"), SPEC, connectivity=masks)
    sparse.write_weights(w)
    chip = BrianChip(load_profile("ideal"), SPEC)
    chip.write_weights(w)
    x = _inputs(6)
    got, dense, ref = sparse.run(x), chip.run(x), _twin(SPEC, w, x)
    assert ref.spikes["hidden"].mean() > 0.02
    for layer in got.v:
        np.testing.assert_array_equal(got.v[layer], dense.v[layer])
    np.testing.assert_array_equal(got.spikes["hidden"], ref.spikes["hidden"])
    np.testing.assert_allclose(got.v["out"], ref.v["out"], atol=1e-6, rtol=0)


def test_runtime_fallback_follows_the_connectivity() -> None:
    """Read noise lands on every weight; only the mask's pairs may deliver it."""
    spec = NetworkSpec(5, 8, 2, recurrent=True, readout="spiking")
    profile = load_profile("ideal").with_overrides(
        {"noise.read.model": "gaussian_absolute", "noise.read.sigma": 0.3}
    )
    rng = np.random.default_rng(3)
    masks = {"hidden_hidden": rng.random((8, 8)) < 0.4, "hidden_out": np.zeros((8, 2), bool)}
    w = {k: v * masks.get(k, 1) for k, v in _weights(spec, seed=6).items()}
    w["in_hidden"] *= 3
    chip = BrianChip(profile, spec, seed=4, connectivity=masks, force_runtime=True)
    chip.write_weights(w)
    x = _inputs(3, seed=7, spec=spec)
    got = chip.run(x)
    device = DeviceModel(profile, spec, seed=4)  # the same frozen state and read-noise stream
    device.write(w)
    w_read = {k: torch.tensor(v * masks.get(k, 1)) for k, v in device.for_run().items()}
    twin = TorchTwin(load_profile("ideal"), spec, dtype=torch.float64)
    with torch.no_grad():  # the forward takes weights as given (a write would clip them to the range)
        ref = twin(torch.tensor(x, dtype=torch.float64), weights=w_read)
    assert ref.spikes["hidden"].mean() > 0.05 and not got.spikes["out"].any()
    np.testing.assert_array_equal(got.spikes["hidden"], ref.spikes["hidden"].numpy())
    # membranes are recorded in float32
    np.testing.assert_allclose(got.v["hidden"], ref.v["hidden"].numpy(), atol=1e-6, rtol=1e-6)


def test_weights_outside_the_connectivity_are_refused() -> None:
    mask = np.eye(SPEC.n_hidden, dtype=bool)
    chip = BrianChip(load_profile("ideal"), SPEC, connectivity={"hidden_hidden": mask})
    w = _weights(SPEC)
    w["hidden_hidden"] *= mask
    chip.write_weights(w)
    before = chip.read_weights()
    with pytest.raises(ChipError, match=r"hidden_hidden.*outside the connectivity mask, got 552 non-zero"):
        chip.write_weights(_weights(SPEC))
    for k, v in chip.read_weights().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ChipError, match=r"connectivity\['hidden_out'\]: expected shape \(24, 4\)"):
        BrianChip(load_profile("ideal"), SPEC, connectivity={"hidden_out": np.ones((4, 24))})
    with pytest.raises(ChipError, match="connectivity: expected layers"):
        BrianChip(load_profile("ideal"), SPEC, connectivity={"out": np.ones((24, 4))})


def test_missing_compiler_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brian, "compiler_available", lambda: False)
    monkeypatch.setattr(brian, "_warned_runtime", False)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        chip = BrianChip(load_profile("ideal"), SPEC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BrianChip(load_profile("ideal"), SPEC)
    assert not chip.compiled


def test_pack_raster_bit_layout() -> None:
    shape = Shape(3, 4, 11, 2, 1, False, False, False)  # 33 inputs -> 2 words per step
    x = (np.random.default_rng(0).random((3, 4, 11)) < 0.5).astype(np.uint8)
    words = pack_raster(x, shape).astype(np.uint64)
    assert words.shape == (4, shape.raster_words) == (4, 2)
    gi = np.arange(33)
    bits = (words[:, gi // 32] >> (gi % 32).astype(np.uint64)) & 1
    np.testing.assert_array_equal(bits.reshape(4, 3, 11).transpose(1, 0, 2), x)
    assert np.all(words[:, 1] < 2)  # padding bits stay zero


def test_param_layout_is_contiguous() -> None:
    shape = Shape(2, 5, 3, 4, 2, True, False, True)
    lay = ParamLayout.of(shape)
    assert lay.offsets["in_hidden"] == lay.offsets["gain"] + 4 + 2  # vectors cover hidden + output neurons
    assert lay.offsets["hidden_hidden"] - lay.offsets["in_hidden"] == 3 * 4
    assert lay.offsets["hidden_out"] - lay.offsets["hidden_hidden"] == 4 * 4
    assert lay.size == lay.offsets["hidden_out"] + 4 * 2
    masked = ParamLayout.of(shape, {"hidden_hidden": np.eye(4, dtype=bool)})  # only the mask's pairs
    assert masked.offsets["hidden_out"] - masked.offsets["hidden_hidden"] == 4
    assert masked.size == lay.size - 12 and masked.offsets["cfg"] == lay.offsets["cfg"]
    two = ParamLayout.of(Shape(2, 5, 3, 4, 2, True, False, True, synapses=2))
    assert two.size - lay.size == 3 * 4 + 4 * 4  # in_hidden_2 and hidden_hidden_2 follow


def test_run_arrays_of_the_wrong_size_are_refused(chip: BrianChip, tmp_path) -> None:
    shape = chip._shape(6, T, True)
    lay = ParamLayout.of(shape)
    with pytest.raises(ChipError, match="expected params"):
        run_compiled(tmp_path, shape, np.zeros(lay.size - 1), np.zeros((T, shape.raster_words)))


def test_unexpected_generated_code_is_refused(tmp_path) -> None:
    path = tmp_path / "objects.cpp"
    path.write_text("int main() {}\n")
    with pytest.raises(ChipError, match="_write_arrays"):
        _patch_writer(path, Shape(1, 1, 1, 1, 1, False, False, False))


def test_design_rules_and_arguments_are_checked() -> None:
    with pytest.raises(DesignRuleError, match="16"):
        BrianChip(load_profile("xylo"), NetworkSpec(20, 8, 2))
    with pytest.raises(ChipError, match="batch_size"):
        BrianChip(load_profile("ideal"), SPEC, batch_size=0)


def test_closed_chip_refuses_runs() -> None:
    chip = BrianChip(load_profile("ideal"), SPEC)
    chip.close()
    with pytest.raises(ChipError, match="closed"):
        chip.run(_inputs(1))

"""DeviceModel and neuron constants: frozen per seed, validated, write/read/run pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chiploop.chip.device_model import DeviceModel, neuron_constants, validate_inputs
from chiploop.chip.devices import quantize
from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles import list_profiles, load_profile
from chiploop.chip_profiles.model import (
    Adaptation,
    Arithmetic,
    ChipProfile,
    Drift,
    Faults,
    Mismatch,
    Neuron,
    Noise,
    ProgrammingNoise,
    ReadNoise,
    Timing,
    Weights,
)
from chiploop.errors import ChipError

SPEC = NetworkSpec(n_in=4, n_hidden=5, n_out=3, recurrent=True)


def weights_for(spec: NetworkSpec, seed: int = 0, scale: float = 0.5) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {name: g.uniform(-scale, scale, shape) for name, shape in spec.weight_shapes().items()}


def noisy_profile(**kw: object) -> ChipProfile:
    noise = Noise(
        programming=ProgrammingNoise(model="gaussian_absolute", sigma=0.02),
        read=ReadNoise(model="gaussian_absolute", sigma=0.01),
        mismatch=Mismatch(tau=0.1, threshold=0.1, gain=0.1),
        faults=Faults(stuck_at_zero=0.1, stuck_at_max=0.1),
    )
    return ChipProfile(name="noisy", noise=noise, **kw)


# ---------------------------------------------------------------- frozen per seed
def test_same_seed_same_chip_different_seed_different_chip() -> None:
    spec = NetworkSpec(n_in=20, n_hidden=30, n_out=4, recurrent=True)
    a, b, c = (DeviceModel(noisy_profile(), spec, seed=s) for s in (7, 7, 8))
    for name in ("tau", "threshold", "gain"):
        assert np.array_equal(a.mismatch[name], b.mismatch[name])
        assert not np.array_equal(a.mismatch[name], c.mismatch[name])
    assert np.array_equal(a.constants.mem_h, b.constants.mem_h)
    for layer in spec.weight_shapes():
        assert np.array_equal(a.fault_codes[layer], b.fault_codes[layer])
        assert not np.array_equal(a.fault_codes[layer], c.fault_codes[layer])
    w = weights_for(spec)
    for d in (a, b, c):
        d.write(w)
    assert all(np.array_equal(a.read()[k], b.read()[k]) for k in w)
    assert not np.array_equal(a.read()["in_hidden"], c.read()["in_hidden"])
    assert all(np.array_equal(a.for_run()[k], b.for_run()[k]) for k in w)


def test_mismatch_std_of_a_large_chip() -> None:
    p = ChipProfile(name="m", noise=Noise(mismatch=Mismatch(tau=0.1, threshold=0.05, gain=0.2)))
    d = DeviceModel(p, NetworkSpec(n_in=1, n_hidden=40_000, n_out=10), seed=3)
    assert d.mismatch["tau"].shape == (40_010,)
    for name, sigma in (("tau", 0.1), ("threshold", 0.05), ("gain", 0.2)):
        assert d.mismatch[name].std() == pytest.approx(sigma, rel=0.03)
    assert np.allclose(d.constants.threshold_h, d.mismatch["threshold"][:40_000])


def test_invalid_seed() -> None:
    for seed in (-1, 1.5, "1", True):
        with pytest.raises(ChipError, match="seed"):
            DeviceModel(ChipProfile(name="x"), SPEC, seed=seed)  # type: ignore[arg-type]


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda w: w.pop("hidden_hidden"), r"expected layers .*hidden_hidden"),
        (lambda w: w.update(extra=np.zeros((1, 1))), r"expected layers .*got .*extra"),
        (
            lambda w: w.update(in_hidden=np.zeros((5, 4))),
            r"in_hidden'\]: expected shape \(4, 5\), got \(5, 4\)",
        ),
        (lambda w: w.update(hidden_out=np.zeros(15)), r"hidden_out'\]: expected shape \(5, 3\), got \(15,\)"),
        (lambda w: w["in_hidden"].__setitem__((0, 0), np.nan), r"in_hidden'\]: expected finite"),
        (lambda w: w["hidden_out"].__setitem__((1, 2), -np.inf), r"hidden_out'\]: expected finite"),
        (lambda w: w.update(in_hidden=np.zeros((4, 5), complex)), r"in_hidden'\]: .*got dtype complex128"),
        (lambda w: w.update(in_hidden=np.zeros((4, 5), object)), r"in_hidden'\]: .*got dtype object"),
        (lambda w: w.update(in_hidden=np.zeros((4, 5), bool)), r"in_hidden'\]: .*got dtype bool"),
        (lambda w: w.update(in_hidden=[[1.0], [2.0, 3.0]]), r"in_hidden'\]: expected a real numeric array"),
    ],
)
def test_rejected_write_names_the_problem_and_keeps_the_weights(mutate, match) -> None:  # noqa: ANN001
    d = DeviceModel(ChipProfile(name="ideal"), SPEC)
    good = weights_for(SPEC)
    d.write(good)
    before = d.read()
    bad = weights_for(SPEC, seed=1)
    mutate(bad)
    with pytest.raises(ChipError, match=match):
        d.write(bad)
    assert d.generation == 1
    assert all(np.array_equal(d.read()[k], before[k]) for k in before)


def test_validate_weights_returns_float64_copies() -> None:
    d = DeviceModel(ChipProfile(name="ideal"), SPEC)
    w = {k: np.ones(s, dtype=np.int16) for k, s in SPEC.weight_shapes().items()}
    out = d.validate_weights(w)
    assert all(v.dtype == np.float64 and not np.shares_memory(v, w[k]) for k, v in out.items())
    w64 = weights_for(SPEC)
    assert not any(np.shares_memory(v, w64[k]) for k, v in d.validate_weights(w64).items())
    with pytest.raises(ChipError, match="dict"):
        d.validate_weights([np.zeros((4, 5))])  # type: ignore[arg-type]


def test_validate_inputs_accepts_binary_rasters() -> None:
    base = np.random.default_rng(0).random((2, 7, 4)) < 0.3
    for raw in (base, base.astype(np.float32), base.astype(np.int64), np.asfortranarray(base.astype(float))):
        out = validate_inputs(raw, SPEC)
        assert out.dtype == np.uint8 and out.flags.c_contiguous and np.array_equal(out, base)
        assert not np.shares_memory(out, raw)
    assert validate_inputs(base.tolist(), SPEC).shape == (2, 7, 4)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (np.zeros((7, 4)), r"expected shape \[B>=1, T>=1, n_in=4\], got \(7, 4\)"),
        (np.zeros((2, 7, 5)), r"n_in=4\], got \(2, 7, 5\)"),
        (np.zeros((0, 7, 4)), r"got \(0, 7, 4\)"),
        (np.zeros((2, 0, 4)), r"got \(2, 0, 4\)"),
        (np.full((1, 2, 4), 2), r"only 0/1 spike values, got e.g. \[2"),
        (np.full((1, 2, 4), 0.5), r"only 0/1 .*0.5"),
        (np.full((1, 2, 4), np.nan), r"only 0/1 .*nan"),
        (np.full((1, 2, 4), -1), r"only 0/1 .*-1"),
        (np.zeros((1, 2, 4), complex), r"got dtype complex128"),
        (np.zeros((1, 2, 4), object), r"got dtype object"),
        (np.full((1, 2, 4), "1"), r"got dtype <U1"),
    ],
)
def test_validate_inputs_rejects(raw: np.ndarray, match: str) -> None:
    with pytest.raises(ChipError, match=match):
        validate_inputs(raw, SPEC)


# ---------------------------------------------------------------- write / read / run
def test_ideal_chip_holds_the_weights_exactly() -> None:
    d = DeviceModel(ChipProfile(name="ideal"), SPEC)
    assert d.generation == 0 and all(not v.any() for v in d.read().values())
    w = weights_for(SPEC)
    d.write(w)
    assert d.generation == 1
    assert all(np.array_equal(d.read()[k], w[k]) and np.array_equal(d.for_run()[k], w[k]) for k in w)
    w[next(iter(w))][0, 0] = 99.0  # the caller's array is not the stored one
    assert d.read()["in_hidden"][0, 0] != 99.0


def test_write_quantizes_and_clips() -> None:
    p = ChipProfile(name="q", weights=Weights(bits=4, range=(-1, 1)))
    d = DeviceModel(p, SPEC)
    w = weights_for(SPEC, scale=2.0)
    d.write(w)
    for k, v in d.read().items():
        assert np.allclose(v * 7, np.rint(v * 7)) and np.abs(v).max() <= 1.0
        assert np.abs(v - np.clip(w[k], -1, 1)).max() <= 1 / 14 + 1e-12


def test_stochastic_rounding_fresh_per_write_and_seeded() -> None:
    p = ChipProfile(name="sr", weights=Weights(bits=3, range=(-3, 3), rounding="stochastic"))  # step 1
    spec = NetworkSpec(n_in=100, n_hidden=100, n_out=1)
    w = {k: np.full(s, 0.25) for k, s in spec.weight_shapes().items()}
    a, b = DeviceModel(p, spec, seed=9), DeviceModel(p, spec, seed=9)
    a.write(w)
    b.write(w)
    first = a.read()["in_hidden"]
    assert np.array_equal(first, b.read()["in_hidden"]) and set(np.unique(first)) == {0.0, 1.0}
    assert abs(first.mean() - 0.25) < 3 * math.sqrt(0.25 * 0.75 / first.size)
    a.write(w)
    assert not np.array_equal(a.read()["in_hidden"], first)


def test_programming_noise_frozen_read_noise_fresh() -> None:
    p = noisy_profile()
    d = DeviceModel(p, NetworkSpec(n_in=200, n_hidden=300, n_out=2), seed=1)
    w = weights_for(d.spec)
    d.write(w)
    r1, r2 = d.read(), d.read()
    assert np.array_equal(r1["in_hidden"], r2["in_hidden"])
    ok = d.fault_codes["in_hidden"] == 0
    prog_err = (r1["in_hidden"] - w["in_hidden"])[ok]
    assert prog_err.std() == pytest.approx(0.02, rel=0.03)
    f1, f2 = d.for_run(), d.for_run()
    assert not np.array_equal(f1["in_hidden"], f2["in_hidden"])
    assert (f1["in_hidden"] - r1["in_hidden"]).std() == pytest.approx(0.01, rel=0.03)
    d.write(w)  # a new write draws new programming noise
    assert not np.array_equal(d.read()["in_hidden"], r1["in_hidden"]) and d.generation == 2


def test_faults_frozen_across_writes() -> None:
    p = ChipProfile(
        name="f",
        weights=Weights(range=(-1, 2)),
        noise=Noise(faults=Faults(stuck_at_zero=0.2, stuck_at_max=0.1)),
    )
    d = DeviceModel(p, NetworkSpec(n_in=50, n_hidden=60, n_out=2), seed=2)
    codes = d.fault_codes["in_hidden"]
    for seed in (0, 1):
        d.write(weights_for(d.spec, seed=seed))
        v = d.read()["in_hidden"]
        assert np.all(v[codes == 1] == 0) and np.all(v[codes == 2] == 2.0)
    assert abs((codes == 1).mean() - 0.2) < 3 * math.sqrt(0.2 * 0.8 / codes.size)


def test_drift_with_the_chip_clock() -> None:
    drift = Drift(model="power_law", nu=0.05, t0_s=20.0)
    p = ChipProfile(name="d", noise=Noise(drift=drift, faults=Faults(stuck_at_max=0.2)))
    d = DeviceModel(p, SPEC, seed=4)
    w = weights_for(SPEC)
    d.advance_time(500.0)
    d.write(w)
    assert d.time_since_program_s == 0.0
    d.advance_time(10.0)
    assert np.array_equal(d.read()["in_hidden"], d.read()["in_hidden"])
    before = d.read()
    d.advance_time(1990.0)  # t = 2000 s since programming; drift acts at t + t0
    codes = d.fault_codes["in_hidden"]
    ratio = d.read()["in_hidden"] / before["in_hidden"]
    assert np.allclose(ratio[codes == 0], ((2000.0 + 20.0) / (10.0 + 20.0)) ** -0.05)
    assert np.all(ratio[codes == 2] == 1.0), "stuck devices do not drift"
    assert d.clock_s == 2500.0
    d.write(w)
    assert d.time_since_program_s == 0.0 and np.array_equal(d.read()["in_hidden"], d.read()["in_hidden"])
    assert np.all(np.abs(d.read()["in_hidden"]) >= np.abs(before["in_hidden"]))  # no drift yet


def test_mapped_periphery_noise_keeps_the_scale_fixed_at_write() -> None:
    """Under map_to_range the layer's scale is set when it is programmed: drift shrinks the weights,
    not the periphery's weight noise (which re-deriving the scale from drifted weights would do)."""
    base = load_profile("ideal").with_overrides(
        {
            "weights.map_to_range": True,
            "noise.periphery.weight_sigma": 0.02,
            "noise.drift.model": "power_law",
            "noise.drift.nu": 0.5,
            "noise.drift.t0_s": 1.0,
        }
    )
    spec = NetworkSpec(n_in=400, n_hidden=250, n_out=2)
    dm = DeviceModel(base, spec, seed=3)
    dm.write({name: np.full(shape, 0.5) for name, shape in spec.weight_shapes().items()})
    dm.advance_time(1e4 - 1.0)  # drift factor ((t + t0) / t0)^-0.5 = 0.01
    read = dm.read()["in_hidden"]
    assert read.max() == pytest.approx(0.005)
    seen = dm.for_run()["in_hidden"] - read
    assert seen.std() == pytest.approx(0.5 * 0.02, rel=0.02)  # scale 0.5: the written layer's peak


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "3", None])
def test_advance_time_rejects(bad: object) -> None:
    d = DeviceModel(ChipProfile(name="x"), SPEC)
    with pytest.raises(ChipError, match="advance_time"):
        d.advance_time(bad)  # type: ignore[arg-type]
    assert d.clock_s == 0.0


def test_fixed_arithmetic_stores_integers() -> None:
    p = ChipProfile(
        name="fx",
        arithmetic=Arithmetic(kind="fixed"),
        weights=Weights(bits=8, range=(-127, 127)),
        noise=Noise(
            programming=ProgrammingNoise(model="gaussian_absolute", sigma=3.0),
            read=ReadNoise(model="gaussian_absolute", sigma=2.0),
        ),
    )
    d = DeviceModel(p, SPEC)
    d.write(weights_for(SPEC, scale=100.0))
    for v in d.read().values():
        assert np.array_equal(v, np.rint(v))
    run = d.for_run()
    assert all(v.dtype == np.int64 for v in run.values())


# ---------------------------------------------------------------- neuron constants
def test_float_constants_with_mismatch() -> None:
    p = ChipProfile(
        name="c",
        neuron=Neuron(
            model="alif",
            tau_mem_s=0.02,
            tau_syn_s=0.005,
            tau_out_s=0.03,
            threshold=1.5,
            adaptation=Adaptation(tau_s=0.5, beta=0.2, fraction=0.5),
        ),
    )
    spec = NetworkSpec(n_in=1, n_hidden=5, n_out=2)
    mis = {"tau": np.linspace(0.8, 1.2, 7), "threshold": np.full(7, 1.1), "gain": np.arange(1, 8) / 4}
    c = neuron_constants(p, spec, mis)
    tau = mis["tau"]
    assert c.arithmetic == "float" and c.syn_enabled
    assert np.allclose(c.mem_h, np.exp(-0.001 / (0.02 * tau[:5])))
    assert np.allclose(c.syn_h, np.exp(-0.001 / (0.005 * tau[:5])))
    assert np.allclose(c.syn_o, np.exp(-0.001 / (0.005 * tau[5:])))
    assert np.allclose(c.ada_h, np.exp(-0.001 / (0.5 * tau[:5])))
    assert np.allclose(c.mem_o, np.exp(-0.001 / (0.03 * tau[5:])))
    assert np.allclose(c.threshold_h, 1.65) and np.allclose(c.threshold_o, 1.65)
    assert np.array_equal(c.gain_h, mis["gain"][:5])
    assert c.beta_h.tolist() == [0.2, 0.2, 0.2, 0.0, 0.0], "round(0.5 * 5) = 3 adaptive neurons"
    with pytest.raises(ValueError):
        c.mem_h[0] = 0.0  # read-only
    lif = neuron_constants(ChipProfile(name="l", neuron=Neuron(tau_syn_s=0.0)), spec)
    assert not lif.beta_h.any() and not lif.syn_h.any() and not lif.syn_o.any() and not lif.syn_enabled
    assert np.allclose(lif.threshold_h, 1.0) and np.allclose(lif.gain_h, 1.0)


def test_fixed_multiplier_and_shift_constants() -> None:
    neuron = Neuron(
        model="alif",
        tau_mem_s=0.02,
        tau_syn_s=0.0,
        tau_out_s=0.016,
        threshold=100.4,
        adaptation=Adaptation(tau_s=0.3, beta=7.6),
    )
    timing = Timing(dt_s=0.001)
    spec = NetworkSpec(n_in=1, n_hidden=3, n_out=1)
    mult = neuron_constants(
        ChipProfile(
            name="m", neuron=neuron, timing=timing, arithmetic=Arithmetic(kind="fixed", decay_bits=12)
        ),
        spec,
    )
    d = round(4096 * (1 - math.exp(-0.001 / 0.02)))
    assert mult.mem_h.dtype == np.int64 and mult.mem_h.tolist() == [4096 - d] * 3
    assert mult.mem_o.tolist() == [4096 - round(4096 * (1 - math.exp(-1 / 16)))]
    assert mult.syn_h.tolist() == [0, 0, 0] and not mult.syn_enabled
    assert mult.threshold_h.dtype == np.int64 and mult.threshold_h.tolist() == [100] * 3
    assert mult.beta_h.tolist() == [8, 8, 8] and mult.gain_h.dtype == np.float64
    shift = neuron_constants(
        ChipProfile(
            name="s", neuron=neuron, timing=timing, arithmetic=Arithmetic(kind="fixed", decay="shift")
        ),
        spec,
    )
    assert shift.decay == "shift"
    assert shift.mem_h.tolist() == [round(math.log2(20))] * 3  # 4.32 -> 4
    assert shift.mem_o.tolist() == [4] and shift.ada_h.tolist() == [round(math.log2(300))] * 3
    assert shift.syn_h.tolist() == [0, 0, 0]
    mis = {"tau": np.array([1.0, 1.5, 0.05, 1.5]), "threshold": np.ones(4), "gain": np.ones(4)}
    shifted = neuron_constants(
        ChipProfile(
            name="s", neuron=neuron, timing=timing, arithmetic=Arithmetic(kind="fixed", decay="shift")
        ),
        spec,
        mis,
    )
    # log2(20) = 4.32 -> 4, log2(30) = 4.91 -> 5, log2(1) = 0, out: log2(24) = 4.58 -> 5
    assert shifted.mem_h.tolist() == [4, 5, 0] and shifted.mem_o.tolist() == [5]


def test_constants_reject_wrong_mismatch_length() -> None:
    bad = {"tau": np.ones(3), "threshold": np.ones(8), "gain": np.ones(8)}
    with pytest.raises(ChipError, match=r"mismatch\['tau'\]: expected shape \(8,\)"):
        neuron_constants(ChipProfile(name="x"), SPEC, bad)
    with pytest.raises(ChipError, match="gain.*missing"):
        neuron_constants(ChipProfile(name="x"), SPEC, {"tau": np.ones(8), "threshold": np.ones(8)})


@pytest.mark.parametrize("name", list_profiles())
def test_every_builtin_profile_programs_and_runs(name: str) -> None:
    p = load_profile(name)
    spec = NetworkSpec(n_in=30, n_hidden=40, n_out=3, recurrent=True)
    d = DeviceModel(p, spec, seed=5)
    lo, hi = p.weights.range
    w = {k: np.random.default_rng(0).uniform(lo, hi, s) for k, s in spec.weight_shapes().items()}
    d.write(w)
    d.advance_time(3600.0)
    run = d.for_run()
    dtype = np.int64 if p.arithmetic.kind == "fixed" else np.float64
    assert all(run[k].shape == s and run[k].dtype == dtype for k, s in spec.weight_shapes().items())
    assert all(np.all(np.isfinite(v)) for v in run.values())
    if not p.noise.kinds():  # a noiseless chip holds exactly the quantized weights
        expect = {k: quantize(v, p.weights) for k, v in w.items()}
        assert all(np.array_equal(run[k], expect[k]) for k in w)

"""Device non-idealities: each function against its formula, statistically and seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from chiploop.chip import devices
from chiploop.chip_profiles.model import (
    ChipProfile,
    Drift,
    Faults,
    Mismatch,
    Noise,
    ProgrammingNoise,
    ReadNoise,
    Weights,
)
from chiploop.errors import ChipError, ProfileError


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def profile(**noise: object) -> ChipProfile:
    return ChipProfile(name="t", noise=Noise(**noise))


# ---------------------------------------------------------------- quantization
def test_quantization_step_formulas() -> None:
    assert devices.quantization_step(Weights()) is None
    assert devices.quantization_step(Weights(bits=8, range=(-1, 1))) == pytest.approx(1 / 127)
    assert devices.quantization_step(Weights(bits=4, range=(-2, 2), encoding="sign_split")) == pytest.approx(
        2 / 15
    )
    assert devices.quantization_step(Weights(bits=6, range=(-63, 63), encoding="differential_pair")) == 1.0
    with pytest.raises(ProfileError, match="at least 2 bits"):
        devices.quantization_step(Weights(bits=1))


def test_round_half_away_ties_and_near_ties() -> None:
    x = np.array([0.5, -0.5, 1.5, 2.5, -2.5, 0.49999999999999994, 2.4, -2.6])
    assert devices.round_half_away(x).tolist() == [1, -1, 2, 3, -3, 0, 2, -3]


def test_deterministic_quantize_values() -> None:
    w = Weights(bits=8, range=(-127, 127))
    out = devices.quantize(np.array([0.5, -0.5, 2.5, 3.49, 200.0, -300.0]), w)
    assert out.tolist() == [1, -1, 3, 3, 127, -127]
    # Loihi-like two's complement: -256..254 in steps of 2, -256 reachable
    loihi = Weights(bits=8, range=(-256, 254))
    assert devices.quantize(np.array([-300.0, -255.0, 253.0, 1.0]), loihi).tolist() == [-256, -256, 254, 2]
    # separate sign: 2^bits - 1 levels each side
    split = Weights(bits=2, range=(-3, 3), encoding="sign_split")
    assert devices.quantize(np.array([-2.6, -1.2, 0.4, 2.5]), split).tolist() == [-3, -1, 0, 3]


def test_analog_weights_are_only_clipped() -> None:
    w = np.array([-5.0, -0.123456, 0.3, 7.0])
    assert devices.quantize(w, Weights(range=(-1, 2))).tolist() == [-1.0, -0.123456, 0.3, 2.0]


def test_exponent_picks_smallest_fitting_exponent() -> None:
    wt = Weights(bits=8, range=(-1, 1), exponent_bits=2)  # e in 0..3, finest step = (1/127) / 8
    step = 1 / 127
    assert devices.layer_step(np.array([0.1, -0.05]), wt) == pytest.approx(step / 8)
    assert devices.layer_step(np.array([0.2]), wt) == pytest.approx(step / 4)
    assert devices.layer_step(np.array([-0.5]), wt) == pytest.approx(step / 2)
    assert devices.layer_step(np.array([0.9]), wt) == pytest.approx(step)
    assert devices.layer_step(np.zeros(3), wt) == pytest.approx(step / 8)
    q = devices.quantize(np.array([0.1, 0.0123]), wt)
    k = q / (step / 8)
    assert np.allclose(k, np.rint(k)) and abs(q[1] - 0.0123) <= step / 16


weights_sections = st.builds(
    lambda bits, enc, hi, lo_frac, exp, rounding: Weights(
        bits=bits, range=(-hi * lo_frac, hi), encoding=enc, exponent_bits=exp, rounding=rounding
    ),
    bits=st.integers(2, 12),
    enc=st.sampled_from(["signed", "sign_split", "differential_pair"]),
    hi=st.floats(0.01, 1000.0),
    lo_frac=st.floats(0.0, 1.5),
    exp=st.integers(0, 3),
    rounding=st.sampled_from(["deterministic", "stochastic"]),
)
weight_arrays = arrays(np.float64, st.integers(0, 40), elements=st.floats(-2000, 2000))


@settings(max_examples=300, deadline=None)
@given(wt=weights_sections, w=weight_arrays, seed=st.integers(0, 2**32 - 1))
def test_quantize_properties(wt: Weights, w: np.ndarray, seed: int) -> None:
    g = rng(seed)
    q = devices.quantize(w, wt, g)
    lo, hi = wt.range
    assert q.shape == w.shape and q.dtype == np.float64
    assert np.all((q >= lo) & (q <= hi)), "in range"
    step = devices.layer_step(np.clip(w, lo, hi), wt)
    k = q / step
    assert np.allclose(k, np.rint(k), atol=1e-6), "on grid"
    assert np.array_equal(devices.quantize(q, wt, g), q), "idempotent"
    reach_lo, reach_hi = devices.quantize(np.array([lo, hi]), wt, g)  # the mantissa may not span the range
    inside = (w >= reach_lo) & (w <= reach_hi)
    assert np.all(np.abs(q - w)[inside] <= step * (1 + 1e-9)), "at most one step away inside the reach"


def test_stochastic_rounding_unbiased_to_neighbours() -> None:
    wt = Weights(bits=4, range=(-7, 7), rounding="stochastic")  # step 1
    n = 200_000
    for x in (0.3, -2.75, 5.5):
        q = devices.quantize(np.full(n, x), wt, rng(1))
        assert set(np.unique(q)) <= {math.floor(x), math.ceil(x)}
        frac = x - math.floor(x)
        assert abs(q.mean() - x) < 3 * math.sqrt(frac * (1 - frac) / n)


def test_stochastic_rounding_needs_generator() -> None:
    with pytest.raises(ChipError, match="Generator"):
        devices.quantize(np.zeros(3), Weights(bits=4, rounding="stochastic"))


# ---------------------------------------------------------------- programming noise
def test_pcm_conductance_sigma_matches_polynomial() -> None:
    prog = ProgrammingNoise(model="pcm")
    n = 100_000
    for g_rel in (0.2, 0.5, 0.8, 1.0):
        g = g_rel * prog.g_max_us
        drawn = devices.program_pcm_conductance(np.full(n, g), prog, rng(2))
        c0, c1, c2 = prog.coefficients
        sigma = c0 + c1 * g_rel + c2 * g_rel**2
        assert drawn.std() == pytest.approx(sigma, rel=0.05)
        assert abs(drawn.mean() - g) < 4 * sigma / math.sqrt(n)


def test_pcm_programming_puts_noise_on_both_devices_including_the_idle_one() -> None:
    p = profile(programming=ProgrammingNoise(model="pcm"))
    prog, n, w_max = p.noise.programming, 100_000, p.weights.range[1]
    c0 = prog.coefficients[0]
    for w in (0.5, -0.8):
        pairs = devices.pcm_program(np.full(n, w), p, rng(3), rng(4))
        out = devices.pcm_weights(pairs, p, 0.0)  # at t = 0: no drift, no read noise without a generator
        sigma_active = float(devices.pcm_programming_sigma_us(abs(w) * prog.g_max_us, prog))
        idle_mean, idle_var = c0 / math.sqrt(2 * math.pi), c0**2 * (0.5 - 1 / (2 * math.pi))
        scale = w_max / prog.g_max_us
        expect_mean = w - math.copysign(idle_mean * scale, w)
        expect_std = scale * math.sqrt(sigma_active**2 + idle_var)
        assert out.std() == pytest.approx(expect_std, rel=0.05)
        assert abs(out.mean() - expect_mean) < 4 * expect_std / math.sqrt(n)
    with pytest.raises(ChipError, match="pcm_program"):
        devices.programming_noise(np.zeros(3), p, rng(4))


def test_pcm_sigma_scales_with_g_max_against_the_fit_reference() -> None:
    g = np.array([5.0, 20.0])
    at_25, at_50 = ProgrammingNoise(model="pcm"), ProgrammingNoise(model="pcm", g_max_us=50.0)
    assert devices.pcm_programming_sigma_us(2 * g, at_50) == pytest.approx(
        2 * devices.pcm_programming_sigma_us(g, at_25)
    )


@pytest.mark.parametrize("model", ["gaussian_absolute", "gaussian_relative"])
def test_gaussian_programming_noise(model: str) -> None:
    p = profile(programming=ProgrammingNoise(model=model, sigma=0.1))
    w = np.full(100_000, -0.6)
    out = devices.programming_noise(w, p, rng(5))
    expect = 0.1 if model == "gaussian_absolute" else 0.06
    assert out.std() == pytest.approx(expect, rel=0.03)
    assert np.array_equal(devices.programming_noise(w, profile(), rng(5)), w)


# ---------------------------------------------------------------- drift
def test_power_law_drift_exponent_recovered_from_two_reads() -> None:
    drift = Drift(model="power_law", nu=0.06, nu_sigma=0.01, t0_s=20.0)
    w = np.full(50_000, 0.7)
    nu = devices.drift_exponents(w, drift, rng(6), w_max=1.0)
    assert nu.mean() == pytest.approx(0.06, abs=4 * 0.01 / math.sqrt(w.size))
    assert nu.std() == pytest.approx(0.01, rel=0.05)
    times = np.array([100.0, 1e4])  # time since programming; drift acts at t + t0
    reads = np.stack([devices.apply_drift(w, nu, t, drift) for t in times])
    slope = np.polyfit(np.log(times + drift.t0_s), np.log(reads[:, :3]), 1)[0]
    assert np.allclose(-slope, nu[:3])
    assert np.array_equal(devices.apply_drift(w, nu, 0.0, drift), w)
    assert np.all(devices.apply_drift(w, nu, 1.0, drift) < w)  # drift from the first second on


def _folded_normal_mean(mu: float, sigma: float) -> float:
    return sigma * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sigma**2)) + mu * math.erf(
        mu / (sigma * math.sqrt(2))
    )


def test_pcm_drift_statistics() -> None:
    mean, sigma = devices.pcm_drift_nu_stats(np.array([1.0, 0.01, 0.0]))
    assert mean.tolist() == pytest.approx([0.049, -0.0155 * math.log(0.01) + 0.0244, 0.1])
    assert sigma.tolist() == pytest.approx([0.008, 0.045, 0.045])
    drift = Drift(model="pcm")
    w = np.full(200_000, -0.01)  # |w| / w_max = 0.01 on a range of ±1
    nu = devices.drift_exponents(w, drift, rng(7), w_max=1.0)
    assert nu.min() >= 0
    folded = _folded_normal_mean(float(mean[1]), 0.045)  # negative draws folded with abs(), as aihwkit
    assert folded > mean[1]
    assert nu.mean() == pytest.approx(folded, abs=4 * 0.045 / math.sqrt(w.size))
    assert not devices.drift_exponents(w, Drift(), rng(7), w_max=1.0).any()


# ---------------------------------------------------------------- read noise
def test_read_noise_is_fresh_and_has_its_sigma() -> None:
    p = profile(read=ReadNoise(model="gaussian_relative", sigma=0.05))
    w = np.full(100_000, 0.4)
    g = rng(8)
    a, b = devices.read_noise(w, p, g), devices.read_noise(w, p, g)
    assert not np.array_equal(a, b)
    assert a.std() == pytest.approx(0.02, rel=0.03)
    pa = profile(read=ReadNoise(model="gaussian_absolute", sigma=0.05))
    assert devices.read_noise(np.zeros(100_000), pa, g).std() == pytest.approx(0.05, rel=0.03)


def test_pcm_1f_read_noise_scales_with_the_programmed_conductance_at_t_plus_t0() -> None:
    p = profile(programming=ProgrammingNoise(model="pcm"), read=ReadNoise(model="pcm_1f", sigma=1.0))
    prog = p.noise.programming
    g_rel, t = 0.5, 1000.0
    pairs = devices.PcmPairs(
        np.full(100_000, g_rel * prog.g_max_us), np.zeros(100_000), np.zeros(100_000), np.zeros(100_000), 1.0
    )
    q_s = min(0.0088 / g_rel**0.65, 0.2)
    expect = q_s * g_rel * math.sqrt(math.log((t + 20.0 + 250e-9) / (2 * 250e-9)))
    assert devices.pcm_weights(pairs, p, t, rng(9)).std() == pytest.approx(expect, rel=0.03)
    assert devices.pcm_read_noise_sigma(np.array([0.0]), 25.0, 250e-9, 100.0)[0] == pytest.approx(
        0.2 * math.sqrt(math.log((100.0 + 250e-9) / 5e-7))
    )  # Q_s capped at 0.2 near g = 0
    with pytest.raises(Exception, match="pcm_1f acts on PCM"):
        profile(read=ReadNoise(model="pcm_1f"))


def test_periphery_weight_noise_is_relative_to_the_layers_range() -> None:
    w_max, sigma, scale = 2.0, 0.0175, 0.5
    p = ChipProfile(
        name="t", noise=Noise(periphery={"weight_sigma": sigma}), weights=Weights(range=(-w_max, w_max))
    )
    out = devices.periphery_noise(np.zeros(100_000), p, rng(11), scale)
    assert out.std() == pytest.approx(sigma * w_max * scale, rel=0.03)
    assert np.array_equal(devices.periphery_noise(np.ones(3), profile(), rng(11), 1.0), np.ones(3))


# ---------------------------------------------------------------- faults
def test_fault_fractions_within_three_sigma() -> None:
    faults = Faults(stuck_at_zero=0.02, stuck_at_max=0.005)
    codes = devices.draw_faults((400, 500), faults, rng(10))
    n = codes.size
    assert codes.dtype == np.int8 and set(np.unique(codes)) == {0, 1, 2}
    for code, p in ((1, 0.02), (2, 0.005)):
        assert abs((codes == code).mean() - p) < 3 * math.sqrt(p * (1 - p) / n)
    assert not devices.draw_faults((10, 10), Faults(), rng(10)).any()


def test_apply_faults_sets_zero_and_range_max() -> None:
    w = np.array([[0.3, -0.4, 0.5]])
    codes = np.array([[0, 1, 2]], dtype=np.int8)
    assert devices.apply_faults(w, codes, Weights(range=(-1, 2))).tolist() == [[0.3, 0.0, 2.0]]
    with pytest.raises(ChipError, match="shape"):
        devices.apply_faults(w, codes.T, Weights())


# ---------------------------------------------------------------- mismatch
def test_mismatch_spread_and_floor() -> None:
    m = devices.draw_mismatch(100_000, Mismatch(tau=0.1, threshold=0.05, gain=0.0), rng(11))
    assert m["tau"].std() == pytest.approx(0.1, rel=0.03)
    assert m["threshold"].std() == pytest.approx(0.05, rel=0.03)
    assert abs(m["tau"].mean() - 1) < 4 * 0.1 / math.sqrt(100_000)
    assert np.all(m["gain"] == 1.0)
    wide = devices.draw_mismatch(10_000, Mismatch(tau=1.0), rng(12))["tau"]
    assert wide.min() == 0.05 and (wide == 0.05).mean() > 0.1


# ---------------------------------------------------------------- event caps
def test_cap_events_keeps_first_k() -> None:
    z = np.array([[1, 0, 1, 1, 1], [0, 1, 0, 0, 0]], dtype=np.uint8)
    kept, dropped = devices.cap_events(z, 2)
    assert kept.tolist() == [[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]] and dropped == 2
    assert kept.dtype == np.uint8
    same, none = devices.cap_events(z.astype(bool), None)
    assert np.array_equal(same, z.astype(bool)) and none == 0


@settings(max_examples=200, deadline=None)
@given(
    z=arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 12))),
    cap=st.integers(1, 12),
)
def test_cap_events_properties(z: np.ndarray, cap: int) -> None:
    kept, dropped = devices.cap_events(z, cap)
    assert np.all(kept <= z), "only drops"
    assert np.all(kept.sum(-1) == np.minimum(z.sum(-1), cap))
    assert dropped == int(z.sum() - kept.sum())
    # every kept event precedes every dropped one in neuron-index order
    idx = np.arange(z.shape[-1])
    last_kept = np.where(kept, idx, -1).max(-1)
    first_dropped = np.where(z & ~kept, idx, z.shape[-1]).min(-1)
    assert np.all(last_kept < first_dropped)


def test_map_to_range_makes_pcm_noise_relative_to_the_layer() -> None:
    base = profile(programming=ProgrammingNoise(model="pcm"), read=ReadNoise(model="pcm_1f", sigma=1.0))
    mapped = base.with_overrides({"weights.map_to_range": True})
    small = np.full(100_000, 0.05)
    small[0] = 0.1  # the layer's peak: scale 0.1
    full = small * 10.0

    def error(w: np.ndarray, p: ChipProfile) -> float:
        pairs = devices.pcm_program(w, p, rng(12), rng(13))
        return float((devices.pcm_weights(pairs, p, 100.0, rng(14)) - w)[1:].std())

    assert error(small, mapped) == pytest.approx(error(full, mapped) / 10.0, rel=1e-9)
    # unmapped, the small layer sits at 5% of g_max, where the idle device's noise dominates
    assert error(small, base) > 3 * error(small, mapped)
    assert devices.layer_scale(small, mapped.weights) == pytest.approx(0.1)
    assert devices.layer_scale(small, base.weights) == 1.0

"""The same scenarios on every Chip backend (CHIP_FACTORIES), against the float64 TwinChip reference.

Float profiles: >= 99.9 % of spike entries agree and membranes agree to 1e-6 wherever the spike
histories agree. Fixed arithmetic: bit for bit. Then the device contract: same seed, same Recording;
other seed, other frozen mismatch; fresh read noise per run; rejected input leaves the chip as it was.
"""

from __future__ import annotations

import numpy as np
import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip, Recording
from chiploop.chip_profiles.loader import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import ChipError, DesignRuleError

from .conftest import CHIP_FACTORIES

B, T = 6, 50
SPEC = NetworkSpec(12, 24, 4, recurrent=True)
ALIF = {
    "neuron.model": "alif",
    "neuron.adaptation.beta": 0.4,
    "neuron.adaptation.fraction": 0.5,
    "neuron.adaptation.tau_s": 0.05,
    "neuron.refractory_steps": 2,
}
NOISY = {
    "noise.programming.model": "gaussian_relative",
    "noise.programming.sigma": 0.1,
    "noise.read.model": "gaussian_absolute",
    "noise.read.sigma": 0.02,
    "noise.mismatch.tau": 0.1,
    "noise.mismatch.threshold": 0.1,
    "noise.mismatch.gain": 0.1,
}


def profile(name: str) -> ChipProfile:
    """Scenario profiles: ideal LIF/ALIF, loihi-like (multiplier, zero reset), xylo-like (shift, subtract)."""
    return {
        "ideal": lambda: load_profile("ideal"),
        "ideal-alif": lambda: load_profile("ideal").with_overrides(ALIF),
        "ideal-capped": lambda: load_profile("ideal").with_overrides({"limits.max_spikes_per_step": 2}),
        "loihi-like": lambda: load_profile("loihi2"),
        "xylo-like": lambda: load_profile("xylo"),
        "noisy": lambda: load_profile("ideal").with_overrides(NOISY),
    }[name]()


def weights(p: ChipProfile, spec: NetworkSpec, seed: int = 1, gain: float = 1.5) -> dict[str, np.ndarray]:
    """Random weights of std `gain * threshold / sqrt(fan_in)`, clipped to the profile's range."""
    rng = np.random.default_rng(seed)
    lo, hi = p.weights.value_range
    theta = p.neuron.nominal("threshold")
    return {
        k: np.clip(rng.normal(0.1 * theta / s[0], gain * theta / np.sqrt(s[0]), s), lo, hi)
        for k, s in spec.weight_shapes().items()
    }


def inputs(seed: int = 2, rate: float = 0.25, b: int = B, spec: NetworkSpec = SPEC) -> np.ndarray:
    return (np.random.default_rng(seed).random((b, T, spec.n_in)) < rate).astype(np.uint8)


def make(backend: str, p: ChipProfile, spec: NetworkSpec = SPEC, seed: int = 0) -> Chip:
    factory = CHIP_FACTORIES[backend]
    if p.arithmetic.kind not in factory.arithmetic:
        pytest.skip(f"{backend} does not run {p.arithmetic.kind} arithmetic")
    return factory.make(p, spec, seed)


def reference(p: ChipProfile, spec: NetworkSpec, w: dict, x: np.ndarray, seed: int = 0) -> Recording:
    twin = TwinChip(p, spec, seed=seed)
    twin.write_weights(w)
    return twin.run(x)


def first_divergence(a: Recording, b: Recording) -> np.ndarray:
    """Per sample, the first step at which any layer's spikes differ (T if never)."""
    diff = np.zeros(a.spikes["hidden"].shape[:2], dtype=bool)
    for layer in a.spikes:
        diff |= np.any(a.spikes[layer] != b.spikes[layer], axis=2)
    return np.where(diff.any(axis=1), diff.argmax(axis=1), diff.shape[1])


def assert_recordings_equal(a: Recording, b: Recording) -> None:
    assert a.spikes.keys() == b.spikes.keys() and a.v.keys() == b.v.keys()
    for layer in a.spikes:
        np.testing.assert_array_equal(a.spikes[layer], b.spikes[layer], err_msg=f"spikes[{layer}]")
    for layer in a.v:
        assert a.v[layer].dtype == b.v[layer].dtype
        np.testing.assert_array_equal(a.v[layer], b.v[layer], err_msg=f"v[{layer}]")
    assert a.meta["dropped_spikes"] == b.meta["dropped_spikes"]
    assert a.meta["weights_generation"] == b.meta["weights_generation"]


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
@pytest.mark.parametrize("readout", ["leaky", "spiking"])
@pytest.mark.parametrize("name", ["ideal", "ideal-alif"])
def test_float_profiles_match_reference(backend: str, name: str, readout: str) -> None:
    p, spec = profile(name), NetworkSpec(12, 24, 4, recurrent=True, readout=readout)
    chip = make(backend, p, spec)
    w, x = weights(p, spec), inputs(spec=spec)
    chip.write_weights(w)
    got, ref = chip.run(x), reference(p, spec, w, x)
    assert ref.spikes["hidden"].mean() > 0.02, "scenario too quiet to test anything"
    if readout == "spiking":
        assert ref.spikes["out"].sum() > 0
    for layer in ref.spikes:
        assert got.spikes[layer].dtype == np.uint8 and got.spikes[layer].shape == ref.spikes[layer].shape
        assert np.mean(got.spikes[layer] == ref.spikes[layer]) >= 0.999, layer
    until = first_divergence(got, ref)
    for layer in ref.v:
        assert got.v[layer].dtype == np.float32 and got.v[layer].shape == ref.v[layer].shape
        for b, t in enumerate(until):
            np.testing.assert_allclose(got.v[layer][b, :t], ref.v[layer][b, :t], rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
@pytest.mark.parametrize("readout", ["leaky", "spiking"])
@pytest.mark.parametrize("name", ["loihi-like", "xylo-like"])
def test_fixed_profiles_bit_identical(backend: str, name: str, readout: str) -> None:
    p, spec = profile(name), NetworkSpec(12, 24, 4, recurrent=True, readout=readout)
    chip = make(backend, p, spec)
    w, x = weights(p, spec, gain=2.0), inputs(spec=spec)
    chip.write_weights(w)
    got, ref = chip.run(x), reference(p, spec, w, x)
    assert ref.spikes["hidden"].mean() > 0.02, "scenario too quiet to test anything"
    assert got.v["hidden"].dtype == np.int64
    assert_recordings_equal(got, ref)


LAYERED = NetworkSpec(12, (20, 14, 8), 4, recurrent=(True, False, True), readout="spiking")


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
@pytest.mark.parametrize("name", ["loihi-like", "xylo-like", "ideal-capped"])
def test_layered_networks_bit_identical(backend: str, name: str) -> None:
    """Three hidden layers (recurrent, feed-forward, recurrent) and a spiking readout: every layer's
    spikes and membranes as the reference's, under integer rules and under a per-layer spike cap."""
    p = profile(name)
    if name == "ideal-capped":  # float dynamics compared bit for bit: integer-valued weights and inputs
        p = p.with_overrides({"arithmetic.kind": "fixed", "weights.bits": 8, "weights.range": [-127, 127],
                              "neuron.threshold": 100.0})  # fmt: skip
    chip = make(backend, p, LAYERED)
    w, x = weights(p, LAYERED, gain=2.5), inputs(rate=0.4, spec=LAYERED)
    chip.write_weights(w)
    got, ref = chip.run(x), reference(p, LAYERED, w, x)
    assert sorted(ref.spikes) == ["hidden", "hidden2", "hidden3", "out"]
    for layer in LAYERED.layer_names:
        assert ref.spikes[layer].mean() > 0.02, f"{layer} too quiet to test anything"
    if name == "ideal-capped":
        assert ref.meta["dropped_spikes"] > 0
    assert_recordings_equal(got, ref)


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
def test_spike_cap_drops_the_same_events(backend: str) -> None:
    p = profile("ideal-capped")
    chip = make(backend, p)
    w, x = weights(p, SPEC, gain=3.0), inputs(rate=0.5)
    chip.write_weights(w)
    got, ref = chip.run(x), reference(p, SPEC, w, x)
    assert ref.meta["dropped_spikes"] > 0
    assert got.meta["dropped_spikes"] == ref.meta["dropped_spikes"]
    assert got.spikes["hidden"].sum(axis=2).max() <= 2
    np.testing.assert_array_equal(got.spikes["hidden"], ref.spikes["hidden"])
    np.testing.assert_allclose(got.v["out"], ref.v["out"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
def test_same_seed_same_recording(backend: str) -> None:
    p, w, x = profile("noisy"), weights(profile("noisy"), SPEC), inputs()
    runs = []
    for _ in range(2):
        chip = make(backend, p, seed=7)
        chip.write_weights(w)
        runs.append((chip.run(x), chip.run(x)))
    for a, b in zip(*runs, strict=True):
        assert_recordings_equal(a, b)


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
def test_seeds_freeze_different_mismatch(backend: str) -> None:
    p = load_profile("ideal").with_overrides({"noise.mismatch.tau": 0.2, "noise.mismatch.threshold": 0.2})
    w, x = weights(p, SPEC), inputs()
    recs = []
    for seed in (0, 1):
        chip = make(backend, p, seed=seed)
        chip.write_weights(w)
        recs.append(chip.run(x))
        np.testing.assert_array_equal(chip.run(x).v["out"], recs[-1].v["out"])  # frozen, no read noise
    assert not np.array_equal(recs[0].v["out"], recs[1].v["out"])


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
def test_read_noise_is_fresh_each_run(backend: str) -> None:
    chip = make(backend, profile("noisy"))
    chip.write_weights(weights(profile("noisy"), SPEC))
    x = inputs()
    a, b = chip.run(x), chip.run(x)
    assert not np.array_equal(a.v["out"], b.v["out"])
    assert a.meta["weights_generation"] == b.meta["weights_generation"] == 1


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
def test_reseed_noise_restarts_programming_and_read_noise(backend: str) -> None:
    """`Chip.reseed_noise`: the same key draws the same noise again, another key other noise."""
    p = profile("noisy")
    chip = make(backend, p, seed=3)
    assert isinstance(chip, Chip)
    w, x = weights(p, SPEC), inputs()
    draws = []
    for key in ([5, 1], [5, 1], [5, 2]):
        chip.reseed_noise(key)
        chip.write_weights(w)
        draws.append((chip.read_weights()["in_hidden"], chip.run(x)))
    (w_a, a), (w_b, b), (w_c, c) = draws
    np.testing.assert_array_equal(w_a, w_b)
    for layer in a.spikes:
        np.testing.assert_array_equal(a.spikes[layer], b.spikes[layer])
    for layer in a.v:
        np.testing.assert_array_equal(a.v[layer], b.v[layer])
    assert not np.array_equal(w_a, w_c) and not np.array_equal(a.v["out"], c.v["out"])


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
def test_design_rules_at_open_and_nothing_after_close(backend: str) -> None:
    with pytest.raises(DesignRuleError, match="max_neurons"):
        make(backend, load_profile("ideal").with_overrides({"limits.max_neurons": 10}))
    p = profile("ideal")
    chip = make(backend, p)
    chip.close()
    with pytest.raises(ChipError, match="closed"):
        chip.write_weights(weights(p, SPEC))
    with pytest.raises(ChipError, match="closed"):
        chip.run(inputs())


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
def test_bad_input_keeps_previous_weights(backend: str) -> None:
    p = profile("ideal")
    chip = make(backend, p)
    w, x = weights(p, SPEC), inputs()
    chip.write_weights(w)
    before, rec = chip.read_weights(), chip.run(x)
    bad_weights = [
        {**w, "in_hidden": np.full_like(w["in_hidden"], np.nan)},
        {**w, "hidden_out": np.zeros((3, 3))},
        {k: v for k, v in w.items() if k != "hidden_hidden"},
        {**w, "in_hidden": np.where(np.eye(*w["in_hidden"].shape, dtype=bool), np.inf, w["in_hidden"])},
    ]
    for bad in bad_weights:
        with pytest.raises(ChipError):
            chip.write_weights(bad)
    bad_inputs = [x[:, :, :-1], x.astype(np.float64) * 0.5, x[0], x + 1]
    for bad in bad_inputs:
        with pytest.raises(ChipError, match="inputs"):
            chip.run(bad)
    after = chip.read_weights()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    assert_recordings_equal(chip.run(x), rec)


# ---------------------------------------------------------------- every rule, on every backend
HIDDEN, OUT = 24, 4
RULES = {
    "xylo-two-currents-bias": (
        "xylo",
        {"neuron.threshold": [float(t) for t in np.linspace(60, 400, HIDDEN + OUT)],
         "neuron.bias": [float(b) for b in np.linspace(-30, 40, HIDDEN + OUT)],
         "neuron.tau_mem_s": [0.002 * 2 ** (k % 4) for k in range(HIDDEN)]},
        {"synapses": 2},
    ),
    "loihi-bias": ("loihi2", {"neuron.bias": [float(b) for b in np.linspace(-4000, 6000, HIDDEN + OUT)]}, {}),
    "every-other-rule": (
        "ideal",
        {"arithmetic.kind": "fixed", "arithmetic.state_bits": 14, "arithmetic.decay": "multiplier",
         "arithmetic.decay_bits": 10, "arithmetic.decay_rounding": "floor",
         "arithmetic.current_overflow": "wrap", "arithmetic.membrane_overflow": "saturate_symmetric",
         "arithmetic.fractional_bits": 3,
         "neuron.threshold": 90.0, "neuron.threshold_compare": "gt", "neuron.max_spike_count": 5,
         "neuron.update_order": "add_then_decay", "neuron.refractory_steps": 1, "timing.input_delay_steps": 0,
         "weights.range": [-127, 127], "weights.bits": 8, "limits.max_spikes_per_step": 9},
        {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("backend", CHIP_FACTORIES)
@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_bit_identical(backend: str, name: str) -> None:
    base, overrides, spec_kw = RULES[name]
    p = load_profile(base).with_overrides(overrides)
    spec = NetworkSpec(12, HIDDEN, OUT, recurrent=True, readout="spiking", **spec_kw)
    chip = make(backend, p, spec)
    w, x = weights(p, spec, gain=2.5), inputs(rate=0.4, spec=spec)
    chip.write_weights(w)
    got, ref = chip.run(x), reference(p, spec, w, x)
    assert ref.spikes["hidden"].mean() > 0.02 and ref.spikes["out"].any(), "scenario too quiet"
    assert ref.spikes["hidden"].max() == p.neuron.max_spike_count  # multi-spike counts where allowed
    assert_recordings_equal(got, ref)
    if backend != "serial":  # the wire carries no currents
        twin = TwinChip(p, spec)
        twin.write_weights(w)
        want = twin.run(x, record_i=True).currents
        have = chip.run(x, record_i=True).currents
        assert sorted(have) == sorted(want) and len(want) == 2 + (spec.synapses == 2)
        for layer in want:
            np.testing.assert_array_equal(have[layer], want[layer], err_msg=f"currents[{layer}]")

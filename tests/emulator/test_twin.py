"""TorchTwin and TwinChip against a slow, direct numpy reading of docs/dynamics.md; gradients; replay."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from chiploop.chip import devices
from chiploop.chip.device_model import DeviceModel, NeuronConstants, neuron_constants
from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip, Recording
from chiploop.chip.surrogates import SuperSpike, Triangle
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin import TorchTwin
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import ChipError, DesignRuleError

WIDE = {"range": (-1e6, 1e6)}  # analog weights that the chip does not clip


# ---------------------------------------------------------------- the reference
def reference(
    c: NeuronConstants,
    spec: NetworkSpec,
    limits: Any,
    x: np.ndarray,
    w: dict[str, np.ndarray],
    forced_h: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """docs/dynamics.md one sample, one step at a time (float64, or int64 for fixed arithmetic).

    forced_h: hidden spikes that replace the layer's own (what replay means). Returns spikes, v and
    the number of dropped hidden + input events.
    """
    fixed = c.arithmetic == "fixed"
    lo, hi = -(2 ** (c.state_bits - 1)), 2 ** (c.state_bits - 1) - 1
    kind = np.int64 if fixed else np.float64

    def sat(a):
        return np.clip(a, lo, hi) if fixed else a

    def trunc_shift(a, bits):  # trunc(a / 2^bits), C99 division
        return np.sign(a) * (np.abs(a) >> bits)

    def decay(a, k):
        if not fixed:
            return k * a
        if c.decay == "multiplier":
            return trunc_shift(a * k, c.decay_bits)
        return a - trunc_shift(a, k)

    def decay_syn(a, k):
        return decay(a, k) if c.syn_enabled else 0 * a

    def gain(a):
        return np.trunc(c.gain_h * a).astype(np.int64) if fixed else c.gain_h * a

    def cap(z, k):
        if k is None:
            return z, 0
        kept = z * (np.cumsum(z) <= k)
        return kept, int(z.sum() - kept.sum())

    def fire(v, i, r, mem, a):
        ref = r > 0
        v = np.where(ref, v, sat(decay(v, mem) + i))
        z = ((v >= a) & ~ref).astype(kind)
        return z, ref

    def reset(v, r, z, a):
        v = v - z * a if c.reset == "subtract" else np.where(z != 0, 0 * v, v)
        r = np.where(z != 0, c.refractory_steps, np.maximum(r - 1, 0))
        return v, r

    B, T, _ = x.shape
    n_h, n_o = spec.n_hidden, spec.n_out
    spiking = spec.readout == "spiking"
    w = {k: np.asarray(a, dtype=kind) for k, a in w.items()}
    zh, vh = np.zeros((B, T, n_h), np.uint8), np.zeros((B, T, n_h), kind)
    zo, vo = np.zeros((B, T, n_o), np.uint8), np.zeros((B, T, n_o), kind)
    dropped = 0
    for b in range(B):
        i_h, v_h, a_h = np.zeros(n_h, kind), np.zeros(n_h, kind), np.zeros(n_h, kind)
        i_o, v_o = np.zeros(n_o, kind), np.zeros(n_o, kind)
        r_h, r_o = np.zeros(n_h, np.int64), np.zeros(n_o, np.int64)
        x_prev, z_prev = np.zeros(spec.n_in, kind), np.zeros(n_h, kind)
        for t in range(T):
            s_h = x_prev @ w["in_hidden"]
            if spec.recurrent:
                s_h = s_h + z_prev @ w["hidden_hidden"]
            s_o = z_prev @ w["hidden_out"]
            i_h = sat(decay_syn(i_h, c.syn_h) + gain(s_h))
            thresh = c.threshold_h + a_h
            v_h_pre = np.where(r_h > 0, v_h, sat(decay(v_h, c.mem_h) + i_h))
            z, _ = fire(v_h, i_h, r_h, c.mem_h, thresh)
            if forced_h is not None:
                z = forced_h[b, t].astype(kind)
            v_h, r_h = reset(v_h_pre, r_h, z, thresh)
            a_h = sat(decay(a_h, c.ada_h) + c.beta_h * z)
            z, n = cap(z, limits.max_spikes_per_step)
            dropped += n
            i_o = sat(decay_syn(i_o, c.syn_o) + s_o)
            if spiking:
                v_o_pre = np.where(r_o > 0, v_o, sat(decay(v_o, c.mem_o) + i_o))
                z_o, _ = fire(v_o, i_o, r_o, c.mem_o, c.threshold_o)
                v_o, r_o = reset(v_o_pre, r_o, z_o, c.threshold_o)
                zo[b, t] = z_o
            else:
                v_o = sat(decay(v_o, c.mem_o) + i_o)
            zh[b, t], vh[b, t], vo[b, t] = z, v_h, v_o
            x_prev, n = cap(x[b, t].astype(kind), limits.max_input_spikes_per_step)
            dropped += n
            z_prev = z
    spikes = {"hidden": zh, "out": zo} if spiking else {"hidden": zh}
    return spikes, {"hidden": vh, "out": vo}, dropped


# ---------------------------------------------------------------- helpers
def make_profile(**sections: Any) -> ChipProfile:
    sections.setdefault("weights", WIDE)
    return ChipProfile(name="t", **sections)


def raster(B: int, T: int, n: int, p: float = 0.3, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((B, T, n)) < p).astype(np.uint8)


def float_weights(spec: NetworkSpec, scale: float, seed: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.3, 1.0, s) * scale / np.sqrt(s[0]) for k, s in spec.weight_shapes().items()}


def int_weights(spec: NetworkSpec, scale: float, seed: int = 2) -> dict[str, np.ndarray]:
    return {k: np.rint(a).astype(np.int64) for k, a in float_weights(spec, scale, seed).items()}


def as_torch(w: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(a, dtype=torch.float64) for k, a in w.items()}


def twin_forward(profile, spec, x, w, constants=None, **kw):
    twin = TorchTwin(profile, spec, dtype=torch.float64, constants=constants, **kw)
    return twin(torch.tensor(x), weights=as_torch(w))


def assert_matches(out, spikes, v, exact: bool) -> None:
    assert set(out.spikes) == set(spikes)
    for k in spikes:
        np.testing.assert_array_equal(out.spikes[k].detach().numpy(), spikes[k], err_msg=k)
    for k in ("hidden", "out"):
        got = out.v[k].detach().numpy()
        if exact:
            np.testing.assert_array_equal(got, v[k], err_msg=k)
        else:
            np.testing.assert_allclose(got, v[k], rtol=0, atol=1e-9, err_msg=k)


def assert_active(spikes: dict[str, np.ndarray]) -> None:
    """A scenario must exercise spiking: some spikes, not all."""
    rate = spikes["hidden"].mean()
    assert 0.02 < rate < 0.9, rate


# ---------------------------------------------------------------- float dynamics
FLOAT_CASES = {
    "lif_ff_leaky": (dict(), dict()),
    "lif_rec_zero_refractory": (dict(neuron=dict(reset="zero", refractory_steps=3)), dict(recurrent=True)),
    "alif_rec_spiking": (
        dict(
            neuron=dict(model="alif", refractory_steps=2, adaptation=dict(beta=0.5, tau_s=0.05, fraction=0.5))
        ),
        dict(recurrent=True, readout="spiking"),
    ),
    "no_syn_filter_spiking": (dict(neuron=dict(tau_syn_s=0.0)), dict(readout="spiking")),
    "caps": (dict(limits=dict(max_spikes_per_step=2, max_input_spikes_per_step=3)), dict(recurrent=True)),
}


@pytest.mark.parametrize("case", list(FLOAT_CASES))
def test_float_forward_equals_reference(case: str) -> None:
    sections, spec_kw = FLOAT_CASES[case]
    profile = make_profile(**sections)
    spec = NetworkSpec(6, 8, 3, **spec_kw)
    x, w = raster(3, 40, 6), float_weights(spec, 2.5)
    spikes, v, dropped = reference(neuron_constants(profile, spec), spec, profile.limits, x, w)
    assert_active(spikes)
    assert (dropped > 0) == (case == "caps")
    assert_matches(twin_forward(profile, spec, x, w), spikes, v, exact=False)


def test_float32_twin_is_close_to_reference() -> None:
    profile, spec = make_profile(), NetworkSpec(6, 8, 3, recurrent=True)
    x, w = raster(3, 40, 6), float_weights(spec, 2.5)
    spikes, v, _ = reference(neuron_constants(profile, spec), spec, profile.limits, x, w)
    twin = TorchTwin(profile, spec)
    out = twin(torch.tensor(x), weights={k: torch.tensor(a, dtype=torch.float32) for k, a in w.items()})
    assert out.v["out"].dtype == torch.float32
    assert (out.spikes["hidden"].numpy() == spikes["hidden"]).mean() > 0.99
    np.testing.assert_allclose(out.v["out"].numpy(), v["out"], atol=1e-3)


def test_reference_decays_are_the_profile_time_constants() -> None:
    profile = make_profile(neuron=dict(tau_mem_s=0.03, tau_syn_s=0.004, tau_out_s=0.05))
    c = neuron_constants(profile, NetworkSpec(2, 3, 2))
    np.testing.assert_allclose(c.mem_h, np.exp(-0.001 / 0.03))
    np.testing.assert_allclose(c.syn_o, np.exp(-0.001 / 0.004))
    np.testing.assert_allclose(c.mem_o, np.exp(-0.001 / 0.05))


def test_mismatch_constants_are_used_by_forward() -> None:
    profile = make_profile(noise=dict(mismatch=dict(tau=0.2, threshold=0.2, gain=0.2)))
    spec = NetworkSpec(6, 8, 3, recurrent=True, readout="spiking")
    constants = DeviceModel(profile, spec, seed=5).constants
    x, w = raster(3, 40, 6), float_weights(spec, 2.5)
    spikes, v, _ = reference(constants, spec, profile.limits, x, w)
    assert_active(spikes)
    assert_matches(twin_forward(profile, spec, x, w, constants=constants), spikes, v, exact=False)
    nominal = twin_forward(profile, spec, x, w)
    assert not np.allclose(nominal.v["hidden"].numpy(), v["hidden"])


# ---------------------------------------------------------------- fixed dynamics
def fixed_profile(**arith: Any) -> dict[str, Any]:
    return dict(arithmetic=dict(kind="fixed", **arith), weights={"range": (-1000.0, 1000.0)})


FIXED_CASES = {
    "multiplier_alif_rec": (
        {
            **fixed_profile(),
            "neuron": dict(
                threshold=64,
                model="alif",
                refractory_steps=1,
                adaptation=dict(beta=8, tau_s=0.05, fraction=0.5),
            ),
        },
        dict(recurrent=True),
        90.0,
    ),
    "shift_zero_spiking_nosyn": (
        {
            **fixed_profile(decay="shift", decay_bits=8),
            "neuron": dict(threshold=50, reset="zero", tau_syn_s=0.0, tau_mem_s=0.016),
        },
        dict(readout="spiking"),
        70.0,
    ),
    "shift_alif_refractory": (
        {
            **fixed_profile(decay="shift"),
            "neuron": dict(
                threshold=40, model="alif", refractory_steps=2, adaptation=dict(beta=5, tau_s=0.03)
            ),
        },
        dict(recurrent=True, readout="spiking"),
        60.0,
    ),
    "saturating": (
        {**fixed_profile(state_bits=9), "neuron": dict(threshold=200, tau_syn_s=0.02, tau_out_s=0.2)},
        dict(recurrent=True),
        400.0,
    ),
    "saturating_no_syn_filter": (
        {**fixed_profile(state_bits=9, decay="shift"), "neuron": dict(threshold=200, tau_syn_s=0.0)},
        dict(readout="spiking"),
        900.0,
    ),
}


@pytest.mark.parametrize("case", list(FIXED_CASES))
def test_fixed_forward_is_bit_exact(case: str) -> None:
    sections, spec_kw, scale = FIXED_CASES[case]
    profile = make_profile(**sections)
    spec = NetworkSpec(6, 8, 3, **spec_kw)
    x, w = raster(3, 50, 6), int_weights(spec, scale)
    spikes, v, _ = reference(neuron_constants(profile, spec), spec, profile.limits, x, w)
    assert_active(spikes)
    out = twin_forward(profile, spec, x, w)
    assert out.v["hidden"].dtype == torch.float64
    assert_matches(out, spikes, v, exact=True)
    if case.startswith("saturating"):
        assert (np.abs(v["out"]) >= 2**8 - 1).any(), "the scenario must hit the state limits"


def test_fixed_gain_mismatch_truncates_like_the_reference() -> None:
    sections = {
        **fixed_profile(),
        "neuron": dict(threshold=64),
        "noise": dict(mismatch=dict(gain=0.3, tau=0.2)),
    }
    profile = make_profile(**sections)
    spec = NetworkSpec(6, 8, 3, recurrent=True)
    constants = DeviceModel(profile, spec, seed=2).constants
    x, w = raster(3, 50, 6), int_weights(spec, 90.0)
    spikes, v, _ = reference(constants, spec, profile.limits, x, w)
    assert_active(spikes)
    assert_matches(twin_forward(profile, spec, x, w, constants=constants), spikes, v, exact=True)


def test_fixed_chip_run_is_bit_exact_and_int64() -> None:
    profile = make_profile(**FIXED_CASES["multiplier_alif_rec"][0])
    spec = NetworkSpec(6, 8, 3, recurrent=True)
    x, w = raster(3, 50, 6), int_weights(spec, 90.0)
    twin = TwinChip(profile, spec)
    twin.write_weights(w)
    rec = twin.run(x)
    spikes, v, _ = reference(twin.device.constants, spec, profile.limits, x, w)
    assert rec.v["hidden"].dtype == np.int64 and rec.spikes["hidden"].dtype == np.uint8
    np.testing.assert_array_equal(rec.spikes["hidden"], spikes["hidden"])
    np.testing.assert_array_equal(rec.v["hidden"], v["hidden"])
    np.testing.assert_array_equal(rec.v["out"], v["out"])


def test_fixed_arithmetic_beyond_float64_is_refused() -> None:
    profile = make_profile(arithmetic=dict(kind="fixed", state_bits=48, decay_bits=12))
    with pytest.raises(ChipError, match="state_bits - 1 \\+ decay_bits must be <= 53"):
        TorchTwin(profile, NetworkSpec(2, 2, 2))


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("surrogate", [SuperSpike(beta=10.0), Triangle(gamma=0.3)], ids=str)
def test_gradient_is_the_surrogate_through_one_spike(surrogate) -> None:
    """One input spike at t=0 -> hidden v = w_in at t=1 -> v_out[2] = H(w_in - θ) · w_out."""
    profile = make_profile(neuron=dict(tau_syn_s=0.0, threshold=1.0))
    spec = NetworkSpec(1, 1, 1)
    twin = TorchTwin(profile, spec, dtype=torch.float64, surrogate=surrogate)
    with torch.no_grad():
        twin.weights["in_hidden"].fill_(0.8)
        twin.weights["hidden_out"].fill_(2.0)
    out = twin(torch.tensor([[[1.0], [0.0], [0.0]]]))
    out.v["out"][0, 2, 0].backward()
    psi = surrogate.derivative(torch.tensor((0.8 - 1.0) / 1.0, dtype=torch.float64))
    assert out.v["out"][0, 2, 0].item() == 0.0
    torch.testing.assert_close(twin.weights["in_hidden"].grad, (2.0 * psi / 1.0).reshape(1, 1))
    assert twin.weights["hidden_out"].grad.item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_are_finite_and_reach_every_weight(dtype: torch.dtype) -> None:
    profile = make_profile(neuron=dict(model="alif", refractory_steps=1, adaptation=dict(beta=0.3)))
    spec = NetworkSpec(6, 8, 3, recurrent=True, readout="spiking")
    twin = TorchTwin(profile, spec, dtype=dtype)
    twin.init_weights(torch.Generator().manual_seed(0), scale=3.0)
    out = twin(torch.tensor(raster(4, 30, 6)))
    assert out.v["out"].dtype == dtype and out.spikes["hidden"].requires_grad
    (out.v["out"].square().mean() + out.spikes["hidden"].mean() + out.spikes["out"].mean()).backward()
    for name, p in twin.weights.items():
        assert p.grad is not None and p.grad.dtype == dtype, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_fixed_arithmetic_gradients_are_straight_through() -> None:
    profile = make_profile(**FIXED_CASES["multiplier_alif_rec"][0])
    spec = NetworkSpec(6, 8, 3, recurrent=True)
    twin = TorchTwin(profile, spec)
    w = {
        k: torch.tensor(a, dtype=torch.float64, requires_grad=True)
        for k, a in int_weights(spec, 90.0).items()
    }
    out = twin(torch.tensor(raster(3, 30, 6)), weights=w)
    out.v["out"].sum().backward()
    for name, a in w.items():
        assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0, name


def test_init_weights_scale_and_generator() -> None:
    profile, spec = make_profile(neuron=dict(threshold=2.0)), NetworkSpec(400, 300, 3)
    a, b = TorchTwin(profile, spec), TorchTwin(profile, spec)
    assert all((p == 0).all() for p in a.weights.values())
    a.init_weights(torch.Generator().manual_seed(7), scale=0.5)
    b.init_weights(torch.Generator().manual_seed(7), scale=0.5)
    for name, p in a.weights.items():
        assert torch.equal(p, b.weights[name])
    std = a.weights["in_hidden"].std().item()
    assert std == pytest.approx(0.5 * 2.0 / np.sqrt(400), rel=0.02)


# ---------------------------------------------------------------- replay
def replay_setup(readout: str = "leaky"):
    profile = make_profile(neuron=dict(refractory_steps=1))
    spec = NetworkSpec(6, 8, 3, recurrent=True, readout=readout)
    twin, on_chip = TorchTwin(profile, spec, dtype=torch.float64), TwinChip(profile, spec)
    w = float_weights(spec, 2.5)
    on_chip.write_weights(w)
    return profile, spec, twin, on_chip, w, raster(3, 40, 6)


@pytest.mark.parametrize("readout", ["leaky", "spiking"])
def test_replay_of_own_recording_reproduces_it(readout: str) -> None:
    _, _, twin, on_chip, w, x = replay_setup(readout)
    rec = on_chip.run(x)
    out = twin(torch.tensor(x), weights=as_torch(w), replay=rec)
    for k in rec.spikes:
        np.testing.assert_array_equal(out.spikes[k].detach().numpy(), rec.spikes[k])
    for k in ("hidden", "out"):
        np.testing.assert_allclose(out.v[k].detach().numpy(), rec.v[k], rtol=1e-6, atol=1e-6)


def test_replay_of_a_modified_recording_follows_the_chip() -> None:
    profile, spec, twin, on_chip, w, x = replay_setup()
    rec = on_chip.run(x)
    flip = np.random.default_rng(3).random(rec.spikes["hidden"].shape) < 0.1
    chip_spikes = rec.spikes["hidden"] ^ flip.astype(np.uint8)
    chip = Recording(spikes={"hidden": chip_spikes}, v={}, meta={})
    w_t = {k: a.requires_grad_(True) for k, a in as_torch(w).items()}
    out = twin(torch.tensor(x), weights=w_t, replay=chip)
    np.testing.assert_array_equal(out.spikes["hidden"].detach().numpy(), chip_spikes)
    # The twin's hidden state and the readout are driven by the chip's spikes, not its own.
    _, v, _ = reference(neuron_constants(profile, spec), spec, profile.limits, x, w, forced_h=chip_spikes)
    np.testing.assert_allclose(out.v["hidden"].detach().numpy(), v["hidden"], atol=1e-9)
    np.testing.assert_allclose(out.v["out"].detach().numpy(), v["out"], atol=1e-9)
    out.v["out"].sum().backward()
    assert w_t["in_hidden"].grad.abs().sum() > 0 and torch.isfinite(w_t["in_hidden"].grad).all()


def test_replay_output_values_come_from_the_chip_gradients_from_the_twin() -> None:
    _, _, twin, on_chip, w, x = replay_setup()
    rec = on_chip.run(x)
    v_chip = rec.v["out"] + np.float32(0.25)
    chip = Recording(spikes=rec.spikes, v={"out": v_chip}, meta={})
    replayed = {k: a.requires_grad_(True) for k, a in as_torch(w).items()}
    own = {k: a.requires_grad_(True) for k, a in as_torch(w).items()}
    out = twin(torch.tensor(x), weights=replayed, replay=chip)
    np.testing.assert_allclose(out.v["out"].detach().numpy(), v_chip, atol=1e-6)
    (out.v["out"] * torch.linspace(-1, 1, 3, dtype=torch.float64)).sum().backward()
    plain = twin(torch.tensor(x), weights=own)
    (plain.v["out"] * torch.linspace(-1, 1, 3, dtype=torch.float64)).sum().backward()
    for k in w:
        assert replayed[k].grad.abs().sum() > 0, k
        torch.testing.assert_close(replayed[k].grad, own[k].grad)


def test_replay_with_wrong_shapes_is_refused() -> None:
    _, _, twin, on_chip, w, x = replay_setup("spiking")
    rec = on_chip.run(x)
    with pytest.raises(ChipError, match="replay spikes\\['out'\\]"):
        twin(torch.tensor(x), replay=Recording(spikes={"hidden": rec.spikes["hidden"]}, v={}))
    with pytest.raises(ChipError, match="replay spikes\\['hidden'\\]"):
        twin(torch.tensor(x[:, :10]), replay=rec)


# ---------------------------------------------------------------- hardware-aware weights
def test_hardware_weights_quantize_with_straight_through_gradient() -> None:
    profile = ChipProfile(name="t", weights=dict(bits=4, range=(-1.0, 1.0)))
    spec = NetworkSpec(5, 6, 2)
    twin = TorchTwin(profile, spec, dtype=torch.float64)
    twin.init_weights(torch.Generator().manual_seed(0), scale=2.0)
    hw = twin.hardware_weights(noise=False)
    for name, p in twin.weights.items():
        expected = devices.quantize(p.detach().numpy(), profile.weights)
        np.testing.assert_array_equal(hw[name].detach().numpy(), expected)
        assert len(np.unique(expected)) > 3
    sum(h.sum() for h in hw.values()).backward()
    for p in twin.weights.values():
        assert torch.equal(p.grad, torch.ones_like(p))


def test_hardware_weights_noise_is_drawn_from_the_generator() -> None:
    profile = ChipProfile(
        name="t",
        weights=dict(bits=6, range=(-1.0, 1.0)),
        noise=dict(
            programming=dict(model="gaussian_relative", sigma=0.1),
            read=dict(model="gaussian_absolute", sigma=0.02),
        ),
    )
    twin = TorchTwin(profile, NetworkSpec(50, 40, 2), dtype=torch.float64)
    twin.init_weights(torch.Generator().manual_seed(0))
    clean = twin.hardware_weights(noise=False)["in_hidden"]
    a = twin.hardware_weights(torch.Generator().manual_seed(1))["in_hidden"]
    b = twin.hardware_weights(torch.Generator().manual_seed(1))["in_hidden"]
    c = twin.hardware_weights()["in_hidden"]
    d = twin.hardware_weights()["in_hidden"]
    assert torch.equal(a, b) and not torch.equal(a, clean) and not torch.equal(c, d)
    resid = (a - clean).detach()
    assert resid.abs().max() < 1.0 and 0.01 < resid.std() < 0.1


# ---------------------------------------------------------------- TwinChip
NOISY = dict(
    noise=dict(
        mismatch=dict(tau=0.1, threshold=0.1, gain=0.1),
        programming=dict(model="gaussian_relative", sigma=0.05),
        read=dict(model="gaussian_absolute", sigma=0.01),
    ),
    weights=dict(bits=6, range=(-2.0, 2.0)),
)


def chip_run(seed: int) -> tuple[TwinChip, Recording]:
    spec = NetworkSpec(6, 8, 3, recurrent=True, readout="spiking")
    twin = TwinChip(make_profile(**NOISY), spec, seed=seed)
    twin.write_weights(float_weights(spec, 2.5))
    return twin, twin.run(raster(3, 40, 6))


def test_chip_role_is_a_chip_and_reproducible_from_its_seed() -> None:
    (twin_a, a), (_, b) = chip_run(3), chip_run(3)
    assert isinstance(twin_a, Chip)
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k])
    for k in a.v:
        np.testing.assert_array_equal(a.v[k], b.v[k])
    assert a.v["out"].dtype == np.float32 and a.spikes["out"].dtype == np.uint8
    assert a.meta["weights_generation"] == 1 and a.meta["dropped_spikes"] == 0 and a.meta["wall_time_s"] > 0
    twin_c, c = chip_run(4)
    assert not np.array_equal(twin_a.device.constants.threshold_h, twin_c.device.constants.threshold_h)
    assert not np.allclose(a.v["hidden"], c.v["hidden"])


def test_chip_role_runs_the_device_weights_with_its_mismatch() -> None:
    # Read noise makes every run differ, so compare a device without it to the reference run on
    # its effective weights and mismatched constants.
    quiet = make_profile(**{**NOISY, "noise": {**NOISY["noise"], "read": dict(model="none")}})
    spec = NetworkSpec(6, 8, 3, recurrent=True, readout="spiking")
    chip = TwinChip(quiet, spec, seed=3)
    chip.write_weights(float_weights(spec, 2.5))
    x = raster(3, 40, 6)
    rec = chip.run(x)
    spikes, v, _ = reference(chip.device.constants, spec, quiet.limits, x, chip.read_weights())
    assert_active(spikes)
    for k in spikes:
        np.testing.assert_array_equal(rec.spikes[k], spikes[k])
    np.testing.assert_allclose(rec.v["out"], v["out"], rtol=1e-6, atol=1e-6)


def test_chip_role_caps_drop_and_count() -> None:
    profile = make_profile(limits=dict(max_spikes_per_step=2, max_input_spikes_per_step=2))
    spec = NetworkSpec(6, 8, 3, recurrent=True)
    twin = TwinChip(profile, spec)
    w = float_weights(spec, 4.0)
    twin.write_weights(w)
    x = raster(3, 40, 6, p=0.5)
    rec = twin.run(x, record_v=False)
    spikes, _, dropped = reference(twin.device.constants, spec, profile.limits, x, w)
    np.testing.assert_array_equal(rec.spikes["hidden"], spikes["hidden"])
    assert rec.spikes["hidden"].sum(axis=2).max() == 2
    assert rec.meta["dropped_spikes"] == dropped > 0
    assert rec.meta["dropped_hidden_spikes"] + rec.meta["dropped_input_spikes"] == dropped
    assert rec.meta["dropped_hidden_spikes"] > 0 and rec.meta["dropped_input_spikes"] > 0
    assert rec.v == {}


def test_chip_role_rejects_bad_inputs_and_keeps_its_weights() -> None:
    twin, _ = chip_run(1)
    before, generation = twin.read_weights(), twin.device.generation
    good = raster(2, 5, 6)
    for bad in (good * 2, good[:, :, :5], good[0], np.full((2, 5, 6), np.nan)):
        with pytest.raises(ChipError):
            twin.run(bad)
    w = float_weights(twin.spec, 1.0)
    for bad_w in (
        {k: a for k, a in w.items() if k != "hidden_out"},
        {**w, "in_hidden": w["in_hidden"][:3]},
        {**w, "hidden_out": np.full_like(w["hidden_out"], np.nan)},
    ):
        with pytest.raises(ChipError):
            twin.write_weights(bad_w)
    after = twin.read_weights()
    assert twin.device.generation == generation
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_chip_role_advance_time_drifts_the_weights() -> None:
    profile = make_profile(noise=dict(drift=dict(model="power_law", nu=0.1, t0_s=1.0)))
    spec = NetworkSpec(3, 4, 2)
    twin = TwinChip(profile, spec)
    twin.write_weights(float_weights(spec, 1.0))
    before = twin.read_weights()["in_hidden"]
    twin.advance_time(100.0)
    after = twin.read_weights()["in_hidden"]
    assert np.all(np.abs(after) < np.abs(before))
    twin.close()


def test_forward_rejects_bad_shapes() -> None:
    spec = NetworkSpec(6, 8, 3)
    twin = TorchTwin(make_profile(), spec)
    with pytest.raises(ChipError, match="inputs must be a tensor"):
        twin(torch.zeros(2, 5, 4))
    with pytest.raises(ChipError, match="weights must have keys"):
        twin(torch.zeros(2, 5, 6), weights={"in_hidden": torch.zeros(6, 8)})
    w = as_torch(float_weights(spec, 1.0))
    with pytest.raises(ChipError, match="must have shape"):
        twin(torch.zeros(2, 5, 6), weights={**w, "hidden_out": torch.zeros(8, 2)})


def test_constants_are_not_shared_with_the_chip_role() -> None:
    profile = make_profile(**NOISY)
    spec = NetworkSpec(6, 8, 3)
    twin = TorchTwin(profile, spec, seed=9)
    nominal = neuron_constants(profile, spec)
    np.testing.assert_array_equal(twin.constants.threshold_h, nominal.threshold_h)
    assert not np.array_equal(
        TwinChip(profile, spec, seed=9).device.constants.threshold_h, nominal.threshold_h
    )
    custom = replace(nominal, threshold_h=nominal.threshold_h * 2)
    assert TorchTwin(profile, spec, constants=custom).constants is custom


def test_hardware_weights_are_integers_under_fixed_arithmetic() -> None:
    profile = ChipProfile(
        name="t", arithmetic=dict(kind="fixed"), weights=dict(bits=8, range=(-100.0, 100.0))
    )
    twin = TorchTwin(profile, NetworkSpec(5, 6, 2), dtype=torch.float64)
    twin.init_weights(torch.Generator().manual_seed(0), scale=100.0)
    w = twin.weights["in_hidden"].detach().numpy()
    hw = twin.hardware_weights(noise=False)["in_hidden"]
    expected = devices.round_half_away(devices.quantize(w, profile.weights))
    np.testing.assert_array_equal(hw.detach().numpy(), expected)
    assert not np.array_equal(expected, devices.quantize(w, profile.weights))


def test_forward_values_do_not_depend_on_autograd() -> None:
    sections, spec_kw = FLOAT_CASES["alif_rec_spiking"]
    profile = make_profile(**sections, limits=dict(max_spikes_per_step=3))
    spec = NetworkSpec(6, 8, 3, **spec_kw)
    twin = TorchTwin(profile, spec, dtype=torch.float64)
    x, w = torch.tensor(raster(3, 40, 6)), as_torch(float_weights(spec, 2.5))
    with torch.no_grad():
        quiet = twin(x, weights=w)
    graph = twin(x, weights={k: a.clone().requires_grad_(True) for k, a in w.items()})
    assert graph.v["hidden"].requires_grad and not quiet.v["hidden"].requires_grad
    for k in quiet.spikes:
        assert torch.equal(quiet.spikes[k], graph.spikes[k].detach())
    for k in quiet.v:
        assert torch.equal(quiet.v[k], graph.v[k].detach())


def test_chip_role_checks_design_rules_and_closes_but_the_learner_does_not() -> None:
    spec = NetworkSpec(6, 8, 3)
    small = make_profile(limits=dict(max_neurons=5))
    x = raster(2, 5, 6)
    with pytest.raises(DesignRuleError, match="max_neurons|neuron"):
        TwinChip(small, spec)
    assert TorchTwin(small, spec)(torch.tensor(x)).v["out"].shape == (2, 5, 3)
    chip, twin = TwinChip(make_profile(), spec), TorchTwin(make_profile(), spec)
    chip.run(x)
    chip.close()
    with pytest.raises(ChipError, match="closed"):
        chip.run(x)
    with pytest.raises(ChipError, match="closed"):
        chip.write_weights(float_weights(spec, 1.0))
    assert twin(torch.tensor(x)).spikes["hidden"].shape == (2, 5, 8)

"""Gradient estimators on small float64 twins: exactness, truncation, unbiasedness, controlled noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Recording
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin import TorchTwin
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import TrainingError
from chiploop.training.estimators import ESTIMATORS, GradEstimate, estimator_options, make_estimator
from chiploop.training.estimators.base import Estimator
from chiploop.training.estimators.noisy_oracle import zero_sum_cycle, zero_sum_directions
from chiploop.training.estimators.perturbation import perturbation_gradient
from chiploop.training.estimators.stdp_sgd import stdp_sgd_displacement
from chiploop.training.estimators.unroll import Credit, unroll
from chiploop.training.tasks import make_task

N_IN, N_H, N_OUT, T = 12, 16, 3, 16


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def make_twin(
    neuron=None,
    recurrent=False,
    readout="leaky",
    limits=None,
    arithmetic=None,
    weights=None,
    scale=2.0,
    n_hidden=N_H,
):
    weights = weights or {"range": (-8.0, 8.0)}  # wide: the chip role does not clip the test weights
    profile = ChipProfile(
        name="t", neuron=neuron or {}, limits=limits or {}, arithmetic=arithmetic or {}, weights=weights
    )
    spec = NetworkSpec(N_IN, n_hidden, N_OUT, recurrent=recurrent, readout=readout)
    twin = TorchTwin(profile, spec, dtype=torch.float64)
    twin.init_weights(torch.Generator().manual_seed(0), scale=scale)
    return twin


@pytest.fixture(scope="module")
def task():
    return make_task("teacher", seed=0, n_features=N_IN, n_out=N_OUT, n_steps=T, n_train=6, n_test=2)


@pytest.fixture(scope="module")
def batch(task):
    return next(task.batches("train", 6))


def recording_of(twin, x):
    """The twin's own forward values as a Recording (what an ideal chip would return)."""
    with torch.no_grad():
        out = twin(x)
    return Recording(
        spikes={k: v.numpy().copy() for k, v in out.spikes.items()},
        v={k: v.numpy().copy() for k, v in out.v.items()},
    )


def exact(twin, batch, task, **options):
    return make_estimator("bptt", **options).estimate(twin, batch, task)


def assert_grads_close(a, b, rtol=1e-9, atol=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol * max(1.0, float(b[k].abs().max())))


# ------------------------------------------------------------------ registry
def test_registry_names():
    assert ESTIMATORS == (
        "bptt",
        "tbptt",
        "eprop",
        "eprop_random",
        "snap1",
        "feedback_alignment",
        "direct_feedback_alignment",
        "weight_perturbation",
        "node_perturbation",
        "stdp_sgd",
        "noisy_oracle",
    )


def test_unknown_estimator_and_option_list_valid_ones():
    with pytest.raises(TrainingError) as err:
        make_estimator("adam")
    assert all(name in str(err.value) for name in ESTIMATORS)
    with pytest.raises(TrainingError, match="sigma"):
        make_estimator("weight_perturbation", sigmaa=0.1)
    assert "rate_reg" in estimator_options("eprop") and "k" in estimator_options("tbptt")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("tbptt", {"k": 0}),
        ("weight_perturbation", {"sigma": 0}),
        ("stdp_sgd", {"n": 0}),
        ("bptt", {"rate_reg": -1}),
    ],
)
def test_bad_options_raise(name, options):
    with pytest.raises(TrainingError):
        make_estimator(name, **options)


FAST = {"weight_perturbation": {"n_samples": 2}, "node_perturbation": {"n_samples": 2}, "stdp_sgd": {"n": 2}}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_returns_grads_for_every_layer(name, task, batch):
    twin = make_twin(recurrent=True)
    before = {k: v.detach().clone() for k, v in twin.weights.items()}
    est = make_estimator(name, **FAST.get(name, {})).estimate(twin, batch, task)
    assert isinstance(est, GradEstimate) and np.isfinite(est.loss) and est.chip_runs == 0
    assert est.grads.keys() == twin.weights.keys()
    for k, w in twin.weights.items():
        assert est.grads[k].shape == w.shape and torch.isfinite(est.grads[k]).all()
        assert torch.equal(w.detach(), before[k]) and w.grad is None  # estimators never step
    assert est.loss == pytest.approx(exact(twin, batch, task).loss)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_runs_on_a_float32_fixed_arithmetic_twin(name, task, batch):
    profile = ChipProfile(
        name="fixed",
        neuron={"threshold": 64.0, "reset": "zero"},
        arithmetic={"kind": "fixed", "state_bits": 16},
        weights={"bits": 8, "range": (-127.0, 127.0)},
    )
    twin = TorchTwin(profile, NetworkSpec(N_IN, N_H, N_OUT, recurrent=True))
    twin.init_weights(torch.Generator().manual_seed(0), scale=3.0)
    est = make_estimator(name, **FAST.get(name, {})).estimate(
        twin, batch, task, weights=twin.hardware_weights()
    )
    assert np.isfinite(est.loss)
    assert est.grads.keys() == twin.weights.keys()
    for g in est.grads.values():
        assert g.dtype == torch.float32 and torch.isfinite(g).all()
    assert sum(float(g.abs().sum()) for g in est.grads.values()) > 0


# ------------------------------------------------------------------ bptt and the unroll
def test_bptt_is_autograd_through_the_twin_with_rate_regulariser(task, batch):
    twin = make_twin(recurrent=True)
    est = make_estimator("bptt", rate_reg=0.5, rate_target=0.02).estimate(twin, batch, task)
    out = twin(batch.inputs.double())
    rate = out.spikes["hidden"].mean((0, 1))
    loss = task.loss(out.v["out"], batch.targets) + 0.5 * ((rate - 0.02) ** 2).mean()
    loss.backward()
    assert est.loss == pytest.approx(loss.item(), rel=1e-12)
    assert_grads_close(est.grads, {k: p.grad for k, p in twin.weights.items()})


UNROLL_CASES = {
    "lif": {},
    "recurrent": {"recurrent": True},
    "alif_refractory_zero_reset": {
        "recurrent": True,
        "neuron": {
            "model": "alif",
            "adaptation": {"beta": 0.5, "fraction": 0.5},
            "refractory_steps": 2,
            "reset": "zero",
        },
    },
    "spiking_readout_no_syn_filter": {"recurrent": True, "readout": "spiking", "neuron": {"tau_syn_s": 0.0}},
    "spike_caps": {"recurrent": True, "limits": {"max_spikes_per_step": 2, "max_input_spikes_per_step": 3}},
    "fixed_multiplier": {
        "recurrent": True,
        "neuron": {"threshold": 64.0, "reset": "zero"},
        "arithmetic": {"kind": "fixed", "decay": "multiplier", "state_bits": 16},
        "scale": 1.0,
    },
    "fixed_shift": {
        "recurrent": True,
        "neuron": {"threshold": 64.0},
        "arithmetic": {"kind": "fixed", "decay": "shift", "state_bits": 12},
        "scale": 1.0,
    },
}


@pytest.mark.parametrize("case", UNROLL_CASES)
def test_unroll_equals_the_twin_forward_and_gradient(case, task, batch):
    twin = make_twin(**UNROLL_CASES[case])
    x = batch.inputs.double()
    if twin.constants.arithmetic == "fixed":
        with torch.no_grad():
            for p in twin.weights.values():
                p.copy_((p * 40).round())
    targets = batch.targets * float(twin.constants.threshold_h[0])
    out = twin(x)
    assert 0.02 < out.spikes["hidden"].mean() < 0.6  # the case is exercised
    reference = torch.autograd.grad(task.loss(out.v["out"], targets), list(twin.weights.values()))
    recording = recording_of(twin, x)
    for values in (None, recording):
        v_out, z = unroll(twin, x, dict(twin.weights), values)
        torch.testing.assert_close(v_out, out.v["out"], rtol=0, atol=1e-9)
        assert torch.equal(z, out.spikes["hidden"])
        if values is not None and twin.profile.limits.max_spikes_per_step:
            continue  # replayed (delivered) spikes also drive the reset: gradients differ under caps
        grads = torch.autograd.grad(task.loss(v_out, targets), list(twin.weights.values()))
        for g, r in zip(grads, reference, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12 * max(1.0, float(r.abs().max())))


@pytest.mark.parametrize("readout", ["leaky", "spiking"])
def test_unroll_replay_matches_twin_replay_of_a_foreign_recording(readout, task, batch):
    """A chip's recording (here: perturbed spikes and membranes) drives both the same way."""
    twin = make_twin(recurrent=True, readout=readout, limits={"max_spikes_per_step": 2})
    x = batch.inputs.double()
    recording = recording_of(twin, x)
    rng = np.random.default_rng(0)
    for key, spikes in recording.spikes.items():
        recording.spikes[key] = (rng.random(spikes.shape) < 0.1).astype(np.uint8)
    recording.v["out"] = recording.v["out"] + rng.normal(0, 0.5, recording.v["out"].shape)
    out = twin(x, replay=recording)
    v_out, z = unroll(twin, x, dict(twin.weights), recording)
    torch.testing.assert_close(v_out, out.v["out"])
    assert torch.equal(z, out.spikes["hidden"])
    ref = torch.autograd.grad(task.loss(out.v["out"], batch.targets), list(twin.weights.values()))
    got = torch.autograd.grad(task.loss(v_out, batch.targets), list(twin.weights.values()))
    for g, r in zip(got, ref, strict=True):
        assert r.abs().max() > 0
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12 * float(r.abs().max()))


# ------------------------------------------------------------------ truncated rules
@pytest.mark.parametrize("case", ["lif", "alif_refractory_zero_reset", "spiking_readout_no_syn_filter"])
def test_eprop_equals_bptt_without_recurrence(case, task, batch):
    config = {**UNROLL_CASES[case], "recurrent": False}
    twin = make_twin(**config)
    reference = exact(twin, batch, task)
    eprop = make_estimator("eprop").estimate(twin, batch, task)
    assert abs(eprop.loss - reference.loss) < 1e-12
    for k in reference.grads:
        assert float((eprop.grads[k] - reference.grads[k]).abs().max()) < 1e-6 * max(
            1.0, float(reference.grads[k].abs().max())
        )
        assert reference.grads[k].abs().max() > 0


def test_eprop_with_recurrence_truncates_only_the_hidden_credit(task, batch):
    twin = make_twin(recurrent=True)
    reference, eprop = exact(twin, batch, task), make_estimator("eprop").estimate(twin, batch, task)
    torch.testing.assert_close(eprop.grads["hidden_out"], reference.grads["hidden_out"], rtol=1e-12, atol=0)
    assert not torch.allclose(eprop.grads["in_hidden"], reference.grads["in_hidden"], rtol=1e-3)
    assert cos(eprop.grads["in_hidden"], reference.grads["in_hidden"]) > 0.5  # an approximation, not noise


def test_snap1_is_exact_when_the_recurrence_is_diagonal(task, batch):
    twin = make_twin(recurrent=True)
    with torch.no_grad():
        twin.weights["hidden_hidden"].copy_(torch.diag(torch.linspace(-0.8, 0.8, N_H, dtype=torch.float64)))
    reference = exact(twin, batch, task)
    snap = make_estimator("snap1").estimate(twin, batch, task)
    eprop = make_estimator("eprop").estimate(twin, batch, task)
    assert_grads_close(snap.grads, reference.grads, rtol=1e-9)
    assert not torch.allclose(eprop.grads["in_hidden"], reference.grads["in_hidden"], rtol=1e-3)


def test_tbptt_with_long_window_is_bptt_short_window_is_not(task, batch):
    twin = make_twin(recurrent=True)
    reference = exact(twin, batch, task)
    assert_grads_close(make_estimator("tbptt", k=T).estimate(twin, batch, task).grads, reference.grads)
    short = make_estimator("tbptt", k=2).estimate(twin, batch, task)
    assert not torch.allclose(short.grads["in_hidden"], reference.grads["in_hidden"], rtol=1e-3)


def test_feedback_replacement(task, batch):
    twin = make_twin(recurrent=True)
    reference = exact(twin, batch, task)
    x, w = batch.inputs.double(), dict(twin.weights)
    # symmetric "random" feedback B = W_out gives back BPTT exactly
    v_out, _ = unroll(twin, x, w, credit=Credit(feedback=twin.weights["hidden_out"].detach().clone()))
    grads = torch.autograd.grad(task.loss(v_out, batch.targets), list(w.values()))
    assert_grads_close(dict(zip(w, grads, strict=True)), reference.grads)
    for name in ("feedback_alignment", "eprop_random"):
        est = make_estimator(name, seed=3).estimate(twin, batch, task)
        torch.testing.assert_close(est.grads["hidden_out"], reference.grads["hidden_out"], rtol=1e-12, atol=0)
        assert cos(est.grads["in_hidden"], reference.grads["in_hidden"]) < 0.9
        again = make_estimator(name, seed=3).estimate(twin, batch, task)
        assert_grads_close(again.grads, est.grads, rtol=0, atol=0)  # seeded, fixed feedback


# ------------------------------------------------------------------ several hidden layers
LAYERS = (14, 10)


def test_layered_eprop_equals_bptt_without_recurrence_and_cuts_each_layers_recurrence(task, batch):
    """Per-layer learning signals: the error of the layer above through its weights. Without
    recurrence that is BPTT in every layer; with it, each layer's W_rec path is cut."""
    feedforward = make_twin(n_hidden=LAYERS)
    reference = exact(feedforward, batch, task)
    eprop = make_estimator("eprop").estimate(feedforward, batch, task)
    assert sorted(reference.grads) == ["hidden2_out", "hidden_hidden2", "in_hidden"]
    for k in reference.grads:
        assert reference.grads[k].abs().max() > 0
    assert_grads_close(eprop.grads, reference.grads)
    recurrent = make_twin(n_hidden=LAYERS, recurrent=True)
    reference = exact(recurrent, batch, task)
    eprop = make_estimator("eprop").estimate(recurrent, batch, task)
    torch.testing.assert_close(eprop.grads["hidden2_out"], reference.grads["hidden2_out"], rtol=1e-12, atol=0)
    for k in ("in_hidden", "hidden_hidden", "hidden_hidden2", "hidden2_hidden2"):
        assert not torch.allclose(eprop.grads[k], reference.grads[k], rtol=1e-3), k
        assert cos(eprop.grads[k], reference.grads[k]) > 0.3, k


def test_feedback_alignment_across_layers_and_direct_feedback_alignment(task, batch):
    """FA: a B per matrix leaving a hidden layer; symmetric B (= W) gives BPTT back. DFA: B_k from
    the readout to each layer, no error between layers. Both keep the readout's exact gradient."""
    twin = make_twin(n_hidden=LAYERS)
    reference = exact(twin, batch, task)
    x, w = batch.inputs.double(), dict(twin.weights)
    symmetric = {k: twin.weights[k].detach().clone() for k in ("hidden_hidden2", "hidden2_out")}
    v_out, _ = unroll(twin, x, w, credit=Credit(feedback=symmetric))
    grads = torch.autograd.grad(task.loss(v_out, batch.targets), list(w.values()))
    assert_grads_close(dict(zip(w, grads, strict=True)), reference.grads)
    fa = make_estimator("feedback_alignment", seed=3)
    assert {k: tuple(b.shape) for k, b in fa.feedback.matrices(twin).items()} == {
        "hidden_hidden2": (14, 10), "hidden2_out": (10, N_OUT)}  # fmt: skip
    dfa = make_estimator("direct_feedback_alignment", seed=3)
    assert {k: tuple(b.shape) for k, b in dfa.feedback.direct(twin).items()} == {
        "hidden": (14, N_OUT), "hidden2": (10, N_OUT)}  # fmt: skip
    for est in (fa, dfa):
        got = est.estimate(twin, batch, task).grads
        torch.testing.assert_close(got["hidden2_out"], reference.grads["hidden2_out"], rtol=1e-12, atol=0)
        assert got["in_hidden"].abs().max() > 0 and cos(got["in_hidden"], reference.grads["in_hidden"]) < 0.9
    # DFA's first layer learns from B_1 alone: changing the second layer's weights does not change it
    # (FA's does, through the second layer's dynamics)
    first = dfa.estimate(twin, batch, task).grads["in_hidden"]
    with torch.no_grad():
        twin.weights["hidden_hidden2"].mul_(-1.0)
    flipped = dfa.estimate(twin, batch, task).grads["in_hidden"]
    assert not torch.allclose(first, flipped)  # its own spikes still feed the readout differently
    direct_only = unroll(twin, x, dict(twin.weights), credit=dfa.credit(twin))
    assert direct_only[0].shape == (x.shape[0], T, N_OUT)


@pytest.mark.parametrize("profile", ["ideal", "loihi2", "pcm_crossbar"])
def test_random_feedback_has_the_scale_of_the_readout_it_replaces(profile):
    """B is drawn like the Trainer draws W_out (in the readout's units), so a random-feedback
    estimator's hidden gradients are of bptt's size: not a hidden change of learning rate."""
    from chiploop.chip_profiles import load_profile
    from chiploop.training.units import ScaledReadout, init_weights

    digits = make_task("digits", seed=0)
    twin = TorchTwin(load_profile(profile), NetworkSpec(digits.n_in, 64, digits.n_out), dtype=torch.float64)
    init_weights(twin, torch.Generator().manual_seed(0))
    b = make_estimator("eprop_random").feedback.matrices(twin)["hidden_out"]
    assert 0.7 < float(b.norm() / twin.weights["hidden_out"].detach().norm()) < 1.4
    task, batch = ScaledReadout.of(digits, twin.profile), next(digits.batches("train", 32))
    symmetric = make_estimator("eprop").estimate(twin, batch, task).grads["in_hidden"].norm()
    for name in ("eprop_random", "feedback_alignment"):
        random = make_estimator(name).estimate(twin, batch, task).grads["in_hidden"].norm()
        assert 1 / 3 < float(random / symmetric) < 3, name


# ------------------------------------------------------------------ in the loop (TwinChip as chip)
def chip_for(twin):
    chip = TwinChip(twin.profile, twin.spec, seed=1)
    chip.write_weights({k: v.detach().numpy() for k, v in twin.weights.items()})
    return chip


@pytest.mark.parametrize(("name", "runs"), [("bptt", 1), ("eprop", 1), ("tbptt", 1), ("noisy_oracle", 1)])
def test_replay_estimators_on_a_chip_match_the_twin(name, runs, task, batch):
    twin = make_twin(recurrent=True)
    offline = make_estimator(name).estimate(twin, batch, task)
    online = make_estimator(name).estimate(twin, batch, task, chip_for(twin))
    assert online.chip_runs == runs
    assert online.loss == pytest.approx(offline.loss, rel=1e-5)
    assert_grads_close(online.grads, offline.grads, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "options"),
    [("weight_perturbation", {"sigma": 0.05, "n_samples": 3}), ("stdp_sgd", {"A": 0.05, "n": 3})],
)
def test_perturbation_estimators_on_a_chip_use_forward_passes_and_restore(name, options, task, batch):
    twin = make_twin()
    chip = chip_for(twin)
    written = chip.read_weights()
    offline = make_estimator(name, **options).estimate(twin, batch, task)
    online = make_estimator(name, **options).estimate(twin, batch, task, chip)
    assert online.chip_runs == 1 + 2 * 3
    for k, w in chip.read_weights().items():
        np.testing.assert_array_equal(w, written[k])
    assert online.loss == pytest.approx(offline.loss, rel=1e-5)
    assert_grads_close(online.grads, offline.grads, rtol=1e-3, atol=1e-3)


def test_node_perturbation_refuses_a_chip(task, batch):
    twin = make_twin()
    with pytest.raises(TrainingError, match="node_perturbation"):
        make_estimator("node_perturbation").estimate(twin, batch, task, chip_for(twin))


def test_hardware_weights_gradient_reaches_the_parameters(task, batch):
    twin = make_twin(weights={"bits": 4, "range": (-2.0, 2.0)})
    hw = twin.hardware_weights(torch.Generator().manual_seed(0), noise=False)
    est = make_estimator("eprop").estimate(twin, batch, task, weights=hw)
    assert est.grads["in_hidden"].abs().sum() > 0
    out = twin(batch.inputs.double(), weights=hw)
    assert est.loss == pytest.approx(task.loss(out.v["out"], batch.targets).item())


# ------------------------------------------------------------------ zero-order estimators
def quadratic(dim: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    hessian, centre = a @ a.T / dim + torch.eye(dim, dtype=torch.float64), torch.randn(dim, generator=gen)
    point = {"w": torch.randn(dim, generator=gen, dtype=torch.float64)}

    def loss(w):
        d = w["w"] - centre
        return float(0.5 * d @ hessian @ d)

    return loss, point, hessian @ (point["w"] - centre)


def test_weight_perturbation_is_unbiased_on_a_quadratic():
    loss, point, grad = quadratic(10)
    est = perturbation_gradient(
        loss, point, sigma=0.3, n_samples=4000, generator=torch.Generator().manual_seed(1)
    )
    assert cos(est["w"], grad) > 0.99
    assert float(est["w"].norm() / grad.norm()) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", ["weight_perturbation", "node_perturbation"])
def test_perturbation_is_unbiased_on_the_twin(name, task, batch):
    """Spikes make the loss flat in the hidden weights (true gradient 0 a.e.): compare the readout block."""
    twin = make_twin(n_hidden=8)
    small = next(task.batches("train", 2))
    reference = exact(twin, small, task).grads["hidden_out"]
    n_samples = 300 if name == "weight_perturbation" else 100  # node perturbation is the slower one
    est = make_estimator(name, sigma=1e-3, n_samples=n_samples, seed=2).estimate(twin, small, task)
    assert cos(est.grads["hidden_out"], reference) >= 0.9
    assert float(est.grads["hidden_out"].norm() / reference.norm()) == pytest.approx(1.0, abs=0.2)


def test_stdp_sgd_mean_step_on_a_quadratic():
    """E[Z_n − Z_0] = −(2/3)A²α∇L; the symmetric difference is exact for a quadratic."""
    loss, point, grad = quadratic(8)
    big_a, alpha, n, draws = 0.5, 1e-3, 4, 3000
    gen = torch.Generator().manual_seed(0)
    steps = torch.stack([stdp_sgd_displacement(loss, point, big_a, n, alpha, gen)["w"] for _ in range(draws)])
    expected = -(2 / 3) * big_a**2 * alpha * grad
    stderr = steps.std(0) / draws**0.5
    assert ((steps.mean(0) - expected).abs() < 4 * stderr + 1e-12).all()
    assert float((steps.mean(0) - expected).norm() / expected.norm()) < 0.1


def test_stdp_sgd_mean_step_on_the_twin(task, batch):
    """Mean over many single-update estimates: −(2/3)A²α∇L (readout block, where the loss is smooth)."""
    twin = make_twin(n_hidden=8)
    small = next(task.batches("train", 2))
    reference = exact(twin, small, task).grads["hidden_out"]
    big_a, alpha, draws = 1e-3, 0.01, 400
    estimator = make_estimator("stdp_sgd", A=big_a, n=1, alpha=alpha, seed=1)
    steps = torch.stack([-estimator.estimate(twin, small, task).grads["hidden_out"] for _ in range(draws)])
    expected = -(2 / 3) * big_a**2 * alpha * reference
    projection = (steps * expected).sum((1, 2)) / expected.norm() ** 2  # 1 on average
    assert abs(float(projection.mean()) - 1.0) < 4 * float(projection.std()) / draws**0.5
    assert cos(steps.mean(0), expected) >= 0.9


# ------------------------------------------------------------------ noisy oracle
def flat(grads):
    return torch.cat([g.reshape(-1) for g in grads.values()])


@pytest.mark.parametrize("relative", [False, True])
def test_noisy_oracle_zero_sum_cycle_has_the_requested_bias_and_variance(relative, task, batch):
    twin = make_twin(recurrent=True)
    g = flat(exact(twin, batch, task).grads)
    bias, sigma, repeats = 0.01, 0.05, 5
    scale = float(g.norm()) if relative else 1.0
    oracle = make_estimator(
        "noisy_oracle", bias=bias, sigma=sigma, relative=relative, repeats=repeats, seed=4
    )
    noisy = torch.stack([flat(oracle.estimate(twin, batch, task).grads) for _ in range(repeats)])
    eps = noisy - g + bias * scale
    torch.testing.assert_close(eps.norm(dim=1), torch.full((repeats,), sigma * scale, dtype=torch.float64))
    torch.testing.assert_close(eps.sum(0), torch.zeros_like(g), rtol=0, atol=1e-12 * scale)
    torch.testing.assert_close(
        (noisy - g).mean(0), torch.full_like(g, -bias * scale), rtol=0, atol=1e-12 * scale
    )
    assert cos(eps[0], eps[1]) < 0.9  # distinct directions


def test_noisy_oracle_fresh_noise_measured_over_many_draws(task, batch):
    twin = make_twin()
    g = flat(exact(twin, batch, task).grads)
    bias, sigma, draws = 0.02, 0.3, 400
    oracle = make_estimator("noisy_oracle", bias=bias, sigma=sigma, zero_sum=False, seed=1)
    noisy = torch.stack([flat(oracle.estimate(twin, batch, task).grads) for _ in range(draws)])
    err = noisy - g
    measured_bias = float(-err.mean())
    assert measured_bias == pytest.approx(bias, rel=0.05)
    variance = float(((err - err.mean(0)) ** 2).sum(1).mean())
    assert variance == pytest.approx(sigma**2, rel=0.05)


@pytest.mark.parametrize("relative", [False, True])
def test_noisy_oracle_in_layer_units_is_isotropic_after_dividing_by_each_unit(relative, task, batch):
    from chiploop.training.units import layer_units

    twin = make_twin(recurrent=True)
    units = layer_units(twin.profile, twin.spec)
    assert len(set(units.values())) > 1  # the readout unit differs: the frame matters
    g = exact(twin, batch, task).grads
    scale = float(torch.cat([(g[k] / units[k]).reshape(-1) for k in g]).norm()) if relative else 1.0
    sigma, repeats = 0.05, 4
    oracle = make_estimator(
        "noisy_oracle", sigma=sigma, relative=relative, repeats=repeats, frame="units", seed=2
    )
    eps = [{k: v - g[k] for k, v in oracle.estimate(twin, batch, task).grads.items()} for _ in range(repeats)]
    in_units = torch.stack([torch.cat([(e[k] / units[k]).reshape(-1) for k in g]) for e in eps])
    torch.testing.assert_close(
        in_units.norm(dim=1), torch.full((repeats,), sigma * scale, dtype=torch.float64)
    )
    torch.testing.assert_close(in_units.sum(0), torch.zeros_like(in_units[0]), rtol=0, atol=1e-9 * scale)
    raw = torch.stack([flat(e) for e in eps])
    assert not torch.allclose(raw.norm(dim=1), torch.full((repeats,), sigma * scale, dtype=torch.float64))


def test_noisy_oracle_units_frame_shares_the_noise_by_synapse_count(task, batch):
    """Fresh draws: E‖ε_l/unit_l‖² = σ²·N_l/N per layer (isotropy in units), not a fixed split."""
    from chiploop.training.units import layer_units

    twin = make_twin(recurrent=True)
    units = layer_units(twin.profile, twin.spec)
    g = exact(twin, batch, task).grads
    n = sum(v.numel() for v in g.values())
    sigma, draws = 0.3, 300
    oracle = make_estimator("noisy_oracle", sigma=sigma, frame="units", zero_sum=False, seed=3)
    shares = {k: [] for k in g}
    for _ in range(draws):
        est = oracle.estimate(twin, batch, task).grads
        for k in g:
            shares[k].append(float(((est[k] - g[k]) / units[k]).norm() ** 2) / sigma**2)
    for k in g:
        assert np.mean(shares[k]) == pytest.approx(g[k].numel() / n, rel=0.15)
        assert np.std(shares[k]) > 0  # a random split, not a fixed one


def test_noisy_oracle_layers_restricts_the_noise_and_keeps_the_cycle(task, batch):
    twin = make_twin(recurrent=True)
    g = exact(twin, batch, task).grads
    bias, sigma, repeats = 0.01, 0.05, 3
    oracle = make_estimator(
        "noisy_oracle", bias=bias, sigma=sigma, repeats=repeats, layers=("in_hidden",), seed=5
    )
    eps = [oracle.estimate(twin, batch, task).grads for _ in range(repeats)]
    for e in eps:
        for k in ("hidden_hidden", "hidden_out"):
            torch.testing.assert_close(e[k], g[k] - bias, rtol=0, atol=1e-15)
        assert float((e["in_hidden"] - g["in_hidden"] + bias).norm()) == pytest.approx(sigma, rel=1e-12)
    total = sum(e["in_hidden"] - g["in_hidden"] + bias for e in eps)
    torch.testing.assert_close(total, torch.zeros_like(total), rtol=0, atol=1e-12)


@pytest.mark.parametrize("relative", [False, True])
def test_noisy_oracle_gradient_frame_scales_each_layer_by_its_gradient_norm(relative, task, batch):
    """Each layer's noise has norm σ·‖g_l‖ on every draw, its own zero-sum cycle (also for a layer
    with fewer synapses than the cycle), and `relative` moves only the bias."""
    twin = make_twin(recurrent=True, n_hidden=4)  # hidden_out: 12 synapses < 16 repeats
    g = exact(twin, batch, task).grads
    norms = {k: float(v.norm()) for k, v in g.items()}
    assert max(norms.values()) > 3 * min(norms.values())  # unequal layers: the frame matters
    bias, sigma, repeats = 0.01, 0.2, 16
    offset = bias * (float(flat(g).norm()) if relative else 1.0)
    oracle = make_estimator(
        "noisy_oracle", bias=bias, sigma=sigma, relative=relative, repeats=repeats, frame="gradient", seed=6
    )
    eps = [
        {k: v - g[k] + offset for k, v in oracle.estimate(twin, batch, task).grads.items()}
        for _ in range(repeats)
    ]
    for k in g:
        layer = torch.stack([e[k].reshape(-1) for e in eps])
        torch.testing.assert_close(
            layer.norm(dim=1), torch.full((repeats,), sigma * norms[k], dtype=torch.float64)
        )
        torch.testing.assert_close(layer.sum(0), torch.zeros_like(layer[0]), rtol=0, atol=1e-12 * norms[k])
        assert cos(layer[0], layer[1]) < 0.9  # distinct directions within the cycle
    again = make_estimator("noisy_oracle", sigma=sigma, repeats=repeats, frame="gradient", seed=6)
    assert_grads_close(again.estimate(twin, batch, task).grads, {k: g[k] + eps[0][k] for k in g}, atol=1e-9)


def test_noisy_oracle_gradient_frame_fresh_draws_are_independent_per_layer(task, batch):
    """Fresh draws: ‖ε_l‖ = σ‖g_l‖ exactly, directions uniform (mean ≈ 0) and unrelated across layers."""
    twin = make_twin(n_hidden=8)
    g = exact(twin, batch, task).grads
    assert min(float(v.norm()) for v in g.values()) > 0
    sigma, draws = 0.5, 100
    oracle = make_estimator("noisy_oracle", sigma=sigma, frame="gradient", zero_sum=False, seed=7)
    eps = [{k: v - g[k] for k, v in oracle.estimate(twin, batch, task).grads.items()} for _ in range(draws)]
    for k in g:
        layer = torch.stack([e[k].reshape(-1) for e in eps])
        torch.testing.assert_close(
            layer.norm(dim=1), torch.full((draws,), sigma * float(g[k].norm()), dtype=torch.float64)
        )
        unit = layer / layer.norm(dim=1, keepdim=True)
        assert float(unit.mean(0).norm()) < 3 / draws**0.5  # E[u] = 0: ‖mean‖ ≈ 1/√draws
    ratio = [float(e["in_hidden"].norm() / e["hidden_out"].norm()) for e in eps]
    assert np.std(ratio) < 1e-9 * np.mean(ratio)  # the split between layers is fixed, not random


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"frame": "chip"}, "frame must be"),
        ({"layers": "in_hidden"}, "layers must be"),
        ({"layers": ()}, "layers must be"),
    ],
)
def test_noisy_oracle_rejects_bad_noise_placement(options, match):
    with pytest.raises(TrainingError, match=match):
        make_estimator("noisy_oracle", sigma=0.1, **options)


def test_noisy_oracle_names_an_unknown_layer(task, batch):
    oracle = make_estimator("noisy_oracle", sigma=0.1, layers=("in_hidden_2",))
    with pytest.raises(TrainingError, match="unknown layer.*in_hidden_2"):
        oracle.estimate(make_twin(), batch, task)


def test_zero_sum_directions_are_unit_and_cancel():
    u = zero_sum_directions(4, 50, torch.Generator().manual_seed(0), torch.float64)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(u.sum(0), torch.zeros(50, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(TrainingError):
        zero_sum_directions(60, 50, torch.Generator(), torch.float64)


@pytest.mark.parametrize(("n", "dim"), [(4, 50), (16, 12), (16, 15), (6, 2)])
def test_zero_sum_cycle_also_cancels_with_more_vectors_than_dimensions(n, dim):
    u = zero_sum_cycle(n, dim, torch.Generator().manual_seed(1), torch.float64)
    assert u.shape == (n, dim)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(n, dtype=torch.float64))
    torch.testing.assert_close(u.sum(0), torch.zeros(dim, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(TrainingError):
        zero_sum_cycle(4, 1, torch.Generator(), torch.float64)


def test_estimator_base_is_abstract():
    with pytest.raises(TypeError):
        Estimator()  # type: ignore[abstract]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "options"), [("bptt", {}), ("eprop", {}), ("weight_perturbation", {"n_samples": 2})]
)
def test_in_the_loop_on_the_brian_emulator_matches_the_twin(name, options, task, batch):
    """Under `ideal` the emulator's forward values are the twin's: the estimates agree."""
    from chiploop.chip.targets import open_chip
    from chiploop.chip_profiles import load_profile

    profile = load_profile("ideal")
    twin = TorchTwin(profile, NetworkSpec(N_IN, N_H, N_OUT, recurrent=True), dtype=torch.float64)
    twin.init_weights(torch.Generator().manual_seed(0))
    chip = open_chip("emulator", profile, twin.spec, seed=0)
    chip.write_weights({k: v.detach().numpy() for k, v in twin.weights.items()})
    offline = make_estimator(name, **options).estimate(twin, batch, task)
    online = make_estimator(name, **options).estimate(twin, batch, task, chip)
    assert online.chip_runs == (1 if name != "weight_perturbation" else 5)
    assert online.loss == pytest.approx(offline.loss, rel=1e-5)
    for k in offline.grads:
        assert cos(online.grads[k], offline.grads[k]) > 0.9999

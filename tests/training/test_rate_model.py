"""The rate neuron (`neuron.model: rate`): leaky tanh units in the one torch step, differentiable,
run by the twin and every gradient estimator, refused by every spiking-only backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from chiploop.chip.c_config import net_config
from chiploop.chip.device_model import neuron_constants
from chiploop.chip.dynamics import network_params, simulate
from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin import TorchTwin
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import ChipError
from chiploop.training.curvature import hessian_top_eigenvalue
from chiploop.training.estimators import make_estimator
from chiploop.training.tasks import make_task

N_IN, N_H, N_OUT, T = 6, 8, 2, 12
RATE = {"model": "rate", "tau_mem_s": -0.001 / math.log(0.8), "tau_syn_s": 0.0}


def rate_profile(**neuron) -> ChipProfile:
    return ChipProfile(name="rate", neuron={**RATE, **neuron}, weights={"range": (-8.0, 8.0)})


def rate_twin(recurrent: bool = True, **neuron) -> TorchTwin:
    spec = NetworkSpec(N_IN, N_H, N_OUT, recurrent=recurrent)
    twin = TorchTwin(rate_profile(**neuron), spec, dtype=torch.float64)
    twin.init_weights(torch.Generator().manual_seed(0), scale=1.5)
    return twin


@pytest.fixture(scope="module")
def task():
    return make_task("teacher", seed=0, n_features=N_IN, n_out=N_OUT, n_steps=T, n_train=6, n_test=2)


@pytest.fixture(scope="module")
def batch(task):
    return next(task.batches("train", 6))


def test_rate_step_is_the_leaky_tanh_formula():
    profile = rate_profile(bias=0.1)
    spec = NetworkSpec(N_IN, N_H, N_OUT, recurrent=True)
    net = network_params(profile, neuron_constants(profile, spec), spec, torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(3, T, N_IN, generator=gen) < 0.4).double()
    w = {k: torch.randn(s, generator=gen, dtype=torch.float64) for k, s in spec.weight_shapes().items()}
    rates = simulate(net, x, w).spikes["hidden"]
    a = math.exp(-0.001 / RATE["tau_mem_s"])
    assert a == pytest.approx(0.8)
    h = torch.zeros(3, N_H, dtype=torch.float64)
    arrived = torch.cat([torch.zeros(3, 1, N_IN, dtype=torch.float64), x[:, :-1]], 1)  # input delay 1
    for t in range(T):
        h = a * h + (1 - a) * torch.tanh(arrived[:, t] @ w["in_hidden"] + h @ w["hidden_hidden"] + 0.1)
        torch.testing.assert_close(rates[:, t], h, rtol=1e-12, atol=1e-12)
    assert float(rates.abs().max()) < 1.0 and not torch.all((rates == 0) | (rates == 1))


def test_bptt_of_a_rate_twin_equals_finite_differences(task, batch):
    twin = rate_twin()
    est = make_estimator("bptt").estimate(twin, batch, task)
    w = {k: p.detach().clone() for k, p in twin.weights.items()}

    def loss(name: str, index: tuple, eps: float) -> float:
        shifted = {k: v.clone() for k, v in w.items()}
        shifted[name][index] += eps
        with torch.no_grad():
            out = twin(batch.inputs.double(), weights=shifted)
        return float(task.loss(out.v["out"], batch.targets))

    for name in ("in_hidden", "hidden_hidden", "hidden_out"):
        for index in ((0, 0), (1, 1)):
            fd = (loss(name, index, 1e-6) - loss(name, index, -1e-6)) / 2e-6
            assert est.grads[name][index].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_rate_lambda_max_is_the_real_second_difference(task, batch):
    twin = rate_twin()
    w_rec = twin.weights["hidden_hidden"]

    def loss():
        return task.loss(twin(batch.inputs.double()).v["out"], batch.targets)

    eig = hessian_top_eigenvalue(
        loss, [w_rec], tol=1e-8, max_iter=64, generator=torch.Generator().manual_seed(0)
    )
    v = eig.vector.reshape(w_rec.shape)
    assert float(eig.vector.norm()) == pytest.approx(1.0)
    eps, base = 1e-3, {k: p.detach() for k, p in twin.weights.items()}
    with torch.no_grad():
        at = [
            float(
                task.loss(
                    twin(batch.inputs.double(), weights=base | {"hidden_hidden": w_rec.detach() + s * v}).v[
                        "out"
                    ],
                    batch.targets,
                )
            )
            for s in (-eps, 0.0, eps)
        ]
    assert (at[0] - 2 * at[1] + at[2]) / eps**2 == pytest.approx(eig.value, rel=1e-3)


def test_eprop_equals_bptt_on_a_rate_twin_without_recurrence(task, batch):
    twin = rate_twin(recurrent=False)
    reference = make_estimator("bptt").estimate(twin, batch, task)
    for name in ("eprop", "snap1"):
        est = make_estimator(name).estimate(twin, batch, task)
        for k in reference.grads:
            torch.testing.assert_close(est.grads[k], reference.grads[k], rtol=1e-9, atol=1e-12)
            assert reference.grads[k].abs().max() > 0


def test_truncated_rules_differ_from_bptt_on_a_recurrent_rate_twin(task, batch):
    twin = rate_twin()
    reference = make_estimator("bptt").estimate(twin, batch, task).grads["hidden_hidden"]
    for name in ("eprop", "eprop_random", "snap1"):
        est = make_estimator(name).estimate(twin, batch, task).grads["hidden_hidden"]
        assert torch.isfinite(est).all() and not torch.allclose(est, reference)


def test_the_twin_chip_role_returns_rates():
    twin = rate_twin()
    chip = TwinChip(twin.profile, twin.spec)
    chip.write_weights({k: p.detach().numpy() for k, p in twin.weights.items()})
    rec = chip.run(np.ones((2, T, N_IN), np.uint8))
    assert rec.spikes["hidden"].dtype == np.float32 and np.abs(rec.spikes["hidden"]).max() < 1.0


def test_spiking_only_backends_refuse_a_rate_profile():
    from chiploop.emulator.brian import BrianChip
    from chiploop.firmware_bridge.serial_chip import SerialChip

    profile, spec = rate_profile(), NetworkSpec(N_IN, N_H, N_OUT, recurrent=True)
    for build in (
        lambda: BrianChip(profile, spec),
        lambda: SerialChip("socket://127.0.0.1:9", profile, spec),
        lambda: net_config(profile, spec),
    ):
        with pytest.raises(ChipError, match=r"neuron.model=rate runs on the torch twin only"):
            build()


def test_a_rate_profile_needs_float_arithmetic_and_no_spike_cap():
    with pytest.raises(ValidationError, match="neuron.model: rate runs float arithmetic only"):
        ChipProfile.model_validate({"name": "r", "neuron": RATE, "arithmetic": {"kind": "fixed"}})
    with pytest.raises(ValidationError, match="rate has no spikes to cap"):
        ChipProfile.model_validate({"name": "r", "neuron": RATE, "limits": {"max_spikes_per_step": 3}})


def test_integration_delay_steps_adds_silent_steps_before_the_target():
    task = make_task("integration", seed=0, n_steps=10, delay_steps=6, target_steps=5, n_train=4, n_test=2)
    b = next(task.batches("train", 4))
    assert tuple(b.inputs.shape[1:]) == (16, task.n_in)
    assert float(b.inputs[:, 10:].abs().sum()) == 0.0
    y = b.targets.numpy()
    assert np.isnan(y[:, :11]).all() and not np.isnan(y[:, 11:]).any()

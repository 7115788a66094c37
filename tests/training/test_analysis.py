"""gradient_quality recovers what noisy_oracle injects; curvature of the twin's loss is finite."""

import pytest
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin import TorchTwin
from chiploop.training.analysis import generalization_gap, gradient_quality, loss_curvature
from chiploop.training.estimators import make_estimator
from chiploop.training.tasks import make_task


@pytest.fixture(scope="module")
def setup():
    task = make_task("teacher", seed=0)
    twin = TorchTwin(ChipProfile(name="t"), NetworkSpec(task.n_in, 12, task.n_out), dtype=torch.float64)
    twin.init_weights(torch.Generator().manual_seed(0), scale=2.0)
    batch = next(task.batches("train", 8))
    batch.inputs = batch.inputs.double()
    return twin, batch, task


@pytest.mark.parametrize("relative", [False, True])
def test_gradient_quality_recovers_injected_bias_and_variance(setup, relative):
    twin, batch, task = setup
    bias, sigma, repeats = 0.02, 0.3, 48
    oracle = make_estimator("noisy_oracle", bias=bias, sigma=sigma, relative=relative, repeats=repeats)
    gq = gradient_quality(oracle, twin, batch, task, repeats=repeats)
    n = sum(p.numel() for p in twin.weights.values())
    scale = gq.reference_norm if relative else 1.0
    assert gq.bias_norm == pytest.approx(bias * n**0.5 * scale, rel=0.05)
    assert gq.variance == pytest.approx((sigma * scale) ** 2, rel=0.05)
    assert set(gq.per_layer) == set(twin.weights)


def test_exact_estimator_has_no_bias_or_variance(setup):
    twin, batch, task = setup
    gq = gradient_quality("bptt", twin, batch, task, repeats=2)
    assert gq.bias_norm == pytest.approx(0, abs=1e-9 * gq.reference_norm)
    assert gq.variance == pytest.approx(0, abs=1e-12)
    assert gq.cosine == pytest.approx(1.0)


def test_loss_curvature_is_positive_and_reproducible(setup):
    twin, batch, task = setup
    a = loss_curvature(twin, batch, task, seed=3)
    b = loss_curvature(twin, batch, task, seed=3)
    assert a.value > 0 and a.value == b.value


def test_generalization_gap_sign():
    assert generalization_gap(0.95, 0.9) == pytest.approx(0.05)

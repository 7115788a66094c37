"""`pcm_crossbar` against aihwkit's PCMLikeNoiseModel (aihwkit 1.2, its own code, see conftest.py).

Per conductance level and at 1 s, 1 h and 1 day after programming, the total weight error
(programming + drift + 1/f read noise) of chiploop's chip (DeviceModel: write, advance_time, for_run)
has the standard deviation of aihwkit's `apply_noise(weights, t_inference)` within 3 %, and its mean
within sampling error. The periphery's weight noise (aihwkit's forward `w_noise`) is a field of its
own, off here as in `apply_noise`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chiploop.chip.device_model import DeviceModel
from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile

LEVELS = np.array([0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0])  # of w_max (the layer's peak, mapped to g_max)
PER_LEVEL = 40_000
TIMES_S = [1.0, 3600.0, 86400.0]


def _layer() -> np.ndarray:
    """One layer `[levels, PER_LEVEL]`: each row one level, signs alternating (both devices used)."""
    signs = np.where(np.arange(PER_LEVEL) % 2 == 0, 1.0, -1.0)
    return LEVELS[:, None] * signs[None, :]


def _chiploop_errors(w: np.ndarray, t_s: float, seed: int) -> np.ndarray:
    profile = load_profile("pcm_crossbar").with_overrides({"noise.periphery.weight_sigma": 0.0})
    spec = NetworkSpec(n_in=w.shape[0], n_hidden=w.shape[1], n_out=1)
    device = DeviceModel(profile, spec, seed=seed)
    device.write({"in_hidden": w, "hidden_out": np.zeros((w.shape[1], 1))})
    device.advance_time(t_s)
    return device.for_run()["in_hidden"] - w


def _aihwkit_errors(pcm_module, w: np.ndarray, t_s: float, seed: int) -> np.ndarray:  # noqa: ANN001
    torch.manual_seed(seed)
    model = pcm_module.PCMLikeNoiseModel(g_max=25.0)
    noisy = model.apply_noise(torch.tensor(w, dtype=torch.float64), t_s)
    return noisy.numpy() - w


def test_the_profile_separates_device_noise_from_the_periphery() -> None:
    noise = load_profile("pcm_crossbar").noise
    assert (noise.programming.model, noise.read.model, noise.drift.model) == ("pcm", "pcm_1f", "pcm")
    assert noise.read.sigma == 1.0 and noise.periphery.weight_sigma == 0.0175
    assert load_profile("pcm_crossbar").checked_against.startswith("aihwkit 1.2")


@pytest.mark.parametrize("t_s", TIMES_S)
def test_weight_error_per_level_matches_aihwkit(aihwkit_pcm, t_s: float) -> None:
    w = _layer()
    ours, theirs = _chiploop_errors(w, t_s, seed=1), _aihwkit_errors(aihwkit_pcm, w, t_s, seed=2)
    for k, level in enumerate(LEVELS):
        a, b = ours[k], theirs[k]
        sd_a, sd_b = a.std(), b.std()
        assert sd_a == pytest.approx(sd_b, rel=0.03), (
            f"level {level} at {t_s} s: std {sd_a:.5f} vs aihwkit {sd_b:.5f}"
        )
        # drift pulls each level toward 0: the signed mean error, sign-corrected, agrees within 5 SE
        sign = np.where(np.arange(PER_LEVEL) % 2 == 0, 1.0, -1.0)
        mean_a, mean_b = (a * sign).mean(), (b * sign).mean()
        se = np.hypot(sd_a, sd_b) / np.sqrt(PER_LEVEL)
        assert abs(mean_a - mean_b) < 5 * se + 1e-4, (
            f"level {level} at {t_s} s: mean {mean_a:.5f} vs {mean_b:.5f}"
        )

"""The Trainer: learning on a chip, determinism, resume after SIGKILL, divergence handling."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import TrainingError
from chiploop.training.estimators import BPTT, GradEstimate, make_estimator
from chiploop.training.loop import MeteredChip, Trainer, reseed_chip_noise
from chiploop.training.runs import CHECKPOINT, METRICS, RunDir
from chiploop.training.units import layer_units, weight_floor

SPEC = NetworkSpec(64, 24, 10)
SMALL = dict(batch_size=256, train_eval_size=256, progress=False, lr=0.02, plots=False)
TEACHER = {"n_train": 256, "n_test": 64, "n_steps": 12, "depth": 0}
TEACHER_SPEC = NetworkSpec(25, 24, 1)
TEACHER_RUN = SMALL | {"batch_size": 16, "task_options": TEACHER}


def _trainer(
    tmp_path: Path, profile: str = "ideal", seed: int = 0, task: str = "teacher", **kwargs
) -> Trainer:
    """A small run: the teacher task (256 samples, 12 steps) by default, digits if asked."""
    prof = load_profile(profile)
    spec = TEACHER_SPEC if task == "teacher" else SPEC
    options = (TEACHER_RUN if task == "teacher" else SMALL) | kwargs
    estimator = options.pop("estimator", "bptt")
    chip = TwinChip(prof, spec, seed=seed)
    return Trainer(prof, spec, estimator, task, chip=chip, seed=seed, out_dir=tmp_path, **options)


def test_layer_units_scale_with_the_threshold_and_the_grid() -> None:
    ideal, loihi = load_profile("ideal"), load_profile("loihi2")
    assert layer_units(ideal, SPEC)["in_hidden"] == 1.0
    assert layer_units(loihi, SPEC)["in_hidden"] == 1024.0
    kappa, alpha = math.exp(-1 / 5), math.exp(-1 / 20)
    assert layer_units(ideal, SPEC)["hidden_out"] == pytest.approx((1 - kappa) * (1 - alpha))
    # 8-bit grid with step 2: a readout unit is never below step / 2 * sqrt(fan_in)
    assert weight_floor(loihi) == 1.0
    assert layer_units(loihi, SPEC)["hidden_out"] == pytest.approx(
        max(1024 * (1 - kappa) * (1 - alpha), 24**0.5)
    )
    # analog PCM: the floor is the programming noise of a device at g = 0 (0.26348 µS of 25 µS)
    pcm = load_profile("pcm_crossbar")
    assert weight_floor(pcm) == pytest.approx(0.26348 / 25)
    assert layer_units(pcm, SPEC)["hidden_out"] == pytest.approx(0.26348 / 25 * 24**0.5)
    assert weight_floor(ideal) == 0.0


@pytest.mark.slow
def test_in_the_loop_learns_digits(tmp_path) -> None:
    history = _trainer(tmp_path, task="digits").fit(3)
    assert history.rows[0]["test_metric"] < 0.3  # untrained: near chance
    assert history.last["test_metric"] > 0.6
    steps = math.ceil(1437 / 256)
    assert [r["chip_runs"] for r in history.rows] == [0, steps, steps, steps]  # one chip run per step


@pytest.mark.slow
def test_xylo_learns_evidence_in_the_loop_on_the_emulator(tmp_path) -> None:
    """A task that fits Xylo's 16 inputs: evidence accumulation with 4 channels per population,
    64 hidden neurons, in the loop on the Brian2 emulator under the XyloSim-exact `xylo` profile.
    Target: >= 90 % test accuracy after 3 epochs (chance: the majority class, 53.5 %)."""
    trainer = Trainer("xylo", None, "bptt", "evidence", task_options={"n_per_pop": 4}, n_hidden=64,
                      out_dir=tmp_path, progress=False, plots=False)  # fmt: skip
    history = trainer.fit(3)
    assert trainer.spec.n_in == 16 and history.rows[0]["test_metric"] < 0.75
    assert history.last["test_metric"] >= 0.90


@pytest.mark.slow
def test_emulator_and_twin_targets_train_alike_under_ideal(tmp_path) -> None:
    """Under `ideal` BrianChip and the twin agree spike for spike, so training does too."""
    runs = {}
    for target in ("emulator", "twin"):
        trainer = Trainer(
            "ideal",
            None,
            "bptt",
            "teacher",
            target=target,
            out_dir=tmp_path / target,
            n_hidden=24,
            **TEACHER_RUN,
        )
        runs[target] = trainer.fit(2).rows
        trainer.chip.close()
    for emu, twin in zip(runs["emulator"], runs["twin"], strict=True):
        assert emu == pytest.approx(twin, rel=1e-4, abs=1e-6, nan_ok=True)  # ideal: no energy figure (NaN)


def test_in_the_loop_learns_and_writes_the_run(tmp_path) -> None:
    trainer = _trainer(tmp_path, plots=True)
    history = trainer.fit(3)
    assert [r["epoch"] for r in history.rows] == [0, 1, 2, 3]
    assert history.last["test_metric"] > history.rows[0]["test_metric"] + 0.1
    assert history.last["train_loss"] < 0.9 * history.rows[0]["train_loss"]
    assert [r["chip_runs"] for r in history.rows] == [0, 16, 16, 16]  # one chip run per step
    for name in ("config.yaml", METRICS, "timing.csv", CHECKPOINT, "summary.json"):
        assert (tmp_path / name).is_file()
    for name in ("learning_curves.png", "raster.png", "weights.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    for on_disk, row in zip(RunDir(tmp_path).read_rows(METRICS), history.rows, strict=True):
        assert on_disk == pytest.approx(row, rel=1e-5, nan_ok=True)  # ideal: no energy figure, NaN
    summary = RunDir(tmp_path).read_summary()
    assert summary["status"] == "ok" and summary["epochs_done"] == 3
    assert summary["best_test_metric"] == max(r["test_metric"] for r in history.rows)
    assert RunDir(tmp_path).load_checkpoint()["epoch"] == 3


def test_chip_holds_the_shadow_weights_after_each_step(tmp_path) -> None:
    trainer = _trainer(tmp_path, "loihi2")
    trainer.fit(1)
    trainer.fit(2)  # a second fit continues
    assert [r["epoch"] for r in RunDir(tmp_path).read_rows(METRICS)] == [0, 1, 2]
    assert RunDir(tmp_path).read_config()["epochs"] == 2
    on_chip = trainer.chip.read_weights()
    shadow = trainer.float_weights()
    for name in shadow:
        inside = np.clip(shadow[name], -256, 254)  # grid step 2, floored as Lava floors odd weights
        assert np.all((inside - on_chip[name] >= 0) & (inside - on_chip[name] < 2.0))
        assert np.all(on_chip[name] % 2 == 0)


def test_same_seed_gives_byte_identical_metrics(tmp_path) -> None:
    _trainer(tmp_path / "a", "rram_crossbar").fit(2)
    _trainer(tmp_path / "b", "rram_crossbar").fit(2)
    _trainer(tmp_path / "c", "rram_crossbar", seed=1).fit(2)
    a, b, c = ((tmp_path / d / METRICS).read_bytes() for d in "abc")
    assert a == b
    assert a != c


def test_offline_trains_on_hardware_weights_and_evaluates_on_the_chip(tmp_path) -> None:
    trainer = _trainer(tmp_path, "brainscales2", mode="offline")
    history = trainer.fit(3)
    assert [r["chip_runs"] for r in history.rows] == [0, 0, 0, 0]
    assert history.last["test_metric"] > history.rows[0]["test_metric"] + 0.05, history.column("test_metric")
    assert trainer.chip.runs > 0  # evaluation ran on the chip


def test_rate_regularisation_lowers_the_firing_rate(tmp_path) -> None:
    free = _trainer(tmp_path / "free").fit(1).last
    damped = _trainer(tmp_path / "damped", rate_reg=50.0, rate_target=0.0).fit(1).last
    assert damped["spikes_per_neuron_per_sample"] < 0.7 * free["spikes_per_neuron_per_sample"]


def test_perturbation_estimator_uses_chip_forward_passes_only(tmp_path) -> None:
    trainer = _trainer(tmp_path, estimator="weight_perturbation")
    history = trainer.fit(1)
    assert history.rows[1]["chip_runs"] >= 2 * 256 // 16
    on_chip = trainer.chip.read_weights()
    for name, w in trainer.float_weights().items():  # the chip holds the shadow weights, not a perturbed copy
        np.testing.assert_allclose(on_chip[name], w)


@pytest.mark.parametrize("estimator", ["bptt", "weight_perturbation"])
def test_resume_in_a_new_trainer_reproduces_the_run(tmp_path, estimator: str) -> None:
    options = {"n_samples": 2} if estimator == "weight_perturbation" else {}
    _trainer(tmp_path / "whole", "rram_crossbar", estimator=estimator, estimator_options=options).fit(2)
    _trainer(tmp_path / "parts", "rram_crossbar", estimator=estimator, estimator_options=options).fit(1)
    chip = TwinChip(load_profile("rram_crossbar"), TEACHER_SPEC, seed=0)
    resumed = Trainer.from_run(tmp_path / "parts", chip=chip, progress=False, plots=False)
    assert resumed.estimator.name == estimator
    resumed.fit(2, resume=True)
    assert (tmp_path / "parts" / METRICS).read_bytes() == (tmp_path / "whole" / METRICS).read_bytes()


def test_resume_needs_the_chip_object_it_was_trained_on(tmp_path) -> None:
    _trainer(tmp_path).fit(0)
    with pytest.raises(TrainingError, match="pass chip= to resume"):
        Trainer.from_run(tmp_path)


class _NaNAfter:
    """BPTT that reports a NaN loss from the given epoch on."""

    name = "bptt"

    def __init__(self, trainer_ref: list, epoch: int) -> None:
        self.inner, self.ref, self.epoch = BPTT(), trainer_ref, epoch

    def estimate(self, model, batch, task, chip=None, *, weights=None) -> GradEstimate:
        est = self.inner.estimate(model, batch, task, chip, weights=weights)
        if self.ref[0].epoch + 1 >= self.epoch:
            return GradEstimate(float("nan"), est.grads, est.chip_runs)
        return est


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    ref: list = []
    prof = load_profile("ideal")
    trainer = Trainer(
        prof,
        TEACHER_SPEC,
        _NaNAfter(ref, 2),
        "teacher",
        chip=TwinChip(prof, TEACHER_SPEC),
        out_dir=tmp_path,
        **TEACHER_RUN,
    )
    ref.append(trainer)
    with pytest.raises(
        TrainingError, match=r"loss became nan at epoch 2, batch 0 .*checkpoint.pt \(epoch 1\)"
    ):
        trainer.fit(3)
    state = RunDir(tmp_path).load_checkpoint()
    assert state["epoch"] == 1
    assert all(torch.isfinite(w).all() for w in state["weights"].values())
    assert len(RunDir(tmp_path).read_rows(METRICS)) == 2
    assert RunDir(tmp_path).read_summary()["status"] == "diverged"


def test_exploding_loss_stops(tmp_path) -> None:
    class Exploding(BPTT):
        def estimate(self, *args, **kwargs) -> GradEstimate:
            est = super().estimate(*args, **kwargs)
            return GradEstimate(1e9, est.grads, est.chip_runs)

    prof = load_profile("ideal")
    chip = TwinChip(prof, TEACHER_SPEC)
    trainer = Trainer(prof, TEACHER_SPEC, Exploding(), "teacher", chip=chip, out_dir=tmp_path, **TEACHER_RUN)
    with pytest.raises(TrainingError, match="loss exploded to 1e\\+09"):
        trainer.fit(1)
    assert RunDir(tmp_path).load_checkpoint()["epoch"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "online"}, "mode must be one of"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"estimator": "nope"}, "valid estimators: bptt"),
    ],
)
def test_bad_configuration_is_a_training_error(tmp_path, kwargs: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        _trainer(tmp_path, **kwargs)


def test_negative_seed_is_a_training_error(tmp_path) -> None:
    prof = load_profile("ideal")
    with pytest.raises(TrainingError, match="seed must be an int >= 0, got -1"):
        Trainer(
            prof,
            TEACHER_SPEC,
            "bptt",
            "teacher",
            chip=TwinChip(prof, TEACHER_SPEC),
            seed=-1,
            out_dir=tmp_path,
        )


def test_rate_options_with_an_estimator_object_are_refused(tmp_path) -> None:
    with pytest.raises(TrainingError, match="set them on the estimator"):
        _trainer(tmp_path, estimator=make_estimator("bptt"), rate_reg=1.0)


def test_metered_chip_counts_runs_and_reseeds_the_device_model() -> None:
    prof = load_profile("rram_crossbar")
    chip = TwinChip(prof, SPEC, seed=3)
    metered = MeteredChip(chip)
    w = {k: np.full(s, 0.3) for k, s in SPEC.weight_shapes().items()}
    x = np.ones((2, 5, 64), np.uint8)

    def draw() -> np.ndarray:
        assert reseed_chip_noise(chip, 7, 2)
        metered.write_weights(w)
        return metered.run(x).v["out"]

    np.testing.assert_array_equal(draw(), draw())
    assert metered.runs == 2 and metered.seconds > 0
    assert not reseed_chip_noise(object(), 7, 2)


_SCRIPT = textwrap.dedent(
    """
    import sys
    from chiploop.chip_profiles.loader import load_profile
    from chiploop.chip.network import NetworkSpec
    from chiploop.emulator.twin_chip import TwinChip
    from chiploop.training.loop import Trainer

    out, resume = sys.argv[1], sys.argv[2] == "resume"
    prof = load_profile("rram_crossbar")
    spec = NetworkSpec(64, 24, 10)
    chip = TwinChip(prof, spec, seed=0)
    if resume:
        Trainer.from_run(out, chip=chip, progress=False, plots=False).fit(resume=True)
    else:
        Trainer(prof, spec, "bptt", "digits", chip=chip, out_dir=out, batch_size=256, train_eval_size=256,
                progress=False, lr=0.02, plots=False, epochs=int(sys.argv[3])).fit()
    """
)


def _script(*args: str) -> list[str]:
    return [sys.executable, "-c", _SCRIPT, *args]


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_to_the_same_metrics(tmp_path) -> None:
    epochs = "5"
    subprocess.run(_script(str(tmp_path / "whole"), "fresh", epochs), check=True, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_script(str(killed), "fresh", epochs))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if (killed / METRICS).is_file() and len((killed / METRICS).read_text().splitlines()) >= 3:
                break  # epoch 1 done and checkpointed: now somewhere inside epoch 2
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert RunDir(killed).load_checkpoint()["epoch"] < int(epochs)
    subprocess.run(_script(str(killed), "resume"), check=True, timeout=300)
    assert (killed / METRICS).read_bytes() == (tmp_path / "whole" / METRICS).read_bytes()
    assert RunDir(killed).load_checkpoint()["epoch"] == int(epochs)

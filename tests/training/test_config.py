"""TrainConfig: config.yaml round trip, runs written before it still resume, bad values are one line.

`data/run_v1` is a run directory written by the Trainer before TrainConfig existed (ideal profile,
teacher task, two hidden layers, eprop with rate_reg, Adam): config.yaml, metrics.csv and the
checkpoint after epoch 1, and `metrics_after_2_epochs.csv` from the same code trained for 2 epochs
without interruption.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.cli import app
from chiploop.emulator.twin import TorchTwin
from chiploop.errors import TrainingError
from chiploop.training.config import NetworkConfig, TrainConfig
from chiploop.training.estimators import make_estimator
from chiploop.training.loop import Trainer
from chiploop.training.runs import CONFIG, METRICS
from chiploop.training.stepping import Stepper, layer_optimizer
from chiploop.training.tasks import make_task

OLD_RUN = Path(__file__).parent / "data" / "run_v1"


def _old_config() -> dict:
    return yaml.safe_load((OLD_RUN / CONFIG).read_text())


def test_config_yaml_of_an_older_run_reads_and_writes_back_unchanged() -> None:
    config = TrainConfig.read(OLD_RUN)
    assert (config.network.n_hidden, config.estimator.rate_reg, config.optimizer) == ([12, 8], 0.5, "adam")
    text = yaml.safe_dump(config.to_yaml(), sort_keys=False, allow_unicode=True)
    assert text == (OLD_RUN / CONFIG).read_text()


def test_run_written_before_trainconfig_resumes_to_the_uninterrupted_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run, ignore=shutil.ignore_patterns("metrics_after_*"))
    trainer = Trainer.from_run(run, progress=False, plots=False)
    assert trainer.config() == _old_config()
    trainer.fit(2, resume=True)
    assert (run / METRICS).read_bytes() == (OLD_RUN / "metrics_after_2_epochs.csv").read_bytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": -1}, "lr must be a finite number > 0, got -1"),
        ({"mode": "online"}, "mode must be one of ('in_the_loop', 'offline'), got 'online'"),
        ({"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
        ({"epochs": -1}, "epochs must be an int >= 0, got -1"),
        ({"train_eval_size": 0}, "train_eval_size must be an int >= 1 or null, got 0"),
        ({"bogus": 1}, "bogus: unknown key"),
        (
            {"network": {"n_in": 25, "n_hidden": 0, "n_out": 1}},
            "network.n_hidden must be an int >= 1 or a list",
        ),
        (
            {"network": {"n_in": 25, "n_hidden": [4, 2], "n_out": 1, "recurrent": "yes"}},
            "network.recurrent must",
        ),
        ({"task": {"name": "teacher"}}, "task.seed: required field missing"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_field(change: dict, message: str) -> None:
    with pytest.raises(TrainingError) as caught:
        TrainConfig.from_yaml(_old_config() | change, "run/config.yaml")
    text = str(caught.value)
    assert "\n" not in text and text.startswith("run/config.yaml is not a usable run config: ")
    assert message in text, text


def test_config_is_frozen() -> None:
    config = TrainConfig.read(OLD_RUN)
    with pytest.raises(Exception, match="frozen"):
        config.lr = 1.0  # type: ignore[misc]


def test_two_synaptic_currents_survive_the_round_trip() -> None:
    spec = NetworkSpec(25, 12, 1, recurrent=True, synapses=2)
    network = NetworkConfig.of(spec)
    assert network.spec() == spec
    config = TrainConfig.read(OLD_RUN).model_copy(update={"network": network})
    mapping = config.to_yaml()
    assert mapping["network"]["synapses"] == 2
    assert TrainConfig.from_yaml(mapping).network.spec() == spec


def test_cli_refuses_a_bad_setting_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--target", "twin", "--hidden", "8", "--lr", "0", "--no-progress", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == ["error: lr must be a finite number > 0, got 0.0"], result.output
    assert not out.exists()


def test_stepper_sgd_step_is_w_minus_lr_times_the_estimate() -> None:
    """The step the Trainer and the recipes share: SGD moves each weight by -lr·ĝ of the estimator."""
    task = make_task("teacher", seed=0, n_train=8, n_test=4, n_steps=6, depth=0)
    profile = load_profile("ideal")
    twin = TorchTwin(profile, NetworkSpec(task.n_in, 6, task.n_out), seed=0, dtype=torch.float64)
    twin.init_weights(torch.Generator().manual_seed(0))
    batch = next(iter(task.batches("train", 8)))
    estimator = make_estimator("bptt")
    before = {k: w.detach().clone() for k, w in twin.weights.items()}
    expected = estimator.estimate(twin, batch, task)
    stepper = Stepper(twin, estimator, task, layer_optimizer("sgd", twin, dict.fromkeys(twin.weights, 0.1)))
    est = stepper.step(batch)
    assert est.loss == expected.loss
    for name, w in twin.weights.items():
        torch.testing.assert_close(w.detach(), before[name] - 0.1 * expected.grads[name], rtol=0, atol=1e-15)

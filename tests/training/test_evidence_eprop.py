"""ALIF + e-prop learns `evidence`; `chiploop train --set/--recurrent` builds and resumes such runs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.cli import app
from chiploop.errors import TrainingError
from chiploop.training.cli import parse_assignments
from chiploop.training.loop import Trainer
from chiploop.training.runs import METRICS, RunDir

runner = CliRunner()
ALIF = {
    "neuron.model": "alif",
    "neuron.adaptation.tau_s": 0.15,
    "neuron.adaptation.beta": 2.0,
    "neuron.adaptation.fraction": 0.5,
}
SMALL = ["--target", "twin", "--hidden", "8", "--batch-size", "512", "--no-progress", "--no-plots"]


def test_parse_assignments_reads_yaml_values_and_last_wins() -> None:
    items = [
        "neuron.model=alif",
        "neuron.adaptation.beta=2",
        "weights.bits=null",
        "a.b=x=y",
        "neuron.model=lif",
    ]
    assert parse_assignments(items, "--set") == {
        "neuron.model": "lif",
        "neuron.adaptation.beta": 2,
        "weights.bits": None,
        "a.b": "x=y",
    }
    assert parse_assignments([" weights.range =[-2, 2]"], "--set") == {"weights.range": [-2, 2]}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("neuron.model", "--set expects KEY=VALUE (e.g. --set name=3), got 'neuron.model'"),
        ("=3", "--set expects KEY=VALUE"),
        ("weights.range=[1, 2", "--set weights.range: value '[1, 2' is not valid YAML"),
    ],
)
def test_parse_assignments_rejects_malformed_items(item: str, expected: str) -> None:
    with pytest.raises(TrainingError) as info:
        parse_assignments([item], "--set")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "neuron.model"], "--set expects KEY=VALUE"),
        (["--set", "neuron.model=izhikevich"], "neuron.model"),
        (["--set", "neuron.nope=1"], "nope"),
        (["--set", "neuron.adaptation.beta=[1"], "is not valid YAML"),
        (["--task-option", "delay_steps"], "--task-option expects KEY=VALUE"),
        (["--task-option", "delay=3"], "task 'evidence': unknown option(s) ['delay']"),
    ],
)
def test_bad_set_exits_2_with_one_line(tmp_path, args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["train", "--task", "evidence", "--out", str(tmp_path), *args, *SMALL])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output


def test_set_and_recurrent_reach_the_run_and_survive_resume(tmp_path) -> None:
    out = tmp_path / "run"
    sets = [a for k, v in ALIF.items() for a in ("--set", f"{k}={v}")]
    args = ["train", "--profile", "ideal", "--task", "evidence", "--estimator", "eprop", "--out", str(out)]
    first = runner.invoke(
        app, [*args, *sets, "--recurrent", "--task-option", "delay_steps=7", "--epochs", "0", *SMALL]
    )
    assert first.exit_code == 0, first.output
    config = RunDir(out).read_config()
    assert config["network"]["recurrent"] is True
    assert config["task"]["options"] == {"delay_steps": 7}
    neuron = config["profile_spec"]["neuron"]
    assert neuron["model"] == "alif" and neuron["adaptation"] == {"tau_s": 0.15, "beta": 2.0, "fraction": 0.5}

    clash = runner.invoke(app, ["train", "--resume", "--out", str(out), "--set", "neuron.model=lif"])
    assert clash.exit_code == 2 and "cannot be combined with --resume" in clash.output

    again = runner.invoke(
        app, ["train", "--resume", "--out", str(out), "--epochs", "1", "--no-progress", "--no-plots"]
    )
    assert again.exit_code == 0, again.output
    assert [r["epoch"] for r in RunDir(out).read_rows(METRICS)] == [0, 1]
    resumed = RunDir(out).read_config()
    assert resumed["profile_spec"]["neuron"] == neuron and resumed["task"]["options"] == {"delay_steps": 7}


@pytest.mark.slow
def test_alif_eprop_learns_evidence(tmp_path) -> None:
    """The benchmark's configuration on the twin (equal to the emulator on `ideal`): >= 90% test."""
    trainer = Trainer(
        load_profile("ideal").with_overrides(ALIF),
        NetworkSpec(40, 64, 2, recurrent=True),
        "eprop",
        "evidence",
        target="twin",
        lr_decay=0.7,
        out_dir=tmp_path,
        progress=False,
        plots=False,
    )
    history = trainer.fit(10)
    assert history.rows[0]["test_metric"] < 0.6  # chance before training
    assert history.last["test_metric"] >= 0.9, history.column("test_metric")

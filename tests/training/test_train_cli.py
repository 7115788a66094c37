"""`chiploop train`: user mistakes are one line and exit 2; a small run trains, resumes, extends."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from chiploop.cli import app
from chiploop.training.runs import METRICS, RunDir

runner = CliRunner()
SMALL = ["--target", "twin", "--hidden", "16", "--batch-size", "256", "--no-progress", "--no-plots"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--task", "nope"],
            "unknown task 'nope'; valid tasks: digits, evidence, pattern, integration, teacher",
        ),
        (["--estimator", "nope"], "unknown estimator 'nope'; valid estimators: bptt, tbptt"),
        (["--profile", "nope"], "unknown profile 'nope': not a built-in (brainscales2, dynapse2, ideal"),
        (["--mode", "online"], "mode must be one of ('in_the_loop', 'offline'), got 'online'"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_bad_names_exit_2_with_one_line(tmp_path, args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["train", *args, *SMALL])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output


@pytest.mark.parametrize(
    ("hidden", "expected"),
    [
        ("32,x", "--hidden: expected positive integers separated by commas (256,128), got '32,x'"),
        ("8,8,8,8,8", "n_hidden: 1 to 4 hidden layers, got 5"),
    ],
)
def test_bad_hidden_sizes_exit_2_with_one_line(tmp_path, hidden: str, expected: str) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), *SMALL, "--hidden", hidden])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_resume_of_a_missing_run_exits_2(tmp_path) -> None:
    result = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "none"), "--no-progress"])
    assert result.exit_code == 2
    assert "no config.yaml" in result.output


def test_train_then_extend_with_resume(tmp_path) -> None:
    out = tmp_path / "run"
    common = ["train", "--profile", "ideal", "--task", "teacher", "--out", str(out), *SMALL]
    first = runner.invoke(app, [*common, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    assert "test 1-nmse" in first.output and str(out) in first.output
    assert len(RunDir(out).read_rows(METRICS)) == 2
    config = RunDir(out).read_config()
    assert (config["target"], config["network"]["n_hidden"], config["batch_size"]) == ("twin", 16, 256)
    again = runner.invoke(
        app, ["train", "--resume", "--out", str(out), "--epochs", "2", "--no-progress", "--no-plots"]
    )
    assert again.exit_code == 0, again.output
    assert [r["epoch"] for r in RunDir(out).read_rows(METRICS)] == [0, 1, 2]
    assert RunDir(out).read_summary()["epochs_done"] == 2
    assert not (out / "raster.png").exists()


def test_two_hidden_layers_train_and_resume(tmp_path, monkeypatch) -> None:
    """`--hidden 12,8`: two layers in config.yaml, both in the run's default name, resumable."""
    monkeypatch.chdir(tmp_path)
    args = ["train", "--profile", "ideal", "--task", "teacher", "--recurrent", "--hidden", "12,8"]
    first = runner.invoke(app, [*args, *SMALL[:2], "--batch-size", "256", "--epochs", "1", "--no-progress"])
    assert first.exit_code == 0, first.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == "ideal-teacher-bptt-in_the_loop-h12-8-s0"
    config = RunDir(run).read_config()
    assert (config["network"]["n_hidden"], config["network"]["recurrent"]) == ([12, 8], True)
    again = runner.invoke(app, ["train", "--resume", "--out", str(run), "--epochs", "2", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert [r["epoch"] for r in RunDir(run).read_rows(METRICS)] == [0, 1, 2]


def test_progress_shows_a_summary_table(tmp_path) -> None:
    args = ["train", "--profile", "ideal", "--task", "teacher", "--out", str(tmp_path), "--epochs", "1"]
    result = runner.invoke(app, [*args, *[a for a in SMALL if a != "--no-progress"]])
    assert result.exit_code == 0, result.output
    assert "training on the chip" in result.output and "test 1-nmse" in result.output

"""Run directory I/O: config, CSV tables, atomic checkpoints that load with weights_only."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from chiploop.errors import TrainingError
from chiploop.training.runs import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    METRIC_COLUMNS,
    METRICS,
    RunDir,
    default_run_dir,
    format_value,
)


def _state(epoch: int = 3) -> dict:
    gen = torch.Generator().manual_seed(5)
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "weights": {"in_hidden": torch.arange(6.0).reshape(2, 3)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "rng": {"data": gen.get_state(), "numpy": np.random.default_rng(1).bit_generator.state},
        "history": [{"epoch": 0, "test_metric": 0.5}],
        "timing": [{"epoch": 0, "wall_chip_s": 1.0, "wall_host_s": 2.0}],
    }


def test_default_run_dir_names_what_distinguishes_runs_and_never_reuses_one(tmp_path: Path) -> None:
    def name(mode: str = "offline", hidden: int = 128) -> str:
        return default_run_dir("pcm_crossbar", "digits", "bptt", mode, hidden, 0, root=tmp_path).name

    assert name() == "pcm_crossbar-digits-bptt-offline-h128-s0"
    assert name("in_the_loop") != name() and name(hidden=64) != name()
    (tmp_path / name()).mkdir()
    assert name() == "pcm_crossbar-digits-bptt-offline-h128-s0", "an empty directory is free to use"
    (tmp_path / name() / "config.yaml").write_text("x: 1\n")
    assert name() == "pcm_crossbar-digits-bptt-offline-h128-s0-2"
    (tmp_path / name()).mkdir()
    (tmp_path / name() / ".lock").write_text("")
    assert name() == "pcm_crossbar-digits-bptt-offline-h128-s0-2", "a lock file alone holds no run"


def test_config_round_trip(tmp_path) -> None:
    run = RunDir(tmp_path / "r")
    config = {"profile": "ideal", "lr": 0.01, "network": {"n_in": 4, "recurrent": False}, "epochs": None}
    run.write_config(config)
    assert run.read_config() == config


def test_missing_or_bad_config_is_a_training_error(tmp_path) -> None:
    with pytest.raises(TrainingError, match="no config.yaml"):
        RunDir(tmp_path).read_config()
    (tmp_path / "config.yaml").write_text("- just\n- a list\n")
    with pytest.raises(TrainingError, match="must hold a mapping"):
        RunDir(tmp_path).read_config()


def test_csv_cells_are_stable_and_round_trip(tmp_path) -> None:
    assert format_value(3) == "3"
    assert format_value(0.1 + 0.2) == "0.3"
    assert format_value(np.float32(1 / 3)) == "0.333333"
    run = RunDir(tmp_path)
    row = {c: 0.25 for c in METRIC_COLUMNS} | {"epoch": 1, "chip_runs": 7}
    run.write_rows(METRICS, METRIC_COLUMNS, [row])
    run.append_row(METRICS, METRIC_COLUMNS, row | {"epoch": 2})
    lines = (tmp_path / METRICS).read_text().splitlines()
    assert lines[0] == ",".join(METRIC_COLUMNS)
    assert lines[1] == "1,0.25,0.25,0.25,0.25,0.25,7" + ",0.25" * (len(METRIC_COLUMNS) - 7)
    assert run.read_rows(METRICS)[1] == row | {"epoch": 2}


def test_checkpoint_round_trip_with_weights_only(tmp_path) -> None:
    run = RunDir(tmp_path)
    run.save_checkpoint(_state())
    loaded = run.load_checkpoint()
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["weights"]["in_hidden"], torch.arange(6.0).reshape(2, 3))
    assert loaded["rng"]["numpy"] == np.random.default_rng(1).bit_generator.state
    restored = torch.Generator()
    restored.set_state(loaded["rng"]["data"])
    assert torch.equal(
        torch.rand(3, generator=restored), torch.rand(3, generator=torch.Generator().manual_seed(5))
    )
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT]  # no temporary file left behind


def test_checkpoint_overwrite_is_atomic_replace(tmp_path) -> None:
    run = RunDir(tmp_path)
    run.save_checkpoint(_state(1))
    inode = os.stat(tmp_path / CHECKPOINT).st_ino
    run.save_checkpoint(_state(2))
    assert run.load_checkpoint()["epoch"] == 2
    assert os.stat(tmp_path / CHECKPOINT).st_ino != inode  # a new file renamed over the old one


def test_incomplete_state_is_not_saved(tmp_path) -> None:
    state = _state()
    del state["optimizer"]
    with pytest.raises(TrainingError, match="lacks \\['optimizer'\\]"):
        RunDir(tmp_path).save_checkpoint(state)
    assert not RunDir(tmp_path).has_checkpoint()


@pytest.mark.parametrize("garbage", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_checkpoint_is_refused(tmp_path, garbage: bytes) -> None:
    (tmp_path / CHECKPOINT).write_bytes(garbage)
    with pytest.raises(TrainingError, match="corrupt"):
        RunDir(tmp_path).load_checkpoint()


def test_truncated_checkpoint_is_refused(tmp_path) -> None:
    run = RunDir(tmp_path)
    run.save_checkpoint(_state())
    data = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainingError, match="corrupt"):
        run.load_checkpoint()


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_code_is_never_executed(tmp_path) -> None:
    marker = tmp_path / "executed"
    state = _state() | {"weights": {"in_hidden": _Payload(str(marker))}}
    with (tmp_path / CHECKPOINT).open("wb") as fh:
        torch.save(state, fh, pickle_module=pickle)
    with pytest.raises(TrainingError, match="corrupt or unsafe"):
        RunDir(tmp_path).load_checkpoint()
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 99}, "format 99"),
        ({"weights": {"in_hidden": [1.0, 2.0]}}, "weights \\['in_hidden'\\]"),
        ({"epoch": "three"}, "epoch 'three'"),
    ],
)
def test_checkpoint_with_wrong_contents_is_refused(tmp_path, change: dict, message: str) -> None:
    torch.save(_state() | change, tmp_path / CHECKPOINT)
    with pytest.raises(TrainingError, match=message):
        RunDir(tmp_path).load_checkpoint()


def test_missing_checkpoint_names_the_directory(tmp_path) -> None:
    with pytest.raises(TrainingError, match="nothing to resume"):
        RunDir(tmp_path).load_checkpoint()


def test_summary_round_trip(tmp_path) -> None:
    run = RunDir(tmp_path / "new")
    run.write_summary({"status": "ok", "best_test_metric": 0.9})
    assert run.read_summary() == {"status": "ok", "best_test_metric": 0.9}

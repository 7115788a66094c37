"""`chiploop train --init MODEL.nir`: the run starts from the imported network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.cli import app
from chiploop.interchange.export import to_nir
from chiploop.interchange.importer import import_nir
from chiploop.training.runs import RunDir

nir = pytest.importorskip("nir")
runner = CliRunner()


@pytest.fixture
def model(tmp_path):
    """A network for the pattern task (50 inputs, 2 outputs) as a NIR file."""
    spec = NetworkSpec(50, 8, 2)
    g = np.random.default_rng(0)
    weights = {"in_hidden": g.normal(0, 0.5, (50, 8)), "hidden_out": g.normal(0, 0.5, (8, 2))}
    path = tmp_path / "pattern.nir"
    nir.write(path, to_nir(load_profile("ideal"), spec, weights))
    return path


def test_train_init_starts_from_the_imported_weights(tmp_path, model):
    out = tmp_path / "run"
    args = ["train", "--init", str(model), "--profile", "ideal", "--task", "pattern", "--target", "twin",
            "--epochs", "0", "--task-option", "n_steps=20", "--no-plots", "--no-progress",
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = RunDir(out).load_checkpoint()["weights"]
    expected = import_nir(model, "ideal").weights
    assert set(saved) == set(expected)
    for name, w in expected.items():
        np.testing.assert_allclose(saved[name].to(torch.float64).numpy(), w, rtol=1e-6, atol=1e-7)


def test_train_init_refuses_a_size_and_a_mismatched_task(tmp_path, model):
    result = runner.invoke(app, ["train", "--init", str(model), "--hidden", "16", "--task", "pattern",
                                 "--out", str(tmp_path / "a")])  # fmt: skip
    assert result.exit_code == 2 and "--hidden cannot be combined with --init" in result.stderr
    result = runner.invoke(
        app, ["train", "--init", str(model), "--task", "digits", "--out", str(tmp_path / "b")]
    )
    assert (
        result.exit_code == 2
        and "task 'digits' has 64 inputs and 10 outputs, the network 50 and 2" in result.stderr
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

"""Energy and latency per inference: the model, its cited figures, `chiploop cost` and sweeps."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles import list_profiles, load_profile
from chiploop.chip_profiles.model import Cost
from chiploop.cli import app
from chiploop.cost import COST_COLUMNS, estimate
from chiploop.training.loop import Trainer
from chiploop.training.runs import METRIC_COLUMNS, RunDir

CHIPS = "loihi2,xylo,brainscales2,pcm_crossbar,rram_crossbar"
ENERGY_FIELDS = [f for f in Cost.model_fields if f.startswith(("energy_", "static_", "time_"))]


def cost(*args: str) -> Result:
    return CliRunner().invoke(app, ["cost", *args])


def one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "digits"
    trainer = Trainer(
        "loihi2",
        task="digits",
        target="twin",
        n_hidden=16,
        out_dir=out,
        progress=False,
        plots=False,
        train_eval_size=64,
    )
    trainer.fit(0)  # the untrained network: evaluated and checkpointed, enough to deploy
    return out


def test_a_run_records_its_cost_in_metrics_and_summary(digits_run: Path) -> None:
    rows = RunDir(digits_run).read_rows("metrics.csv")
    assert [f"test_{c}" for c in COST_COLUMNS] == list(METRIC_COLUMNS[-len(COST_COLUMNS) :])
    last = rows[-1]
    assert 0 < last["test_synops_effective"] < last["test_synops_dense"]
    assert 0 < last["test_energy_j"] < 1e-3 and 0 < last["test_latency_s"] < 1
    summary = RunDir(digits_run).file("summary.json").read_text()
    assert '"test_energy_j"' in summary and '"test_footprint_bytes"' in summary
    by_layer = RunDir(digits_run).read_summary()["footprint_bytes_by_layer"]
    assert by_layer == {
        "w:in_hidden": 64 * 16,
        "w:hidden_out": 16 * 10,
        "state:hidden": 16 * 2 * 3,
        "state:out": 60,
    }
    assert sum(by_layer.values()) == last["test_footprint_bytes"]


def test_cost_prints_a_row_per_chip_and_writes_csv_and_plot(digits_run: Path, tmp_path: Path) -> None:
    result = cost(str(digits_run), "--profiles", CHIPS, "--limit", "60", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    for name in CHIPS.split(","):
        assert name in result.output
    assert "cannot host" in result.output and "max_inputs" in result.output  # digits: 64 input channels
    with (tmp_path / "cost.csv").open() as fh:
        rows = {r["profile"]: r for r in csv.DictReader(fh)}
    assert list(rows) == CHIPS.split(",")
    assert rows["xylo"]["hosted"] == "0" and "max_inputs" in rows["xylo"]["rules_broken"]
    assert float(rows["loihi2"]["energy_j"]) > 0 and rows["loihi2"]["cost_missing"] == "cost.static_power_w"
    for name in ("brainscales2", "pcm_crossbar", "rram_crossbar"):
        assert rows[name]["hosted"] == "1" and 0 <= float(rows[name]["test_metric"]) <= 1
        assert math.isnan(float(rows[name]["energy_j"]))  # no published per-operation figure
        assert float(rows[name]["latency_s"]) > 0  # physical time
    assert float(rows["brainscales2"]["latency_s"]) == pytest.approx(
        float(rows["pcm_crossbar"]["latency_s"]) / 1000
    )
    assert (tmp_path / "cost_vs_accuracy.png").stat().st_size > 0


@pytest.mark.parametrize("name", list_profiles())
def test_every_cost_figure_cites_its_source(name: str) -> None:
    profile = load_profile(name)
    for field in ENERGY_FIELDS:
        if getattr(profile.cost, field) is not None:
            assert profile.source.get(f"cost.{field}"), f"{name}: cost.{field} has no source"
    assert profile.source.get("cost"), f"{name}: say which cost figures are unpublished"


def test_loihi2_energy_adds_its_cited_terms() -> None:
    profile, spec = load_profile("loihi2"), NetworkSpec(64, 16, 10)
    counts = {"synops_dense": 1e5, "synops_effective": 2e4, "spikes": 300.0}
    est = estimate(profile, spec, counts, steps=30)
    assert est.energy_j == pytest.approx(2e4 * 23.6e-12 + 26 * 30 * 52e-12 + 300 * 1.7e-12)
    assert est.latency_s == pytest.approx(2e4 * 3.5e-9 + 26 * 30 * 5.3e-9)
    assert est.missing == ("cost.static_power_w",)


def test_a_crossbar_pays_for_dense_macs() -> None:
    profile = load_profile("pcm_crossbar").with_overrides({"cost.energy_per_mac_j": 1e-13})
    est = estimate(
        profile, NetworkSpec(64, 16, 10), {"synops_dense": 1e5, "synops_effective": 10, "spikes": 0}, 30
    )
    assert est.energy_j == pytest.approx(1e5 * 1e-13)


@pytest.mark.parametrize(
    ("value", "expect"), [("-1.0e-12", "must be >= 0.0, got -1e-12"), ("lots", "number")]
)
def test_a_bad_cost_figure_is_one_line_naming_the_field(digits_run, tmp_path, value, expect) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: loihi2\nname: bad\ncost: {{energy_per_synop_j: {value}}}\n")
    line = one_error_line(cost(str(digits_run), "--profiles", str(bad), "--out", str(tmp_path / "o")))
    assert "cost.energy_per_synop_j" in line and expect in line
    assert not (tmp_path / "o").exists()


def test_a_run_without_checkpoint_is_one_line_naming_the_file(digits_run, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((digits_run / "config.yaml").read_text())
    line = one_error_line(cost(str(run)))
    assert str(run / "checkpoint.pt") in line
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


@pytest.mark.slow
def test_a_weight_resolution_sweep_moves_energy(tmp_path: Path) -> None:
    """Coarser weights round more of them to zero: fewer synaptic events, less energy per inference."""
    args = ["characterize", "--profile", "loihi2", "--task", "digits", "--estimators", "bptt", "--seeds", "1"]
    args += ["--epochs", "0", "--hidden", "16", "--target", "twin", "--workers", "1", "--kind", "deploy"]
    result = CliRunner().invoke(app, [*args, "--sweep", "weights.bits=2,8", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with (tmp_path / "results.csv").open() as fh:
        rows = {r["weights.bits"]: r for r in csv.DictReader(fh)}
    assert float(rows["2"]["connection_sparsity"]) > float(rows["8"]["connection_sparsity"])
    assert float(rows["2"]["synops_effective"]) < float(rows["8"]["synops_effective"])
    assert 0 < float(rows["2"]["energy_j"]) < float(rows["8"]["energy_j"])
    assert float(rows["2"]["footprint_bytes"]) < float(rows["8"]["footprint_bytes"])
    assert (tmp_path / "metric_vs_energy.png").stat().st_size > 0


def test_the_pareto_front_keeps_what_nothing_beats() -> None:
    from chiploop.cost.plots import pareto_front

    points = [(3.0, 0.9), (1.0, 0.5), (2.0, 0.4), (2.0, 0.8), (4.0, 0.85)]
    assert pareto_front(points) == [(1.0, 0.5), (2.0, 0.8), (3.0, 0.9)]


def test_an_unknown_energy_is_null_in_summary_json(tmp_path: Path) -> None:
    RunDir(tmp_path).write_summary({"final": {"test_energy_j": math.nan, "test_latency_s": 0.03}})
    assert '"test_energy_j": null' in (tmp_path / "summary.json").read_text()


def test_a_checkpoint_from_before_the_cost_columns_still_restores(digits_run: Path, tmp_path: Path) -> None:
    import shutil

    import torch

    old = tmp_path / "old"
    shutil.copytree(digits_run, old)
    state = torch.load(old / "checkpoint.pt", weights_only=True)
    state["history"] = [
        {k: v for k, v in r.items() if not k.endswith(COST_COLUMNS)} for r in state["history"]
    ]
    trainer = Trainer.from_run(old, progress=False, plots=False)
    trainer._restore(state)
    assert math.isnan(trainer.history.last["test_energy_j"])
    assert RunDir(old).read_rows("metrics.csv")[0]["test_metric"] == pytest.approx(
        state["history"][0]["test_metric"], rel=1e-5
    )

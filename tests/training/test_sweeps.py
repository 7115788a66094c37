"""Sweep grid machinery: parsing, validation before work, resume, results independent of scheduler."""

import csv
import os

import pytest

from chiploop.chip_profiles import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.training.sweeps import (
    Cell,
    SweepError,
    make_grid,
    parse_axes,
    parse_axis,
    read_results,
    run_sweep,
)

PROFILE = ChipProfile(name="t", noise={"read": {"model": "gaussian_absolute"}})  # read noise to sweep


def square_cell(cell: Cell) -> dict:
    """A deterministic toy cell: the result depends only on the cell."""
    sigma = dict(cell.overrides)["noise.read.sigma"]
    return {"score": sigma * sigma + cell.seed, "estimator_len": len(cell.estimator)}


def dying_cell(cell: Cell) -> dict:
    """A cell whose worker process dies (as when killed, or out of memory)."""
    os._exit(3)


def test_parse_axis_values_are_typed():
    axis = parse_axis("noise.read.sigma=0,0.02,0.05", PROFILE)
    assert axis.field == "noise.read.sigma" and axis.values == (0, 0.02, 0.05)
    assert parse_axis("weights.bits=2,4,8", PROFILE).values == (2, 4, 8)


@pytest.mark.parametrize(
    "text",
    ["noise.read.nope=1,2", "noise.read.sigma=-1", "weights.bits=a,b", "weights.bits=", "noise.read.sigma"],
)
def test_bad_axes_fail_before_work(text):
    with pytest.raises(SweepError, match="sweep"):
        parse_axis(text, PROFILE)


def test_empty_grid_is_an_error():
    with pytest.raises(SweepError, match="empty grid"):
        make_grid([], [], [0])


def test_sweep_resumes_and_is_sorted(tmp_path):
    axis = parse_axis("noise.read.sigma=0,0.1,0.2", PROFILE)
    cells = make_grid([axis], ["bptt", "eprop"], [0, 1])
    assert len(cells) == 12
    first = cells[:5]
    run_sweep(first, square_cell, tmp_path, workers=2)
    assert set(read_results(tmp_path)) == {c.key for c in first}
    seen = []
    run_sweep(cells, square_cell, tmp_path, workers=2, on_done=lambda c, r: seen.append(c.key))
    assert len(seen) == 7 and not set(seen) & {c.key for c in first}
    with (tmp_path / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["cell"] for r in rows] == sorted(c.key for c in cells)
    row = next(r for r in rows if r["cell"] == cells[-1].key)
    assert float(row["score"]) == pytest.approx(0.2 * 0.2 + 1)


def test_a_dead_worker_is_one_sweep_error_and_keeps_what_was_saved(tmp_path):
    axis = parse_axis("noise.read.sigma=0,0.1", PROFILE)
    run_sweep(make_grid([axis], ["bptt"], [0])[:1], square_cell, tmp_path, workers=1)
    saved = (tmp_path / "results.csv").read_bytes()
    with pytest.raises(SweepError, match="worker process died.*run the same command again"):
        run_sweep(make_grid([axis], ["bptt"], [0]), dying_cell, tmp_path, workers=1)
    assert (tmp_path / "results.csv").read_bytes() == saved


def test_axes_that_act_only_together_are_accepted_and_cells_that_cannot_act_are_refused():
    loihi2 = load_profile("loihi2")  # no read noise: its sigma acts only with a read-noise model
    axes = parse_axes(["noise.read.model=gaussian_absolute", "noise.read.sigma=1,2"], loihi2)
    assert [a.values for a in axes] == [("gaussian_absolute",), (1, 2)]
    with pytest.raises(SweepError, match=r"cell noise.read.model=none, noise.read.sigma=1: .*does nothing"):
        parse_axes(["noise.read.model=gaussian_absolute,none", "noise.read.sigma=1,2"], loihi2)
    with pytest.raises(SweepError, match=r"sweep cell noise.read.sigma=1: .*does nothing while noise.read"):
        parse_axes(["noise.read.sigma=1"], loihi2)

"""Sweep grid machinery: parsing, validation before work, resume, results independent of scheduler."""

import csv

import pytest

from chiploop.chip_profiles.model import ChipProfile
from chiploop.training.sweeps import Cell, SweepError, make_grid, parse_axis, read_results, run_sweep

PROFILE = ChipProfile(name="t")


def square_cell(cell: Cell) -> dict:
    """A deterministic toy cell: the result depends only on the cell."""
    sigma = dict(cell.overrides)["noise.read.sigma"]
    return {"score": sigma * sigma + cell.seed, "estimator_len": len(cell.estimator)}


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

"""Sweeps: a grid of cells (profile overrides x estimators x seeds) run on a local process pool or
on a dask.distributed scheduler, each finished cell appended to `results.csv` so that a re-run
resumes where an interrupted one stopped.

The grid machinery here is independent of what a cell does: `run_sweep` takes a picklable
function `cell_fn(cell) -> dict` (see `chiploop.training.characterize`).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ChiploopError, ProfileError

RESULTS = "results.csv"


class SweepError(ChiploopError):
    """A sweep was asked for something that cannot run (bad field, value, grid or scheduler)."""


@dataclass(frozen=True)
class SweepAxis:
    """One swept profile field and its values."""

    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Cell:
    """One point of the grid: profile overrides, estimator and seed."""

    overrides: tuple[tuple[str, Any], ...]
    estimator: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """A stable identifier, also the resume key in results.csv."""
        settings = ",".join(f"{f}={json.dumps(v)}" for f, v in self.overrides)
        return f"{settings}|{self.estimator}|{self.seed}"


def parse_axis(text: str, profile: ChipProfile) -> SweepAxis:
    """Parse `FIELD=V1,V2,...` and check every value against the profile before any work starts."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name or not raw.strip():
        raise SweepError(f"sweep '{text}': expected FIELD=V1,V2,... (e.g. noise.read.sigma=0,0.02,0.05)")
    try:
        values = tuple(yaml.safe_load(token) for token in raw.split(","))
    except yaml.YAMLError as exc:
        raise SweepError(f"sweep '{text}': a value is not valid YAML ({exc.__class__.__name__})") from None
    if any(v is None for v in values):
        raise SweepError(f"sweep '{text}': empty value in the list")
    for value in values:
        try:
            profile.with_overrides({name: value})
        except ProfileError as exc:
            raise SweepError(f"sweep '{text}': {exc}") from None
    return SweepAxis(name, values)


def make_grid(axes: Sequence[SweepAxis], estimators: Sequence[str], seeds: Sequence[int]) -> list[Cell]:
    """Every combination of swept values, estimators and seeds; an empty grid is an error."""
    if not estimators or not seeds:
        raise SweepError("empty grid: give at least one estimator and one seed")
    if len({a.field for a in axes}) != len(axes):
        raise SweepError("a field is swept twice")
    settings = itertools.product(*[[(a.field, v) for v in a.values] for a in axes])
    return [Cell(tuple(s), est, seed) for s in settings for est in estimators for seed in seeds]


def read_results(out_dir: Path, name: str = RESULTS) -> dict[str, dict[str, str]]:
    """Rows already in the results table `name`, by cell key."""
    path = out_dir / name
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["cell"]: row for row in csv.DictReader(fh)}


def _write_results(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: r["cell"])
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _format(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _completed(futures: Iterable, scheduler_kind: str) -> Iterable:
    if scheduler_kind == "dask":
        from distributed import as_completed as dask_as_completed

        return dask_as_completed(futures)
    return as_completed(futures)


def connect_scheduler(address: str):  # noqa: ANN201 - distributed.Client, imported lazily
    """A dask.distributed Client, or a SweepError naming the address when it cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise SweepError("--scheduler needs dask.distributed: pip install 'chiploop[dist]'") from None
    try:
        return Client(address, timeout="5s")
    except (OSError, TimeoutError) as exc:
        raise SweepError(f"scheduler {address} unreachable: {exc}") from None


def run_sweep(
    cells: Sequence[Cell],
    cell_fn: Callable[[Cell], dict[str, Any]],
    out_dir: Path,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    on_done: Callable[[Cell, dict[str, Any]], None] | None = None,
    results: str = RESULTS,
) -> Path:
    """Run the cells not yet in the table `results` and rewrite it sorted by cell key.

    Each finished row is written at once, so a killed sweep loses at most the cells in flight.
    The same cells give the same results.csv whichever scheduler ran them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / results
    done = read_results(out_dir, results)
    todo = [c for c in cells if c.key not in done]
    rows = dict(done)

    def record(cell: Cell, result: dict[str, Any]) -> None:
        row = {"cell": cell.key, "estimator": cell.estimator, "seed": cell.seed}
        row.update({f: _format(v) for f, v in cell.overrides})
        row.update({k: _format(v) for k, v in result.items()})
        rows[cell.key] = row
        _write_results(path, rows.values())
        if on_done is not None:
            on_done(cell, result)

    if todo:
        if scheduler:
            client = connect_scheduler(scheduler)
            try:
                futures = {client.submit(cell_fn, c, pure=False): c for c in todo}
                for fut in _completed(futures, "dask"):
                    record(futures[fut], fut.result())
            finally:
                client.close()
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(cell_fn, c): c for c in todo}
                for fut in _completed(futures, "local"):
                    record(futures[fut], fut.result())
    _write_results(path, rows.values())
    return path

"""Sweeps: a grid of cells (profile overrides x estimators x seeds) run on a local process pool or
on a dask.distributed scheduler, each finished cell saved to `results.csv` at once so that a re-run
resumes where an interrupted one stopped.

The grid machinery here is independent of what a cell does: `run_sweep` takes a picklable
function `cell_fn(cell) -> dict` (see `chiploop.training.characterize`). Local workers leave Ctrl-C
to the parent and die with it (`local_pool`); a results file is written atomically, a Ctrl-C held
until it is saved (`save`), and a failed write is one `OutputError` that leaves the last good file.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

from chiploop.chip_profiles.inert import InertSettingError
from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ChiploopError, ProfileError
from chiploop.outdir import atomic_write_bytes, write_guard

RESULTS = "results.csv"


class SweepError(ChiploopError):
    """A sweep was asked for something that cannot run (bad field, value, grid or scheduler)."""


@dataclass(frozen=True)
class SweepAxis:
    """One swept profile field and its values."""

    field: str
    values: tuple[Any, ...]

    @property
    def text(self) -> str:
        """`FIELD=V1,V2,...` with the values as in the cell keys."""
        return f"{self.field}={','.join(json.dumps(v) for v in self.values)}"


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


Record = Callable[[Cell, dict[str, Any]], None]


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
        except InertSettingError:
            pass  # may act together with another axis: `parse_axes` checks the combinations
        except ProfileError as exc:
            raise SweepError(f"sweep '{text}': {exc}") from None
    return SweepAxis(name, values)


def parse_axes(texts: Sequence[str], profile: ChipProfile) -> list[SweepAxis]:
    """Every `--sweep` parsed, and every combination of their values checked against `profile`:
    a setting that cannot act (`noise.read.sigma` without a read-noise model) is refused unless
    another axis lets it act in every cell."""
    axes = [parse_axis(text, profile) for text in texts]
    for setting in itertools.product(*[[(a.field, v) for v in a.values] for a in axes]):
        try:
            profile.with_overrides(dict(setting))
        except ProfileError as exc:
            cell = ", ".join(f"{f}={v}" for f, v in setting)
            raise SweepError(f"sweep cell {cell}: {exc}") from None
    return axes


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


@contextmanager
def _sigint_handler(handler: Any) -> Iterator[Any]:
    """Run the block with `handler` for SIGINT; yields the handler it replaced (None off the main
    thread, where Python cannot change handlers and Ctrl-C is not delivered anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield previous
    finally:
        signal.signal(signal.SIGINT, previous)


def save(path: Path, data: bytes) -> None:
    """Write a sweep file atomically, a Ctrl-C held until it is saved: never half-written, no
    temporary left behind; a failed write is one OutputError and the previous file stays."""
    caught: list[Any] = []
    with _sigint_handler(lambda signum, frame: caught.append(frame)) as previous:
        atomic_write_bytes(path, data)
    if caught and callable(previous):
        previous(signal.SIGINT, caught[0])


def _csv_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """The rows sorted by cell key, every column any row has, as CSV."""
    rows = sorted(rows, key=lambda r: r["cell"])
    columns = list(dict.fromkeys(c for row in rows for c in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _format(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _exit_when_parent_closes(lifeline: Connection) -> None:
    """Block until the parent's end of `lifeline` closes (it never sends), then end this process."""
    with suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os._exit(1)


def _worker_init(lifeline: Connection) -> None:
    """Pool-worker initializer: Ctrl-C is the parent's to handle; exit when the parent stops the
    pool or dies (even by SIGKILL: the kernel then closes its end of `lifeline`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_parent_closes, args=(lifeline,), daemon=True).start()


@contextmanager
def local_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A spawn-context process pool whose workers never outlive the sweep.

    Every worker watches a pipe whose only write end this process holds. If the block fails or is
    interrupted, closing that end stops every worker at once (its cell unfinished); if this process
    is killed, the kernel closes it and the workers exit on their own.
    """
    context = get_context("spawn")
    lifeline, held = context.Pipe(duplex=False)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(lifeline,))
    try:
        yield pool
    except BaseException:
        held.close()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        held.close()
        lifeline.close()


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


def _run_local(
    pool: ProcessPoolExecutor, cell_fn: Callable[[Cell], dict[str, Any]], todo: Sequence[Cell], record: Record
) -> None:
    # Workers spawned here inherit an ignored SIGINT: a Ctrl-C while they start up is the parent's alone.
    with _sigint_handler(signal.SIG_IGN):
        futures = {pool.submit(cell_fn, c): c for c in todo}
    for fut in as_completed(futures):
        try:
            result = fut.result()
        except BrokenProcessPool:
            raise SweepError(
                "a worker process died (killed, or out of memory?); the cells saved so far are kept:"
                " run the same command again to resume"
            ) from None
        record(futures[fut], result)


def _run_dask(
    address: str, cell_fn: Callable[[Cell], dict[str, Any]], todo: Sequence[Cell], record: Record
) -> None:
    from distributed import as_completed as dask_as_completed

    client = connect_scheduler(address)
    futures: dict[Any, Cell] = {}
    try:
        for c in todo:
            futures[client.submit(cell_fn, c, pure=False)] = c
        for fut in dask_as_completed(futures):
            record(futures[fut], fut.result())
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        client.close()


def run_sweep(
    cells: Sequence[Cell],
    cell_fn: Callable[[Cell], dict[str, Any]],
    out_dir: Path,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    pool: ProcessPoolExecutor | None = None,
    on_done: Record | None = None,
    results: str = RESULTS,
) -> Path:
    """Run the cells not yet in the table `results`, saving it (sorted by cell key) after each one.

    A killed sweep loses at most the cells in flight. The same cells give the same table whichever
    scheduler ran them. Locally the cells run on `pool` if given, else on a `local_pool(workers)`.
    """
    with write_guard(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / results
    rows = read_results(out_dir, results)
    todo = [c for c in cells if c.key not in rows]

    def record(cell: Cell, result: dict[str, Any]) -> None:
        row = {"cell": cell.key, "estimator": cell.estimator, "seed": cell.seed}
        row.update({f: _format(v) for f, v in cell.overrides})
        row.update({k: _format(v) for k, v in result.items()})
        rows[cell.key] = row
        save(path, _csv_bytes(rows.values()))
        if on_done is not None:
            on_done(cell, result)

    if not todo:
        return path
    if scheduler:
        _run_dask(scheduler, cell_fn, todo, record)
    elif pool is not None:
        _run_local(pool, cell_fn, todo, record)
    else:
        with local_pool(workers) as own:
            _run_local(own, cell_fn, todo, record)
    return path

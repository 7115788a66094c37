"""A training run on disk: config.yaml, metrics.csv, timing.csv, checkpoint.pt, summary.json.

`metrics.csv` holds only what the run computed (deterministic for a seed, byte for byte); wall-clock
times go to `timing.csv`. Every file but the appended CSV rows is written atomically (temporary file
+ `os.replace`), so a failed write (disk full, read-only) leaves the last good file and no temporary
behind, and is one `OutputError`. The checkpoint holds only tensors and plain Python values, so it
loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from chiploop.cost import COST_COLUMNS
from chiploop.errors import TrainingError
from chiploop.outdir import atomic_write_bytes, entries, write_guard

CONFIG = "config.yaml"
METRICS = "metrics.csv"
TIMING = "timing.csv"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_metric",
    "test_loss",
    "test_metric",
    "spikes_per_neuron_per_sample",
    "chip_runs",
    *(f"test_{c}" for c in COST_COLUMNS),
)
TIMING_COLUMNS = ("epoch", "wall_chip_s", "wall_host_s")
CHECKPOINT_FORMAT = 1
_CHECKPOINT_KEYS = ("format", "epoch", "weights", "optimizer", "rng", "history", "timing")


def default_run_dir(
    profile: str,
    task: str,
    estimator: str,
    mode: str,
    n_hidden: int | tuple[int, ...],
    seed: int,
    root: str | Path = "runs",
) -> Path:
    """`runs/<profile>-<task>-<estimator>-<mode>-h<hidden>-s<seed>` (several hidden layers: h256-128),
    with `-2`, `-3`, ... appended when that directory already holds a run (runs that differ
    otherwise never share a directory)."""
    hidden = "-".join(map(str, n_hidden)) if isinstance(n_hidden, tuple) else n_hidden
    base = Path(root) / f"{profile}-{task}-{estimator}-{mode}-h{hidden}-s{seed}"
    path, n = base, 1
    while entries(path):
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def format_value(value: Any) -> str:
    """A CSV cell: ints as ints, floats with 6 significant digits (stable across runs)."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return format(float(value), ".6g")


class RunDir:
    """The files of one run directory; creates the directory on first write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def _make(self) -> None:
        with write_guard(self.path):
            self.path.mkdir(parents=True, exist_ok=True)

    # config ---------------------------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> None:
        self._make()
        text = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
        atomic_write_bytes(self.file(CONFIG), text.encode())

    def read_config(self) -> dict[str, Any]:
        path = self.file(CONFIG)
        if not path.is_file():
            raise TrainingError(f"no {CONFIG} in run directory {self.path}: expected a run to resume")
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise TrainingError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(config, dict):
            raise TrainingError(f"{path} must hold a mapping, got {type(config).__name__}")
        return config

    # metrics and timing ---------------------------------------------------------------------------
    def write_rows(self, name: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        """(Re)write a whole CSV table; used at start and on resume."""
        self._make()
        lines = [",".join(columns)] + [",".join(format_value(row[c]) for c in columns) for row in rows]
        atomic_write_bytes(self.file(name), ("\n".join(lines) + "\n").encode())

    def append_row(self, name: str, columns: Sequence[str], row: Mapping[str, Any]) -> None:
        """Append one row (a resume rewrites the table from the checkpoint, mending a torn last line)."""
        with write_guard(self.file(name)), self.file(name).open("a") as fh:
            fh.write(",".join(format_value(row[c]) for c in columns) + "\n")

    def read_rows(self, name: str) -> list[dict[str, float]]:
        """Rows of a CSV table as floats (`epoch` and `chip_runs` as ints)."""
        with self.file(name).open(newline="") as fh:
            return [
                {k: int(v) if k in ("epoch", "chip_runs") else float(v) for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]

    # checkpoint -----------------------------------------------------------------------------------
    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Write `checkpoint.pt` atomically; `state` must hold the keys of `load_checkpoint`."""
        missing = [k for k in _CHECKPOINT_KEYS if k not in state]
        if missing:
            raise TrainingError(f"checkpoint state lacks {missing}; expected keys {list(_CHECKPOINT_KEYS)}")
        self._make()
        buffer = io.BytesIO()
        torch.save(dict(state), buffer)
        atomic_write_bytes(self.file(CHECKPOINT), buffer.getvalue())

    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).is_file()

    def load_checkpoint(self) -> dict[str, Any]:
        """Load and check `checkpoint.pt`; never unpickles code (weights_only=True)."""
        path = self.file(CHECKPOINT)
        if not path.is_file():
            raise TrainingError(f"no {CHECKPOINT} in {self.path}: nothing to resume from")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, zip errors...
            raise TrainingError(
                f"checkpoint {path} is corrupt or unsafe: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(state, dict) or any(k not in state for k in _CHECKPOINT_KEYS):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise TrainingError(
                f"checkpoint {path} is corrupt: expected keys {list(_CHECKPOINT_KEYS)}, got {got}"
            )
        if state["format"] != CHECKPOINT_FORMAT:
            raise TrainingError(
                f"checkpoint {path} has format {state['format']!r}, expected {CHECKPOINT_FORMAT}"
            )
        bad = [k for k, w in state["weights"].items() if not isinstance(w, torch.Tensor)]
        if bad or not isinstance(state["epoch"], int):
            raise TrainingError(
                f"checkpoint {path} is corrupt: weights {bad} or epoch {state['epoch']!r} invalid"
            )
        return state

    # summary --------------------------------------------------------------------------------------
    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write `summary.json`; a NaN (an energy no cited figure gives) is written as null."""
        self._make()
        text = json.dumps(_nan_to_none(dict(summary)), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(self.file(SUMMARY), text.encode())

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.file(SUMMARY).read_text())


def _nan_to_none(value: Any) -> Any:
    """`value` with every float NaN, in nested dicts and lists, replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value

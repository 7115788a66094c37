"""What every recipe shares: the result type, results.csv / REPORT.md writers, figures, fits.

A recipe writes into its `out_dir`: `results.csv` (one row per measurement), PNG figures and
`REPORT.md` (claim, setup, measured numbers, verdict). `RecipeResult` is what `run` returns.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin import TorchTwin
from chiploop.errors import TrainingError
from chiploop.training.plots import save_figure
from chiploop.training.stepping import Stepper, layer_optimizer
from chiploop.training.tasks import Batch
from chiploop.training.units import layer_units


@dataclass
class RecipeResult:
    """A recipe's outcome: its rows, the trends it checked (name → agrees?), numbers, files."""

    name: str
    rows: list[dict[str, Any]]
    trends: dict[str, bool]
    numbers: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        """True iff every checked trend agrees with the claim."""
        return all(self.trends.values())


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Rows (dicts, the union of their keys as columns in first-seen order) as a CSV file."""
    if not rows:
        raise TrainingError(f"no rows to write to {path}")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k, "")) for k in columns})
    return path


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of `rows` (floats to 4 significant digits)."""
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    path: Path,
    title: str,
    claim: str,
    setup: str,
    results: str,
    trends: Mapping[str, bool],
    verdict: str,
    figures: Sequence[Path] = (),
    indicative: bool = False,
) -> Path:
    """REPORT.md: claim, setup, measured numbers, each trend with agrees / does not agree, verdict.

    indicative: a reduced-scale run, too small to refute a trend: one it does not show is reported
    as not seen at this scale, not as disagreeing."""
    lines = [
        f"# {title}",
        "",
        "## Claim",
        claim.strip(),
        "",
        "## Setup",
        setup.strip(),
        "",
        "## Measured",
        results.strip(),
        "",
        "## Trends",
    ]
    missing = "not seen at this reduced scale (the full run decides)" if indicative else "does NOT agree"
    lines += [f"- {name}: **{'agrees' if ok else missing}**" for name, ok in trends.items()]
    lines += ["", "## Verdict", verdict.strip(), ""]
    if figures:
        lines += ["## Figures"] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    path.write_text("\n".join(lines))
    return path


def save(fig: Any, path: Path) -> Path:
    """Save a figure as PNG (tight layout, 120 dpi) and close it."""
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit log y = slope·log x + intercept; returns (slope, intercept)."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (no tie correction; enough for continuous measurements)."""
    rx = np.argsort(np.argsort(np.asarray(x, float)))
    ry = np.argsort(np.argsort(np.asarray(y, float)))
    return float(np.corrcoef(rx, ry)[0, 1])


def scaled(value: float, scale: float, minimum: int = 1) -> int:
    """`round(value · scale)`, at least `minimum`: how recipes shrink their sizes with `scale`."""
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise TrainingError(f"scale must be a finite number > 0, got {scale!r}")
    return max(minimum, int(round(value * scale)))


def generator(seed: int, *stream: int) -> torch.Generator:
    """A torch Generator for one named stream of a recipe, derived from (seed, *stream)."""
    state = np.random.SeedSequence([seed, *stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def steps(items: Sequence[Any], progress: bool, description: str) -> Iterator[Any]:
    """Iterate `items`, with a rich progress bar when `progress`."""
    if not progress:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description)


def tidy_log_axis(axis: Any, ticks: Sequence[float]) -> None:
    """A log axis labelled at `ticks` only (plain numbers, no crowded minor labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    axis.set_major_locator(FixedLocator(list(ticks)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread (small networks on a shared 2-core machine), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def student(
    profile: ChipProfile,
    spec: NetworkSpec,
    seed: int,
    init_scale: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> TorchTwin:
    """A TorchTwin initialised like the Trainer does: N(0, (init_scale·unit)²/fan_in) per layer."""
    twin = TorchTwin(profile, spec, seed=seed, dtype=dtype)
    twin.init_weights(generator(seed, 1), scale=init_scale)
    units = layer_units(profile, spec)
    with torch.no_grad():
        for name, p in twin.weights.items():
            p.mul_(units[name] / profile.neuron.nominal("threshold"))
    return twin


def twin_loss(
    twin: TorchTwin, task: Any, batch: Batch, weights: Mapping[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The task loss of the twin's forward on `batch` (differentiable; `weights` default: the twin's)."""
    out = twin(batch.inputs.to(twin.dtype), weights=None if weights is None else dict(weights))
    return task.loss(out.v["out"], batch.targets)


def train_epochs(
    twin: TorchTwin,
    task: Any,
    estimator: Any,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    optimizer: str = "sgd",
    stop: Callable[[], bool] | None = None,
) -> list[float]:
    """Train `twin` with an estimator's gradients (the Trainer's training step, `Stepper`, on the
    twin's own weights); returns the mean training loss of each epoch.

    optimizer "sgd": w ← w − lr·ĝ with one scalar rate (the setting of the bias/variance theory);
    "adam": Adam with step lr·unit per layer (`layer_units`, as the Trainer). `stop` is asked after every
    epoch; training ends early when it returns True.
    """
    if optimizer == "adam":
        units = layer_units(twin.profile, twin.spec)
        rates = {k: lr * units[k] for k in twin.weights}
    elif optimizer == "sgd":
        rates = dict.fromkeys(twin.weights, lr)
    else:
        raise TrainingError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    stepper = Stepper(twin, estimator, task, layer_optimizer(optimizer, twin, rates))

    def check(est: Any) -> None:
        if not math.isfinite(est.loss):
            raise TrainingError(f"{estimator.name}: loss became {est.loss} (lr {lr} too large?)")

    gen = generator(seed, 2)
    losses = []
    for _ in range(epochs):
        seen = [stepper.step(batch, check).loss for batch in task.batches("train", batch_size, gen)]
        losses.append(float(np.mean(seen)))
        if stop is not None and stop():
            break
    return losses

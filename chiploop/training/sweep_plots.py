"""PNG figures of a sweep: metric vs swept value, heatmap and metric vs energy (results.csv), bias
vs variance and λ_max vs gap (per model: models.csv of a deploy sweep, results.csv of a train
sweep). Each figure is written atomically; a failed write is one OutputError."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chiploop.training.plots import pyplot, save_figure

# Every file `write_sweep_plots` may write (glob patterns): `--overwrite` deletes these.
PLOT_FILES = (
    "metric_vs_*.png",
    "heatmap_*.png",
    "bias_vs_variance.png",
    "lambda_max_vs_gap.png",
    "metric_vs_energy.png",
)
DPI = 120


def _rows(results: Path) -> list[dict[str, str]]:
    with results.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _sorted_values(rows: list[dict[str, str]], field: str) -> list[str]:
    values = sorted({r[field] for r in rows}, key=lambda v: (np.isnan(_num(v)), _num(v), v))
    return values


def plot_metric_vs_value(
    results: Path, field: str, out: Path, metric: str = "test_metric", others: Sequence[str] = ()
) -> Path:
    """Metric (mean ± std over seeds) against one swept field: a line per estimator and per setting
    of the `others` swept fields."""
    plt = pyplot()
    rows = _rows(results)
    values = _sorted_values(rows, field)
    x = np.array([_num(v) for v in values])
    numeric = not np.isnan(x).any()
    lines = sorted(
        {(r["estimator"], *(r[o] for o in others)) for r in rows}, key=lambda k: (k[0], *map(_num, k[1:]))
    )
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for key in lines:
        mine = [r for r in rows if (r["estimator"], *(r[o] for o in others)) == key]
        per = [[_num(r[metric]) for r in mine if r[field] == v] for v in values]
        mean = [np.mean(p) if p else np.nan for p in per]
        std = [np.std(p) if p else np.nan for p in per]
        label = ", ".join([key[0], *(f"{o}={v}" for o, v in zip(others, key[1:], strict=True))])
        ax.errorbar(
            x if numeric else np.arange(len(values)), mean, yerr=std, marker="o", capsize=3, label=label
        )
    if not numeric:
        ax.set_xticks(np.arange(len(values)), values)
    ax.set_xlabel(field)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(f"{metric} vs {field}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out, dpi=DPI)


def plot_heatmap(
    results: Path, fields: Sequence[str], estimator: str, out: Path, metric: str = "test_metric"
) -> Path:
    """Mean metric over seeds on the grid of two swept fields, for one estimator."""
    plt = pyplot()
    rows = [r for r in _rows(results) if r["estimator"] == estimator]
    fx, fy = fields
    xs, ys = _sorted_values(rows, fx), _sorted_values(rows, fy)
    grid = np.full((len(ys), len(xs)), np.nan)
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            cell = [_num(r[metric]) for r in rows if r[fx] == xv and r[fy] == yv]
            if cell:
                grid[i, j] = np.mean(cell)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
    for i in range(len(ys)):
        for j in range(len(xs)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(np.arange(len(xs)), xs)
    ax.set_yticks(np.arange(len(ys)), ys)
    ax.set_xlabel(fx)
    ax.set_ylabel(fy)
    ax.set_title(f"{metric} ({estimator})")
    fig.colorbar(im, ax=ax, label=metric)
    fig.tight_layout()
    return save_figure(fig, out, dpi=DPI)


def _log_axis(set_scale, values: list[float]) -> None:  # noqa: ANN001 - an Axes.set_?scale method
    """Log scale; symlog linear below the smallest positive value when exact zeros must show."""
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values):
        set_scale("log")
    elif positive:
        set_scale("symlog", linthresh=min(positive) / 2)


def _scatter(results: Path, xcol: str, ycol: str, out: Path, title: str, logx: bool, logy: bool) -> Path:
    plt = pyplot()
    rows = _rows(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    for est in sorted({r["estimator"] for r in rows}):
        pts = np.array([(_num(r[xcol]), _num(r[ycol])) for r in rows if r["estimator"] == est])
        ax.scatter(pts[:, 0], pts[:, 1], label=est, alpha=0.8)
    if logx:
        _log_axis(ax.set_xscale, [_num(r[xcol]) for r in rows])
    if logy:
        _log_axis(ax.set_yscale, [_num(r[ycol]) for r in rows])
    ax.set_xlabel(xcol)
    ax.set_ylabel(ycol)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="estimator")
    fig.tight_layout()
    return save_figure(fig, out, dpi=DPI)


def plot_bias_variance(models: Path, out: Path) -> Path:
    """Bias norm against variance of each estimator at the trained weights (one point per model)."""
    return _scatter(models, "variance", "bias_norm", out, "gradient bias vs variance (vs bptt)", True, True)


def plot_curvature_vs_gap(models: Path, out: Path) -> Path:
    """Leading Hessian eigenvalue against generalization gap (one point per model)."""
    return _scatter(models, "lambda_max", "gen_gap", out, "λ_max vs generalization gap", True, False)


def plot_metric_vs_energy(results: Path, fields: Sequence[str], out: Path) -> Path:
    """Test metric against energy per inference, one point per cell labelled with its swept values,
    and the Pareto front."""
    from chiploop.cost.plots import plot_pareto

    rows = _rows(results)
    points = [
        (
            " ".join(f"{f.rsplit('.', 1)[-1]}={r[f]}" for f in fields) + f" {r['estimator']} s{r['seed']}",
            _num(r["energy_j"]),
            _num(r["test_metric"]),
        )
        for r in rows
    ]
    return plot_pareto(points, out, "test metric", "test metric vs energy per inference (one point per cell)")


def write_sweep_plots(results: Path, fields: Sequence[str], models: Path | None = None) -> list[Path]:
    """Every figure that fits the swept fields; returns their paths. `models`: the table of the
    trained models when it is not results.csv (deploy sweeps)."""
    out_dir = results.parent
    models = results if models is None else models
    paths = [
        plot_metric_vs_value(results, f, out_dir / f"metric_vs_{f}.png", others=[o for o in fields if o != f])
        for f in fields
    ]
    if len(fields) == 2:
        for est in sorted({r["estimator"] for r in _rows(results)}):
            paths.append(plot_heatmap(results, fields, est, out_dir / f"heatmap_{est}.png"))
    paths.append(plot_metric_vs_energy(results, fields, out_dir / "metric_vs_energy.png"))
    paths.append(plot_bias_variance(models, out_dir / "bias_vs_variance.png"))
    paths.append(plot_curvature_vs_gap(models, out_dir / "lambda_max_vs_gap.png"))
    return paths

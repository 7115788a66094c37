"""Accuracy against energy per inference, with the Pareto front (more accuracy for less energy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from chiploop.training.plots import pyplot, save_figure


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points `(energy, metric)` no other point beats on both (less energy, higher metric)."""
    front, best = [], -math.inf
    for energy, metric in sorted(points, key=lambda p: (p[0], -p[1])):
        if metric > best:
            front.append((energy, metric))
            best = metric
    return front


def plot_pareto(
    points: Sequence[tuple[str, float, float]], out: Path, metric_name: str = "test metric", title: str = ""
) -> Path:
    """Scatter of `(label, energy_j, metric)`, log energy axis, front drawn; points without an energy
    estimate are named under the axes instead."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    known = [(lab, e, m) for lab, e, m in points if math.isfinite(e) and e > 0 and math.isfinite(m)]
    for label, energy, metric in known:
        ax.scatter(energy, metric, alpha=0.8)
        ax.annotate(label, (energy, metric), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = pareto_front([(e, m) for _, e, m in known])
    if front:
        ax.plot(*zip(*front, strict=True), color="black", lw=1, ls="--", label="Pareto front")
        ax.legend(fontsize=8)
    if known:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels crowd a narrow range
    unknown = sorted({lab for lab, e, _ in points if not (math.isfinite(e) and e > 0)})
    if unknown:
        ax.text(0, -0.22, "no energy estimate: " + ", ".join(unknown), transform=ax.transAxes, fontsize=7)
    ax.set_xlabel("energy per inference (J)")
    ax.set_ylabel(metric_name)
    ax.set_title(title or f"{metric_name} vs energy per inference")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out, dpi=120)

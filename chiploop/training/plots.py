"""PNG plots of a training run (matplotlib, Agg backend): learning curves, a spike raster measured
on the chip, weight histograms before and after the chip's quantization and noise."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chiploop.outdir import atomic_write_bytes

if TYPE_CHECKING:
    from chiploop.training.loop import Trainer

CURVES, RASTER, WEIGHTS = "learning_curves.png", "raster.png", "weights.png"


def pyplot():  # noqa: ANN201 - the matplotlib.pyplot module
    """matplotlib.pyplot on the Agg backend (files only); the one place chiploop imports it."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("plots need matplotlib: pip install matplotlib") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Write `fig` as PNG to `path` atomically (a full disk: one OutputError, no torn file); close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_learning_curves(rows: Sequence[Mapping[str, float]], metric_name: str, path: Path) -> None:
    """Train/test loss and metric per epoch (all measured on the chip)."""
    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split in ("train", "test"):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in rows], marker="o", label=split)
        ax_metric.plot(epochs, [r[f"{split}_metric"] for r in rows], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss on the chip")
    ax_metric.set(xlabel="epoch", ylabel=metric_name, title=f"{metric_name} on the chip")
    ax_metric.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_raster(inputs: np.ndarray, hidden: np.ndarray, out_v: np.ndarray, path: Path) -> None:
    """Input and hidden spikes `[T, N]` and readout membranes `[T, n_out]` of one sample."""
    plt = pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    for ax, raster, name in ((axes[0], inputs, "input"), (axes[1], hidden, "hidden")):
        t, n = np.nonzero(raster)
        ax.scatter(t, n, s=4, marker="|", color="k")
        ax.set(ylabel=f"{name} neuron", ylim=(-0.5, raster.shape[1] - 0.5))
    axes[2].plot(np.arange(out_v.shape[0]), out_v)
    axes[2].set(xlabel="step", ylabel="readout v")
    axes[0].set_title("a test sample on the chip")
    fig.tight_layout()
    save_figure(fig, path)


def plot_weights(shadow: Mapping[str, np.ndarray], on_chip: Mapping[str, np.ndarray], path: Path) -> None:
    """Per layer: histogram of the float (shadow) weights and of the weights the chip holds."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(shadow), figsize=(4 * len(shadow), 3.2), squeeze=False)
    for ax, name in zip(axes[0], shadow, strict=True):
        lo = min(shadow[name].min(), on_chip[name].min())
        hi = max(shadow[name].max(), on_chip[name].max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
        ax.hist(shadow[name].ravel(), bins=bins, alpha=0.6, label="float (shadow)")
        ax.hist(on_chip[name].ravel(), bins=bins, alpha=0.6, label="on chip")
        ax.set(title=name, xlabel="weight")
    axes[0][0].legend()
    fig.tight_layout()
    save_figure(fig, path)


def write_plots(trainer: Trainer) -> list[Path]:
    """All plots of a trained run into its directory; returns their paths.

    The raster comes from one more chip run on the first test batch (weights already on the chip).
    """
    out = trainer.run.path
    plot_learning_curves(trainer.history.rows, trainer.task.metric_name, out / CURVES)
    batch = next(iter(trainer.task.batches("test", trainer.eval_batch_size)))
    x = np.zeros((trainer.eval_batch_size, *batch.inputs.shape[1:]), np.uint8)
    x[: len(batch.inputs)] = batch.inputs.numpy()
    rec = trainer.chip.run(x)
    plot_raster(x[0], rec.spikes["hidden"][0], np.asarray(rec.v["out"][0], dtype=np.float64), out / RASTER)
    plot_weights(trainer.float_weights(), trainer.chip.read_weights(), out / WEIGHTS)
    return [out / CURVES, out / RASTER, out / WEIGHTS]

"""Progress of a training run: a rich display on stderr and the closing summary table on stdout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from chiploop.training.history import History


class TrainingProgress:
    """A rich progress display on stderr (epochs x batches) and the closing summary table on stdout;
    inert if disabled."""

    def __init__(self, epochs: int, n_batches: int, done: int, enabled: bool = True) -> None:
        self.enabled, self.n_batches = enabled, n_batches
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
            )
            self._epochs = self._progress.add_task("epochs", total=epochs, completed=done, info="")
            self._batches = self._progress.add_task("batches", total=n_batches, info="")

    def __enter__(self) -> TrainingProgress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def advance_batch(self, loss: float) -> None:
        if self.enabled:
            self._progress.update(self._batches, advance=1, info=f"loss {loss:.4f}")

    def end_epoch(self, row: Mapping[str, float]) -> None:
        if self.enabled:
            info = f"test {row['test_metric']:.4f}  train {row['train_metric']:.4f}"
            self._progress.update(self._epochs, advance=1, info=info)
            self._progress.reset(self._batches, total=self.n_batches, info="")

    @staticmethod
    def print_summary(history: History, metric_name: str, run_dir: Path) -> None:
        """A rich table of every epoch's chip-measured metrics."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"training on the chip ({run_dir})")
        for col in (
            "epoch",
            "train loss",
            f"train {metric_name}",
            "test loss",
            f"test {metric_name}",
            "spikes/neuron/sample",
            "chip runs",
        ):
            table.add_column(col, justify="right")
        for r in history.rows:
            table.add_row(
                str(r["epoch"]),
                f"{r['train_loss']:.4f}",
                f"{r['train_metric']:.4f}",
                f"{r['test_loss']:.4f}",
                f"{r['test_metric']:.4f}",
                f"{r['spikes_per_neuron_per_sample']:.2f}",
                str(r["chip_runs"]),
            )
        Console().print(table)

"""History: the per-epoch rows of a run's metrics.csv and timing.csv."""

from __future__ import annotations

from dataclasses import dataclass, field

from chiploop.errors import TrainingError


@dataclass
class History:
    """Per-epoch rows of `metrics.csv` (row 0: before training) and of `timing.csv`."""

    rows: list[dict[str, float]] = field(default_factory=list)
    timing: list[dict[str, float]] = field(default_factory=list)

    def column(self, name: str) -> list[float]:
        """One column of the metrics over epochs."""
        return [row[name] for row in self.rows]

    @property
    def last(self) -> dict[str, float]:
        if not self.rows:
            raise TrainingError("History is empty: no epoch was evaluated")
        return self.rows[-1]

    @property
    def best(self) -> dict[str, float]:
        """The row with the highest test metric (first one on ties)."""
        if not self.rows:
            raise TrainingError("History is empty: no epoch was evaluated")
        return max(self.rows, key=lambda r: r["test_metric"])

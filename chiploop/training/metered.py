"""The chip a training run talks to: timed and counted (`MeteredChip`), its noise restartable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from chiploop.chip.protocol import Chip, Recording


class MeteredChip:
    """A Chip that delegates to another, timing its calls and counting its runs."""

    def __init__(self, chip: Chip) -> None:
        self.chip = chip
        self.profile, self.spec = chip.profile, chip.spec
        self.seconds = 0.0
        self.runs = 0

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def write_weights(self, weights: dict[str, np.ndarray]) -> None:
        with self._timed():
            self.chip.write_weights(weights)

    def read_weights(self) -> dict[str, np.ndarray]:
        with self._timed():
            return self.chip.read_weights()

    def run(self, inputs: np.ndarray, record_v: bool = True) -> Recording:
        with self._timed():
            rec = self.chip.run(inputs, record_v=record_v)
        self.runs += 1
        return rec

    def advance_time(self, seconds: float) -> None:
        self.chip.advance_time(seconds)

    def reseed_noise(self, key: int | list[int]) -> None:
        """The wrapped chip's `reseed_noise` (AttributeError for a chip without one)."""
        self.chip.reseed_noise(key)

    def close(self) -> None:
        self.chip.close()


def reseed_chip_noise(chip: Chip, seed: int, epoch: int) -> bool:
    """Restart a chip's noise streams from `(seed, epoch)` through `Chip.reseed_noise`; frozen state
    (mismatch, faults, programmed weights) is untouched. False for a chip without `reseed_noise` (a
    user's object written before the protocol had it): its noise streams then run on across epochs, so a
    resumed run may differ from an uninterrupted one (the Trainer warns once).
    """
    reseed = getattr(chip, "reseed_noise", None)
    if not callable(reseed):
        return False
    reseed([seed, epoch])
    return True

"""The Chip protocol every backend implements, and the Recording a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile


@dataclass
class Recording:
    """What a chip run produced: per-layer arrays `[B, T, N]` and metadata.

    spikes: uint8 per layer (each hidden layer: "hidden", "hidden2", ...; "out" for a spiking readout).
    v: membrane after the step's reset per layer (hidden layers, "out"); float32, or int64 for fixed
       arithmetic. Empty when the run was asked not to record membranes.
    meta: at least `dropped_spikes` (int), `weights_generation` (int), `wall_time_s` (float).
    currents: synaptic currents per layer ("hidden", "hidden_2", "out") after the step, dtype as v;
       only from backends asked to record them (`record_i=True`), else empty.
    """

    spikes: dict[str, np.ndarray]
    v: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    currents: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class Chip(Protocol):
    """A neuromorphic chip (emulated or real) that runs a NetworkSpec under a ChipProfile."""

    profile: ChipProfile
    spec: NetworkSpec

    def write_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Program the weights (model units, `[pre, post]`); the chip quantizes and adds device noise."""

    def read_weights(self) -> dict[str, np.ndarray]:
        """Effective weights now on the chip (after quantization, programming noise, faults, drift)."""

    def run(self, inputs: np.ndarray, record_v: bool = True) -> Recording:
        """Run a batch of input rasters `[B, T, n_in]` (0/1) from rest."""

    def reseed_noise(self, key: int | list[int]) -> None:
        """Restart the chip's noise streams (rounding, programming, drift, read) from `key`; frozen
        state (mismatch, faults, programmed weights, clock) stays. The Trainer calls it every epoch."""

    def advance_time(self, seconds: float) -> None:
        """Let the chip's clock run (drift grows with time since programming)."""

    def close(self) -> None:
        """Release the chip's resources."""

"""ChipBase: the plumbing every Chip backend shares.

A backend states what it runs (`_run_batch`); the base owns the rest: the neuron-model check and
the profile's design rules at open, the DeviceModel (weights written through it, read back, the
clock, frozen mismatch, noise reseeding), the open/closed state and the Recording (hidden arrays
split per layer, the meta fields every backend reports).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from chiploop.chip.device_model import DeviceModel, validate_inputs
from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Recording
from chiploop.chip.rules import spiking_only
from chiploop.chip_profiles.model import ChipProfile
from chiploop.chip_profiles.rules import check_network
from chiploop.errors import ChipError


class ChipBase:
    """A Chip for `spec` under `profile` whose device non-idealities come from
    `DeviceModel(profile, spec, seed)` (attribute `device`).

    Raises ChipError for a rate-neuron profile unless the backend runs rates (`runs_rates`), and
    DesignRuleError when `spec` breaks the profile's limits; `name` ("emulator", a board's URL)
    names the backend in the first.
    """

    runs_rates: ClassVar[bool] = False  # the backend runs `neuron.model: rate` profiles

    def __init__(self, profile: ChipProfile, spec: NetworkSpec, seed: int = 0, *, name: str) -> None:
        if not self.runs_rates:
            spiking_only(profile, name)
        check_network(profile, spec)
        self.profile, self.spec = profile, spec
        self.device = DeviceModel(profile, spec, seed)
        self._closed = False

    # -- Chip protocol --------------------------------------------------------------------------
    def write_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Program weights through the device model (validated first: on error the previous stay)."""
        self._check_open()
        self.device.write(weights)

    def read_weights(self) -> dict[str, np.ndarray]:
        """Effective weights now on the chip (quantized, noisy, faulty, drifted; no read noise)."""
        return self.device.read()

    def advance_time(self, seconds: float) -> None:
        """Let the chip clock run (drift grows with time since programming)."""
        self.device.advance_time(seconds)

    def reseed_noise(self, key: int | list[int]) -> None:
        """Restart the device's noise streams from `key`; frozen state (mismatch, faults, weights) stays."""
        self.device.reseed_noise(key)

    def run(self, inputs: np.ndarray, record_v: bool = True, record_i: bool = False) -> Recording:
        """Run a batch `[B, T, n_in]` of 0/1 rasters from rest.

        record_v: record membranes (`Recording.v`); record_i: the synaptic currents
        (`Recording.currents`), on backends that can (others raise ChipError).
        """
        self._check_open()
        start = time.perf_counter()
        rec = self._run_batch(validate_inputs(inputs, self.spec), record_v, record_i)
        rec.meta["wall_time_s"] = time.perf_counter() - start
        return rec

    def close(self) -> None:
        """Release the chip (later `run` / `write_weights` raise ChipError)."""
        self._closed = True

    # -- for backends ---------------------------------------------------------------------------
    def _run_batch(self, x: np.ndarray, record_v: bool, record_i: bool) -> Recording:
        """Run validated inputs `x` `[B, T, n_in]` uint8 (the backend's job)."""
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise ChipError(f"{type(self).__name__}: expected an open chip, got one that was closed")

    def _recording(
        self,
        spikes: dict[str, np.ndarray],
        v: dict[str, np.ndarray],
        currents: dict[str, np.ndarray] | None = None,
        *,
        per_layer: bool = False,
        **meta: Any,
    ) -> Recording:
        """A Recording with `weights_generation` and the backend's `meta` (`run` adds `wall_time_s`).

        Arrays are keyed by layer ("hidden", "hidden2", ..., "out"), or with `per_layer=False` "hidden"
        holds all hidden neurons, layer after layer, and is split here. `dropped_hidden_spikes` and
        `dropped_input_spikes`, if given, add up to `dropped_spikes`.
        """
        if "dropped_hidden_spikes" in meta:
            meta = {"dropped_spikes": meta["dropped_hidden_spikes"] + meta["dropped_input_spikes"], **meta}
        meta["weights_generation"] = self.device.generation
        split = (lambda a: a) if per_layer else self._by_layer
        return Recording(spikes=split(spikes), v=split(v), meta=meta, currents=split(currents or {}))

    def _by_layer(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`arrays` with its all-hidden-neurons "hidden" entry (if any) split per layer."""
        if "hidden" not in arrays:
            return dict(arrays)
        return {**self.spec.by_layer(arrays["hidden"]), **{k: a for k, a in arrays.items() if k != "hidden"}}

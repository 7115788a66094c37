"""BrianChip: the default emulator — docs/dynamics.md run by Brian2, a whole batch per simulation.

The network of a batch (B block-diagonal copies, see `brian_net`) is compiled once per `Shape` in
Brian2's `cpp_standalone` mode and cached on disk (`brian_cache`); each run only writes two small
files (params row incl. shared weights, bit-packed input raster), runs the binary and reads the
spike monitors back (`brian_run`). Device non-idealities come from `DeviceModel`; the dynamics,
spike caps included, are the C definition shared with the board firmware (`brian_net`). Without a
C++ compiler Brian2's runtime mode is used (warned once), stepping the torch definition instead.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from chiploop.chip.base import ChipBase
from chiploop.chip.c_config import net_config, neuron_vectors
from chiploop.chip.devices import cap_events
from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Recording
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.brian_cache import compiler_available, default_cache_dir, ensure_project
from chiploop.emulator.brian_net import Shape, masks_key
from chiploop.emulator.brian_run import RawRun, RuntimeNetwork, pack_params, pack_raster, run_compiled
from chiploop.errors import ChipError

_warned_runtime = False


def _dense(
    index: np.ndarray, step: np.ndarray, batch: int, steps: int, n: int, counts: np.ndarray | None = None
) -> np.ndarray:
    """Spike (global index, step[, count]) triples -> uint8 `[batch, steps, n]` counts."""
    z = np.zeros((batch, steps, n), dtype=np.uint8)
    z[index // n, step, index % n] = 1 if counts is None else np.rint(counts).astype(np.uint8)
    return z


def _runtime_network(profile: ChipProfile, spec: NetworkSpec, c, weights: dict[str, np.ndarray]):  # noqa: ANN001, ANN202
    """The Python definition's network and weights, for Brian2's runtime mode (imports torch)."""
    import torch

    from chiploop.chip.dynamics import network_params

    net = network_params(profile, c, spec, torch.float64)
    return net, {k: torch.tensor(w, dtype=torch.float64) for k, w in weights.items()}


def _check_masks(connectivity: dict[str, np.ndarray] | None, spec: NetworkSpec) -> dict[str, np.ndarray]:
    """Connectivity masks as read-only bool arrays, checked against the spec's layers and shapes."""
    if connectivity is None:
        return {}
    shapes = spec.weight_shapes()
    masks = {}
    for name, mask in connectivity.items():
        if name not in shapes:
            raise ChipError(f"connectivity: expected layers among {sorted(shapes)}, got {name!r}")
        m = np.array(mask, dtype=bool)
        if m.shape != shapes[name]:
            raise ChipError(f"connectivity['{name}']: expected shape {shapes[name]}, got {m.shape}")
        m.setflags(write=False)
        masks[name] = m
    return masks


class BrianChip(ChipBase):
    """The Chip protocol on Brian2 (see module docstring).

    batch_size: compiled batch; larger batches run in chunks, smaller ones are zero-padded.
    None: compile for the first batch seen and pad later smaller batches to the nearest compiled one.
    cache_dir: compiled projects (default `~/.cache/chiploop/brian`, or `$CHIPLOOP_CACHE/brian`).
    connectivity: bool masks `[pre, post]` per layer, fixed for the chip (a routing table): only
    their pairs are synapses, so a sparse network costs its synapses, not pre x post. Weights
    outside a mask must be written as 0 and read back as 0 (device noise is not emulated there).
    force_runtime: Brian2's runtime mode even where a compiler exists (slow; for tests).
    Raises DesignRuleError when `spec` breaks the profile's limits.
    """

    def __init__(
        self,
        profile: ChipProfile,
        spec: NetworkSpec,
        seed: int = 0,
        batch_size: int | None = None,
        cache_dir: Path | None = None,
        *,
        connectivity: dict[str, np.ndarray] | None = None,
        force_runtime: bool = False,
    ) -> None:
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ChipError(f"batch_size: expected a positive int or None, got {batch_size!r}")
        super().__init__(profile, spec, seed, name="emulator")
        self.batch_size = batch_size
        self.masks = _check_masks(connectivity, spec)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.compiled = not force_runtime and compiler_available()
        if not self.compiled and not force_runtime:
            global _warned_runtime
            if not _warned_runtime:
                warnings.warn(
                    "no C++ compiler found: BrianChip falls back to Brian2's slow runtime mode",
                    RuntimeWarning,
                    stacklevel=2,
                )
                _warned_runtime = True
        self._projects: dict[Shape, Path | RuntimeNetwork] = {}

    # -- Chip protocol --------------------------------------------------------------------------
    def write_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Program weights (validated first: on error the previous weights stay)."""
        self._check_open()
        valid = self.device.validate_weights(weights)
        for name, mask in self.masks.items():
            outside = int(np.count_nonzero(valid[name][~mask]))
            if outside:
                raise ChipError(
                    f"weights['{name}']: expected 0 outside the connectivity mask, got {outside} non-zero"
                )
        super().write_weights(weights)

    def read_weights(self) -> dict[str, np.ndarray]:
        """Effective weights now on the chip (no read noise; 0 where the connectivity has no synapse)."""
        weights = self.device.read()
        return {name: w * self.masks[name] if name in self.masks else w for name, w in weights.items()}

    def close(self) -> None:
        """Forget compiled-network handles (the disk cache stays for later processes)."""
        self._projects.clear()
        super().close()

    # -- internals ------------------------------------------------------------------------------
    def _run_batch(self, x: np.ndarray, record_v: bool, record_i: bool) -> Recording:
        """One simulation per compiled batch of samples.

        meta: dropped_spikes (hidden + input events, as the twin counts), dropped_hidden_spikes,
        dropped_input_spikes, weights_generation, wall_time_s, compile_time_s (0 on a warm cache),
        sim_time_s (file I/O + binary), backend ("cpp_standalone" or "runtime").
        """
        _, dropped_in = cap_events(x, self.profile.limits.max_input_spikes_per_step)
        b_total, steps, _ = x.shape
        weights = self._checked(self.device.for_run())
        shape = self._shape(
            self._compiled_batch(b_total, steps, record_v, record_i), steps, record_v, record_i
        )
        t0 = time.perf_counter()
        backend = self._backend(shape)
        compile_s, sim_s = time.perf_counter() - t0, 0.0
        masks = self.masks or None
        c = self.device.constants
        if isinstance(backend, RuntimeNetwork):
            masked = {k: w * self.masks[k] if k in self.masks else w for k, w in weights.items()}
            net, tensors = _runtime_network(self.profile, self.spec, c, masked)
        else:
            params = pack_params(
                shape, net_config(self.profile, self.spec), neuron_vectors(c), weights, masks
            )
        chunks = []
        for lo in range(0, b_total, shape.batch):
            part = x[lo : lo + shape.batch]
            raster = pack_raster(part, shape)
            t0 = time.perf_counter()
            if isinstance(backend, RuntimeNetwork):
                raw = backend.run(net, tensors, raster)
            else:
                raw = run_compiled(backend, shape, params, raster, masks)
            sim_s += time.perf_counter() - t0
            chunks.append(self._unpack(raw, shape, part.shape[0]))
        spikes = {"hidden": np.concatenate([ch["spikes_hidden"] for ch in chunks])}
        if self.spec.readout == "spiking":
            spikes["out"] = np.concatenate([ch["spikes_out"] for ch in chunks])
        states: dict[str, dict[str, np.ndarray]] = {"v": {}, "i": {}}
        for key in (k for k in chunks[0] if ":" in k):
            kind, name = key.split(":")
            states[kind][name] = np.concatenate([ch[key] for ch in chunks])
        dropped = int(sum(ch["dropped"] for ch in chunks)) - dropped_in
        return self._recording(
            spikes,
            states["v"],
            states["i"],
            dropped_hidden_spikes=dropped,
            dropped_input_spikes=dropped_in,
            compile_time_s=compile_s,
            sim_time_s=sim_s,
            backend="cpp_standalone" if self.compiled else "runtime",
        )

    def _compiled_batch(self, b: int, steps: int, record_v: bool, record_i: bool) -> int:
        """batch_size, else the smallest batch >= b already compiled for this run's kind, else b."""
        if self.batch_size is not None:
            return self.batch_size
        same_run = [
            s for s in self._projects if (s.steps, s.record_v, s.record_i) == (steps, record_v, record_i)
        ]
        sizes = [s.batch for s in same_run if s.batch >= b]
        return min(sizes) if sizes else b

    def _shape(self, batch: int, steps: int, record_v: bool, record_i: bool = False) -> Shape:
        s = self.spec
        conn = masks_key(self.masks) if self.masks else ""
        fixed = self.profile.arithmetic.kind == "fixed"
        shape = (batch, steps, s.n_in, s.n_hidden, s.n_out, s.recurrent, bool(record_v), fixed)
        return Shape(*shape, s.synapses, bool(record_i), conn)

    def _backend(self, shape: Shape) -> Path | RuntimeNetwork:
        if shape not in self._projects:
            masks = self.masks or None
            if self.compiled:
                self._projects[shape] = ensure_project(shape, self.cache_dir, masks)
            else:
                self._projects[shape] = RuntimeNetwork(shape, masks)
        return self._projects[shape]

    def _checked(self, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fixed-arithmetic weights must fit C's int32 weight registers."""
        if self.profile.arithmetic.kind == "fixed":
            for name, w in weights.items():
                top = np.max(np.abs(w)) if w.size else 0.0
                if top >= 2**31:
                    raise ChipError(
                        f"weights['{name}']: BrianChip stores integer weights as int32, got {top:g}"
                    )
        return weights

    def _unpack(self, raw: RawRun, shape: Shape, b: int) -> dict[str, np.ndarray]:
        """RawRun of a (padded) compiled batch -> the first `b` samples' spikes, states, drops."""
        h, o, steps = shape.hidden_total, shape.n_out, shape.steps
        out = {
            "spikes_hidden": _dense(raw.hidden_i, raw.hidden_step, shape.batch, steps, h, raw.hidden_n)[:b],
            "spikes_out": _dense(raw.out_i, raw.out_step, shape.batch, steps, o)[:b],
            "dropped": raw.dropped[:b].sum(),
        }
        dtype = np.int64 if shape.fixed else np.float32
        for kind, traces in (("v", raw.v), ("i", raw.currents)):
            for name, a in traces.items():
                n = o if name == "out" else h
                if a.shape[0] != steps:
                    raise ChipError(f"Brian2 run: expected {steps} recorded steps, got {a.shape[0]}")
                out[f"{kind}:{name}"] = (
                    a.reshape(steps, shape.batch, n)[:, :b].transpose(1, 0, 2).astype(dtype)
                )
        return out

"""Host side of one batched Brian2 run: pack the run-time arrays, run, unpack the monitors.

`pack_params` / `pack_raster` fill the two TimedArrays of `brian_net`; `run_compiled` runs a
compiled project's binary directly (`./main --results_dir DIR NAME.values=FILE`) so several
compiled chips can live in one process; `run_runtime` is the compiler-less fallback (Brian2's
runtime mode, numpy target). Both return raw monitor data as `RawRun`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chiploop.emulator.brian_net import (
    BITS_PER_WORD,
    PARAMS_NAME,
    RASTER_NAME,
    WEIGHT_BLOCKS,
    ParamLayout,
    Shape,
)
from chiploop.emulator.device_model import NeuronConstants
from chiploop.errors import ChipError

DT_S = 1e-3  # Brian2's clock inside the project; decays are precomputed, so its value is arbitrary


@dataclass
class RawRun:
    """Monitor output of one run: spike (index, step) pairs and membranes `[T, B*N]` (or None)."""

    hidden_i: np.ndarray
    hidden_step: np.ndarray
    out_i: np.ndarray
    out_step: np.ndarray
    v_hidden: np.ndarray | None
    v_out: np.ndarray | None


def _factor(decay: np.ndarray, c: NeuronConstants) -> np.ndarray:
    """Per-neuron factor f of `D(x)` (see brian_net): alpha, m/2^q or 2^-s."""
    d = np.asarray(decay, dtype=np.float64)
    if c.arithmetic == "float":
        return d
    return d / 2.0**c.decay_bits if c.decay == "multiplier" else 2.0**-d


def pack_params(
    shape: Shape,
    c: NeuronConstants,
    weights: dict[str, np.ndarray],
    spiking_readout: bool,
    cap: int | None,
    masks: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The `chiploop_params` row for these constants and effective weights (a masked layer: the
    weights of its mask's pairs only, row-major)."""
    lay = ParamLayout.of(shape, masks)
    out = np.zeros(lay.size)
    fixed = c.arithmetic == "fixed"
    shift = fixed and c.decay == "shift"
    bound = 2.0 ** (c.state_bits - 1)
    theta_o = np.asarray(c.threshold_o, np.float64) if spiking_readout else np.full(shape.n_out, np.inf)
    blocks = {
        "mem_h": _factor(c.mem_h, c), "syn_h": _factor(c.syn_h, c), "ada_h": _factor(c.ada_h, c),
        "theta_h": c.threshold_h, "gain_h": c.gain_h, "beta_h": c.beta_h,
        "mem_o": _factor(c.mem_o, c), "syn_o": _factor(c.syn_o, c), "theta_o": theta_o,
        "fx": float(fixed), "sh": float(shift),
        "lo": -bound if fixed else -np.finfo(np.float64).max,
        "hi": bound - 1 if fixed else np.finfo(np.float64).max,
        "ilo": -bound if fixed and c.syn_enabled else -np.finfo(np.float64).max,
        "ihi": bound - 1 if fixed and c.syn_enabled else np.finfo(np.float64).max,
        "refractory": float(c.refractory_steps), "sub": float(c.reset == "subtract"),
        "cap": float(cap or 0),
    }
    for layer, block in WEIGHT_BLOCKS.items():
        if layer in weights:
            mask = None if masks is None else masks.get(layer)
            blocks[block] = weights[layer] if mask is None else np.asarray(weights[layer])[mask]
    for name, value in blocks.items():
        flat = np.asarray(value, dtype=np.float64).ravel()
        start = lay.offsets[name]
        out[start : start + flat.size] = flat
    return out


def pack_raster(x: np.ndarray, shape: Shape) -> np.ndarray:
    """`[b<=B, T, n_in]` 0/1 -> `[T, words]` float64; bit k of word w is input `32w + k` (zero-padded)."""
    b, t, n = x.shape
    flat = np.zeros((t, shape.raster_words * BITS_PER_WORD), dtype=np.uint8)
    flat[:, : b * n] = x.transpose(1, 0, 2).reshape(t, b * n)
    words = np.packbits(flat, axis=1, bitorder="little").view("<u4")
    return words.astype(np.float64)


def _read(path: Path, dtype: np.dtype | type) -> np.ndarray:
    return np.fromfile(path, dtype=dtype) if path.exists() else np.zeros(0, dtype=dtype)


def _steps(t: np.ndarray) -> np.ndarray:
    return np.rint(t / DT_S).astype(np.int64)


def run_compiled(
    project: Path,
    shape: Shape,
    params: np.ndarray,
    raster: np.ndarray,
    fixed: bool,
    masks: dict[str, np.ndarray] | None = None,
) -> RawRun:
    """Run the project's binary on these arrays; sizes are checked here (the binary only warns)."""
    lay = ParamLayout.of(shape, masks)
    if params.shape != (lay.size,) or raster.shape != (shape.steps, shape.raster_words):
        raise ChipError(
            f"run arrays: expected params ({lay.size},) and raster {(shape.steps, shape.raster_words)}, "
            f"got {params.shape} and {raster.shape}"
        )
    shm = Path("/dev/shm")
    tmp = Path(tempfile.mkdtemp(prefix="chiploop-run-", dir=shm if shm.is_dir() else None))
    try:
        params.astype(np.float64).tofile(tmp / "params.bin")
        raster.astype(np.float64).tofile(tmp / "raster.bin")
        cmd = [
            str(project / "main"), "--results_dir", f"{tmp}{os.sep}",
            f"{PARAMS_NAME}.values={tmp / 'params.bin'}", f"{RASTER_NAME}.values={tmp / 'raster.bin'}",
        ]
        done = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
        if done.returncode != 0 or done.stderr.strip():
            raise ChipError(
                f"Brian2 binary {project / 'main'}: expected a clean run, got exit {done.returncode}: "
                f"{done.stderr.strip()[-1000:]}"
            )
        n_h, n_o = shape.batch * shape.n_hidden, shape.batch * shape.n_out
        v_dtype = np.float64 if fixed else np.float32
        return RawRun(
            hidden_i=_read(tmp / "spikes_hidden_i.bin", np.int32),
            hidden_step=_steps(_read(tmp / "spikes_hidden_t.bin", np.float64)),
            out_i=_read(tmp / "spikes_out_i.bin", np.int32),
            out_step=_steps(_read(tmp / "spikes_out_t.bin", np.float64)),
            v_hidden=_read(tmp / "v_hidden.bin", v_dtype).reshape(-1, n_h) if shape.record_v else None,
            v_out=_read(tmp / "v_out.bin", v_dtype).reshape(-1, n_o) if shape.record_v else None,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RuntimeNetwork:
    """Compiler-less fallback: the same network in Brian2's runtime mode (numpy), stored once."""

    def __init__(self, shape: Shape, masks: dict[str, np.ndarray] | None = None) -> None:
        from chiploop.emulator.brian_net import build_network

        self.shape = shape
        self.network = build_network(shape, masks=masks)
        self.network.store("rest")

    def run(self, params: np.ndarray, raster: np.ndarray) -> RawRun:
        from brian2 import prefs, second

        net = self.network
        net.restore("rest")
        names = {obj.name: obj for obj in net.objects}
        ns = names["router"].namespace
        ns[PARAMS_NAME].values[:] = params[None, :]
        ns[RASTER_NAME].values[:] = raster
        saved = prefs.codegen.target, prefs.codegen.loop_invariant_optimisations
        prefs.codegen.target, prefs.codegen.loop_invariant_optimisations = "numpy", False
        try:  # Brian2's prefs are process-global: set for this run only
            net.run(self.shape.steps * DT_S * second)
        finally:
            prefs.codegen.target, prefs.codegen.loop_invariant_optimisations = saved
        h, o = names["spikes_hidden"], names["spikes_out"]
        v_h, v_o = names.get("v_hidden"), names.get("v_out")
        return RawRun(
            hidden_i=np.asarray(h.i[:]), hidden_step=_steps(np.asarray(h.t[:] / second)),
            out_i=np.asarray(o.i[:]), out_step=_steps(np.asarray(o.t[:] / second)),
            v_hidden=None if v_h is None else np.asarray(v_h.v[:]).T,
            v_out=None if v_o is None else np.asarray(v_o.v[:]).T,
        )

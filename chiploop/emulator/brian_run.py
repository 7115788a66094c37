"""Host side of one batched Brian2 run: pack the run-time arrays, run, unpack the monitors.

`pack_params` / `pack_raster` fill the two TimedArrays of `brian_net`; `run_compiled` runs a
compiled project's binary directly (`./main --results_dir DIR NAME.values=FILE`) so several
compiled chips can live in one process; `RuntimeNetwork` is the compiler-less fallback (Brian2's
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
    CFG_FIELDS,
    PARAMS_NAME,
    RASTER_NAME,
    VECTORS,
    ParamLayout,
    Shape,
)
from chiploop.errors import ChipError

DT_S = 1e-3  # Brian2's clock inside the project; decays are precomputed, so its value is arbitrary


@dataclass
class RawRun:
    """Monitor output of one run: spike (index, step, count) triples, per-step `[T, B*N]` membranes and
    currents (empty when not recorded), and the events each copy's caps dropped."""

    hidden_i: np.ndarray
    hidden_step: np.ndarray
    hidden_n: np.ndarray
    out_i: np.ndarray
    out_step: np.ndarray
    v: dict[str, np.ndarray]
    currents: dict[str, np.ndarray]
    dropped: np.ndarray


def pack_params(
    shape: Shape,
    config: dict[str, int],
    vectors: dict[str, np.ndarray],
    weights: dict[str, np.ndarray],
    masks: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The `chiploop_params` row: `cl_net_cfg` fields, per-neuron vectors (`chiploop.chip.c_config`)
    and weights (a masked layer: the weights of its mask's pairs only, row-major)."""
    lay = ParamLayout.of(shape, masks)
    out = np.zeros(lay.size)
    out[lay.offsets["cfg"] : lay.offsets["cfg"] + len(CFG_FIELDS)] = [config[f] for f in CFG_FIELDS]
    blocks = {name: vectors[name] for name in VECTORS}
    for name in shape.matrices():
        mask = None if masks is None else masks.get(name)
        blocks[name] = weights[name] if mask is None else np.asarray(weights[name])[mask]
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
            str(project / "main"),
            "--results_dir",
            f"{tmp}{os.sep}",
            f"{PARAMS_NAME}.values={tmp / 'params.bin'}",
            f"{RASTER_NAME}.values={tmp / 'raster.bin'}",
        ]
        done = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
        if done.returncode != 0 or done.stderr.strip():
            raise ChipError(
                f"Brian2 binary {project / 'main'}: expected a clean run, got exit {done.returncode}: "
                f"{done.stderr.strip()[-1000:]}"
            )
        width = {"hidden": shape.batch * shape.hidden_total, "hidden_2": shape.batch * shape.hidden_total,
                 "out": shape.batch * shape.n_out}  # fmt: skip
        state_dtype = np.float64 if shape.fixed else np.float32

        def traces(prefix: str, names: list[str]) -> dict[str, np.ndarray]:
            return {k: _read(tmp / f"{prefix}_{k}.bin", state_dtype).reshape(-1, width[k]) for k in names}

        return RawRun(
            hidden_i=_read(tmp / "spikes_hidden_i.bin", np.int32),
            hidden_step=_steps(_read(tmp / "spikes_hidden_t.bin", np.float64)),
            hidden_n=_read(tmp / "spikes_hidden_n.bin", np.float64),
            out_i=_read(tmp / "spikes_out_i.bin", np.int32),
            out_step=_steps(_read(tmp / "spikes_out_t.bin", np.float64)),
            v=traces("v", ["hidden", "out"]) if shape.record_v else {},
            currents=traces("i", _current_names(shape)) if shape.record_i else {},
            dropped=_read(tmp / "dropped.bin", np.float64),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _current_names(shape: Shape) -> list[str]:
    return ["hidden", "hidden_2", "out"] if shape.synapses == 2 else ["hidden", "out"]


class RuntimeNetwork:
    """Compiler-less fallback: the same network in Brian2's runtime mode (numpy), stored once."""

    def __init__(self, shape: Shape, masks: dict[str, np.ndarray] | None = None) -> None:
        from chiploop.emulator.brian_net import build_network

        self.shape = shape
        self.network = build_network(shape, masks=masks)
        self.network.store("rest")

    def run(self, net: object, weights: dict, raster: np.ndarray) -> RawRun:
        """Run with `net` (`chiploop.chip.dynamics.NetworkParams`) and weights (model units, tensors)."""
        from brian2 import prefs, second

        network = self.network
        network.restore("rest")
        names = {obj.name: obj for obj in network.objects}
        ns = names["stepper"].namespace
        ns[RASTER_NAME].values[:] = raster
        ns["chiploop_runtime"].prepare(net, weights)
        saved = prefs.codegen.target, prefs.codegen.loop_invariant_optimisations
        prefs.codegen.target, prefs.codegen.loop_invariant_optimisations = "numpy", False
        try:  # Brian2's prefs are process-global: set for this run only
            network.run(self.shape.steps * DT_S * second)
        finally:
            prefs.codegen.target, prefs.codegen.loop_invariant_optimisations = saved
        h, o = names["spikes_hidden"], names["spikes_out"]
        v = {}
        if self.shape.record_v:
            v = {"hidden": np.asarray(names["v_hidden"].v[:]).T, "out": np.asarray(names["v_out"].v[:]).T}
        currents = {}
        if self.shape.record_i:
            currents = {"hidden": np.asarray(names["i_hidden"].syn[:]).T,
                        "out": np.asarray(names["i_out"].syn[:]).T}  # fmt: skip
            if self.shape.synapses == 2:
                currents["hidden_2"] = np.asarray(names["i_hidden"].syn2[:]).T
        return RawRun(
            hidden_i=np.asarray(h.i[:]),
            hidden_step=_steps(np.asarray(h.t[:] / second)),
            hidden_n=np.asarray(h.n[:]),
            out_i=np.asarray(o.i[:]),
            out_step=_steps(np.asarray(o.t[:] / second)),
            v=v,
            currents=currents,
            dropped=np.asarray(names["samples"].dropped[:]),
        )

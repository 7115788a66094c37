"""Golden traces of Lava's bit-accurate Loihi models, for tests/vendors/test_loihi2_lava.py.

Lava (lava-nc 0.10) does not install on Python 3.11, so this script runs in an environment of its own
and writes `lava_traces.npz` beside itself, which the test suite reads:

    python3.10 -m venv /tmp/lava && /tmp/lava/bin/pip install lava-nc==0.10.0
    /tmp/lava/bin/python tests/vendors/lava_traces.py

It needs nothing of chiploop: each network is drawn from `numpy.random.RandomState(seed)` (a stream
numpy keeps fixed across versions) by `draw_network`, which the test imports to draw the same
network. Each network is input RingBuffer -> Dense -> LIF (hidden, optionally with a recurrent
Dense) -> Dense -> LIF (output), run with Lava's fixed-point models (PyDenseModelBitAcc,
PyLifModelBitAcc). Stored per network: the CRC-32 of its weights, its spikes (bit-packed) and the
CRC-32 of the hidden and output u and v at every step (int32, little-endian).
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np

N_NETWORKS = 56
STEPS = 300


def draw_network(seed: int) -> dict:
    """A random network: sizes, Lava LIF registers, integer weights (mixed sign) and inputs.

    Regimes cycle with the seed: quiet, busy, and saturating (slow current decay, strong inputs:
    u wraps past 2^23, v clips at -(2^23 - 1)). Weights span -256..255, odd values included.
    """
    rng = np.random.RandomState(seed)
    regime = ("quiet", "busy", "saturating")[seed % 3]
    n_in, hidden, out = rng.randint(4, 65), rng.randint(8, 201), rng.randint(1, 11)
    recurrent = bool(rng.rand() < 0.5)
    du = int(rng.randint(0, 16)) if regime == "saturating" else int(rng.randint(0, 4096))
    dv = int(rng.randint(0, 60)) if regime == "saturating" else int(rng.randint(0, 4096))
    du_out, dv_out = int(rng.randint(0, 4096)), int(rng.randint(0, 4096))
    low, high = {"quiet": (100, 2000), "busy": (5, 300), "saturating": (500, 131071)}[regime]
    vth = int(np.exp(rng.uniform(np.log(low), np.log(high))))
    vth_out = int(rng.randint(1, 131072))
    with_bias = bool(rng.rand() < 0.5)
    bias_exp = int(rng.randint(0, 4))
    bias = rng.randint(-4096, 4096, hidden) * with_bias
    bias_out = rng.randint(-4096, 4096, out) * with_bias
    low_w, high_w = {"quiet": (-64, 65), "busy": (-256, 256), "saturating": (-64, 256)}[regime]
    w_in = rng.randint(low_w, high_w, (n_in, hidden))
    w_rec = rng.randint(-96, 97, (hidden, hidden)) * (rng.rand(hidden, hidden) < 0.2) if recurrent else None
    w_out = rng.randint(-256, 256, (hidden, out))
    for w in (w_in, w_rec, w_out):  # Lava's mixed sign mode: both signs present
        if w is not None:
            w.flat[0], w.flat[-1] = -3, 5
    rate = rng.uniform(0.01, 0.4)
    x = (rng.rand(STEPS, n_in) < rate).astype(np.uint8)
    return {
        "n_in": n_in,
        "hidden": hidden,
        "out": out,
        "recurrent": recurrent,
        "du": du,
        "dv": dv,
        "du_out": du_out,
        "dv_out": dv_out,
        "vth": vth,
        "vth_out": vth_out,
        "bias": bias,
        "bias_out": bias_out,
        "bias_exp": bias_exp,
        "w_in": w_in,
        "w_rec": w_rec,
        "w_out": w_out,
        "x": x,
    }


def weights_crc(net: dict) -> int:
    crc = 0
    for name in ("w_in", "w_rec", "w_out"):
        if net[name] is not None:
            crc = zlib.crc32(np.ascontiguousarray(net[name], "<i4").tobytes(), crc)
    return crc


def step_crcs(trace: np.ndarray) -> np.ndarray:
    """CRC-32 of each step's values `[T, N]` as little-endian int32."""
    return np.array([zlib.crc32(np.ascontiguousarray(row, "<i4").tobytes()) for row in trace], np.uint32)


def run_lava(net: dict) -> dict:  # pragma: no cover - runs under Lava's own Python
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    src = RingBuffer(data=net["x"].T.astype(int))
    hidden = LIF(
        shape=(net["hidden"],),
        du=net["du"],
        dv=net["dv"],
        vth=net["vth"],
        bias_mant=net["bias"],
        bias_exp=net["bias_exp"],
    )
    out = LIF(
        shape=(net["out"],),
        du=net["du_out"],
        dv=net["dv_out"],
        vth=net["vth_out"],
        bias_mant=net["bias_out"],
        bias_exp=net["bias_exp"],
    )
    dense_in, dense_out = Dense(weights=net["w_in"].T), Dense(weights=net["w_out"].T)
    src.s_out.connect(dense_in.s_in)
    dense_in.a_out.connect(hidden.a_in)
    if net["w_rec"] is not None:
        dense_rec = Dense(weights=net["w_rec"].T)
        hidden.s_out.connect(dense_rec.s_in)
        dense_rec.a_out.connect(hidden.a_in)
    hidden.s_out.connect(dense_out.s_in)
    dense_out.a_out.connect(out.a_in)
    probes = {}
    for layer, proc in (("hidden", hidden), ("out", out)):
        for var in ("u", "v", "s_out"):
            monitor = Monitor()
            monitor.probe(getattr(proc, var), STEPS)
            probes[(layer, var)] = (monitor, proc)
    hidden.run(condition=RunSteps(num_steps=STEPS), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    got = {}
    for (layer, var), (monitor, proc) in probes.items():
        got[f"{layer}_{var}"] = np.asarray(monitor.get_data()[proc.name][var]).astype(np.int64)
    hidden.stop()
    return got


def main(n_networks: int = N_NETWORKS) -> None:  # pragma: no cover - runs under Lava's own Python
    from importlib.metadata import version

    out: dict[str, np.ndarray] = {"lava_version": np.array(version("lava-nc"))}
    for seed in range(n_networks):
        net = draw_network(seed)
        got = run_lava(net)
        out[f"{seed}_weights_crc"] = np.array(weights_crc(net), np.uint32)
        for layer in ("hidden", "out"):
            out[f"{seed}_{layer}_spikes"] = np.packbits(got[f"{layer}_s_out"].astype(np.uint8), axis=1)
            for var in ("u", "v"):
                out[f"{seed}_{layer}_{var}"] = step_crcs(got[f"{layer}_{var}"])
        print(
            f"network {seed}: hidden {net['hidden']}, spikes {got['hidden_s_out'].mean():.3f}",
            file=sys.stderr,
        )
    np.savez_compressed(Path(__file__).with_name("lava_traces.npz"), **out)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))

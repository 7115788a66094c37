"""Emulator benchmark: BrianChip vs the naive Brian2 way vs the torch twin, measured in one run.

    python benchmarks/emulator.py [--quick]

Workloads (profile `ideal`, T = 100):
  small  100 inputs (5 % rate) -> 128 recurrent LIF -> 10 leaky outputs, batch 256
  large  100 inputs (2 % rate) -> 2000 recurrent LIF (2 % of recurrent weights non-zero) -> 10 leaky
         outputs, batch 8; BrianChip dense (the zeros still cost synapses) and with `connectivity`
Printed: samples/s of BrianChip (record_v off/on; batch in simulations of 32 copies), of the naive
way (Brian2 runtime mode, one run() per sample on a stored network), of the TorchTwin forward,
their ratios, the first compile time (fresh cache), the time a second process needs to reach its
first run (warm cache), peak memory.
`--quick` runs the small workload with fewer repetitions.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.emulator.brian import BrianChip
from chiploop.emulator.twin import TorchTwin

STEPS = 100
CHUNK = 32  # the batch in several simulations of 32 copies: their synapse arrays stay in cache


def _workload(n_hidden: int, rec_density: float, rate: float, batch: int, gain: float, seed: int = 0):
    """Spec, weights (std `gain / sqrt(fan-in)`, recurrent ones sparse) and an input raster."""
    spec = NetworkSpec(100, n_hidden, 10, recurrent=True, readout="leaky")
    rng = np.random.default_rng(seed)
    w = {k: rng.normal(0.0, gain / np.sqrt(s[0]), s) for k, s in spec.weight_shapes().items()}
    w["hidden_hidden"] *= (rng.random(w["hidden_hidden"].shape) < rec_density) / np.sqrt(rec_density)
    x = (rng.random((batch, STEPS, spec.n_in)) < rate).astype(np.uint8)
    return spec, w, x


def _best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _second_process(spec: NetworkSpec, batch: int, cache: Path) -> float:
    """Seconds from launching a new Python process to the end of its first run (warm cache)."""
    code = textwrap.dedent(f"""
        import numpy as np
        from pathlib import Path
        from chiploop.chip_profiles.loader import load_profile
        from chiploop.emulator.brian import BrianChip
        from chiploop.chip.network import NetworkSpec
        spec = NetworkSpec({spec.n_in}, {spec.n_hidden}, {spec.n_out}, recurrent=True)
        chip = BrianChip(load_profile("ideal"), spec, cache_dir=Path({str(cache)!r}))
        chip.run(np.zeros(({batch}, {STEPS}, {spec.n_in}), np.uint8), record_v=False)
    """)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def _naive_per_sample(spec: NetworkSpec, w: dict, x: np.ndarray, n: int) -> tuple[float, float]:
    """The naive way: an idiomatic Brian2 network of one sample (SpikeGeneratorGroup, LIF equations,
    a synapse per non-zero weight) in runtime mode (default code target), stored once, then
    restore() + run() per sample.
    Returns (seconds per sample, hidden spike rate)."""
    import brian2 as b2

    b2.BrianLogger.log_level_error()
    ms = b2.ms
    ns = {"tau_mem": 20 * ms, "tau_syn": 5 * ms, "tau_out": 20 * ms}
    b2.defaultclock.dt = 1 * ms
    lif = "dv/dt = -v/tau_mem + I/ms : 1\ndI/dt = -I/tau_syn : 1"
    inp = b2.SpikeGeneratorGroup(spec.n_in, [], [] * ms)
    hid = b2.NeuronGroup(spec.n_hidden, lif, threshold="v >= 1", reset="v -= 1", method="exact", namespace=ns)
    out = b2.NeuronGroup(spec.n_out, lif.replace("tau_mem", "tau_out"), method="exact", namespace=ns)
    syns = []
    for src, dst, name in ((inp, hid, "in_hidden"), (hid, hid, "hidden_hidden"), (hid, out, "hidden_out")):
        s = b2.Synapses(src, dst, "w : 1", on_pre="I_post += w")
        pre, post = np.nonzero(w[name])  # only the non-zero weights: sparse where the workload is
        s.connect(i=pre, j=post)
        s.w = w[name][pre, post]
        syns.append(s)
    spikes, v_out = b2.SpikeMonitor(hid), b2.StateMonitor(out, "v", record=True)
    net = b2.Network(inp, hid, out, *syns, spikes, v_out)
    net.store()

    def run(b: int) -> int:
        net.restore()
        t, i = np.nonzero(x[b])
        inp.set_spikes(i, t * ms)
        net.run(STEPS * ms)
        return spikes.num_spikes

    run(0)  # code generation / compilation happens on the first run
    t0 = time.perf_counter()
    n_spikes = sum(run(b) for b in range(n))
    return (time.perf_counter() - t0) / n, n_spikes / (n * STEPS * spec.n_hidden)


def _twin_per_batch(spec: NetworkSpec, w: dict, x: np.ndarray, reps: int) -> float:
    twin = TorchTwin(load_profile("ideal"), spec, dtype=torch.float32)
    tw = {k: torch.tensor(v, dtype=torch.float32) for k, v in w.items()}
    xt = torch.tensor(x, dtype=torch.float32)
    with torch.no_grad():
        return _best(lambda: twin(xt, weights=tw), reps)


def bench(label: str, workload: tuple, reps: int, naive_n: int) -> None:
    spec, w, x = _workload(*workload)
    batch, rec_density, rate = x.shape[0], workload[1], workload[2]
    print(f"\n== {label}: {spec}, batch {batch}, T {STEPS}, input rate {rate:.0%}")
    with tempfile.TemporaryDirectory(prefix="chiploop-bench-") as cache_str:
        cache = Path(cache_str)
        chip = BrianChip(load_profile("ideal"), spec, cache_dir=cache)
        chip.write_weights(w)
        t0 = time.perf_counter()
        rec = chip.run(x, record_v=False)
        first = time.perf_counter() - t0
        compile_s = rec.meta["compile_time_s"]
        rate_h = rec.spikes["hidden"].mean()
        brian_off = _best(lambda: chip.run(x, record_v=False), reps)
        brian_sparse = None
        if rec_density < 1:
            mask = {"hidden_hidden": w["hidden_hidden"] != 0}
            sparse = BrianChip(load_profile("ideal"), spec, cache_dir=cache, connectivity=mask)
            sparse.write_weights(w)
            t0 = time.perf_counter()
            sparse_same = np.array_equal(sparse.run(x, record_v=False).spikes["hidden"], rec.spikes["hidden"])
            compile_sparse = time.perf_counter() - t0
            brian_sparse = _best(lambda: sparse.run(x, record_v=False), reps)
        brian_chunked = None
        if batch > CHUNK:
            chunked = BrianChip(load_profile("ideal"), spec, batch_size=CHUNK, cache_dir=cache)
            chunked.write_weights(w)
            chunked.run(x[:CHUNK], record_v=False)  # compiles the batch-CHUNK project
            brian_chunked = _best(lambda: chunked.run(x, record_v=False), reps)
        t0 = time.perf_counter()
        chip.run(x, record_v=True)  # compiles the record_v variant
        compile_v = time.perf_counter() - t0
        brian_on = _best(lambda: chip.run(x, record_v=True), reps)
        second = _second_process(spec, batch, cache)
    naive, naive_rate = _naive_per_sample(spec, w, x, naive_n)
    twin = _twin_per_batch(spec, w, x, reps)
    sps = {
        "BrianChip (record_v=False)": batch / brian_off,
        "BrianChip (record_v=True)": batch / brian_on,
        f"naive Brian2 runtime, 1 run()/sample ({naive_n} samples)": 1 / naive,
        "TorchTwin forward (float32, no_grad, 1 thread)": batch / twin,
    }
    if brian_sparse is not None:
        sps["BrianChip (record_v=False, connectivity = the non-zero mask)"] = batch / brian_sparse
    if brian_chunked is not None:
        sps[f"BrianChip (record_v=False, {batch // CHUNK} simulations of {CHUNK})"] = batch / brian_chunked
    print(f"hidden spike rate: BrianChip {rate_h:.3f}/step, naive network {naive_rate:.3f}/step")
    for name, value in sps.items():
        print(f"  {name:58s} {value:10.1f} samples/s  ({1e3 / value:8.3f} ms/sample)")
    print(
        f"  speed-up BrianChip / naive        : {sps['BrianChip (record_v=False)'] * naive:7.1f}x "
        f"(record_v=True {sps['BrianChip (record_v=True)'] * naive:.1f}x)"
    )
    chunks = f"; batch_size={CHUNK} {brian_chunked / twin:.1f}x" if brian_chunked else ""
    print(
        f"  slow-down BrianChip vs twin fwd   : {brian_off / twin:7.1f}x "
        f"(record_v=True {brian_on / twin:.1f}x{chunks})"
    )
    if brian_sparse is not None:
        vs_twin = brian_sparse / twin
        pace = f"{vs_twin:.1f}x slower" if vs_twin >= 1 else f"{1 / vs_twin:.1f}x faster"
        print(
            f"  sparse BrianChip / naive          : {naive * batch / brian_sparse:7.1f}x, vs twin fwd {pace}"
        )
        print(f"  sparse compile + first run        : {compile_sparse:7.1f} s (spikes = dense {sparse_same})")
    print(
        f"  first compile (fresh cache)       : {compile_s:7.1f} s (first run {first:.1f} s; "
        f"record_v variant {compile_v:.1f} s)"
    )
    print(f"  second process to first run       : {second:7.2f} s (warm cache, incl. Python start-up)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small workload only, fewer repetitions")
    args = parser.parse_args()
    reps = 2 if args.quick else 5
    torch.set_num_threads(1)  # the Brian2 binary is single-threaded too; the machine has 2 shared cores
    bench("small", (128, 1.0, 0.05, 256, 0.25), reps, naive_n=3 if args.quick else 5)
    if not args.quick:
        bench("large", (2000, 0.02, 0.02, 8, 0.3), 3, naive_n=2)
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    own, child = (resource.getrusage(w).ru_maxrss / 1024 for w in who)
    print(f"\npeak RSS: this process {own:.0f} MB, largest child (Brian2 binary / compiler) {child:.0f} MB")


if __name__ == "__main__":
    main()

"""Two recurrent hidden layers at spoken-digit scale: 700 -> 256 -> 256 -> 20, T = 100, under loihi2.

    python benchmarks/layered.py [--batch 32] [--patterns 64]

Printed, all measured in this run:
  1. bit-exactness: the Brian2 emulator, TwinChip and the board simulator (over its
     wire protocol) run the same weights and inputs: every layer's spikes and membranes compared;
  2. forward speed: BrianChip.run (membranes recorded, as in training) vs the TorchTwin forward
     (no_grad) on one batch, best of 3, and their ratio;
  3. one in-the-loop epoch (bptt, emulator) on a 700-input, 20-output pattern task with
     `--patterns` samples, its chip/host split from timing.csv.
Input spikes: 700 channels at 2 % per step (spoken-digit rasters are sparse).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.emulator.brian import BrianChip
from chiploop.emulator.twin import TorchTwin
from chiploop.emulator.twin_chip import TwinChip
from chiploop.firmware_bridge.board_sim import serve_in_background
from chiploop.firmware_bridge.serial_chip import SerialChip
from chiploop.training.loop import Trainer
from chiploop.training.tasks import make_task
from chiploop.training.units import init_weights

SPEC = NetworkSpec(700, (256, 256), 20, recurrent=True)
STEPS = 100


def _same(a, b) -> bool:
    return all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes) and all(
        np.array_equal(a.v[k], b.v[k]) for k in a.v
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--patterns", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    profile = load_profile("loihi2")
    twin = TorchTwin(profile, SPEC, seed=0)
    init_weights(twin, torch.Generator().manual_seed(0))  # as the Trainer initialises
    weights = {k: v.detach().numpy() for k, v in twin.weights.items()}
    x = (np.random.default_rng(1).random((args.batch, STEPS, SPEC.n_in)) < 0.02).astype(np.uint8)

    cache = Path(tempfile.mkdtemp(prefix="chiploop-layered-"))
    brian = BrianChip(profile, SPEC, seed=0, cache_dir=cache)
    t0 = time.perf_counter()
    twin_chip = TwinChip(profile, SPEC, seed=0)
    for chip in (brian, twin_chip):
        chip.write_weights(weights)
    ref = twin_chip.run(x)
    first = brian.run(x)
    compile_s = time.perf_counter() - t0
    board = SerialChip(serve_in_background(), profile, SPEC, seed=0)
    board.write_weights(weights)
    few = x[:4]
    rates = {k: float(v.mean()) for k, v in ref.spikes.items()}
    print(f"spikes per neuron and step: {rates}")
    print(f"emulator == twin (batch {args.batch}): {_same(first, ref)}")
    print(f"board simulator == twin (4 samples, over the wire): {_same(board.run(few), twin_chip.run(few))}")
    board.close()

    def best(fn, reps: int = 3) -> float:
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    xt = torch.from_numpy(x).double()
    emulator_s = best(lambda: brian.run(x))
    with torch.no_grad():
        twin_s = best(lambda: twin(xt, weights={k: torch.from_numpy(w) for k, w in weights.items()}))
    print(f"first run incl. compile: {compile_s:.1f} s")
    per = {name: 1e3 * s / args.batch for name, s in (("emulator", emulator_s), ("twin", twin_s))}
    print(f"forward, batch {args.batch}: emulator {per['emulator']:.2f} ms/sample, twin {per['twin']:.2f} "
          f"ms/sample: emulator / twin = {emulator_s / twin_s:.2f}x")  # fmt: skip
    brian.close()

    task = make_task("pattern", seed=0, n_in=700, n_out=20, n_steps=STEPS, n_patterns=args.patterns)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(profile, SPEC, "bptt", task, batch_size=args.batch, out_dir=Path(out) / "run",
                          progress=False, plots=False, epochs=1)  # fmt: skip
        start = time.perf_counter()
        trainer.fit(1)
        epoch_s = time.perf_counter() - start
        trainer.chip.close()
        with open(Path(out) / "run" / "timing.csv") as fh:
            row = list(csv.DictReader(fh))[-1]
    chip_s, host_s = float(row["wall_chip_s"]), float(row["wall_host_s"])
    print(f"in-the-loop epoch ({args.patterns} samples, bptt): {epoch_s:.1f} s incl. compiles and "
          f"evaluation; its steps: chip {chip_s:.1f} s, host {host_s:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()

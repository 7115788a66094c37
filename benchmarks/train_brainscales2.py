"""BrainScaleS-2 experiment (Cramer et al. 2022): offline training misses the chip's mismatch,
in-the-loop training recovers it. Everything measured in one run, on one chip instance.

    python benchmarks/train_brainscales2.py [--target emulator] [--epochs 4] [--finetune 2]
                                             [--mismatch-scale 1]

1. ideal: brainscales2 with the mismatch switched off and analog weights (`weights.bits: null`),
   trained offline for `--epochs`; test accuracy on that ideal chip.
2. deployed: the same float weights written to a brainscales2 chip (6-bit weights, per-neuron tau,
   threshold and gain mismatch frozen from the chip seed; `--mismatch-scale` multiplies the
   profile's residual-after-calibration sigmas); test accuracy there.
3. in-the-loop: starting from those weights, `--finetune` epochs of in-the-loop training (bptt) on
   that same chip instance; test accuracy there.
Printed: the three accuracies and the points lost / recovered relative to ideal.
"""

from __future__ import annotations

import argparse
import time

import torch

from chiploop.chip.targets import open_chip
from chiploop.chip_profiles.loader import load_profile
from chiploop.training.loop import Trainer, evaluate_on_chip
from chiploop.training.units import ScaledReadout

IDEAL_OVERRIDES = {
    "name": "brainscales2-ideal",
    "weights.bits": None,
    "noise.mismatch.tau": 0.0,
    "noise.mismatch.threshold": 0.0,
    "noise.mismatch.gain": 0.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="emulator", help="emulator or twin")
    parser.add_argument("--epochs", type=int, default=4, help="offline epochs on the ideal chip")
    parser.add_argument("--finetune", type=int, default=2, help="in-the-loop epochs on brainscales2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-brainscales2")
    parser.add_argument(
        "--mismatch-scale",
        type=float,
        default=1.0,
        help="multiply the profile's mismatch sigmas (uncalibrated chip)",
    )
    args = parser.parse_args()

    real = load_profile("brainscales2")
    mismatch = real.noise.mismatch
    real = real.with_overrides(
        {
            f"noise.mismatch.{k}": args.mismatch_scale * getattr(mismatch, k)
            for k in ("tau", "threshold", "gain")
        }
    )
    ideal = real.with_overrides(IDEAL_OVERRIDES)
    common = dict(target=args.target, seed=args.seed, progress=False, plots=False, overwrite=True)

    start = time.perf_counter()
    offline = Trainer(ideal, None, "bptt", "digits", mode="offline", out_dir=f"{args.out}/ideal", **common)
    acc_ideal = offline.fit(args.epochs).last["test_metric"]
    offline.chip.close()
    weights = offline.float_weights()
    t_offline = time.perf_counter() - start

    chip = open_chip(args.target, real, offline.spec, seed=args.seed)
    chip.write_weights(weights)
    acc_deployed = evaluate_on_chip(
        chip,
        ScaledReadout(offline.task, real.neuron.threshold),
        offline.spec,
        "test",
        offline.eval_batch_size,
    )["metric"]

    start = time.perf_counter()
    loop = Trainer(
        real, offline.spec, "bptt", "digits", chip=chip, out_dir=f"{args.out}/in_the_loop", **common
    )
    with torch.no_grad():
        for name, p in loop.twin.weights.items():
            p.copy_(torch.as_tensor(weights[name], dtype=p.dtype))
    history = loop.fit(args.finetune)
    acc_loop = history.last["test_metric"]
    t_loop = time.perf_counter() - start
    chip.close()

    print(f"digits, {offline.spec}, target {args.target}, seed {args.seed}, mismatch {real.noise.mismatch}")
    print(f"  ideal (no mismatch, analog weights), offline {args.epochs} ep : {acc_ideal:.4f}")
    print(
        f"  deployed on brainscales2 (6-bit, mismatch)          : {acc_deployed:.4f} "
        f"({100 * (acc_deployed - acc_ideal):+.1f} points)"
    )
    print(
        f"  in-the-loop on that chip, {args.finetune} ep                    : {acc_loop:.4f} "
        f"({100 * (acc_loop - acc_ideal):+.1f} points vs ideal, "
        f"{100 * (acc_loop - acc_deployed):+.1f} recovered)"
    )
    print(f"  in-the-loop epoch-0 check (deployed weights, same chip): {history.rows[0]['test_metric']:.4f}")
    print(f"  wall time in-the-loop / offline: {t_loop / t_offline:.2f}")


if __name__ == "__main__":
    main()

"""Evidence accumulation (Bellec et al. 2020, scaled down): ALIF + e-prop vs LIF + e-prop, on the chip.

    python benchmarks/train_evidence.py [--target emulator] [--epochs 10] [--delay 100]
                                        [--recurrent] [--bptt]

Each configuration trains a network of `--hidden` neurons (feed-forward unless `--recurrent`) in
the loop on the `ideal` profile, with the `evidence` task's silence between the last cue and the
recall set by `--delay` (the task's default is 40 steps, ~2 membrane time constants):

1. ALIF + eprop: `neuron.model=alif`, half the hidden neurons adapting (`ALIF_OVERRIDES`, with
   `--tau-a` and `--beta`).
2. LIF + eprop: the same network and training with `neuron.model=lif`.
3. ALIF + bptt (with `--bptt`): the reference gradient on the ALIF network.

Printed per configuration: final and best test accuracy (measured on the chip), hidden spikes per
neuron per sample and wall time. Each run is kept in `--out/<name>`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.training.loop import Trainer
from chiploop.training.tasks import make_task


def alif_overrides(tau_a: float, beta: float) -> dict[str, Any]:
    """The ALIF profile overrides: half the hidden neurons adapt with time constant `tau_a`."""
    return {
        "neuron.model": "alif",
        "neuron.adaptation.tau_s": tau_a,
        "neuron.adaptation.beta": beta,
        "neuron.adaptation.fraction": 0.5,
    }


def run(name: str, overrides: dict[str, Any], estimator: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one configuration; its final and best test accuracy, spikes and wall time."""
    profile = load_profile("ideal").with_overrides(overrides)
    task = make_task("evidence", seed=args.seed, delay_steps=args.delay)
    start = time.perf_counter()
    trainer = Trainer(
        profile,
        NetworkSpec(task.n_in, args.hidden, task.n_out, recurrent=args.recurrent),
        estimator,
        task,
        target=args.target,
        lr=args.lr,
        lr_decay=args.lr_decay,
        batch_size=args.batch_size,
        seed=args.seed,
        out_dir=f"{args.out}/{name}",
        progress=False,
        plots=False,
        task_options={"delay_steps": args.delay},  # recorded in config.yaml for --resume
        overwrite=True,  # a re-run of the benchmark measures again
    )
    try:
        history = trainer.fit(args.epochs)
    finally:
        trainer.chip.close()
    return {
        "name": name,
        "final": history.last["test_metric"],
        "best": history.best["test_metric"],
        "spikes": history.last["spikes_per_neuron_per_sample"],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="emulator", help="emulator or twin")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--delay", type=int, default=100, help="steps of silence before the recall")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--recurrent", action="store_true", help="recurrent hidden layer")
    parser.add_argument("--tau-a", type=float, default=0.3, help="adaptation time constant (s)")
    parser.add_argument("--beta", type=float, default=2.0, help="adaptation strength (thresholds)")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--lr-decay", type=float, default=0.7)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bptt", action="store_true", help="also train ALIF with bptt")
    parser.add_argument("--out", default="runs/bench-evidence")
    args = parser.parse_args()

    alif = alif_overrides(args.tau_a, args.beta)
    configs = [("alif-eprop", alif, "eprop"), ("lif-eprop", {"neuron.model": "lif"}, "eprop")]
    if args.bptt:
        configs.append(("alif-bptt", alif, "bptt"))
    kind = "recurrent" if args.recurrent else "feed-forward"
    print(f"evidence, delay {args.delay} steps, {args.hidden} {kind} hidden, target {args.target}")
    print(f"{'config':<12} {'final acc':>9} {'best acc':>9} {'spikes':>7} {'wall s':>7}")
    for name, overrides, estimator in configs:
        r = run(name, overrides, estimator, args)
        print(
            f"{r['name']:<12} {r['final']:>9.3f} {r['best']:>9.3f} {r['spikes']:>7.1f} {r['seconds']:>7.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

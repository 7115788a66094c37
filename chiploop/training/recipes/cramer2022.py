"""In-the-loop training on an analog chip (Cramer et al., PNAS 2022; docs/science.md §5).

Profile `brainscales2` (6-bit sign-split weights, per-neuron τ / threshold / gain mismatch frozen
per chip instance), the `evidence` task (cues, a delay, a left/right decision: the answer depends on
the neurons' time constants, which mismatch changes), a recurrent network. Per training seed:
- offline, nominal: trained offline by the Trainer (hardware-aware: quantized weights, but the
  nominal neuron constants — it cannot see a chip's mismatch), evaluated on a mismatch-free chip;
then per mismatch level k (the profile's mismatch scaled by k; ×6 is an uncalibrated chip), on a
chip instance of its own:
- offline, deployed: the same weights written to the mismatched chip;
- in-the-loop: trained by the Trainer with every forward pass on the mismatched chip (bptt through
  the twin's replay of the chip's spikes), evaluated on that chip.
Claim: deployment loses accuracy, in-the-loop training recovers it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chiploop.chip.network import NetworkSpec
from chiploop.chip.targets import open_chip
from chiploop.chip_profiles import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.training.loop import Trainer, evaluate_on_chip
from chiploop.training.plots import pyplot
from chiploop.training.recipes.common import (
    RecipeResult,
    md_table,
    save,
    scaled,
    single_thread,
    steps,
    write_csv,
    write_report,
)
from chiploop.training.tasks import make_task
from chiploop.training.units import ScaledReadout

NAME = "cramer2022"
TARGET = "twin"  # the Chip backend; "emulator" runs the same recipe on Brian2 (slower)
TASK, HIDDEN, LR, BATCH = "evidence", 64, 0.01, 64
DROP, RECOVERED = 0.05, 0.02  # the claim, in accuracy: deployment loses ≥ 5 points, the loop ends within 2


def mismatched(profile: ChipProfile, k: float) -> ChipProfile:
    """`profile` with its mismatch (τ, threshold, gain) multiplied by k."""
    m = profile.noise.mismatch
    return profile.with_overrides(
        {
            "noise.mismatch.tau": k * m.tau,
            "noise.mismatch.threshold": k * m.threshold,
            "noise.mismatch.gain": k * m.gain,
        }
    )


def _trainer(profile, spec, task, mode, chip, epochs, seed, out_dir) -> Trainer:
    return Trainer(
        profile,
        spec,
        "bptt",
        task,
        mode=mode,
        chip=chip,
        lr=LR,
        overwrite=True,  # a re-run of the recipe recomputes its runs
        batch_size=BATCH,
        seed=seed,
        out_dir=out_dir,
        progress=False,
        epochs=epochs,
    )


def run(out_dir: Path, quick: bool, seed: int, progress: bool, scale: float = 1.0) -> RecipeResult:
    """Per seed: offline once, then per mismatch level on its own chip: deploy, and train in the loop."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = load_profile("brainscales2")
    task = make_task(TASK, seed=seed)
    spec = NetworkSpec(task.n_in, HIDDEN, task.n_out, recurrent=True)
    epochs = scaled(3 if quick else 6, scale)
    levels = [6.0] if quick else [1.0, 3.0, 6.0]
    seeds = [seed + s for s in range(1 if quick else scaled(3, scale))]
    readout = ScaledReadout(task, base.readout_scale)
    rows = []
    with single_thread():
        nominal = mismatched(base, 0.0)
        for s in seeds:
            offline = _trainer(
                nominal, spec, task, "offline", open_chip(TARGET, nominal, spec, s), epochs, s,
                out_dir / "runs" / f"offline-s{s}",
            )  # fmt: skip
            offline.fit()
            weights = offline.float_weights()
            nominal_acc = offline.evaluate("test")["metric"]
            for k in steps(levels, progress, f"{NAME}: seed {s}: deploy and train in the loop"):
                profile, chip_seed = mismatched(base, k), s + 100
                chip = open_chip(TARGET, profile, spec, chip_seed)
                chip.write_weights(weights)
                deployed = evaluate_on_chip(chip, readout, spec, "test", BATCH)["metric"]
                loop = _trainer(
                    profile, spec, task, "in_the_loop", chip, epochs, s,
                    out_dir / "runs" / f"in_the_loop-k{k:g}-s{s}",
                )  # fmt: skip
                loop.fit()
                rows.append(
                    {
                        "seed": s,
                        "mismatch_scale": k,
                        "chip_seed": chip_seed,
                        "offline_nominal": nominal_acc,
                        "offline_deployed": deployed,
                        "in_the_loop": loop.evaluate("test")["metric"],
                        "in_the_loop_spikes_per_neuron": loop.history.last["spikes_per_neuron_per_sample"],
                    }
                )
    return _report(out_dir, rows, quick, task, epochs, levels, seeds)


COLUMNS = ("offline_nominal", "offline_deployed", "in_the_loop")


def _report(out_dir, rows, quick, task, epochs, levels, seeds) -> RecipeResult:
    def values(key, k):
        return [r[key] for r in rows if r["mismatch_scale"] == k]

    def mean(key, k):
        return float(np.mean(values(key, k)))

    top, n = max(levels), len(seeds)
    trends = {
        f"offline-trained weights lose ≥ {DROP:.0%} accuracy when deployed at mismatch ×{top:g} (mean of "
        f"{n} seed(s))": mean("offline_nominal", top) - mean("offline_deployed", top) >= DROP,
        f"in-the-loop training at mismatch ×{top:g} ends within {RECOVERED:.0%} of the mismatch-free "
        f"accuracy (mean of {n} seed(s))": mean("in_the_loop", top)
        >= mean("offline_nominal", top) - RECOVERED,
    }
    if len(levels) > 1:
        trends["the deployment loss grows with mismatch"] = mean("offline_deployed", top) < mean(
            "offline_deployed", min(levels)
        )
    summary = [
        {"mismatch_scale": k, **{c: f"{mean(c, k):.3f} ± {np.std(values(c, k)):.3f}" for c in COLUMNS}}
        for k in levels
    ]
    numbers = {c: mean(c, top) for c in COLUMNS}
    figs = [_figure(out_dir / "accuracy_vs_mismatch.png", rows, levels)]
    files = [write_csv(out_dir / "results.csv", rows), *figs]
    failed = [name for name, ok in trends.items() if not ok]
    verdict = (
        "Every checked trend agrees." if not failed else "Not reproduced here: " + "; ".join(failed) + "."
    )
    if quick:
        verdict = (
            f"Quick scale (1 seed, {epochs} epochs, the uncalibrated level only): indicative, too small to "
            "refute a trend; the full run (3 seeds, 3 levels) decides."
        )
    files.append(
        write_report(
            out_dir / "REPORT.md",
            "In-the-loop training on an analog chip (Cramer et al. 2022)",
            "Forward passes on the chip (with its fixed-pattern mismatch and 6-bit weights), backward pass "
            "in software through a surrogate gradient: learning corrects device mismatch that offline "
            "training cannot see. A model trained offline loses accuracy when deployed; in-the-loop "
            "training recovers it.",
            f"`brainscales2` profile (6-bit sign-split weights −63..63; mismatch τ 5 %, threshold 5 %, gain "
            f"10 %, scaled by k ∈ {levels}: ×6 is an uncalibrated chip), chip backend `{TARGET}`, one chip "
            f"instance (mismatch seed = training seed + 100) per seed and level. `{TASK}` task "
            f"({task.n_steps} steps: cues, a delay, a left/right decision; {task.split_size('test')} test "
            "trials), recurrent "
            f"{task.n_in}-{HIDDEN}-{task.n_out}, leaky readout. Trainer, bptt, Adam lr {LR} decaying 0.7 per "
            f"epoch, batch {BATCH}, {epochs} epochs each; offline = hardware-aware (quantized weights, "
            f"nominal neuron constants), trained on a mismatch-free chip. Seeds {seeds}"
            f"{', quick' if quick else ''}.",
            "Mean ± sd over seeds:\n\n"
            + md_table(summary, ["mismatch_scale", *COLUMNS])
            + "\n\nEvery run:\n\n"
            + md_table(
                rows, ["seed", "mismatch_scale", "chip_seed", *COLUMNS, "in_the_loop_spikes_per_neuron"]
            ),
            trends,
            verdict,
            figs,
            indicative=quick,
        )
    )
    return RecipeResult(NAME, rows, trends, numbers, files)


def _figure(path, rows, levels) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, marker in (
        ("offline_nominal", "offline, on a mismatch-free chip", "s"),
        ("offline_deployed", "offline, deployed on the chip", "v"),
        ("in_the_loop", "in-the-loop on the chip", "o"),
    ):
        means = [np.mean([r[key] for r in rows if r["mismatch_scale"] == k]) for k in levels]
        ax.plot(levels, means, marker=marker, label=label)
        ax.plot(
            [r["mismatch_scale"] for r in rows],
            [r[key] for r in rows],
            marker,
            alpha=0.3,
            color=ax.lines[-1].get_color(),
        )
    ax.set(
        xlabel="mismatch scale k (× the profile's τ / threshold / gain spread)",
        ylabel="test accuracy",
        title="brainscales2: offline vs in-the-loop",
    )
    ax.legend()
    return save(fig, path)

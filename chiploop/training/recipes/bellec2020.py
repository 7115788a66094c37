"""e-prop (Bellec et al., Nat. Commun. 2020; docs/science.md §3): three checks on the product's estimators.

1. Factorisation: with no recurrent weights and symmetric feedback (B = W_outᵀ) the `eprop`
   estimator's gradient equals the `bptt` (autograd) gradient to machine precision (float64); with
   recurrence, and with random feedback (`eprop_random`), it does not (cosine similarity reported).
2. Evidence accumulation (`evidence` task, delay longer than every LIF time constant), recurrent
   network, e-prop: ALIF (half the hidden neurons adapt, τ_a = 2 s) vs LIF only.
3. Pattern generation (`pattern` task): e-prop vs BPTT, recurrent LIF network.
Training uses the Trainer (offline mode on the `ideal` profile, Adam, evaluation on a twin chip).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.training.estimators import make_estimator
from chiploop.training.loop import Trainer
from chiploop.training.plots import pyplot
from chiploop.training.recipes.common import (
    RecipeResult,
    md_table,
    save,
    scaled,
    single_thread,
    steps,
    student,
    write_csv,
    write_report,
)
from chiploop.training.tasks import make_task

NAME = "bellec2020"
ADAPTATION = {
    "neuron.adaptation.tau_s": 2.0,
    "neuron.adaptation.beta": 1.0,
    "neuron.adaptation.fraction": 0.5,
}


def factorisation(seed: int) -> list[dict]:
    """Part 1: eprop vs bptt gradients on one batch of the evidence task, float64."""
    task = make_task("evidence", seed=seed, n_train=64, n_test=16)
    batch = next(task.batches("train", 32))
    profile = load_profile("ideal").with_overrides({"neuron.model": "alif", **ADAPTATION})
    rows = []
    for recurrent, estimator in ((False, "eprop"), (True, "eprop"), (False, "eprop_random")):
        twin = student(profile, NetworkSpec(task.n_in, 32, task.n_out, recurrent=recurrent), seed)
        exact = make_estimator("bptt").estimate(twin, batch, task).grads
        approx = make_estimator(estimator).estimate(twin, batch, task).grads
        g = torch.cat([exact[k].reshape(-1) for k in exact])
        a = torch.cat([approx[k].reshape(-1) for k in exact])
        rows.append(
            {
                "part": "factorisation",
                "estimator": estimator,
                "recurrent": recurrent,
                "max_abs_diff": float((g - a).abs().max()),
                "relative_diff": float((g - a).norm() / g.norm()),
                "cosine": float(g @ a / (g.norm() * a.norm())),
            }
        )
    return rows


def _train(
    out_dir: Path,
    name: str,
    profile: ChipProfile,
    spec: NetworkSpec,
    task,
    estimator: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    **rate: float,
) -> list[dict]:
    """Train with the Trainer (offline mode, Adam) on a twin chip; its history rows tagged part/model/seed."""
    chip = TwinChip(profile, spec, seed=seed)
    trainer = Trainer(
        profile,
        spec,
        estimator,
        task,
        mode="offline",
        chip=chip,
        lr=lr,
        lr_decay=1.0,  # the recipe's calibration: a constant rate
        overwrite=True,  # a re-run of the recipe recomputes its runs
        batch_size=batch_size,
        seed=seed,
        out_dir=out_dir / "runs" / f"{name}-s{seed}",
        progress=False,
        **rate,
    )
    history = trainer.fit(epochs)
    part, model = name.split("-", 1)
    return [{"part": part, "model": model, "seed": seed, **row} for row in history.rows]


def run(out_dir: Path, quick: bool, seed: int, progress: bool, scale: float = 1.0) -> RecipeResult:
    """The three parts; see the module docstring."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ideal = load_profile("ideal")
    evidence = make_task(
        "evidence",
        seed=seed,
        delay_steps=100 if quick else 150,
        n_train=scaled(512 if quick else 1024, scale, 64),
        n_test=scaled(256, scale, 64),
    )
    pattern = make_task("pattern", seed=seed)
    ev_epochs = scaled(4 if quick else 15, scale, 2)
    pat_epochs = scaled(150 if quick else 1000, scale, 20)
    ev_seeds = [seed + k for k in range(1 if quick else scaled(5, scale))]
    alif = ideal.with_overrides({"neuron.model": "alif", **ADAPTATION})
    jobs = [
        (name, profile, evidence, "eprop", ev_epochs, 64, s)
        for s in ev_seeds
        for name, profile in (("evidence-alif", alif), ("evidence-lif", ideal))
    ]
    jobs += [
        ("pattern-bptt", ideal, pattern, "bptt", pat_epochs, 1, seed),
        ("pattern-eprop", ideal, pattern, "eprop", pat_epochs, 1, seed),
    ]
    with single_thread():
        rows = factorisation(seed)
        for name, profile, task, estimator, epochs, batch, s in steps(jobs, progress, f"{NAME}: training"):
            spec = NetworkSpec(task.n_in, 100, task.n_out, recurrent=True)
            rate = {"rate_reg": 1.0, "rate_target": 0.02} if task.name == "evidence" else {}
            rows += _train(out_dir, name, profile, spec, task, estimator, epochs, batch, 0.01, s, **rate)
    return _report(out_dir, rows, quick, seed, ev_seeds, evidence, ev_epochs, pat_epochs)


def _runs(rows, part, model, seed=None) -> list[dict]:
    return [r for r in rows if r["part"] == part and r["model"] == model and seed in (None, r["seed"])]


def _final(rows, part, model) -> dict:
    return _runs(rows, part, model)[-1]


def _late(rows, part, model, seed=None) -> float:
    """Mean test metric over the second half of training (less noisy than the last epoch); with
    several seeds, the mean of theirs."""
    seeds = sorted({r["seed"] for r in _runs(rows, part, model)}) if seed is None else [seed]
    halves = []
    for s in seeds:
        sel = _runs(rows, part, model, s)[1:]
        halves.append(np.mean([r["test_metric"] for r in sel[len(sel) // 2 :]]))
    return float(np.mean(halves))


def _report(out_dir, rows, quick, seed, ev_seeds, evidence, ev_epochs, pat_epochs) -> RecipeResult:
    fact = [r for r in rows if r["part"] == "factorisation"]
    exact = next(r for r in fact if r["estimator"] == "eprop" and not r["recurrent"])
    per_seed = [
        {"seed": s, "alif": _late(rows, "evidence", "alif", s), "lif": _late(rows, "evidence", "lif", s)}
        for s in ev_seeds
    ]
    wins = sum(r["alif"] > r["lif"] for r in per_seed)
    alif_wins = _late(rows, "evidence", "alif") > _late(rows, "evidence", "lif") and 2 * wins > len(ev_seeds)
    eprop_close = _late(rows, "pattern", "eprop") >= 0.8 * _late(rows, "pattern", "bptt")
    feedforward_exact = exact["relative_diff"] < 1e-10
    others_differ = all(r["relative_diff"] > 1e-3 for r in fact if r is not exact)
    trends = {
        "e-prop == autograd without recurrence, symmetric feedback (rel. diff < 1e-10)": feedforward_exact,
        "e-prop != autograd with recurrence or random feedback (rel. diff > 1e-3)": others_differ,
        "evidence accumulation: ALIF + e-prop beats LIF-only (test accuracy, 2nd half of training; in the "
        f"mean and in most of {len(ev_seeds)} seed(s))": alif_wins,
        "pattern generation: e-prop reaches >= 80% of BPTT's 1-nmse (2nd half of training)": eprop_close,
    }
    numbers = {
        "eprop_bptt_rel_diff_feedforward": exact["relative_diff"],
        "evidence_alif": _late(rows, "evidence", "alif"),
        "evidence_lif": _late(rows, "evidence", "lif"),
        "evidence_alif_sd": float(np.std([r["alif"] for r in per_seed])),
        "evidence_lif_sd": float(np.std([r["lif"] for r in per_seed])),
        "evidence_seeds_alif_wins": float(wins),
        "pattern_bptt": _late(rows, "pattern", "bptt"),
        "pattern_eprop": _late(rows, "pattern", "eprop"),
    }
    train_rows = [r for r in rows if r["part"] != "factorisation"]
    files = [write_csv(out_dir / "results.csv", rows)]
    figs = [_fig_curves(out_dir / "learning_curves.png", train_rows)]
    files += figs
    finals = [
        _final(rows, p, m)
        for p, m in (("evidence", "alif"), ("evidence", "lif"), ("pattern", "bptt"), ("pattern", "eprop"))
    ]
    failed = [k for k, ok in trends.items() if not ok]
    files.append(
        write_report(
            out_dir / "REPORT.md",
            "e-prop (Bellec et al. 2020)",
            "e-prop's factorised gradient Σ_t L_j^t ē_ji^t equals BPTT's when there is no recurrence and "
            "the feedback is symmetric; ALIF neurons with e-prop solve evidence accumulation across a delay "
            "where LIF-only networks stay near chance; e-prop learns pattern generation close to BPTT.",
            f"`ideal` profile, recurrent hidden layer of 100 neurons, leaky readout, Trainer (offline, Adam "
            f"lr 0.01 in threshold units), evaluation on a TwinChip. Factorisation: 32 hidden ALIF "
            f"neurons, one batch of 32 evidence trials, float64. Evidence: {evidence.n_in} inputs, T = "
            f"{evidence.n_steps} steps (delay longer than τ_mem = 20 ms, τ_syn = 5 ms), "
            f"{evidence.split_size('train')} training trials, {ev_epochs} epochs, batch 64, rate regulariser "
            f"1.0 toward 0.02 spikes/step; ALIF: {ADAPTATION}. Pattern: 50 frozen-Poisson inputs, 2 outputs, "
            f"T = 100, {pat_epochs} steps. Evidence seeds {ev_seeds}; factorisation and pattern seed "
            f"{seed}{', quick' if quick else ''}.",
            "Factorisation check:\n\n"
            + md_table(fact, ["estimator", "recurrent", "max_abs_diff", "relative_diff", "cosine"])
            + f"\n\nEvidence accumulation, test accuracy on the chip, mean over the second half of training, "
            f"per seed (ALIF beats LIF in {wins} of {len(ev_seeds)}; mean ± sd: ALIF "
            f"{numbers['evidence_alif']:.3f} ± {numbers['evidence_alif_sd']:.3f}, LIF "
            f"{numbers['evidence_lif']:.3f} ± {numbers['evidence_lif_sd']:.3f}):\n\n"
            + md_table(per_seed, ["seed", "alif", "lif"])
            + f"\n\nPattern generation, 1 − NMSE, mean over the second half of training: bptt "
            f"{numbers['pattern_bptt']:.3f}, e-prop {numbers['pattern_eprop']:.3f}."
            + "\n\nLast epoch, measured on the chip (last evidence seed):\n\n"
            + md_table(
                finals, ["part", "model", "train_metric", "test_metric", "spikes_per_neuron_per_sample"]
            ),
            trends,
            "Every checked trend agrees."
            if not failed
            else "Not reproduced here: "
            + "; ".join(failed)
            + ". The networks and training budgets are far smaller "
            "than the paper's (100 neurons, minutes of CPU); see the learning curves.",
            figs,
            indicative=quick,
        )
    )
    return RecipeResult(NAME, rows, trends, numbers, files)


def _fig_curves(path, rows) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, part, ylabel in ((axes[0], "evidence", "test accuracy"), (axes[1], "pattern", "1 − NMSE")):
        for model in sorted({r["model"] for r in rows if r["part"] == part}):
            seeds = sorted({r["seed"] for r in _runs(rows, part, model)})
            curves = np.array([[r["test_metric"] for r in _runs(rows, part, model, s)] for s in seeds])
            epochs = [r["epoch"] for r in _runs(rows, part, model, seeds[0])]
            (line,) = ax.plot(epochs, curves.mean(axis=0), label=f"{model} (mean of {len(seeds)})")
            if len(seeds) > 1:
                ax.plot(epochs, curves.T, color=line.get_color(), alpha=0.25, lw=0.8)
        if part == "evidence":
            ax.axhline(0.5, color="gray", ls="--", label="chance")
        else:
            ax.set_ylim(bottom=max(-0.5, ax.get_ylim()[0]))
        ax.set(
            xlabel="epoch" if part == "evidence" else "training step (epoch of 1 pattern)",
            ylabel=ylabel,
            title=f"{part}: e-prop" if part == "evidence" else "pattern generation",
        )
        ax.legend()
    return save(fig, path)

"""Curvature of bio-plausible temporal credit assignment (Liu et al., NeurIPS 2022; docs/science.md §2).

Two experiments, each over several seeds (network init and data order; the data sets are fixed):

- **rate** (the paper's regime): a recurrent network of 32 leaky tanh units (`neuron.model: rate`,
  α = 0.2, differentiable, so the Hessian is the real one) on the `integration` task with a delay
  after the evidence, so the memory has to pass through W_rec. bptt, eprop, eprop_random
  (RFLO-type) and snap1 are trained with plain SGD until the full training loss first reaches a
  common target (matched training loss), at three learning rates; then λ_max =
  `hessian_top_eigenvalue` of the full (untruncated) loss w.r.t. hidden_hidden on training trials.
- **spiking**: the same comparison on 32 LIF neurons (`ideal` profile, Adam), without a delay.
  λ_max there is that of a surrogate pseudo-Hessian; next to it, second differences of the real
  loss along its top eigenvector say how much of it the real loss shows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.training.curvature import hessian_top_eigenvalue
from chiploop.training.estimators import make_estimator
from chiploop.training.plots import pyplot
from chiploop.training.recipes.common import (
    RecipeResult,
    generator,
    md_table,
    save,
    scaled,
    single_thread,
    steps,
    student,
    train_epochs,
    twin_loss,
    write_csv,
    write_report,
)
from chiploop.training.tasks import make_task

NAME = "liu2022"
ESTIMATORS = ("bptt", "eprop", "eprop_random", "snap1")
TRUNCATED = ESTIMATORS[1:]
HIDDEN, BATCH = 32, 50
ALPHA = 0.2  # the paper's rate-network leak per step
# Rate experiment: 20 steps of evidence, 15 silent steps, the sign reported over the last 5.
RATE_TASK = {"mu_low": 0.1, "mu_high": 0.5, "n_per_sign": 16, "n_steps": 20, "delay_steps": 15}
RATE_LRS, RATE_LR = (0.05, 0.1, 0.2), 0.1  # SGD; RATE_LR is the main comparison's
# Spiking experiment: no delay; μ larger than the paper's U(0.02, 0.15), as spike coding loses SNR.
SPIKE_TASK = {"mu_low": 0.05, "mu_high": 0.3, "n_per_sign": 16}
SPIKE_LR = 0.01  # Adam, threshold units
FD_STEPS = (0.1, 0.01)  # finite-difference steps along the unit top eigenvector (weight units)


def rate_profile() -> ChipProfile:
    """`ideal` with leaky tanh units, leak α = 1 − e^(−dt/τ) = 0.2, no synaptic filter, and a readout
    without memory of its own (τ_out = dt/10), so every memory is the hidden layer's."""
    dt = load_profile("ideal").timing.dt_s
    return load_profile("ideal").with_overrides(
        {
            "neuron.model": "rate",
            "neuron.tau_mem_s": -dt / math.log(1 - ALPHA),
            "neuron.tau_syn_s": 0.0,
            "neuron.tau_out_s": dt / 10,
        }
    )


def train_and_measure(
    profile: ChipProfile,
    task,
    estimator: str,
    seed: int,
    target: float,
    max_epochs: int,
    curv_samples: int,
    lr: float,
    optimizer: str,
) -> dict:
    """Train to `target` training loss (or `max_epochs`), then λ_max, the real loss's second
    differences along the top eigenvector, gap and losses."""
    twin = student(profile, NetworkSpec(task.n_in, HIDDEN, task.n_out, recurrent=True), seed)
    train = next(task.batches("train", task.split_size("train")))
    test = next(task.batches("test", task.split_size("test")))

    def train_loss() -> float:
        with torch.no_grad():
            return float(twin_loss(twin, task, train))

    epochs = train_epochs(
        twin, task, make_estimator(estimator), lr, max_epochs, BATCH, seed, optimizer,
        stop=lambda: train_loss() <= target,
    )  # fmt: skip
    with torch.no_grad():
        final_train, final_test = train_loss(), float(twin_loss(twin, task, test))
    curv = next(task.batches("train", curv_samples))
    w_rec = twin.weights["hidden_hidden"]
    eig = hessian_top_eigenvalue(
        lambda: twin_loss(twin, task, curv), [w_rec], tol=1e-3, max_iter=40, generator=generator(seed, 5)
    )
    row = {
        "estimator": estimator,
        "seed": seed,
        "lr": lr,
        "epochs": len(epochs),
        "matched": final_train <= target,
        "train_loss": final_train,
        "test_loss": final_test,
        "gap": final_test - final_train,
        "lambda_max": eig.value,
        "lanczos_converged": eig.converged,
    }
    return row | _second_differences(twin, task, curv, eig.vector.reshape(w_rec.shape))


def _second_differences(twin, task, batch, v: torch.Tensor) -> dict:
    """(L(W + εv) − 2 L(W) + L(W − εv)) / ε² of the real loss along W_rec's unit vector v."""
    w = {k: p.detach() for k, p in twin.weights.items()}

    def loss(shift: torch.Tensor) -> float:
        with torch.no_grad():
            return float(twin_loss(twin, task, batch, w | {"hidden_hidden": w["hidden_hidden"] + shift}))

    centre = loss(torch.zeros_like(v))
    return {f"fd_eps_{eps:g}": (loss(eps * v) - 2 * centre + loss(-eps * v)) / eps**2 for eps in FD_STEPS}


def run(out_dir: Path, quick: bool, seed: int, progress: bool, scale: float = 1.0) -> RecipeResult:
    """Both experiments, every rule × seed (× learning rate); see the module docstring."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = _config(quick, seed, scale)
    rate_task = make_task(
        "integration", seed=seed, n_train=cfg["rate_train"], n_test=cfg["n_test"], **RATE_TASK
    )
    spike_task = make_task(
        "integration", seed=seed, n_train=cfg["spike_train"], n_test=cfg["n_test"], **SPIKE_TASK
    )
    rate, ideal = rate_profile(), load_profile("ideal")
    grid = [("rate", e, s, lr) for lr in RATE_LRS for s in cfg["rate_seeds"] for e in ESTIMATORS]
    grid += [("spiking", e, s, SPIKE_LR) for s in cfg["spike_seeds"] for e in ESTIMATORS]
    rows = []
    with single_thread():
        for kind, e, s, lr in steps(grid, progress, f"{NAME}: train to matched loss, measure λ_max"):
            if kind == "rate":
                args = (
                    rate,
                    rate_task,
                    e,
                    s,
                    cfg["rate_target"],
                    cfg["rate_epochs"],
                    cfg["rate_curv"],
                    lr,
                    "sgd",
                )
            else:
                args = (ideal, spike_task, e, s, cfg["spike_target"], cfg["spike_epochs"],
                        cfg["spike_curv"], lr, "adam")  # fmt: skip
            rows.append({"experiment": kind} | train_and_measure(*args))
    return _report(out_dir, rows, cfg, quick)


def _config(quick: bool, seed: int, scale: float) -> dict:
    rate_train, spike_train = (
        scaled(300 if quick else 500, scale, 100),
        scaled(400 if quick else 1000, scale, 100),
    )
    return {
        "rate_train": rate_train,
        "spike_train": spike_train,
        "n_test": scaled(250, scale, 50),
        "rate_seeds": [seed + k for k in range(scaled(2 if quick else 5, scale))],
        "spike_seeds": [seed + k for k in range(scaled(1 if quick else 5, scale))],
        "rate_target": 0.45 if quick else 0.42,
        "spike_target": 0.72 if quick else 0.63,
        "rate_epochs": 40 if quick else 80,  # caps: training stops at the matched loss
        "spike_epochs": 10 if quick else 40,
        "rate_curv": min(250, rate_train),
        "spike_curv": min(250, spike_train),
    }


def _summary(rows: list[dict], experiment: str, lr: float) -> list[dict]:
    """Per rule: λ_max, second differences and gap over seeds, and in how many seeds λ_max beats BPTT's."""
    sel_all = [r for r in rows if r["experiment"] == experiment and r["lr"] == lr]
    bptt = {r["seed"]: r["lambda_max"] for r in sel_all if r["estimator"] == "bptt"}
    out = []
    for e in ESTIMATORS:
        sel = [r for r in sel_all if r["estimator"] == e]
        lam, gap = np.array([r["lambda_max"] for r in sel]), np.array([r["gap"] for r in sel])
        fd = np.array([r[f"fd_eps_{FD_STEPS[-1]:g}"] for r in sel])
        out.append(
            {
                "experiment": experiment,
                "lr": lr,
                "estimator": e,
                "lambda_max_mean": float(lam.mean()),
                "lambda_max_std": float(lam.std()),
                "lambda_max_median": float(np.median(lam)),
                "seeds_above_bptt": "—"
                if e == "bptt"
                else f"{sum(r['lambda_max'] > bptt[r['seed']] for r in sel)}",
                "seeds": len(sel),
                "fd_curvature_mean": float(fd.mean()),
                "gap_mean": float(gap.mean()),
                "gap_std": float(gap.std()),
                "train_loss_mean": float(np.mean([r["train_loss"] for r in sel])),
                "epochs_mean": float(np.mean([r["epochs"] for r in sel])),
                "matched": f"{sum(r['matched'] for r in sel)}/{len(sel)}",
            }
        )
    return out


def _report(out_dir: Path, rows: list[dict], cfg: dict, quick: bool) -> RecipeResult:
    rate = {lr: {s["estimator"]: s for s in _summary(rows, "rate", lr)} for lr in RATE_LRS}
    spike = {s["estimator"]: s for s in _summary(rows, "spiking", SPIKE_LR)}
    main, b = rate[RATE_LR], rate[RATE_LR]["bptt"]
    n_seeds = len(cfg["rate_seeds"])
    need = math.ceil(0.8 * n_seeds)
    lo, hi = min(RATE_LRS), max(RATE_LRS)
    rate_rows = [r for r in rows if r["experiment"] == "rate"]
    fd_small = f"fd_eps_{FD_STEPS[-1]:g}"
    trends = {
        f"rate: each truncated rule's λ_max is above BPTT's in ≥ {need} of {n_seeds} seeds "
        f"(paired, lr {RATE_LR})": all(
            int(main[e]["seeds_above_bptt"]) >= need for e in TRUNCATED
        ),
        f"rate: each truncated rule's mean λ_max is above BPTT's (lr {RATE_LR})": all(
            main[e]["lambda_max_mean"] > b["lambda_max_mean"] for e in TRUNCATED
        ),
        f"rate: a larger learning rate leaves each truncated rule at a lower λ_max "
        f"(mean, lr {hi} below lr {lo})": all(
            rate[hi][e]["lambda_max_mean"] < rate[lo][e]["lambda_max_mean"] for e in TRUNCATED
        ),
        f"rate: truncated rules have a larger generalization gap than BPTT "
        f"(mean, each rule, lr {RATE_LR})": all(
            main[e]["gap_mean"] > b["gap_mean"] for e in TRUNCATED
        ),
        "rate: λ_max is the real loss's curvature "
        "(second difference along its eigenvector within 10 %, every run)": all(
            abs(r[fd_small] - r["lambda_max"]) <= 0.1 * abs(r["lambda_max"]) for r in rate_rows
        ),
        "rate: every run reached the matched training loss": all(r["matched"] for r in rate_rows),
    }  # fmt: skip
    numbers = {f"lambda_max_{e}": main[e]["lambda_max_mean"] for e in ESTIMATORS}
    numbers |= {
        f"lambda_max_{e}_lr{lr:g}": rate[lr][e]["lambda_max_mean"] for lr in RATE_LRS for e in ESTIMATORS
    }
    numbers |= {f"gap_{e}": main[e]["gap_mean"] for e in ESTIMATORS}
    numbers |= {f"spiking_lambda_max_{e}": spike[e]["lambda_max_mean"] for e in ESTIMATORS}
    files = [write_csv(out_dir / "results.csv", rows)]
    figs = [_figure(out_dir / "curvature_and_gap.png", rows, rate)]
    files += figs
    columns = ["lr", "estimator", "lambda_max_mean", "lambda_max_std", "lambda_max_median",
               "seeds_above_bptt", "seeds", "fd_curvature_mean", "gap_mean", "gap_std", "train_loss_mean",
               "epochs_mean", "matched"]  # fmt: skip
    fd_cols = [f"fd_eps_{eps:g}" for eps in FD_STEPS]
    every = [
        "experiment",
        "lr",
        "estimator",
        "seed",
        "epochs",
        "train_loss",
        "test_loss",
        "gap",
        "lambda_max",
        *fd_cols,
    ]
    measured = (
        f"**Rate network** (mean ± std over seeds {cfg['rate_seeds']}; seeds_above_bptt: seeds whose λ_max "
        "exceeds BPTT's at the same seed and learning rate; fd_curvature: second difference of the real loss "
        f"along the top eigenvector, ε = {FD_STEPS[-1]:g}):\n\n"
        + md_table([s for lr in RATE_LRS for s in rate[lr].values()], columns)
        + f"\n\n**Spiking network** (pseudo-Hessian through the surrogate; seeds {cfg['spike_seeds']}):\n\n"
        + md_table(list(spike.values()), columns)
        + "\n\nEvery run (fd_eps_ε: second difference of the real loss along the top eigenvector "
        "at step ε):\n\n" + md_table(rows, every)
    )
    failed = [k for k, ok in trends.items() if not ok]
    spike_fd = np.array([[r[c] for c in fd_cols] for r in rows if r["experiment"] == "spiking"])
    spike_lam = np.array([r["lambda_max"] for r in rows if r["experiment"] == "spiking"])
    caveat = (
        f" In the spiking network λ_max (mean {spike_lam.mean():.3g}) is the top eigenvalue of a surrogate "
        "pseudo-Hessian, not of the loss: the real loss is piecewise constant in the weights, and its second "
        f"differences along that eigenvector are {', '.join(f'{x:.3g}' for x in spike_fd.mean(0))} (mean, "
        f"ε = {', '.join(f'{e:g}' for e in FD_STEPS)}), so spiking curvature claims are not tested by it."
    )
    lead = "Not seen at this reduced scale (the full run decides): " if quick else "Not reproduced here: "
    verdict = ("Every checked trend agrees." if not failed else lead + "; ".join(failed) + ".") + caveat
    files.append(
        write_report(
            out_dir / "REPORT.md",
            "Curvature of bio-plausible temporal credit assignment (Liu et al. 2022)",
            "Truncated rules (e-prop, RFLO, SnAp-1) settle in higher-curvature regions (larger leading "
            "Hessian eigenvalue λ_max) than BPTT at matched training loss, and generalize worse; "
            "a larger learning rate moves them to flatter regions.",
            _setup(cfg, quick),
            measured,
            trends,
            verdict,
            figs,
            indicative=quick,
        )
    )
    return RecipeResult(NAME, rows, trends, numbers, files)


def _setup(cfg: dict, quick: bool) -> str:
    o, s = RATE_TASK, SPIKE_TASK
    return (
        "**Rate network (the paper's regime).** `integration` task, spike-coded evidence "
        f"(2×{o['n_per_sign']} inputs, {o['n_steps']} steps of evidence, "
        f"μ ~ U({o['mu_low']}, {o['mu_high']})), then "
        f"{o['delay_steps']} silent steps; target: the sign over the last 5 (delay) steps. "
        f"{cfg['rate_train']} training / {cfg['n_test']} test trials. {HIDDEN} leaky tanh units "
        "(`neuron.model: rate`, "
        f"h ← (1 − α)h + α·tanh(W_in x + W_rec h), α = {ALPHA}; no synaptic filter; a readout without memory "
        "of its own), so the evidence must be held through W_rec: a unit's own leak keeps "
        f"{(1 - ALPHA) ** o['delay_steps']:.2g} of it over the delay. Plain SGD, batch {BATCH}, "
        f"learning rates {list(RATE_LRS)} (main comparison: {RATE_LR}); training stops when the full "
        "training loss first "
        f"reaches {cfg['rate_target']} (at most {cfg['rate_epochs']} epochs). Seeds {cfg['rate_seeds']}.\n\n"
        f"**Spiking network.** The same task without a delay (T = 30, target over the last 5 steps, "
        f"μ ~ U({s['mu_low']}, {s['mu_high']})), {cfg['spike_train']} training trials, {HIDDEN} LIF neurons "
        f"(`ideal` profile, τ_mem = 20 steps), Adam lr {SPIKE_LR} (threshold units), matched loss "
        f"{cfg['spike_target']} (at most {cfg['spike_epochs']} epochs). Seeds {cfg['spike_seeds']}.\n\n"
        f"Both: λ_max by Lanczos on the full loss w.r.t. W_rec on {cfg['rate_curv']} (rate) / "
        f"{cfg['spike_curv']} (spiking) training trials; the generalization gap is test − train loss"
        f"{'; quick run' if quick else ''}."
    )


def _figure(path: Path, rows: list[dict], rate: dict) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = (
        (axes[0], "rate", RATE_LR, f"λ_max, rate network (lr {RATE_LR:g})"),
        (axes[2], "spiking", SPIKE_LR, "λ_max, spiking network (pseudo-Hessian)"),
    )
    for ax, kind, lr, title in panels:
        for i, e in enumerate(ESTIMATORS):
            vals = [
                r["lambda_max"]
                for r in rows
                if r["experiment"] == kind and r["lr"] == lr and r["estimator"] == e
            ]
            ax.plot(i + np.linspace(-0.12, 0.12, len(vals)), vals, "o", alpha=0.6)
            ax.errorbar([i], [np.mean(vals)], yerr=[np.std(vals)], fmt="_", color="k", capsize=6, ms=20)
        ax.set_xticks(range(len(ESTIMATORS)), ESTIMATORS)
        ax.set(
            title=title, ylabel="λ_max of the loss w.r.t. W_rec", xlabel="rule (dots: seeds; bar: mean ± std)"
        )
    for e in ESTIMATORS:
        means = [rate[lr][e]["lambda_max_mean"] for lr in RATE_LRS]
        stds = [rate[lr][e]["lambda_max_std"] for lr in RATE_LRS]
        axes[1].errorbar(RATE_LRS, means, yerr=stds, marker="o", capsize=3, label=e)
    axes[1].set(xscale="log", xlabel="SGD learning rate", ylabel="λ_max (mean ± std)",
                title="rate network: λ_max vs learning rate")  # fmt: skip
    axes[1].legend()
    return save(fig, path)

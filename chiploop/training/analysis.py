"""How good is a gradient estimator, how sharp is the loss, how robust is a trained model.

- `gradient_quality`: bias, variance and alignment of an estimator against a reference estimator
  (bptt by default) from the same weights, overall and per layer.
- `loss_curvature` / `loss_hessian_trace`: leading Hessian eigenvalue and trace of the twin's loss.
- `generalization_gap` and `noise_robustness`: what a trained model keeps under deployment noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from chiploop.cost import COST_COLUMNS
from chiploop.errors import ChiploopError
from chiploop.training.curvature import EigenEstimate, hessian_top_eigenvalue, hessian_trace
from chiploop.training.estimators import GradientEstimator, make_estimator
from chiploop.training.estimators.base import model_dtype
from chiploop.training.tasks import Batch, Task

if TYPE_CHECKING:
    from chiploop.chip.network import NetworkSpec
    from chiploop.chip.protocol import Chip
    from chiploop.chip_profiles.model import ChipProfile
    from chiploop.emulator.twin import TorchTwin
    from chiploop.training.loop import Trainer


@dataclass(frozen=True)
class GradientQuality:
    """Bias norm ‖E[ĝ] − g‖, variance tr Cov(ĝ), mean cosine(ĝ, g), ‖g‖; overall and per layer."""

    bias_norm: float
    variance: float
    cosine: float
    reference_norm: float
    per_layer: dict[str, dict[str, float]]

    def as_row(self) -> dict[str, float]:
        """Flat figures for a results table."""
        row = {
            "bias_norm": self.bias_norm,
            "variance": self.variance,
            "cosine": self.cosine,
            "grad_norm": self.reference_norm,
        }
        for layer, figures in self.per_layer.items():
            row.update({f"{name}[{layer}]": value for name, value in figures.items()})
        return row


def _figures(draws: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """draws [R, n], reference [n] -> bias norm, variance (R − 1 denominator), mean cosine.

    ‖mean − g‖² over-estimates ‖bias‖² by variance / R for independent draws; that share is
    subtracted (clamped at 0), so a high-variance unbiased estimator does not look biased.
    """
    mean = draws.mean(0)
    variance = float(((draws - mean) ** 2).sum(1).sum() / max(len(draws) - 1, 1))
    bias_sq = float(((mean - reference) ** 2).sum()) - variance / len(draws)
    ref_norm = float(reference.norm())
    norms = draws.norm(dim=1) * ref_norm
    cos = torch.where(norms > 0, draws @ reference / norms.clamp_min(1e-300), torch.zeros_like(norms))
    return {"bias_norm": max(bias_sq, 0.0) ** 0.5, "variance": variance, "cosine": float(cos.mean())}


def _as_estimator(estimator: GradientEstimator | str) -> GradientEstimator:
    return make_estimator(estimator) if isinstance(estimator, str) else estimator


def gradient_quality(
    estimator: GradientEstimator | str,
    model: TorchTwin,
    batch: Batch,
    task: Task,
    *,
    reference: GradientEstimator | str = "bptt",
    repeats: int = 8,
    chip: Chip | None = None,
) -> GradientQuality:
    """Draw the estimator `repeats` times at the current weights and compare with the reference."""
    if repeats < 2:
        raise ChiploopError(f"gradient_quality needs repeats >= 2, got {repeats}")
    estimator, reference = _as_estimator(estimator), _as_estimator(reference)
    ref = reference.estimate(model, batch, task, chip).grads
    draws = [estimator.estimate(model, batch, task, chip).grads for _ in range(repeats)]
    layers = list(ref)

    def stack(keys: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        d = torch.stack([torch.cat([g[k].detach().reshape(-1).double() for k in keys]) for g in draws])
        r = torch.cat([ref[k].detach().reshape(-1).double() for k in keys])
        return d, r

    total = _figures(*stack(layers))
    return GradientQuality(
        bias_norm=total["bias_norm"],
        variance=total["variance"],
        cosine=total["cosine"],
        reference_norm=float(stack(layers)[1].norm()),
        per_layer={k: _figures(*stack([k])) for k in layers},
    )


def _loss_closure(model: TorchTwin, batch: Batch, task: Task):  # noqa: ANN202 - a closure
    def loss() -> torch.Tensor:
        return task.loss(model(batch.inputs.to(model_dtype(model))).v["out"], batch.targets)

    return loss


def _params(model: TorchTwin, layers: Sequence[str] | None) -> list[torch.Tensor]:
    keys = list(model.weights) if layers is None else list(layers)
    unknown = [k for k in keys if k not in model.weights]
    if unknown:
        raise ChiploopError(f"unknown layer(s) {unknown}; the model has {list(model.weights)}")
    return [model.weights[k] for k in keys]


def loss_curvature(
    model: TorchTwin,
    batch: Batch,
    task: Task,
    *,
    layers: Sequence[str] | None = None,
    tol: float = 1e-3,
    max_iter: int = 30,
    seed: int = 0,
) -> EigenEstimate:
    """Leading eigenvalue of the Hessian of the twin's task loss w.r.t. `layers` (default: all)."""
    return hessian_top_eigenvalue(
        _loss_closure(model, batch, task),
        _params(model, layers),
        tol=tol,
        max_iter=max_iter,
        generator=torch.Generator().manual_seed(seed),
    )


def loss_hessian_trace(
    model: TorchTwin,
    batch: Batch,
    task: Task,
    *,
    layers: Sequence[str] | None = None,
    samples: int = 16,
    seed: int = 0,
) -> float:
    """Hutchinson estimate of the trace of the Hessian of the twin's task loss."""
    return hessian_trace(
        _loss_closure(model, batch, task),
        _params(model, layers),
        samples=samples,
        generator=torch.Generator().manual_seed(seed),
    )


def generalization_gap(train_metric: float, test_metric: float) -> float:
    """Train metric minus test metric (higher-is-better metrics: a positive gap is overfitting)."""
    return float(train_metric - test_metric)


def deployed_metric(
    weights: dict[str, np.ndarray],
    profile: ChipProfile,
    spec: NetworkSpec,
    task: Task,
    *,
    draws: int = 3,
    target: str = "emulator",
    split: str = "test",
    batch_size: int = 64,
) -> dict[str, float]:
    """Mean and std of the task metric of `weights` deployed on `draws` fresh chip instances, and
    the mean of each cost column (`chiploop.cost.COST_COLUMNS`) over them.

    Each draw is a new chip seed: new frozen mismatch, faults and programming noise.
    """
    from chiploop.chip.targets import open_chip
    from chiploop.training.loop import evaluate_on_chip

    results = []
    for draw in range(draws):
        chip = open_chip(target, profile, spec, seed=10_000 + draw)
        try:
            chip.write_weights(weights)
            results.append(evaluate_on_chip(chip, task, spec, split, batch_size))
        finally:
            chip.close()
    metrics = [r["metric"] for r in results]
    costs = {c: float(np.mean([r[c] for r in results])) for c in COST_COLUMNS}
    return {"metric_mean": float(np.mean(metrics)), "metric_std": float(np.std(metrics)), **costs}


def noise_robustness(
    trainer: Trainer,
    field: str,
    levels: Sequence[Any],
    *,
    draws: int = 3,
    target: str = "emulator",
    split: str = "test",
) -> list[dict[str, Any]]:
    """The trained weights' metric deployed under each level of a profile field."""
    weights = trainer.float_weights()
    return [
        {
            "level": level,
            **deployed_metric(
                weights,
                trainer.profile.with_overrides({field: level}),
                trainer.spec,
                trainer.readout,
                draws=draws,
                target=target,
                split=split,
                batch_size=trainer.eval_batch_size,
            ),
        }
        for level in levels
    ]

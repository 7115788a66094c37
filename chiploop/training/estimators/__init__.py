"""Gradient estimators: the registry (`make_estimator`, `ESTIMATORS`) and the shared types."""

from __future__ import annotations

import inspect

from chiploop.errors import TrainingError
from chiploop.training.estimators.base import Estimator, GradEstimate, GradientEstimator
from chiploop.training.estimators.bptt import BPTT, TBPTT
from chiploop.training.estimators.eprop import EProp, EPropRandom, SnAp1
from chiploop.training.estimators.feedback_alignment import DirectFeedbackAlignment, FeedbackAlignment
from chiploop.training.estimators.noisy_oracle import NoisyOracle
from chiploop.training.estimators.perturbation import NodePerturbation, WeightPerturbation
from chiploop.training.estimators.stdp_sgd import STDPSGD

_REGISTRY: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (
        BPTT,
        TBPTT,
        EProp,
        EPropRandom,
        SnAp1,
        FeedbackAlignment,
        DirectFeedbackAlignment,
        WeightPerturbation,
        NodePerturbation,
        STDPSGD,
        NoisyOracle,
    )
}
ESTIMATORS: tuple[str, ...] = tuple(_REGISTRY)
_BASE_OPTIONS = ("rate_reg", "rate_target")


def estimator_options(name: str) -> tuple[str, ...]:
    """The keyword options `make_estimator(name, ...)` accepts."""
    if name not in _REGISTRY:
        raise TrainingError(f"unknown estimator {name!r}; valid estimators: {', '.join(ESTIMATORS)}")
    own = inspect.signature(_REGISTRY[name].__init__).parameters.values()
    names = [p.name for p in own if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    return tuple(dict.fromkeys([*names, *_BASE_OPTIONS]))


def make_estimator(name: str, **options: object) -> Estimator:
    """Build the estimator `name` (one of ESTIMATORS) with its keyword `options`.

    Every estimator accepts `rate_reg` and `rate_target` (firing-rate regulariser, see base.py).
    """
    valid = estimator_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TrainingError(
            f"estimator {name!r}: unknown option(s) {unknown}; valid options: {', '.join(valid)}"
        )
    return _REGISTRY[name](**options)


__all__ = [
    "ESTIMATORS",
    "Estimator",
    "GradEstimate",
    "GradientEstimator",
    "estimator_options",
    "make_estimator",
]

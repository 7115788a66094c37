"""Surrogate spike functions: Heaviside forward, a smooth pseudo-derivative backward.

A surrogate is an object, not a string (Norse style): call it on the normalised distance to
threshold `x = (v - A) / threshold` to get spikes `H(x >= 0)` whose gradient is `derivative(x)`.
`derivative` is public because e-prop uses the pseudo-derivative directly in its eligibility traces.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from chiploop.errors import TrainingError


def _heaviside(x: Tensor) -> Tensor:
    """`x >= 0` as 0/1 in x's dtype (comparing into a float `out` beats a bool cast on CPU)."""
    return torch.ge(x, 0.0, out=torch.empty_like(x))


class _SpikeFunction(torch.autograd.Function):
    """Heaviside(x >= 0) whose backward multiplies by the surrogate's pseudo-derivative."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return _heaviside(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


class Surrogate(ABC):
    """Base of every surrogate: `__call__` spikes with surrogate gradient, `derivative` is ψ(x)."""

    def __call__(self, x: Tensor) -> Tensor:
        """Spikes `H(x >= 0)` in x's dtype; the backward pass uses `derivative(x)`."""
        if not (x.requires_grad and torch.is_grad_enabled()):
            return _heaviside(x)
        return _SpikeFunction.apply(x, self)

    @abstractmethod
    def derivative(self, x: Tensor) -> Tensor:
        """The pseudo-derivative dz/dx evaluated at x."""


def _positive(owner: object, name: str) -> None:
    value = getattr(owner, name)
    if not value > 0:
        raise TrainingError(f"{type(owner).__name__}.{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class SuperSpike(Surrogate):
    """Fast sigmoid (Zenke & Ganguli 2018): ψ(x) = 1 / (1 + beta |x|)^2."""

    beta: float = 10.0

    def __post_init__(self) -> None:
        _positive(self, "beta")

    def derivative(self, x: Tensor) -> Tensor:
        return (1.0 + self.beta * x.abs()).reciprocal().square()


@dataclass(frozen=True)
class Triangle(Surrogate):
    """e-prop's pseudo-derivative (Bellec et al. 2020): ψ(x) = gamma · max(0, 1 - |x|)."""

    gamma: float = 0.3

    def __post_init__(self) -> None:
        _positive(self, "gamma")

    def derivative(self, x: Tensor) -> Tensor:
        return self.gamma * (1.0 - x.abs()).clamp(min=0.0)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Derivative of the logistic sigmoid of slope beta: ψ(x) = beta · σ(beta x) · (1 - σ(beta x))."""

    beta: float = 10.0

    def __post_init__(self) -> None:
        _positive(self, "beta")

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.beta * x)
        return self.beta * s * (1.0 - s)

"""Surrogate spike functions: Heaviside forward, their pseudo-derivative backward."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from chiploop.chip.surrogates import Sigmoid, SuperSpike, Surrogate, Triangle
from chiploop.errors import TrainingError

X = torch.linspace(-2.5, 2.5, 101, dtype=torch.float64)

# Antiderivatives F with F' = the surrogate's pseudo-derivative: a finite-difference check of
# `derivative` that does not reuse its formula.
ANTIDERIVATIVES = {
    SuperSpike(beta=4.0): lambda x: x / (1.0 + 4.0 * x.abs()),
    Triangle(gamma=0.3): lambda x: 0.3 * torch.where(x.abs() >= 1, 0.5 * x.sign(), x - 0.5 * x * x.abs()),
    Sigmoid(beta=3.0): lambda x: torch.sigmoid(3.0 * x),
}


@pytest.mark.parametrize("surrogate", list(ANTIDERIVATIVES), ids=lambda s: type(s).__name__)
def test_forward_is_heaviside_at_zero_inclusive(surrogate: Surrogate) -> None:
    x = torch.tensor([-1.0, -1e-12, 0.0, 1e-12, 3.0])
    assert surrogate(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert surrogate(x.double()).dtype == torch.float64


@pytest.mark.parametrize("surrogate", list(ANTIDERIVATIVES), ids=lambda s: type(s).__name__)
def test_derivative_matches_finite_differences_of_its_antiderivative(surrogate: Surrogate) -> None:
    f, h = ANTIDERIVATIVES[surrogate], 1e-6
    numeric = (f(X + h) - f(X - h)) / (2 * h)
    torch.testing.assert_close(surrogate.derivative(X), numeric, atol=1e-5, rtol=1e-6)  # kinks: O(h)


@pytest.mark.parametrize("surrogate", list(ANTIDERIVATIVES), ids=lambda s: type(s).__name__)
def test_backward_uses_the_pseudo_derivative(surrogate: Surrogate) -> None:
    x = X.clone().requires_grad_(True)
    weights = torch.arange(1.0, 102.0, dtype=torch.float64)
    (surrogate(x) * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights * surrogate.derivative(X))


def test_known_values() -> None:
    zero, one = torch.tensor(0.0), torch.tensor(1.0)
    assert SuperSpike(beta=10.0).derivative(zero).item() == 1.0
    assert SuperSpike(beta=10.0).derivative(one).item() == pytest.approx(1 / 121)
    assert Triangle(gamma=0.3).derivative(zero).item() == pytest.approx(0.3)
    assert Triangle(gamma=0.3).derivative(torch.tensor(1.5)).item() == 0.0
    assert Sigmoid(beta=4.0).derivative(zero).item() == pytest.approx(1.0)


def test_double_backward_through_the_surrogate() -> None:
    x = torch.tensor([0.2, -0.4], dtype=torch.float64, requires_grad=True)
    s = SuperSpike(beta=2.0)
    (g,) = torch.autograd.grad(s(x).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    expected = -2 * 2.0 * x.detach().sign() / (1 + 2.0 * x.detach().abs()) ** 3
    torch.testing.assert_close(gg, expected)


def test_surrogates_are_frozen_values() -> None:
    assert SuperSpike(beta=3.0) == SuperSpike(beta=3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SuperSpike().beta = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "make", [lambda: SuperSpike(beta=0.0), lambda: Triangle(gamma=-1.0), lambda: Sigmoid(0)]
)
def test_bad_parameters_raise(make) -> None:
    with pytest.raises(TrainingError, match="must be > 0"):
        make()

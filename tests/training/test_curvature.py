"""Curvature estimators against quadratics whose spectrum is known."""

import numpy as np
import pytest
import torch

from chiploop.training.curvature import hessian_top_eigenvalue, hessian_trace, hessian_vector_product


def _quadratic(spectrum: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(spectrum), len(spectrum))))
    h = torch.tensor(q @ np.diag(spectrum) @ q.T)
    x = torch.tensor(rng.normal(size=len(spectrum)), requires_grad=True)
    return (lambda: 0.5 * x @ h @ x), [x], h


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_eigenvalue_of_known_spectrum(seed):
    spectrum = np.concatenate([[7.5, 7.2, -3.0], np.linspace(-1, 1, 47)])
    loss_fn, params, _ = _quadratic(spectrum, seed)
    est = hessian_top_eigenvalue(
        loss_fn, params, tol=1e-9, max_iter=60, generator=torch.Generator().manual_seed(seed)
    )
    assert est.converged
    assert est.value == pytest.approx(7.5, rel=1e-3)


def test_hvp_matches_matrix():
    loss_fn, params, h = _quadratic(np.arange(1.0, 6.0), 3)
    v = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hessian_vector_product(loss_fn, params, v), h @ v)


def test_hutchinson_trace_is_close():
    spectrum = np.linspace(0.5, 2.0, 40)
    loss_fn, params, _ = _quadratic(spectrum, 4)
    tr = hessian_trace(loss_fn, params, samples=400, generator=torch.Generator().manual_seed(1))
    assert tr == pytest.approx(spectrum.sum(), rel=0.05)

"""Loss curvature from Hessian-vector products: leading eigenvalue (Lanczos) and trace (Hutchinson).

Both work on any scalar loss closure and a list of parameter tensors, so they serve the twin's
loss as well as a plain quadratic in the tests. Hessian-vector products use double backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

LossFn = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class EigenEstimate:
    """Leading Hessian eigenvalue with the Lanczos iterations it took and whether it converged.

    vector: its Ritz vector, flat over the parameters, unit norm (None if not computed)."""

    value: float
    iterations: int
    converged: bool
    vector: torch.Tensor | None = None


def hessian_vector_product(
    loss_fn: LossFn, params: Sequence[torch.Tensor], vector: torch.Tensor
) -> torch.Tensor:
    """H·v for the loss at the current parameters; `vector` is flat over all params."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])
    hv = torch.autograd.grad(flat_grad @ vector, params, allow_unused=True)
    return torch.cat(
        [(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(hv, params, strict=True)]
    )


def _n_params(params: Sequence[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)


def hessian_top_eigenvalue(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    *,
    tol: float = 1e-6,
    max_iter: int = 100,
    generator: torch.Generator | None = None,
) -> EigenEstimate:
    """Largest (algebraic) Hessian eigenvalue by Lanczos with full reorthogonalisation.

    Stops when the top Ritz value changes by less than `tol` (relative) between iterations.
    """
    params = list(params)
    n = _n_params(params)
    dtype, device = params[0].dtype, params[0].device
    q = (
        torch.randn(n, generator=generator, dtype=dtype, device=device)
        if generator is not None
        else torch.randn(n, dtype=dtype, device=device)
    )
    q = q / q.norm()
    basis: list[torch.Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    previous = np.inf
    top = np.nan
    for it in range(1, min(max_iter, n) + 1):
        basis.append(q)
        w = hessian_vector_product(loss_fn, params, q).detach()
        alpha = float(w @ q)
        alphas.append(alpha)
        for b in basis:  # full reorthogonalisation keeps the Ritz values honest in float32
            w = w - (w @ b) * b
        beta = float(w.norm())
        tri = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        values, vectors = np.linalg.eigh(tri)
        top = float(values[-1])
        if abs(top - previous) <= tol * max(abs(top), 1e-12) or beta < 1e-10 * max(abs(top), 1.0):
            return EigenEstimate(top, it, True, _ritz(basis, vectors[:, -1]))
        previous = top
        betas.append(beta)
        q = w / beta
    return EigenEstimate(top, len(alphas), False, _ritz(basis, vectors[:, -1]))


def _ritz(basis: list[torch.Tensor], coefficients: np.ndarray) -> torch.Tensor:
    """The Ritz vector Σ c_k q_k, normalised."""
    v = torch.stack(basis).T @ torch.as_tensor(coefficients, dtype=basis[0].dtype, device=basis[0].device)
    return v / v.norm()


def hessian_trace(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    *,
    samples: int = 32,
    generator: torch.Generator | None = None,
) -> float:
    """Hutchinson estimate of tr(H) with Rademacher probes."""
    params = list(params)
    n = _n_params(params)
    dtype, device = params[0].dtype, params[0].device
    total = 0.0
    for _ in range(samples):
        bits = torch.randint(0, 2, (n,), generator=generator, device=device)
        z = (2 * bits - 1).to(dtype)
        total += float(z @ hessian_vector_product(loss_fn, params, z).detach())
    return total / samples

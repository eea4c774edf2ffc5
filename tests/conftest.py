"""Shared fixtures, tolerances and independent reference computations.

The references here use only numpy and ``model.predict_outputs`` (finite differences), never
the derivative code under test, so agreement with them is evidence, not tautology.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from tests.cases import MODEL_CASE_IDS, MODEL_CASES


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    """Run BLAS single-threaded: the problems are tiny, and a multi-threaded OpenBLAS on a
    busy 2-core machine spins and can be 10-50x slower. No tested value depends on it."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ----------------------------------------------------------------------------- tolerances
RTOL = 1e-5
"""Relative tolerance for comparisons with central finite differences (eps = 1e-6)."""
ATOL = 1e-8
"""Absolute tolerance for comparisons with central finite differences."""
FD2_ATOL = 1e-6
"""Absolute tolerance for second differences of a scalar (Hessians, step 1e-4)."""
TIGHT = 1e-10
"""Tolerance for algebraic identities that hold up to rounding."""
SOLVE_RTOL = 1e-8
"""Relative error allowed between two solves of a well-conditioned (damped) system."""
MC_RTOL = 0.05
"""Relative Frobenius error allowed for a Monte-Carlo Fisher with ~20000 label draws."""
MC_ATOL = 0.02
"""Absolute error allowed for sample frequencies with ~20000 draws (≥ 5 standard errors)."""

FD_EPS = 1e-6
FD2_STEP = 1e-4


@pytest.fixture(params=MODEL_CASES, ids=MODEL_CASE_IDS)
def case(request):
    """A :class:`tests.cases.ModelCase`; call it with a seed to get (model, X, y, theta)."""
    return request.param


# ----------------------------------------------------------------------------- references
def fd_jacobian(model, theta, X, eps: float = FD_EPS) -> np.ndarray:
    """Central finite differences of ``model.predict_outputs`` with respect to ``theta``.

    Returns an array of shape (n_samples, n_outputs, n_params).
    """
    theta = np.asarray(theta, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    cols = []
    for p in range(theta.size):
        step = np.zeros_like(theta)
        step[p] = eps
        plus = model.predict_outputs(theta + step, X)
        minus = model.predict_outputs(theta - step, X)
        cols.append((plus - minus) / (2.0 * eps))
    return np.stack(cols, axis=-1)


def fd_gradient(f, theta, eps: float = FD_EPS) -> np.ndarray:
    """Central finite-difference gradient of a scalar function."""
    theta = np.asarray(theta, dtype=np.float64)
    g = np.empty_like(theta)
    for p in range(theta.size):
        step = np.zeros_like(theta)
        step[p] = eps
        g[p] = (f(theta + step) - f(theta - step)) / (2.0 * eps)
    return g


def fd_hessian(f, theta, h: float = FD2_STEP) -> np.ndarray:
    """Second central differences of a scalar function (uses only values of ``f``)."""
    theta = np.asarray(theta, dtype=np.float64)
    n = theta.size
    H = np.empty((n, n))
    eye = np.eye(n) * h
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (
                f(theta + eye[i] + eye[j])
                - f(theta + eye[i] - eye[j])
                - f(theta - eye[i] + eye[j])
                + f(theta - eye[i] - eye[j])
            ) / (4.0 * h * h)
    return H


def dense_reference_fisher(model, theta, X, Lam_per_sample, J=None) -> np.ndarray:
    """(1/N) Σₙ Jₙᵀ Λₙ Jₙ with an explicit loop over samples.

    ``Lam_per_sample`` has shape (n_samples, n_outputs, n_outputs); ``J`` defaults to
    :func:`fd_jacobian`.
    """
    if J is None:
        J = fd_jacobian(model, theta, X)
    n = J.shape[0]
    F = np.zeros((J.shape[2], J.shape[2]))
    for i in range(n):
        F += J[i].T @ Lam_per_sample[i] @ J[i]
    return F / n


def exact_output_fisher(model, z) -> np.ndarray:
    """Λₙ = E_{y~p(·|zₙ)}[∇_z nll ∇_z nllᵀ] written from the textbook formulas."""
    head = model.head.name
    n, k = z.shape
    if head == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return np.stack([np.diag(p[i]) - np.outer(p[i], p[i]) for i in range(n)])
    if head == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-z))
        return np.stack([np.diag(p[i] * (1.0 - p[i])) for i in range(n)])
    if head == "gaussian":
        return np.broadcast_to(np.eye(k) / model.head.variance, (n, k, k)).copy()
    raise AssertionError(f"unknown head {head!r}")


def layer_slices(model) -> list[slice]:
    """The slice of the flat parameter vector that holds each layer's ``W̄_l``."""
    return [slice(lay.offset, lay.offset + lay.size) for lay in model.layers]


def rel_err(a, b) -> float:
    """‖a − b‖ / ‖b‖ (Frobenius for matrices)."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def random_vector(n: int, seed: int = 123, k: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n if k is None else (n, k))

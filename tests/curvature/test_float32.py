"""float32 curvature solves against float64 references of the same (float32-rounded) matrix.

A well-posed float32 system with condition number κ is solved to a relative error of about
κ · eps32; singularity tests and jitters must not treat it as singular (they did, with
float64 thresholds: a κ = 1e4 Fisher of size 1000 fell back to a pseudo-inverse with a
relative error near 1).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from natgrad_core._validation import SingularCurvatureWarning
from natgrad_core.curvature import KFAC, DenseFisher, KFACFactors
from natgrad_core.curvature._linalg import SymmetricSolver, jitters
from natgrad_core.models import LogisticModel, Objective
from tests.conftest import rel_err

COND = 1e4
EPS32 = float(np.finfo(np.float32).eps)
FLOAT32_SOLVE_RTOL = COND * EPS32
"""Relative error allowed for a float32 solve of a system with condition number COND."""


def _spd(n, cond, rng):
    """float32 SPD matrix with log-spaced eigenvalues from 1 down to 1 / cond."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return ((Q * np.logspace(0, -np.log10(cond), n)) @ Q.T).astype(np.float32)


def test_symmetric_solver_float32_condition_1e4_size_1000():
    rng = np.random.default_rng(0)
    A = _spd(1000, COND, rng)
    b = rng.standard_normal(1000)
    reference = np.linalg.solve(A.astype(np.float64), b)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularCurvatureWarning)
        solver = SymmetricSolver(A)
        x = solver.solve(b.astype(np.float32))
    assert solver.status == "ok"
    assert x.dtype == np.float32
    assert rel_err(x, reference) <= FLOAT32_SOLVE_RTOL


def test_kfac_eigen_solve_float32_condition_1e4_size_1000():
    # one layer of 40 rows x 25 outputs = 1000 parameters; a ⊗ g spans 1 .. 1e-4
    rng = np.random.default_rng(1)
    model = LogisticModel(39, 25, dtype=np.float32)
    obj = Objective(model, rng.standard_normal((30, 39)), rng.integers(0, 25, 30))
    A, G = _spd(40, 1e2, rng), _spd(25, 1e2, rng)
    op = KFAC(obj, factors=KFACFactors([A], [G]))
    v = rng.standard_normal(model.n_params)
    reference = np.linalg.solve(np.kron(A.astype(np.float64), G.astype(np.float64)), v)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularCurvatureWarning)
        x = op.solve(v.astype(np.float32), 0.0)
    assert op.status == "ok"
    assert rel_err(x, reference) <= FLOAT32_SOLVE_RTOL


def test_dense_fisher_float32_damped_to_condition_1e4():
    # softmax regression, 99 features + bias, 10 classes: P = 1000 > rank N (K - 1) = 900,
    # damped so that cond(F + λI) = 1e4; F written out as (1/N) Σ (x̄ x̄ᵀ) ⊗ (diag p − p pᵀ)
    rng = np.random.default_rng(2)
    d, k, n = 99, 10, 100
    model = LogisticModel(d, k, dtype=np.float32)
    obj = Objective(model, rng.standard_normal((n, d)), rng.integers(0, k, n))
    theta = (0.1 * rng.standard_normal(model.n_params)).astype(np.float32)
    Xb = np.hstack([obj.X.astype(np.float64), np.ones((n, 1))])
    z = Xb @ theta.astype(np.float64).reshape(d + 1, k)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    F = sum(np.kron(np.outer(x, x), np.diag(q) - np.outer(q, q)) for x, q in zip(Xb, p)) / n
    w = np.linalg.eigvalsh(F)
    damping = (w.max() - COND * max(w.min(), 0.0)) / (COND - 1)
    assert (w.max() + damping) / (w.min() + damping) == pytest.approx(COND, rel=1e-6)
    v = rng.standard_normal(model.n_params)
    reference = np.linalg.solve(F + damping * np.eye(len(F)), v)
    op = DenseFisher(obj, theta, method="parameter")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularCurvatureWarning)
        x = op.solve(v.astype(np.float32), damping)
    assert op.status == "ok"
    assert rel_err(x, reference) <= FLOAT32_SOLVE_RTOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jitters_are_visible_in_the_working_precision(dtype):
    eps = float(np.finfo(dtype).eps)
    deltas = jitters(dtype)
    assert list(deltas) == sorted(deltas)
    # every jitter changes the matrix in this precision, and none swamps it
    assert eps * 100 < deltas[0] and deltas[-1] < 0.01
    one = np.array(1.0, dtype=dtype)
    assert all(one + dtype(delta) != one for delta in deltas)

"""Property-based checks (hypothesis) of the algebra every curvature builds on."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from natgrad_core.curvature import class_block_fisher, conjugate_gradient
from natgrad_core.curvature._linalg import SymmetricSolver, syrk_t
from natgrad_core.models.losses import Bernoulli, Categorical

TIGHT = 1e-10
finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.data())
def test_softmax_sqrt_lambda_factorizes_lambda(n, k, data):
    z = data.draw(arrays(np.float64, (n, k), elements=finite))
    head = Categorical()
    lam = head.lam(z)
    M = head.sqrt_lam(z)
    np.testing.assert_allclose(M @ M.transpose(0, 2, 1), lam, atol=TIGHT)
    # Λ annihilates the all-ones vector (softmax shift invariance) and is PSD
    np.testing.assert_allclose(lam.sum(axis=2), 0.0, atol=TIGHT)
    assert np.linalg.eigvalsh(lam).min() > -TIGHT


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.data())
def test_sigmoid_lambda_is_variance(n, k, data):
    z = data.draw(arrays(np.float64, (n, k), elements=finite))
    p = 1.0 / (1.0 + np.exp(-z))
    lam = Bernoulli().lam(z)
    np.testing.assert_allclose(np.diagonal(lam, axis1=1, axis2=2), p * (1 - p), atol=TIGHT)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_class_block_fisher_matches_kronecker_sum(n, r, k, seed):
    rng = np.random.default_rng(seed)
    Xb = rng.standard_normal((n, r))
    U = rng.standard_normal((n, k, k))
    Lam = U @ U.transpose(0, 2, 1)
    reference = sum(np.kron(np.outer(x, x), L) for x, L in zip(Xb, Lam))
    np.testing.assert_allclose(class_block_fisher(Xb, Lam), reference, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 30), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_syrk_equals_gram(n, p, seed):
    a = np.random.default_rng(seed).standard_normal((n, p))
    np.testing.assert_allclose(syrk_t(a, alpha=0.5), 0.5 * a.T @ a, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 25), st.floats(1e-6, 1e2), st.integers(0, 2**31 - 1))
def test_symmetric_solver_and_cg_solve_spd_systems(n, shift, seed):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    A = B @ B.T + shift * np.eye(n)
    b = rng.standard_normal(n)
    x = SymmetricSolver(A).solve(b)
    assert np.linalg.norm(A @ x - b) <= 1e-8 * np.linalg.norm(A, 2) * max(np.linalg.norm(x), 1.0)
    result = conjugate_gradient(lambda v: A @ v, b, rtol=1e-10, maxiter=10 * n)
    if result.converged:
        assert np.linalg.norm(A @ result.x - b) <= 1e-10 * np.linalg.norm(b) * (1 + 1e-6)
    else:
        # CG may stall only on very ill-conditioned systems; the residual is still reported
        assert np.linalg.cond(A) > 1e8

"""DiagonalFisher and ImplicitFisher (matrix-free products, CG), and the Fisher–KL link."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from natgrad_core._validation import SingularCurvatureWarning
from natgrad_core.curvature import (
    KFAC,
    DenseFisher,
    DiagonalFisher,
    ImplicitFisher,
    conjugate_gradient,
)
from natgrad_core.models import LogisticModel, Objective
from tests.cases import FISHER_TYPES
from tests.conftest import TIGHT, random_vector, rel_err

ALPHA = 0.7
MC_SEED = 17
DAMPING = 1e-2
CG_RTOL = 1e-10
CG_RESIDUAL_SLACK = 1.001
"""CG stops on its recursively updated residual; the true residual may differ in the last
digits, so the check against the dense matrix allows 0.1 % slack on 1e-10."""
CG_SOLUTION_RTOL = 1e-7
"""‖x_cg − x_dense‖/‖x_dense‖ for residual 1e-10 and condition numbers below ~1e3."""
CG_MAXITER_FACTOR = 5
"""In floating point, CG (especially preconditioned) sometimes needs somewhat more than
n_params iterations to reach 1e-10 on these problems (scipy's cg behaves identically), so
convergence tests raise the default cap (n_params) explicitly."""
KL_STEPS = (1e-2, 1e-3, 1e-4)
KL_SLOPE = 2.0
KL_FLOOR = 1e-6


def _objective(case, alpha=ALPHA, seed=0):
    model, X, y, theta = case(seed)
    return Objective(model, X, y, alpha=alpha), theta


def _kw(fisher_type):
    return {"fisher_type": fisher_type, "mc_samples": 3, "random_state": MC_SEED}


# ----------------------------------------------------------------------------- diagonal
@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
def test_diagonal_fisher_equals_diagonal_of_dense_fisher(case, fisher_type):
    obj, theta = _objective(case)
    diag = DiagonalFisher(obj, theta, **_kw(fisher_type))
    dense = DenseFisher(obj, theta, **_kw(fisher_type)).to_dense()
    assert diag.diagonal.shape == (obj.n_params,)
    np.testing.assert_allclose(diag.diagonal, np.diag(dense), rtol=1e-12, atol=TIGHT)
    np.testing.assert_allclose(diag.to_dense(), np.diag(np.diag(dense)), rtol=1e-12, atol=TIGHT)


def test_diagonal_fisher_sum_reduction_is_n_times_mean(case):
    obj, theta = _objective(case)
    mean = DiagonalFisher(obj, theta, reduction="mean").diagonal
    total = DiagonalFisher(obj, theta, reduction="sum").diagonal
    np.testing.assert_allclose(total, obj.n_samples * mean, rtol=1e-12, atol=TIGHT)


@pytest.mark.parametrize("damping", [0.0, DAMPING, 1.0])
def test_diagonal_solve_is_exact(case, damping):
    obj, theta = _objective(case)
    D = DiagonalFisher(obj, theta)
    assert np.all(D.diagonal + damping > 0)
    v = random_vector(obj.n_params)
    V = random_vector(obj.n_params, k=2)
    x = D.solve(v, damping)
    np.testing.assert_allclose((D.diagonal + damping) * x, v, rtol=1e-13, atol=TIGHT)
    np.testing.assert_allclose(D.solve(V, damping), V / (D.diagonal + damping)[:, None])
    np.testing.assert_allclose(D @ v, D.diagonal * v, atol=TIGHT)
    assert D.status == "ok"


def _zero_feature_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 3))
    X[:, 1] = 0.0  # the weight of feature 1 never affects the loss
    model = LogisticModel(3, 2)
    obj = Objective(model, X, np.array([0, 1] * 4), alpha=0.0)
    return obj, 0.3 * rng.standard_normal(model.n_params)


def test_zero_diagonal_with_zero_damping_warns_and_uses_pseudo_inverse():
    obj, theta = _zero_feature_problem()
    D = DiagonalFisher(obj, theta)
    zero = D.diagonal == 0
    np.testing.assert_array_equal(np.flatnonzero(zero), [1])
    v = random_vector(obj.n_params)
    with pytest.warns(SingularCurvatureWarning, match="1 zero entries"):
        x = D.solve(v, 0.0)
    assert D.status == "pinv"
    assert x[1] == 0.0
    np.testing.assert_allclose(x[~zero], v[~zero] / D.diagonal[~zero], rtol=1e-13)


def test_zero_diagonal_with_positive_damping_is_silent_and_ok():
    obj, theta = _zero_feature_problem()
    D = DiagonalFisher(obj, theta)
    v = random_vector(obj.n_params)
    with pytest.warns(SingularCurvatureWarning):
        D.solve(v, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = D.solve(v, 0.5)
    assert D.status == "ok"  # reset by the new solve
    np.testing.assert_allclose(x, v / (D.diagonal + 0.5), rtol=1e-13)


# ----------------------------------------------------------------------------- implicit
@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
def test_implicit_products_equal_dense_products(case, fisher_type):
    obj, theta = _objective(case)
    implicit = ImplicitFisher(obj, theta, **_kw(fisher_type))
    dense = DenseFisher(obj, theta, **_kw(fisher_type))
    v = random_vector(obj.n_params)
    V = random_vector(obj.n_params, seed=4, k=3)
    np.testing.assert_allclose(implicit @ v, dense @ v, rtol=1e-11, atol=TIGHT)
    np.testing.assert_allclose(implicit @ V, dense @ V, rtol=1e-11, atol=TIGHT)
    np.testing.assert_allclose(implicit.to_dense(), dense.to_dense(), rtol=1e-11, atol=TIGHT)


def test_implicit_sum_reduction_is_n_times_mean(case):
    obj, theta = _objective(case)
    v = random_vector(obj.n_params)
    mean = ImplicitFisher(obj, theta, reduction="mean") @ v
    total = ImplicitFisher(obj, theta, reduction="sum") @ v
    np.testing.assert_allclose(total, obj.n_samples * mean, rtol=1e-12, atol=TIGHT)


def _check_cg_solution(obj, theta, implicit, x, v, damping, fisher_type="exact"):
    A = DenseFisher(obj, theta, **_kw(fisher_type)).to_dense() + damping * np.eye(obj.n_params)
    residual = np.linalg.norm(A @ x - v) / np.linalg.norm(v)
    assert residual <= CG_RESIDUAL_SLACK * CG_RTOL, residual
    assert implicit.status == "ok"
    assert implicit.last_cg.converged
    assert implicit.last_cg.residual <= CG_RTOL
    assert rel_err(x, np.linalg.solve(A, v)) < CG_SOLUTION_RTOL


@pytest.mark.parametrize("damping", [DAMPING, 1.0])
@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
def test_cg_solve_reaches_dense_solution(case, fisher_type, damping):
    obj, theta = _objective(case)
    implicit = ImplicitFisher(
        obj,
        theta,
        cg_rtol=CG_RTOL,
        cg_maxiter=CG_MAXITER_FACTOR * obj.n_params,
        **_kw(fisher_type),
    )
    v = random_vector(obj.n_params)
    x = implicit.solve(v, damping)
    _check_cg_solution(obj, theta, implicit, x, v, damping, fisher_type)


@pytest.mark.parametrize("preconditioner", ["diagonal", "kfac"])
def test_preconditioned_cg_solve_reaches_dense_solution(case, preconditioner):
    obj, theta = _objective(case)
    pre = (DiagonalFisher if preconditioner == "diagonal" else KFAC)(obj, theta)
    implicit = ImplicitFisher(
        obj,
        theta,
        cg_rtol=CG_RTOL,
        cg_maxiter=CG_MAXITER_FACTOR * obj.n_params,
        preconditioner=pre,
    )
    v = random_vector(obj.n_params)
    x = implicit.solve(v, DAMPING)
    _check_cg_solution(obj, theta, implicit, x, v, DAMPING)


def test_cg_solve_with_matrix_right_hand_side(case):
    obj, theta = _objective(case)
    implicit = ImplicitFisher(
        obj, theta, cg_rtol=CG_RTOL, cg_maxiter=CG_MAXITER_FACTOR * obj.n_params
    )
    V = random_vector(obj.n_params, k=2)
    X = implicit.solve(V, 1.0)
    A = DenseFisher(obj, theta).to_dense() + np.eye(obj.n_params)
    assert X.shape == V.shape
    assert rel_err(X, np.linalg.solve(A, V)) < CG_SOLUTION_RTOL


def test_warm_start_at_the_exact_solution_converges_in_zero_iterations(case):
    obj, theta = _objective(case)
    implicit = ImplicitFisher(obj, theta, cg_rtol=CG_RTOL)
    v = random_vector(obj.n_params)
    A = DenseFisher(obj, theta).to_dense() + DAMPING * np.eye(obj.n_params)
    x0 = np.linalg.solve(A, v)
    before = obj.counts.as_dict()
    x = implicit.solve(v, DAMPING, x0=x0)
    assert implicit.last_cg.n_iter == 0
    assert implicit.status == "ok"
    np.testing.assert_allclose(x, x0, rtol=1e-12, atol=TIGHT)
    assert obj.counts.n_fvp - before["n_fvp"] == 1  # the initial residual only
    assert obj.counts.n_cg_iter == before["n_cg_iter"]


def test_warm_start_applies_to_every_column_of_a_matrix_right_hand_side():
    # solve() validates x0 of shape (n_params, k) for V of shape (n_params, k): it must use it
    rng = np.random.default_rng(5)
    model = LogisticModel(3, 3)
    obj = Objective(model, rng.standard_normal((9, 3)), np.arange(9) % 3, alpha=ALPHA)
    theta = 0.3 * rng.standard_normal(model.n_params)
    implicit = ImplicitFisher(obj, theta, cg_rtol=CG_RTOL)
    V = random_vector(obj.n_params, k=2)
    A = DenseFisher(obj, theta).to_dense() + DAMPING * np.eye(obj.n_params)
    X0 = np.linalg.solve(A, V)
    X = implicit.solve(V, DAMPING, x0=X0)
    np.testing.assert_allclose(X, X0, rtol=1e-9, atol=TIGHT)
    assert obj.counts.n_cg_iter == 0, "x0 was ignored for a matrix right-hand side"


def test_cg_maxiter_one_reports_max_cg_iter(case):
    obj, theta = _objective(case)
    if obj.n_params == 1:
        pytest.skip("one iteration is exact for a single parameter")
    implicit = ImplicitFisher(obj, theta, cg_maxiter=1)
    implicit.solve(random_vector(obj.n_params), DAMPING)
    assert implicit.status == "max_cg_iter"
    assert implicit.last_cg.n_iter == 1
    assert not implicit.last_cg.converged
    assert implicit.last_cg.residual > CG_RTOL


def test_oracle_counts_track_products_and_cg_iterations(case):
    obj, theta = _objective(case)
    implicit = ImplicitFisher(obj, theta, cg_rtol=CG_RTOL)
    assert obj.counts.n_fvp == 0
    implicit @ random_vector(obj.n_params)
    assert obj.counts.n_fvp == 1
    implicit @ random_vector(obj.n_params, k=3)
    assert obj.counts.n_fvp == 4
    implicit.solve(random_vector(obj.n_params), DAMPING)
    n_iter = implicit.last_cg.n_iter
    assert n_iter >= 1
    assert obj.counts.n_cg_iter == n_iter
    assert obj.counts.n_fvp == 4 + n_iter
    implicit.solve(random_vector(obj.n_params, seed=8), DAMPING, x0=np.ones(obj.n_params))
    n_iter2 = implicit.last_cg.n_iter
    assert obj.counts.n_cg_iter == n_iter + n_iter2
    assert obj.counts.n_fvp == 4 + n_iter + n_iter2 + 1


def test_kfac_preconditioner_factorizes_once_across_solves():
    rng = np.random.default_rng(1)
    model = LogisticModel(3, 3)
    obj = Objective(model, rng.standard_normal((9, 3)), np.arange(9) % 3, alpha=ALPHA)
    theta = 0.3 * rng.standard_normal(model.n_params)
    pre = KFAC(obj, theta)
    implicit = ImplicitFisher(
        obj, theta, preconditioner=pre, cg_maxiter=CG_MAXITER_FACTOR * obj.n_params
    )
    implicit.solve(random_vector(obj.n_params), DAMPING)
    after_first = obj.counts.n_factorizations
    implicit.solve(random_vector(obj.n_params, seed=2), DAMPING)
    assert after_first == 2 * len(model.layers)
    assert obj.counts.n_factorizations == after_first


# ----------------------------------------------------------------------------- CG function
def test_conjugate_gradient_solves_a_random_spd_system_with_and_without_preconditioner():
    rng = np.random.default_rng(3)
    B = rng.standard_normal((12, 12))
    A = B @ B.T + 0.5 * np.eye(12)
    b = rng.standard_normal(12)
    expected = np.linalg.solve(A, b)
    plain = conjugate_gradient(lambda w: A @ w, b, rtol=1e-12, maxiter=100)
    jacobi = conjugate_gradient(
        lambda w: A @ w, b, rtol=1e-12, maxiter=100, precond=lambda r: r / np.diag(A)
    )
    for result in (plain, jacobi):
        assert result.converged
        assert result.residual <= 1e-12
        assert rel_err(result.x, expected) < 1e-9
        assert np.linalg.norm(A @ result.x - b) / np.linalg.norm(b) <= 1.001e-12


def test_conjugate_gradient_zero_right_hand_side_returns_zero():
    result = conjugate_gradient(lambda w: 2.0 * w, np.zeros(4))
    np.testing.assert_array_equal(result.x, 0.0)
    assert result.n_iter == 0
    assert result.converged


def test_conjugate_gradient_stops_on_non_positive_curvature():
    A = np.diag([1.0, -1.0])
    result = conjugate_gradient(lambda w: A @ w, np.array([0.0, 1.0]), maxiter=10)
    assert not result.converged
    assert result.n_iter == 1
    assert result.reason == "nonpositive_curvature"
    assert np.all(np.isfinite(result.x))
    singular = conjugate_gradient(lambda w: np.diag([1.0, 0.0]) @ w, np.array([0.0, 1.0]))
    assert singular.reason == "nonpositive_curvature" and np.all(np.isfinite(singular.x))


def test_conjugate_gradient_reports_why_it_stopped():
    capped = conjugate_gradient(lambda v: np.diag([1.0, 1e6]) @ v, np.ones(2), maxiter=1)
    assert capped.reason == "max_iter" and not capped.converged
    ok = conjugate_gradient(lambda v: 2.0 * v, np.ones(3))
    assert ok.reason == "converged" and ok.converged


# ----------------------------------------------------------------------------- Fisher and KL
def test_exact_fisher_is_the_second_order_term_of_the_kl_divergence(case):
    # 2·mean_n KL(p_θ ‖ p_{θ+t·d}) / (t² dᵀFd) → 1 as t → 0, with error O(t)
    obj, theta = _objective(case, alpha=0.0)
    model = obj.model
    F = DenseFisher(obj, theta).to_dense()
    d = random_vector(obj.n_params, seed=2)
    d /= np.linalg.norm(d)
    quad = float(d @ F @ d)
    assert quad > 0
    z = model.predict_outputs(theta, obj.X)
    for t in KL_STEPS:
        kl = model.head.kl(z, model.predict_outputs(theta + t * d, obj.X)).mean()
        ratio = 2.0 * kl / (t * t * quad)
        assert abs(ratio - 1.0) <= KL_SLOPE * t + KL_FLOOR, (t, ratio)


def test_kl_check_detects_a_wrong_fisher(case):
    # negative control: a Fisher scaled by 1.1 fails the same check
    obj, theta = _objective(case, alpha=0.0)
    model = obj.model
    F = 1.1 * DenseFisher(obj, theta).to_dense()
    d = random_vector(obj.n_params, seed=2)
    d /= np.linalg.norm(d)
    z = model.predict_outputs(theta, obj.X)
    t = KL_STEPS[-1]
    kl = model.head.kl(z, model.predict_outputs(theta + t * d, obj.X)).mean()
    assert abs(2.0 * kl / (t * t * float(d @ F @ d)) - 1.0) > KL_SLOPE * t + KL_FLOOR

"""Exact natural gradient on logistic regression reproduces scikit-learn's solution.

For logistic regression the exact Fisher equals the Hessian, so exact natural gradient with
unit steps *is* Newton's method: it must land on scikit-learn's ``newton-cholesky`` optimum
(with ``alpha = 1 / C``, see ``natgrad_core.models.objective``) in a handful of quadratically
convergent iterations.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from natgrad_core import LogisticModel, make_optimizer, minimize
from natgrad_core.models import Objective

COEF_ATOL = 1e-6
"""Absolute error allowed between our weights/intercepts and scikit-learn's."""
PROBA_ATOL = 1e-7
"""Absolute error allowed between predicted probabilities."""
LOSS_ATOL = 1e-9
"""Two solvers that both converge to ‖∇L‖_∞ ≤ 1e-10 agree on the optimal loss to this."""
MAX_NEWTON_ITER = 15
"""Newton's method from zero on these strongly convex problems needs ~8-10 iterations."""

NG_TOL = 1e-10


def _dataset(name):
    loader = {"breast_cancer": load_breast_cancer, "digits": load_digits}[name]
    X, y = loader(return_X_y=True)
    # digits has constant-zero pixels; StandardScaler leaves them at 0 (unit scale), so their
    # weights see only the L2 term and stay 0 — in both libraries.
    return StandardScaler().fit_transform(X), y


# (dataset, C, damping). Binary: exact Fisher + L2 is positive definite, no damping needed.
# Multinomial: softmax outputs are invariant to adding one vector to every class column; the
# L2 term pins down the weight part of that direction, but intercepts are unpenalized, so
# F + L2 is singular along "all intercepts equal". The gradient has no component there
# (Σ_k (p_k − y_k) = 0), so a tiny damping only fixes that null direction (the intercept mean
# stays at its start, 0) without moving the optimum; without it the solver would warn and jitter.
CASES = [("breast_cancer", 1.0, 0.0), ("digits", 0.1, 1e-8)]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def fitted(request):
    name, C, damping = request.param
    X, y = _dataset(name)
    n_classes = len(np.unique(y))
    sk = LogisticRegression(solver="newton-cholesky", C=C, tol=1e-12, max_iter=1000).fit(X, y)
    model = LogisticModel(X.shape[1], n_classes)
    result = minimize(
        model,
        X,
        y,
        make_optimizer("exact", damping=damping),
        alpha=1.0 / C,
        tol=NG_TOL,
        max_iter=100,
    )
    return {"X": X, "y": y, "C": C, "sk": sk, "model": model, "result": result, "K": n_classes}


def _coef_intercept(model, theta):
    Wb = model.unpack(theta)[0]  # (n_features + 1, n_outputs): weights over the bias row
    return Wb[:-1].T, Wb[-1]


def test_exact_ng_converges_like_newton(fitted):
    result = fitted["result"]
    assert result.status == "converged", result.message
    assert result.n_iter <= MAX_NEWTON_ITER
    assert result.grad_norm <= NG_TOL
    # quadratic (not linear) convergence: the last step shrinks the gradient by > 1000x
    g = result.history["grad_norm"].to_numpy()
    assert g[-1] < 1e-3 * g[-2]


def test_coefficients_match_sklearn(fitted):
    model, result, sk = fitted["model"], fitted["result"], fitted["sk"]
    coef, intercept = _coef_intercept(model, result.theta)
    assert coef.shape == sk.coef_.shape
    np.testing.assert_allclose(coef, sk.coef_, rtol=0, atol=COEF_ATOL)
    if fitted["K"] == 2:
        np.testing.assert_allclose(intercept, sk.intercept_, rtol=0, atol=COEF_ATOL)
    else:
        # only differences between class intercepts are identified
        np.testing.assert_allclose(
            intercept - intercept.mean(),
            sk.intercept_ - sk.intercept_.mean(),
            rtol=0,
            atol=COEF_ATOL,
        )


def test_probabilities_match_sklearn(fitted):
    model, result, sk, X = fitted["model"], fitted["result"], fitted["sk"], fitted["X"]
    p = model.head.predict(model.predict_outputs(result.theta, X))
    if p.shape[1] == 1:
        p = np.hstack([1.0 - p, p])
    np.testing.assert_allclose(p, sk.predict_proba(X), rtol=0, atol=PROBA_ATOL)


def test_lbfgs_and_cg_reach_the_same_optimum(fitted):
    model, X, y, C = fitted["model"], fitted["X"], fitted["y"], fitted["C"]
    reference = fitted["result"].loss
    damping = 0.0 if fitted["K"] == 2 else 1e-8
    # L-BFGS cannot always push ‖∇L‖_∞ to 1e-10 in float64 (its line search runs out of
    # decrease first); 1e-8 already puts the loss within ~1e-13 of the optimum here.
    for optimizer, tol in (
        (make_optimizer("lbfgs"), 1e-8),
        (make_optimizer("cg", damping=damping), NG_TOL),
    ):
        result = minimize(model, X, y, optimizer, alpha=1.0 / C, tol=tol, max_iter=500)
        assert result.status == "converged", (optimizer, result.message)
        assert abs(result.loss - reference) <= LOSS_ATOL, optimizer


def test_lbfgs_with_sklearns_ftol_stops_where_sklearn_stops():
    """With scikit-learn's relative-reduction test (``ftol = 64 eps``) our L-BFGS is the same
    scipy run as ``LogisticRegression(solver="lbfgs")`` (ours has scipy's 20 line-search
    steps, theirs 50; neither needs more here): same iterations, same loss, and both end
    on that test, above the gradient tolerance."""
    X, y = _dataset("breast_cancer")
    estimator = LogisticRegression(C=1.0, solver="lbfgs", tol=1e-10, max_iter=10_000).fit(X, y)
    model = LogisticModel(X.shape[1], 2)
    ftol = 64 * np.finfo(float).eps
    result = minimize(
        model, X, y, make_optimizer("lbfgs", ftol=ftol), alpha=1.0, tol=1e-10, max_iter=10_000
    )
    # scipy's wording changed over versions ("REL_REDUCTION_OF_F", "RELATIVE REDUCTION OF F")
    assert result.status == "stalled"
    assert re.search(r"REL\w*.REDUCTION.OF.F", result.message)
    assert result.n_iter == estimator.n_iter_[0]
    assert result.grad_norm > 1e-10
    theta = np.concatenate([estimator.coef_.ravel(), estimator.intercept_])
    reference = Objective(model, X, y, alpha=1.0).loss(theta, count=False)
    assert abs(result.loss - reference) <= 1e-12 * abs(reference)


@pytest.mark.parametrize("ftol", [-1e-3, float("nan"), "0"])
def test_lbfgs_rejects_a_bad_ftol(ftol):
    with pytest.raises((ValueError, TypeError), match="ftol"):
        make_optimizer("lbfgs", ftol=ftol)

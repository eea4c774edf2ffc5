"""The work of a K-FAC step. The quadratic model built from forward-mode passes alone: the
Gram VᵀCV of ``ImplicitFisher.gram`` against a dense curvature from finite-difference
Jacobians, the Levenberg–Marquardt ratio the step reports against one recomputed from that
dense matrix, and its cost counted through the oracle counts; the refresh period counted
the same way."""

from __future__ import annotations

import math

import numpy as np
import pytest

from natgrad_core import make_optimizer, minimize
from natgrad_core.curvature import ImplicitFisher
from natgrad_core.models import Objective
from tests.conftest import ATOL, RTOL, random_vector

from .problems import PROBLEMS, dense_curvature, loss_and_grad

ALPHA = 1e-2
N_ITER = 8

GRAM_CASES = [(problem, m) for problem in PROBLEMS for m in (1, 2, 3)]


@pytest.mark.parametrize(("problem", "m"), GRAM_CASES)
def test_gram_is_the_dense_quadratic_form(problem, m):
    model, X, y = PROBLEMS[problem]()
    obj = Objective(model, X, y, ALPHA)
    theta = model.init_params(0)
    V = random_vector(model.n_params, k=m)
    C = dense_curvature(model, X, y, theta, ALPHA)
    gram = ImplicitFisher(obj, theta, "exact").gram(V)
    np.testing.assert_allclose(gram, V.T @ C @ V, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(gram, gram.T)
    # m forward-mode passes cost m / 2 products (a product is a forward-mode and a
    # reverse pass), rounded up
    assert obj.counts.n_fvp == (m + 1) // 2
    assert obj.counts.n_grad == obj.counts.n_loss == obj.counts.n_backprop == 0


def test_gram_of_one_vector_and_bad_shapes():
    model, X, y = PROBLEMS["mlp"]()
    obj = Objective(model, X, y, ALPHA)
    theta = model.init_params(0)
    fisher = ImplicitFisher(obj, theta, "exact")
    v = random_vector(model.n_params)
    assert fisher.gram(v).shape == (1, 1)
    assert fisher.gram(v)[0, 0] == pytest.approx(v @ (fisher @ v), rel=1e-12)
    with pytest.raises(ValueError, match=rf"expected V of shape \({model.n_params},\)"):
        fisher.gram(np.ones((model.n_params + 1, 2)))


def test_quadratic_step_reports_the_dense_model_ratio():
    """ρ = (L(θ + δ) − L(θ)) / (∇Lᵀδ + ½ δᵀCδ) with C built densely, at every step, for
    the δ actually taken (rejected steps: for the δ proposed, α d + μ δ₀)."""
    model, X, y = PROBLEMS["mlp"]()
    obj = Objective(model, X, y, ALPHA)
    opt = make_optimizer("kfac", damping=1e-2)
    theta = model.init_params(0)
    state = opt.init(obj, theta)
    n_momentum = 0
    for _ in range(N_ITER):
        loss, g = loss_and_grad(model, X, y, theta, ALPHA)
        C = dense_curvature(model, X, y, theta, ALPHA)
        previous = state.rule.previous
        new_theta, state, info = opt.step(obj, theta, state)
        if info.status == "rejected":
            continue
        delta = new_theta - theta
        new_loss, _ = loss_and_grad(model, X, y, new_theta, ALPHA)
        rho = (new_loss - loss) / (g @ delta + 0.5 * delta @ C @ delta)
        assert info.extra["rho"] == pytest.approx(rho, rel=RTOL)
        n_momentum += previous is not None
        theta = new_theta
    assert n_momentum >= 2


def test_quadratic_step_costs_one_gradient_one_loss_and_one_product():
    """Per step: the gradient, the loss at the proposal (for ρ), and the 2×2 system from
    the two forward-mode passes J d and J δ₀, counted as one product; no product for ρ."""
    model, X, y = PROBLEMS["mlp"]()
    opt = make_optimizer("kfac", damping=1e-2)
    result = minimize(model, X, y, opt, alpha=ALPHA, max_iter=N_ITER, tol=0.0, random_state=0)
    h = result.history
    assert (h["momentum"].iloc[2:] != 0).sum() >= 2  # the 2×2 system ran
    for column in ("n_grad", "n_loss", "n_fvp"):
        np.testing.assert_array_equal(np.diff(h[column]), 1, err_msg=column)


@pytest.mark.parametrize("inv_period", [1, 3, 8])
def test_steps_between_refreshes_compute_no_statistics(inv_period):
    """With ema_decay = 0 only a refresh pulls back the K = 3 columns of √Λ and
    eigendecomposes A and G of both layers; the other steps reuse the operator."""
    model, X, y = PROBLEMS["mlp"]()
    opt = make_optimizer("kfac", damping=1e-2, inv_period=inv_period)
    result = minimize(model, X, y, opt, alpha=ALPHA, max_iter=N_ITER, tol=0.0, random_state=0)
    refreshes = math.ceil(N_ITER / inv_period)
    assert result.counts["n_backprop"] == model.n_outputs * refreshes
    assert result.counts["n_factorizations"] == 2 * len(model.layers) * refreshes

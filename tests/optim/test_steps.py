"""Step rules (KL trust region, Armijo, Levenberg–Marquardt, K-FAC's quadratic model) and the
K-FAC / CG options, checked against quantities recomputed outside the optimizer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from natgrad_core import make_optimizer, minimize
from natgrad_core.curvature import KFAC
from natgrad_core.models import Objective
from natgrad_core.optim import Armijo, KLTrustRegion, LevenbergMarquardt, QuadraticModel

from .problems import (
    dense_curvature,
    logistic_problem,
    loss_and_grad,
    mlp_problem,
    run_with_iterates,
)

ALPHA = 1e-2
KL_RTOL = 0.1
"""The trust region's KL is the second-order prediction ½δᵀFδ; for ε = 1e-4 the true KL
agrees to O(√ε) relative — well within 10%."""
EXACT_RTOL = 1e-10
"""Quantities the rule computes in closed form, recomputed here independently."""
QM_RTOL = 1e-6
"""(α, μ) from the rule's 2×2 solve vs ours with an independently built dense curvature."""


def _kl(model, X, theta_p, theta_q):
    """Mean KL(p(·|x, θ_p) ‖ p(·|x, θ_q)) over the data."""
    return float(
        np.mean(model.head.kl(model.predict_outputs(theta_p, X), model.predict_outputs(theta_q, X)))
    )


# ----------------------------------------------------------------------------- KL trust region
@pytest.mark.parametrize("max_kl", [1e-4, 1e-3])
def test_kl_trust_region_moves_by_the_requested_kl(max_kl):
    model, X, y = logistic_problem()
    rule = KLTrustRegion(max_kl=max_kl, max_step=None)
    opt = make_optimizer("exact", damping=1e-6, step=rule)
    result, its = run_with_iterates(model, X, y, opt, alpha=0.1, max_iter=6, tol=0.0)
    h = result.history
    # far from the optimum (loss ~1.1 → 0.4) every step is the full trust-region step
    assert (h["status"].iloc[1:] == "ok").all()
    np.testing.assert_allclose(h["kl"].iloc[1:], max_kl, rtol=EXACT_RTOL)
    for k in range(1, len(its)):
        actual = _kl(model, X, its[k - 1], its[k])
        assert actual == pytest.approx(max_kl, rel=KL_RTOL), k
    assert np.all(np.diff(h["loss"]) < 0)


def test_kl_trust_region_is_capped_by_max_step():
    # a huge trust region: β = √(2ε / dᵀFd) > 1 is capped at the full natural step
    model, X, y = logistic_problem()
    opt = make_optimizer("exact", damping=1e-6, step=KLTrustRegion(max_kl=10.0, max_step=1.0))
    result = minimize(model, X, y, opt, alpha=0.1, max_iter=4, tol=0.0)
    h = result.history
    np.testing.assert_array_equal(h["step_size"].iloc[1:], 1.0)
    assert (h["kl"].iloc[1:] < 10.0).all()


# ----------------------------------------------------------------------------- Armijo
@pytest.mark.parametrize(
    ("problem", "solver", "params"),
    [
        ("logistic", "gd", {"learning_rate": 20.0}),
        ("mlp", "gd", {"learning_rate": 20.0}),
        ("mlp", "exact", {"learning_rate": 1.0, "damping": 1e-4}),
    ],
)
def test_armijo_steps_satisfy_sufficient_decrease(problem, solver, params):
    model, X, y = {"logistic": logistic_problem, "mlp": mlp_problem}[problem]()
    opt = make_optimizer(solver, step="armijo", **params)
    rule = opt.step_rule
    assert isinstance(rule, Armijo) and rule.initial == params["learning_rate"]
    theta0 = model.init_params(0)
    result, its = run_with_iterates(
        model, X, y, opt, alpha=ALPHA, max_iter=10, tol=0.0, theta0=theta0
    )
    h = result.history
    losses = h["loss"].to_numpy()
    assert np.all(np.diff(losses) <= 0)  # monotone
    backtracked = 0
    for k in range(1, len(its)):
        t = h["step_size"].iloc[k]
        loss0, grad0 = loss_and_grad(model, X, y, its[k - 1], ALPHA)
        step = its[k] - its[k - 1]
        assert h["status"].iloc[k] == "ok"
        assert 0 < t <= rule.initial
        # Armijo: L(θ + t d) ≤ L(θ) + c t ∇Lᵀd with t d = θ_k − θ_{k−1}
        assert losses[k] <= loss0 + rule.c * float(grad0 @ step) + 1e-15
        assert float(grad0 @ step) < 0
        if t < rule.initial:
            # backtracking stopped at the first (largest) trial that satisfies it
            backtracked += 1
            t_prev = t / rule.shrink
            trial = its[k - 1] + step * (t_prev / t)
            trial_loss = loss_and_grad(model, X, y, trial, ALPHA)[0]
            assert trial_loss > loss0 + rule.c * float(grad0 @ step) * (t_prev / t)
    if solver == "gd":
        assert backtracked > 0  # the large initial step forces backtracking


# ----------------------------------------------------------------------------- Levenberg–Marquardt
def _lm_run(max_iter=40):
    model, X, y = mlp_problem()
    rule = LevenbergMarquardt(decay=0.95)
    opt = make_optimizer("kfac", damping=0.1, step=rule)
    theta0 = model.init_params(0)
    result, its = run_with_iterates(
        model, X, y, opt, alpha=ALPHA, max_iter=max_iter, tol=0.0, theta0=theta0
    )
    return model, X, y, rule, result, its


def test_levenberg_marquardt_adapts_damping_from_rho():
    *_, rule, result, _ = _lm_run()
    h = result.history.iloc[1:].reset_index(drop=True)
    rho, lam = h["rho"].to_numpy(), h["damping"].to_numpy()
    cases = set()
    for t in range(len(h) - 1):
        if rho[t] > 0.75:
            expected, case = lam[t] * rule.decay, "decrease"
        elif rho[t] < 0.25:
            expected, case = lam[t] / rule.decay, "increase"
        else:
            expected, case = lam[t], "keep"
        cases.add(case)
        assert lam[t + 1] == pytest.approx(expected, rel=EXACT_RTOL), t
    assert cases == {"decrease", "increase", "keep"}  # the run exercises all three branches
    assert lam[0] == 0.1  # the optimizer's damping is the initial λ


def test_levenberg_marquardt_rejects_steps_that_increase_the_loss():
    model, X, y, _, result, its = _lm_run()
    h = result.history
    rejected = (h["status"] == "rejected").to_numpy()
    assert rejected.sum() >= 3 and (~rejected[1:]).sum() >= 3
    for k in range(1, len(its)):
        if rejected[k]:
            np.testing.assert_array_equal(its[k], its[k - 1])
            assert h["loss"].iloc[k] == h["loss"].iloc[k - 1]
            assert h["rho"].iloc[k] <= 0
            assert h["step_size"].iloc[k] == 0.0  # StepInfo: 0 for a rejected step
        else:
            # ρ = actual / predicted reduction, with M(δ) = ∇Lᵀδ + ½ δᵀCδ (C undamped)
            delta = its[k] - its[k - 1]
            loss0, grad0 = loss_and_grad(model, X, y, its[k - 1], ALPHA)
            C = dense_curvature(model, X, y, its[k - 1], ALPHA)
            predicted = float(grad0 @ delta + 0.5 * delta @ C @ delta)
            rho = (h["loss"].iloc[k] - loss0) / predicted
            assert h["rho"].iloc[k] == pytest.approx(rho, rel=1e-8)
            assert rho > 0
            assert h["loss"].iloc[k] < loss0
    assert np.all(np.diff(h["loss"]) <= 0)


# ----------------------------------------------------------------------------- quadratic model
def _quadratic(g, Chat, delta):
    return float(g @ delta + 0.5 * delta @ Chat @ delta)


def test_quadratic_model_with_exact_curvature_takes_the_full_step():
    # d = −(C + λI)⁻¹∇L is the global minimizer of M(δ) + ½λ‖δ‖², so the best (α, μ) in
    # span{d, δ₀} is (1, 0) — whatever δ₀ is.
    model, X, y = mlp_problem()
    opt = make_optimizer("exact", damping=1e-2, step=QuadraticModel(adapt_damping=False))
    result = minimize(model, X, y, opt, alpha=ALPHA, max_iter=8, tol=0.0, random_state=0)
    h = result.history.iloc[1:]
    np.testing.assert_allclose(h["step_size"], 1.0, rtol=QM_RTOL)
    np.testing.assert_allclose(h["momentum"], 0.0, atol=QM_RTOL)


def test_kfac_quadratic_model_minimizes_the_damped_model():
    model, X, y = mlp_problem()
    obj = Objective(model, X, y, ALPHA)
    opt = make_optimizer("kfac", damping=1e-2, step="quadratic")
    theta = model.init_params(0)
    state = opt.init(obj, theta)
    n_checked = n_momentum = 0
    for _ in range(8):
        lam = opt.step_rule.damping(state.rule, opt.damping)
        previous = state.rule.previous
        _, g = loss_and_grad(model, X, y, theta, ALPHA)
        # the K-FAC direction for the current batch (ema_decay=0, inv_period=1)
        d = -KFAC(obj, theta).solve(g, lam)
        Chat = dense_curvature(model, X, y, theta, ALPHA) + lam * np.eye(model.n_params)
        new_theta, state, info = opt.step(obj, theta, state)
        if info.status == "rejected":
            np.testing.assert_array_equal(new_theta, theta)
            continue
        alpha, mu = info.step_size, info.extra["momentum"]
        if previous is None:
            # first step (or after a rejection): α = −gᵀd / dᵀĈd, no momentum
            assert mu == 0.0
            assert alpha == pytest.approx(-(g @ d) / (d @ Chat @ d), rel=QM_RTOL)
            basis = d[:, None]
            coef = np.array([alpha])
        else:
            basis = np.column_stack([d, previous])
            coef = np.linalg.solve(basis.T @ Chat @ basis, -basis.T @ g)
            assert [alpha, mu] == pytest.approx(coef, rel=QM_RTOL, abs=1e-9)
            n_momentum += 1
        # the step taken is α d + μ δ₀ (coef comes from the finite-difference curvature,
        # hence the same QM_RTOL as for (α, μ) above) ...
        np.testing.assert_allclose(new_theta - theta, basis @ coef, rtol=QM_RTOL, atol=1e-9)
        # ... and it is a minimum of the model along every direction of the plane
        best = _quadratic(g, Chat, basis @ coef)
        for e in np.eye(len(coef)):
            for h in (1e-3, -1e-3):
                assert _quadratic(g, Chat, basis @ (coef + h * e)) > best
        n_checked += 1
        theta = new_theta
    assert n_checked >= 4 and n_momentum >= 2


def test_quadratic_model_rejected_step_reports_zero_step_size():
    # tiny damping: K-FAC's unit-scale proposals overshoot and get rejected
    model, X, y = mlp_problem()
    opt = make_optimizer("kfac", damping=1e-6, step="quadratic")
    result, its = run_with_iterates(
        model, X, y, opt, alpha=ALPHA, max_iter=10, tol=0.0, theta0=model.init_params(0)
    )
    h = result.history
    rejected = (h["status"] == "rejected").to_numpy()
    assert rejected.any()
    for k in np.flatnonzero(rejected):
        np.testing.assert_array_equal(its[k], its[k - 1])
        assert h["step_size"].iloc[k] == 0.0, k  # StepInfo: 0 for a rejected step


# ----------------------------------------------------------------------------- K-FAC options
N_KFAC_ITER = 12


def _kfac_run(solver, **params):
    model, X, y = mlp_problem()
    opt = make_optimizer(solver, damping=1e-2, learning_rate=0.5, **params)
    return minimize(model, X, y, opt, alpha=ALPHA, max_iter=N_KFAC_ITER, tol=0.0, random_state=0)


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
@pytest.mark.parametrize("params", [{"ema_decay": 0.9}, {"inv_period": 3}])
def test_kfac_options_run_and_change_the_result(solver, params):
    base = _kfac_run(solver)
    other = _kfac_run(solver, **params)
    assert other.status == "max_iter"
    assert np.all(np.isfinite(other.theta))
    assert other.loss < other.history["loss"].iloc[0]
    assert not np.allclose(base.theta, other.theta, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
@pytest.mark.parametrize("inv_period", [1, 3, 5])
def test_inv_period_refreshes_factorizations_every_k_steps(solver, inv_period):
    # a refresh eigendecomposes A and G of each of the 2 layers; between refreshes the
    # inverses (EKFAC: the eigenbasis) are reused and nothing is factorized
    result = _kfac_run(solver, inv_period=inv_period)
    refreshes = math.ceil(N_KFAC_ITER / inv_period)
    assert result.counts["n_factorizations"] == 2 * 2 * refreshes


# ----------------------------------------------------------------------------- CG options
def test_cg_warm_start_saves_cg_iterations():
    # small steps: the previous solution (C + λI)⁻¹∇L is a good start for the next solve.
    # With a loose tolerance the head start shows up as fewer iterations.
    model, X, y = logistic_problem()
    runs = {
        warm: minimize(
            model,
            X,
            y,
            make_optimizer(
                "cg",
                damping=1e-2,
                step="fixed",
                learning_rate=0.1,
                cg_rtol=1e-4,
                cg_warm_start=warm,
            ),
            alpha=ALPHA,
            max_iter=15,
            tol=0.0,
        )
        for warm in (True, False)
    }
    assert runs[True].counts["n_cg_iter"] < 0.8 * runs[False].counts["n_cg_iter"]
    assert runs[True].loss == pytest.approx(runs[False].loss, abs=1e-5)


@pytest.mark.parametrize("preconditioner", ["diag", "kfac"])
def test_preconditioned_cg_converges_to_the_same_solution(preconditioner):
    model, X, y = logistic_problem()
    kwargs = {"alpha": ALPHA, "max_iter": 30, "tol": 1e-8}
    # every system solved to cg_rtol: the same Newton iterates, so the same point on the
    # flat direction of the softmax intercepts (inexact solves would each pick their own)
    cg = {"damping": 1e-4, "cg_forcing": "fixed"}
    plain = minimize(model, X, y, make_optimizer("cg", **cg), **kwargs)
    pre = minimize(
        model, X, y, make_optimizer("cg", **cg, cg_preconditioner=preconditioner), **kwargs
    )
    assert plain.status == pre.status == "converged"
    assert (pre.history["status"].iloc[1:] == "ok").all()  # every CG solve reached cg_rtol
    np.testing.assert_allclose(pre.theta, plain.theta, rtol=1e-6, atol=1e-8)
    if preconditioner == "kfac":
        # for logistic regression K-FAC is a good approximation: fewer CG iterations
        assert pre.counts["n_cg_iter"] < plain.counts["n_cg_iter"]

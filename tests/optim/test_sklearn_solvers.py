"""scikit-learn's solvers as BudgetedSolver plugins minimize natgrad's objective from natgrad's
θ₀, checked against independent references: scipy's L-BFGS-B on natgrad's loss and gradient
for the optimum, one explicit gradient step θ₀ − η ∇L(θ₀) for the MLP's objective and start.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn
from scipy.optimize import minimize as scipy_minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from natgrad_core import MLP, LogisticModel, make_optimizer, minimize
from natgrad_core.models import Objective
from natgrad_core.optim import STATUSES, resolved_params
from natgrad_core.optim.registry import SHIPPED_SOLVERS, solver_identity, takes_seed
from natgrad_core.optim.sklearn_solvers import (
    MLPLBFGS,
    MLPSGD,
    LogisticLBFGS,
    LogisticSAGA,
    MLPAdam,
)
from tests.optim.problems import binary_data, multiclass_data

LOGISTIC_SOLVERS = [
    "sklearn-newton-cholesky",
    "sklearn-newton-cg",
    "sklearn-lbfgs",
    "sklearn-saga",
]
MLP_SOLVERS = ["sklearn-mlp-adam", "sklearn-mlp-sgd", "sklearn-mlp-lbfgs"]
ALPHA = 1.0
SEED = 0

LOSS_RTOL = 1e-9
"""Two minimizers that both reach ‖∇L‖_∞ ≤ 1e-8 on these strongly convex problems agree on
the optimal loss to this."""
THETA_ATOL = 1e-6
"""‖θ − θ*‖ ≤ ‖∇L‖/μ with μ ≥ α/N = 1/60: 1e-8 · 60 · √15 ≈ 2e-6 at worst; usually far less."""
GRAD_ATOL = 1e-8
"""Gradient max-norm the logistic fits must reach (their tol is 1e-10)."""
STEP_ATOL = 1e-12
"""One gradient step in two implementations: float64 rounding of sums over 50 samples."""
LBFGS_GRAD_ATOL = 1e-4
"""scikit-learn's MLP L-BFGS ends on scipy's relative-reduction test (ftol ≈ 2.2e-9, not
exposed), here at ‖∇L‖_∞ ≈ 1e-5."""


def _logistic_problem(kind):
    if kind == "binary":
        X, y = binary_data()
        return LogisticModel(X.shape[1], 2), X, y
    X, y = multiclass_data()
    return LogisticModel(X.shape[1], 3), X, y


def _centered(model, theta):
    """θ with the intercepts shifted to mean 0: the multinomial loss is invariant to adding a
    constant to every class's intercept (newton-cholesky returns them centered)."""
    theta = theta.copy()
    if model.n_outputs > 1:
        (W,) = model.unpack(theta)
        W[-1] -= W[-1].mean()
    return theta


@pytest.fixture(scope="module", params=["binary", "multiclass"])
def reference(request):
    """(model, X, y, θ*, L*): scipy's L-BFGS-B on natgrad's loss and gradient."""
    model, X, y = _logistic_problem(request.param)
    objective = Objective(model, X, y, ALPHA)
    res = scipy_minimize(
        lambda th: objective.loss_and_grad(th, count=False),
        model.init_params(),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-13, "ftol": 0.0, "maxiter": 10_000},
    )
    grad = objective.loss_and_grad(res.x, count=False)[1]
    assert np.abs(grad).max() <= 1e-10
    return model, X, y, res.x, res.fun


def _make(name):
    return make_optimizer(name, random_state=SEED) if takes_seed(name) else make_optimizer(name)


@pytest.mark.parametrize("name", LOGISTIC_SOLVERS)
def test_logistic_solvers_reach_the_reference_optimum(name, reference):
    model, X, y, theta_star, loss_star = reference
    result = minimize(model, X, y, _make(name), alpha=ALPHA, max_iter=300, tol=1e-9)
    assert result.status in STATUSES and result.status != "diverged"
    assert result.grad_norm <= GRAD_ATOL
    assert result.loss == pytest.approx(loss_star, rel=LOSS_RTOL)
    np.testing.assert_allclose(
        _centered(model, result.theta), _centered(model, theta_star), atol=THETA_ATOL
    )
    history = result.history
    # the oracle calls of a fit cannot be observed
    assert history[["n_grad", "n_loss", "n_fvp"]].iloc[1:].isna().all().all()
    # a row's iteration is what its fit ran, never more than its budget; time is that fit's
    fits = history.iloc[1:]
    assert (fits["iteration"] <= fits["budget"]).all()
    assert (fits["iteration"].iloc[:-1] == fits["budget"].iloc[:-1]).all()
    assert (fits["time"] >= 0).all()
    assert result.n_iter == fits["iteration"].iloc[-1]


@pytest.mark.parametrize("name", [n for n in LOGISTIC_SOLVERS if n != "sklearn-saga"])
def test_logistic_solvers_start_from_theta0(name, reference):
    """Started at the optimum, one iteration stays there; started at zeros it does not."""
    model, X, y, theta_star, loss_star = reference
    objective = Objective(model, X, y, ALPHA)
    solver = _make(name)
    at_star, _, _ = solver.solve(objective, theta_star.copy(), 1)
    from_zero, _, _ = solver.solve(objective, model.init_params(), 1)
    star = _centered(model, theta_star)
    assert np.abs(_centered(model, at_star) - star).max() <= 1e-4
    assert np.abs(_centered(model, from_zero) - star).max() > 1e-2
    assert objective.loss(at_star, count=False) == pytest.approx(loss_star, rel=1e-8)


def test_newton_cholesky_keeps_a_multinomial_start_that_the_loss_cannot_tell_apart():
    """At α = 0 adding one vector to every class's column of θ* leaves the loss at its
    minimum; one Newton iteration from there must stay at the minimum (scikit-learn 1.6 and
    1.7 zeroed the last class's column of a warm start instead, issue #31859)."""
    X, y = multiclass_data(n=200, seed=1)
    model = LogisticModel(X.shape[1], 3)
    objective = Objective(model, X, y, 0.0)
    res = scipy_minimize(
        lambda th: objective.loss_and_grad(th, count=False),
        model.init_params(),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 10_000},
    )
    shifted = res.x.copy()
    model.unpack(shifted)[0][...] += np.linspace(-2.0, 1.0, X.shape[1] + 1)[:, None]
    theta, _, _ = make_optimizer("sklearn-newton-cholesky").solve(objective, shifted, 1)
    assert objective.loss(theta, count=False) == pytest.approx(res.fun, rel=LOSS_RTOL)
    assert np.abs(objective.loss_and_grad(theta, count=False)[1]).max() <= GRAD_ATOL


def test_saga_starts_from_theta0(reference):
    """SAGA's gradient memory starts empty, so even from θ* its first epoch moves away; the
    start is checked against scikit-learn warm-started by hand from θ₀'s blocks (W̄ is
    ``coef_.T`` over ``intercept_``)."""
    model, X, y, theta_star, _ = reference
    objective = Objective(model, X, y, ALPHA)
    theta, n_iter, _ = LogisticSAGA(random_state=SEED).solve(objective, theta_star.copy(), 1)
    by_hand = LogisticRegression(
        solver="saga", C=1 / ALPHA, tol=1e-10, max_iter=1, warm_start=True, random_state=SEED
    )
    (W,) = model.unpack(theta_star)
    by_hand.coef_, by_hand.intercept_ = W[:-1].T.copy(), W[-1].copy()
    with pytest.warns(ConvergenceWarning):
        by_hand.fit(X, y)
    assert n_iter == 1
    np.testing.assert_array_equal(theta, np.vstack([by_hand.coef_.T, by_hand.intercept_]).ravel())
    from_zero, _, _ = LogisticSAGA(random_state=SEED).solve(objective, model.init_params(), 1)
    assert np.abs(from_zero - theta).max() > 1e-2


def test_logistic_lbfgs_budget_one_depends_on_theta0():
    model, X, y = _logistic_problem("multiclass")
    objective = Objective(model, X, y, ALPHA)
    theta0 = np.random.default_rng(SEED).standard_normal(model.n_params)
    solver = LogisticLBFGS()
    from_theta0, n_iter, message = solver.solve(objective, theta0.copy(), 1)
    from_zero, _, _ = solver.solve(objective, model.init_params(), 1)
    assert n_iter == 1 and "1 of 1" in message
    assert np.abs(from_theta0 - from_zero).max() > 0.1


def test_alpha_zero_is_unpenalized():
    """α = 0 is C = inf: the fit reaches the unpenalized optimum of natgrad's objective."""
    model, X, y = _logistic_problem("binary")
    result = minimize(model, X, y, make_optimizer("sklearn-newton-cholesky"), max_iter=50)
    assert result.grad_norm <= GRAD_ATOL


def _mlp_case(kind):
    """(model, X, y): binary sigmoid, multiclass softmax, autoencoder (Gaussian, 4 outputs)."""
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((50, 4))
    if kind == "binary":
        return MLP(4, 2, (3,), "relu", "sigmoid"), X, (X[:, 0] + X[:, 1] > 0).astype(int)
    if kind == "multiclass":
        return MLP(4, 3, (3,), "sigmoid", "softmax"), X, np.argmax(X[:, :3], axis=1)
    return MLP(4, 4, (3,), "tanh", "gaussian"), X, X


@pytest.mark.parametrize("kind", ["binary", "multiclass", "autoencoder"])
def test_one_full_batch_sgd_epoch_is_one_gradient_step_of_natgrads_objective(kind):
    """With momentum 0 and batch_size = n one epoch is θ₁ = θ₀ − η ∇L(θ₀), ∇L natgrad's.

    This proves the same start (θ₀ with nonzero intercepts is used as given) and the same
    objective, L2 convention included. For the autoencoder scikit-learn's gradient is that
    of (1/N) Σ ½‖y − z‖² + α‖W‖²/(2N) — its output error z − y is not divided by
    n_outputs although its reported loss is — so natgrad's α is passed unchanged and the
    step is η ∇L exactly (α/n_outputs would change the weight-decay term of the step).
    """
    model, X, y = _mlp_case(kind)
    objective = Objective(model, X, y, ALPHA)
    theta0 = model.init_params(SEED)
    theta0[model.weight_mask() == 0] = 0.1 * np.arange(1, 1 + (model.weight_mask() == 0).sum())
    eta = 0.1
    solver = MLPSGD(learning_rate_init=eta, batch_size=X.shape[0], momentum=0.0, random_state=0)
    theta1, n_iter, _ = solver.solve(objective, theta0.copy(), 1)
    grad = objective.loss_and_grad(theta0, count=False)[1]
    assert n_iter == 1
    np.testing.assert_allclose(theta1, theta0 - eta * grad, rtol=0, atol=STEP_ATOL)


def test_mlp_fits_are_reproducible_and_carry_no_state_between_budgets():
    """The estimator primed for an objective is reused: a fit after other fits equals the
    same fit on a fresh solver."""
    model, X, y = _mlp_case("multiclass")
    objective = Objective(model, X, y, ALPHA)
    theta0 = model.init_params(SEED)
    solver = MLPAdam(learning_rate_init=0.01, batch_size=16, random_state=SEED)
    first = solver.solve(objective, theta0.copy(), 3)[0]
    solver.solve(objective, theta0.copy(), 7)
    again = solver.solve(objective, theta0.copy(), 3)[0]
    fresh = MLPAdam(learning_rate_init=0.01, batch_size=16, random_state=SEED)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(fresh.solve(objective, theta0.copy(), 3)[0], first)


@pytest.mark.parametrize("solver", [MLPAdam, MLPSGD])
def test_stochastic_mlp_fits_run_the_whole_budget(solver):
    """A loss that cannot improve (a learning rate of 1e-12) would end a default fit after
    n_iter_no_change + 1 = 11 epochs; here the budget ends it."""
    model, X, y = _mlp_case("binary")
    objective = Objective(model, X, y, ALPHA)
    _, n_iter, _ = solver(learning_rate_init=1e-12).solve(objective, model.init_params(0), 30)
    assert n_iter == 30


def test_mlp_lbfgs_reaches_a_stationary_point_of_natgrads_objective():
    model, X, y = _mlp_case("multiclass")
    result = minimize(model, X, y, MLPLBFGS(), alpha=ALPHA, max_iter=500, random_state=SEED)
    assert result.status in ("converged", "stalled", "max_iter")
    assert result.grad_norm <= LBFGS_GRAD_ATOL
    assert result.history[["n_grad", "n_loss"]].iloc[1:].isna().all().all()


def test_skip_reasons_name_what_does_not_fit():
    logistic = LogisticModel(4, 3)
    hidden = MLP(4, 3, (5,), "tanh", "softmax")
    for name in LOGISTIC_SOLVERS:
        solver = make_optimizer(name)
        assert solver.skip_reason(logistic) is None
        assert solver.skip_reason(LogisticModel(4, 2)) is None
        assert "hidden layers" in solver.skip_reason(hidden)
        assert "regression" in solver.skip_reason(MLP(4, 2, (), "identity", "gaussian"))
        assert "two logits" in solver.skip_reason(MLP(4, 2, (), "identity", "softmax"))
    autoencoder = MLP(4, 4, (2,), "tanh", "gaussian")
    for name in MLP_SOLVERS:
        solver = make_optimizer(name)
        assert solver.skip_reason(hidden) is None
        assert "sklearn-lbfgs" in solver.skip_reason(logistic)
        assert "erf" in solver.skip_reason(MLP(4, 3, (5,), "erf", "softmax"))
        assert "intercepts" in solver.skip_reason(MLP(4, 3, (5,), fit_intercept=False))
    assert MLPAdam().skip_reason(autoencoder) is None
    assert "#8349" in MLPLBFGS().skip_reason(autoencoder)
    assert MLPLBFGS().skip_reason(MLP(4, 1, (2,), "tanh", "gaussian")) is None


def test_a_skipped_model_or_a_missing_class_raises_in_solve():
    objective = Objective(MLP(4, 3, (5,)), *multiclass_data())
    with pytest.raises(ValueError, match="hidden layers"):
        LogisticLBFGS().solve(objective, objective.model.init_params(0), 1)
    X, y = multiclass_data()
    objective = Objective(LogisticModel(4, 3), X[y != 1], y[y != 1])
    with pytest.raises(ValueError, match="classes present"):
        LogisticLBFGS().solve(objective, objective.model.init_params(), 1)


@pytest.mark.parametrize("name", list(SHIPPED_SOLVERS))
def test_params_are_complete_and_json(name):
    solver = make_optimizer(name)
    params = resolved_params(name)
    assert json.loads(json.dumps(params)) == params
    estimator = LogisticRegression() if name in LOGISTIC_SOLVERS else MLPClassifier()
    per_problem = {"C", "fit_intercept", "max_iter", "warm_start", "random_state"}
    per_problem |= {"hidden_layer_sizes", "activation", "alpha"}
    assert set(estimator.get_params()) - per_problem <= set(params)
    assert params["budget_growth"] == 1.5
    assert ("random_state" in params) == takes_seed(name)
    assert solver_identity(name)["requires"] == {"scikit-learn": sklearn.__version__}
    assert type(solver).__name__ in repr(solver)


def test_constructor_keywords_are_checked():
    with pytest.raises(TypeError, match="bogus"):
        make_optimizer("sklearn-lbfgs", bogus=1)
    assert resolved_params("sklearn-saga", random_state=7)["random_state"] == 7
    assert resolved_params("sklearn-mlp-sgd", momentum=0.0)["momentum"] == 0.0
    assert LogisticSAGA(random_state=3).get_params()["random_state"] == 3
    with pytest.raises(ValueError, match="budget_growth"):
        LogisticLBFGS(budget_growth=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        MLPAdam(batch_size=0)

"""The ``minimize`` driver: Result and history, determinism, oracle counts, stopping
statuses, singular curvature, mini-batching and input validation — for every solver."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from natgrad_core import (
    SOLVERS,
    DivergenceWarning,
    LogisticModel,
    OracleCounts,
    Result,
    SingularCurvatureWarning,
    make_optimizer,
    minimize,
)
from natgrad_core.optim import LBFGS, STATUSES, GradientDescent, Optimizer, StepInfo
from natgrad_core.optim.natural_gradient import PRECONDITIONERS

from .problems import (
    N_CLASSES,
    N_FEATURES,
    N_SAMPLES,
    PROBLEMS,
    SpyOptimizer,
    logistic_problem,
    loss_and_grad,
    mlp_problem,
    multiclass_data,
)

ALPHA = 1e-2
N_ITER = 12
LOSS_RTOL = 1e-12
"""History losses/gradients are recomputed exactly the same way: agreement up to rounding."""

COUNT_COLUMNS = [f.name for f in dataclasses.fields(OracleCounts)]
HISTORY_COLUMNS = [
    "iteration",
    "time",
    "loss",
    "grad_norm",
    "n_grad",
    "n_fvp",
    "n_cg_iter",
    "n_factorizations",
    "status",
]

# Per-solver settings that make the loss go down on each problem within N_ITER steps.
# Fixed steps throughout (the oracle counts below assume one gradient and no extra loss
# evaluation per step). Natural gradient on the MLP needs real damping: with λ ~ 1e-3 and
# unit steps the Gauss-Newton step of a small tanh network overshoots.
SETTINGS = {
    "logistic": {
        "exact": {"step": "fixed", "damping": 1e-3},
        "diag": {"step": "fixed", "damping": 1e-3, "learning_rate": 0.5},
        "kfac": {"step": "fixed", "damping": 1e-2, "learning_rate": 0.5},
        "ekfac": {"step": "fixed", "damping": 1e-2, "learning_rate": 0.5},
        "cg": {"step": "fixed", "damping": 1e-3},
        "gd": {"step": "fixed", "learning_rate": 0.5},
        "momentum": {"learning_rate": 0.1},
        "adam": {"learning_rate": 0.05},
        "lbfgs": {},
    },
    "mlp": {
        "exact": {"step": "fixed", "damping": 1e-1, "learning_rate": 0.5},
        "diag": {"step": "fixed", "damping": 1e-1, "learning_rate": 0.5},
        "kfac": {"step": "fixed", "damping": 1e-2, "learning_rate": 0.5},
        "ekfac": {"step": "fixed", "damping": 1e-2, "learning_rate": 0.5},
        "cg": {"step": "fixed", "damping": 1e-1, "learning_rate": 0.5},
        "gd": {"step": "fixed", "learning_rate": 0.5},
        "momentum": {"learning_rate": 0.1},
        "adam": {"learning_rate": 0.05},
        "lbfgs": {},
    },
}
MINIBATCH_SOLVERS = [s for s in SOLVERS if s != "lbfgs"]


def _optimizer(problem, solver, **extra):
    return make_optimizer(solver, **{**SETTINGS[problem][solver], **extra})


# ----------------------------------------------------------------------------- Result
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_solver_returns_a_documented_result(solver, problem):
    model, X, y = PROBLEMS[problem]()
    result = minimize(
        model, X, y, _optimizer(problem, solver), alpha=ALPHA, max_iter=N_ITER, random_state=0
    )

    assert isinstance(result, Result)
    assert result.status in STATUSES
    assert result.status in ("max_iter", "converged"), result.message
    assert isinstance(result.message, str) and result.message
    assert result.theta.shape == (model.n_params,)
    assert result.theta.dtype == np.float64
    assert np.all(np.isfinite(result.theta))
    assert result.success == (result.status == "converged")
    assert isinstance(result.n_iter, int) and 1 <= result.n_iter <= N_ITER
    assert result.time >= 0.0
    assert set(result.counts) == set(COUNT_COLUMNS)

    h = result.history
    assert isinstance(h, pd.DataFrame)
    assert set(HISTORY_COLUMNS) <= set(h.columns)
    assert len(h) == result.n_iter + 1
    np.testing.assert_array_equal(h["iteration"], np.arange(result.n_iter + 1))
    assert h["status"].iloc[0] == "start"
    assert np.all(np.diff(h["time"]) >= 0)
    assert h["time"].iloc[0] == 0.0
    assert h["time"].iloc[-1] == pytest.approx(result.time)
    for col in COUNT_COLUMNS:
        assert np.all(np.diff(h[col]) >= 0), col
        assert h[col].iloc[-1] == result.counts[col], col
    assert h[COUNT_COLUMNS].iloc[0].sum() == 0  # evaluating θ₀ is not an oracle call

    # the loss went down, and the Result reports the full-data loss/gradient at ``theta``
    assert h["loss"].iloc[-1] < h["loss"].iloc[0]
    loss, grad = loss_and_grad(model, X, y, result.theta, ALPHA)
    assert result.loss == pytest.approx(loss, rel=LOSS_RTOL)
    assert result.grad_norm == pytest.approx(np.max(np.abs(grad)), rel=LOSS_RTOL)
    assert result.loss == h["loss"].iloc[-1]
    assert result.grad_norm == h["grad_norm"].iloc[-1]


# ----------------------------------------------------------------------------- determinism
def _run(solver, random_state, batch_size=None, fisher=None, optimizer_seed=0):
    model, X, y = mlp_problem()
    extra = {}
    if solver in PRECONDITIONERS:
        extra["random_state"] = optimizer_seed
        if fisher is not None:
            extra["fisher"] = fisher
    return minimize(
        model,
        X,
        y,
        _optimizer("mlp", solver, **extra),
        alpha=ALPHA,
        max_iter=8,
        tol=0.0,
        batch_size=batch_size,
        random_state=random_state,
        theta0=None,
    )


def _without_time(result):
    return result.history.drop(columns="time")


@pytest.mark.parametrize("solver", SOLVERS)
def test_same_seed_gives_identical_history(solver):
    a, b = _run(solver, 3), _run(solver, 3)
    pd.testing.assert_frame_equal(_without_time(a), _without_time(b))
    np.testing.assert_array_equal(a.theta, b.theta)


@pytest.mark.parametrize("solver", MINIBATCH_SOLVERS)
def test_same_seed_gives_identical_minibatch_history(solver):
    fisher = "mc" if solver in PRECONDITIONERS else None
    a = _run(solver, 3, batch_size=10, fisher=fisher)
    b = _run(solver, 3, batch_size=10, fisher=fisher)
    pd.testing.assert_frame_equal(_without_time(a), _without_time(b))
    np.testing.assert_array_equal(a.theta, b.theta)


@pytest.mark.parametrize("solver", MINIBATCH_SOLVERS)
def test_different_seeds_give_different_minibatch_histories(solver):
    model, X, y = mlp_problem()
    theta0 = model.init_params(0)  # same start: only the batch order differs
    runs = [
        minimize(
            model,
            X,
            y,
            _optimizer("mlp", solver),
            alpha=ALPHA,
            max_iter=8,
            tol=0.0,
            batch_size=10,
            random_state=seed,
            theta0=theta0,
        )
        for seed in (1, 2)
    ]
    assert not np.allclose(runs[0].history["loss"], runs[1].history["loss"])
    assert not np.allclose(runs[0].theta, runs[1].theta)


@pytest.mark.parametrize("solver", PRECONDITIONERS)
def test_monte_carlo_fisher_depends_on_the_optimizer_seed(solver):
    a = _run(solver, 3, fisher="mc", optimizer_seed=0)
    b = _run(solver, 3, fisher="mc", optimizer_seed=1)
    c = _run(solver, 3, fisher="mc", optimizer_seed=0)
    assert not np.allclose(a.theta, b.theta)
    np.testing.assert_array_equal(a.theta, c.theta)


# ----------------------------------------------------------------------------- oracle counts
@pytest.mark.parametrize("max_iter", [1, 4, 9])
def test_gradient_descent_makes_one_gradient_call_per_iteration(max_iter):
    model, X, y = logistic_problem()
    result = minimize(
        model,
        X,
        y,
        make_optimizer("gd", learning_rate=0.5, step="fixed"),
        max_iter=max_iter,
        tol=0.0,
    )
    assert result.n_iter == max_iter
    assert result.counts == {**dict.fromkeys(COUNT_COLUMNS, 0), "n_grad": max_iter}
    # history evaluations (full-data loss and gradient every row) are not counted
    np.testing.assert_array_equal(result.history["n_grad"], result.history["iteration"])
    assert (result.history["n_loss"] == 0).all()


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_exact_ng_factorizes_once_per_iteration(problem):
    model, X, y = PROBLEMS[problem]()
    result = minimize(model, X, y, _optimizer(problem, "exact"), alpha=ALPHA, max_iter=6, tol=0.0)
    h = result.history
    np.testing.assert_array_equal(h["n_factorizations"], h["iteration"])
    np.testing.assert_array_equal(h["n_grad"], h["iteration"])
    assert (h[["n_fvp", "n_cg_iter", "n_loss"]] == 0).all().all()


@pytest.mark.parametrize("warm_start", [True, False])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_cg_counts_iterations_and_products_consistently(problem, warm_start):
    model, X, y = PROBLEMS[problem]()
    # a fixed tolerance: under a loose forcing term a warm start may already be solution enough
    opt = _optimizer(problem, "cg", cg_warm_start=warm_start, cg_forcing="fixed")
    result = minimize(model, X, y, opt, alpha=ALPHA, max_iter=6, tol=0.0)
    h = result.history
    assert np.all(h["n_fvp"] >= h["n_cg_iter"])
    assert np.all(np.diff(h["n_cg_iter"]) >= 1)  # every step runs CG
    # one product per CG iteration, plus one for the initial residual of a warm start
    # (every step after the first)
    extra = np.maximum(h["iteration"] - 1, 0) if warm_start else 0 * h["iteration"]
    np.testing.assert_array_equal(h["n_fvp"] - h["n_cg_iter"], extra)
    assert (h["n_factorizations"] == 0).all()
    np.testing.assert_array_equal(h["n_grad"], h["iteration"])


# ----------------------------------------------------------------------------- statuses
def test_huge_learning_rate_diverges_with_a_warning_not_an_exception():
    model, X, y = mlp_problem()
    with pytest.warns(DivergenceWarning, match="diverged"):
        result = minimize(
            model, X, y, make_optimizer("gd", learning_rate=1e8, step="fixed"), max_iter=20
        )
    assert result.status == "diverged"
    assert "exceeded" in result.message and "iteration" in result.message
    assert result.n_iter < 20
    assert not result.success


class _NaNAfter(Optimizer):
    """Gradient descent that returns NaN parameters from its ``after``-th step on."""

    name = "nan-after"

    def __init__(self, after):
        self.after = after

    def init(self, objective, theta):
        return 0

    def step(self, objective, theta, state):
        loss, grad = objective.loss_and_grad(theta)
        new = theta * np.nan if state + 1 >= self.after else theta - 0.1 * grad
        return new, state + 1, StepInfo(loss, 0.1, 0.0, "ok", {})


def test_nan_parameters_end_the_run_as_diverged():
    model, X, y = logistic_problem()
    with pytest.warns(DivergenceWarning, match="Non-finite"):
        result = minimize(model, X, y, _NaNAfter(3), max_iter=20, tol=0.0)
    assert result.status == "diverged"
    assert "Non-finite" in result.message
    assert result.n_iter == 3
    assert np.isnan(result.history["loss"].iloc[-1])


@pytest.mark.parametrize("solver", ["gd", "exact", "lbfgs"])
def test_large_tol_converges_at_the_start(solver):
    model, X, y = logistic_problem()
    result = minimize(model, X, y, _optimizer("logistic", solver), tol=1e3, max_iter=10)
    assert result.status == "converged"
    assert result.success
    assert result.n_iter == 0
    assert len(result.history) == 1
    assert "tol" in result.message


@pytest.mark.parametrize("solver", ["gd", "exact", "lbfgs"])
def test_max_iter_status(solver):
    model, X, y = mlp_problem()
    result = minimize(model, X, y, _optimizer("mlp", solver), tol=0.0, max_iter=3)
    assert result.status == "max_iter"
    assert result.n_iter == 3
    assert "3" in result.message


@pytest.mark.parametrize("solver", ["gd", "exact", "lbfgs"])
def test_time_limit_status(solver):
    model, X, y = mlp_problem()
    result = minimize(model, X, y, _optimizer("mlp", solver), tol=0.0, max_iter=50, time_limit=1e-9)
    assert result.status == "time_limit"
    assert result.n_iter == 1
    assert result.time >= 1e-9


@pytest.mark.parametrize("solver", ["gd", "kfac", "lbfgs"])
def test_callback_can_stop_and_add_columns(solver):
    model, X, y = mlp_problem()
    seen = []

    def callback(theta, row):
        seen.append(row["iteration"])
        if row["iteration"] == 3:
            raise StopIteration
        return {"theta_norm": float(np.linalg.norm(theta)), "tag": "x"}

    result = minimize(
        model, X, y, _optimizer("mlp", solver), tol=0.0, max_iter=50, callback=callback
    )
    assert result.status == "stopped"
    assert result.n_iter == 3
    assert seen == [0, 1, 2, 3]
    h = result.history
    assert {"theta_norm", "tag"} <= set(h.columns)
    assert (h["tag"].iloc[:3] == "x").all()
    assert np.all(np.isfinite(h["theta_norm"].iloc[:3]))
    assert np.isnan(h["theta_norm"].iloc[3])  # the stopping call returned nothing


# ----------------------------------------------------------------------------- singular curvature
@pytest.mark.parametrize("solver", ["exact", "kfac"])
def test_singular_curvature_warns_records_and_continues(solver):
    # multinomial logistic regression without L2: the softmax Fisher is singular along
    # "add the same vector to every class column"; with no damping the solve must fall back.
    model, X, y = logistic_problem()
    with pytest.warns(SingularCurvatureWarning):
        result = minimize(
            model,
            X,
            y,
            make_optimizer(solver, damping=0.0, step="fixed"),
            alpha=0.0,
            max_iter=5,
            tol=0.0,
        )
    statuses = set(result.history["status"].iloc[1:])
    assert statuses and statuses <= {"jitter", "pinv"}
    assert result.status == "max_iter"
    assert np.all(np.isfinite(result.theta))
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]


# ----------------------------------------------------------------------------- mini-batches
class _RecordingGD(GradientDescent):
    """Gradient descent that records which training rows each step's batch contained."""

    def __init__(self, X, **kwargs):
        super().__init__(**kwargs)
        self._row = {row.tobytes(): i for i, row in enumerate(np.asarray(X, dtype=np.float64))}
        self.batches = []

    def step(self, objective, theta, state):
        self.batches.append([self._row[row.tobytes()] for row in objective.X])
        return super().step(objective, theta, state)


@pytest.mark.parametrize("batch_size", [10, 8, 15, 39])
def test_every_epoch_visits_every_sample(batch_size):
    model, X, y = logistic_problem()
    assert len({r.tobytes() for r in X}) == N_SAMPLES  # rows identify samples
    opt = _RecordingGD(X, learning_rate=0.1)
    n_epochs = 3
    n_steps = n_epochs * math.ceil(N_SAMPLES / batch_size)
    result = minimize(
        model, X, y, opt, max_iter=n_steps, tol=0.0, batch_size=batch_size, random_state=0
    )
    assert result.n_iter == n_steps == len(opt.batches)
    assert result.counts["n_grad"] == n_steps
    assert all(0 < len(b) <= batch_size for b in opt.batches)
    # the stream of visited rows is a sequence of permutations of range(N): each epoch sees
    # every sample exactly once, whatever the batch size
    stream = np.concatenate(opt.batches)
    n_complete = len(stream) // N_SAMPLES
    assert n_complete >= n_epochs - 1
    for epoch in range(n_complete):
        chunk = stream[epoch * N_SAMPLES : (epoch + 1) * N_SAMPLES]
        np.testing.assert_array_equal(np.sort(chunk), np.arange(N_SAMPLES), err_msg=f"{epoch=}")
    # and the order is shuffled (not the identity, not the same every epoch)
    assert not np.array_equal(stream[:N_SAMPLES], np.arange(N_SAMPLES))


def test_minibatch_counts_one_gradient_per_iteration():
    model, X, y = mlp_problem()
    result = minimize(
        model,
        X,
        y,
        _optimizer("mlp", "kfac"),
        alpha=ALPHA,
        max_iter=7,
        tol=0.0,
        batch_size=10,
        random_state=0,
    )
    np.testing.assert_array_equal(result.history["n_grad"], result.history["iteration"])


# ----------------------------------------------------------------------------- bad input
def _data():
    X, y = multiclass_data()
    return X.copy(), y.copy()


def _X_with_nan():
    X, y = _data()
    X[3, 1] = np.nan
    return X, y


def _y_with_inf():
    X, y = _data()
    y = y.astype(np.float64)
    y[5] = np.inf
    return X, y


def _y_too_short():
    X, y = _data()
    return X, y[:-1]


def _wrong_n_features():
    X, y = _data()
    return X[:, :3], y


def _labels_out_of_range():
    X, y = _data()
    y[7] = 5
    return X, y


MINIMIZE_ERRORS = {
    # name: (data factory, minimize kwargs, exception, fragments of the message)
    "X-nan": (_X_with_nan, {}, ValueError, ["X", "NaN"]),
    "y-inf": (_y_with_inf, {}, ValueError, ["y", "infinite"]),
    "y-length": (_y_too_short, {}, ValueError, ["40", "39"]),
    "n-features": (_wrong_n_features, {}, ValueError, ["4 features", "got 3"]),
    "label-range": (_labels_out_of_range, {}, ValueError, ["5"]),
    "batch-too-big": (_data, {"batch_size": 41}, ValueError, ["batch_size", "41", "40"]),
    "batch-zero": (_data, {"batch_size": 0}, ValueError, ["batch_size", "0"]),
    "theta0-shape": (_data, {"theta0": np.zeros(16)}, ValueError, ["(16,)", "(15,)"]),
    "theta0-nan": (_data, {"theta0": np.full(15, np.nan)}, ValueError, ["theta0"]),
    "max-iter": (_data, {"max_iter": 0}, ValueError, ["max_iter", "0"]),
    "tol": (_data, {"tol": -1.0}, ValueError, ["tol", "-1.0"]),
    "alpha": (_data, {"alpha": -2.0}, ValueError, ["alpha", "-2.0"]),
}


@pytest.mark.parametrize("case", sorted(MINIMIZE_ERRORS))
def test_bad_input_raises_before_any_work(case):
    factory, kwargs, exc, fragments = MINIMIZE_ERRORS[case]
    X, y = factory()
    spy = SpyOptimizer()
    calls = []
    with pytest.raises(exc) as info:
        minimize(
            LogisticModel(N_FEATURES, N_CLASSES),
            X,
            y,
            spy,
            callback=lambda theta, row: calls.append(row),
            **kwargs,
        )
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert spy.calls == 0 and calls == []


class _SpyLBFGS(LBFGS):
    def run(self, *args, **kwargs):
        raise AssertionError("run must not be reached")


def test_batch_size_with_lbfgs_is_refused():
    X, y = _data()
    with pytest.raises(ValueError, match=r"full-batch.*batch_size=10"):
        minimize(LogisticModel(N_FEATURES, N_CLASSES), X, y, _SpyLBFGS(), batch_size=10)


@pytest.mark.parametrize("optimizer", ["gd", {"solver": "gd"}, GradientDescent])
def test_non_optimizer_is_refused(optimizer):
    X, y = _data()
    with pytest.raises(TypeError, match=type(optimizer).__name__):
        minimize(LogisticModel(N_FEATURES, N_CLASSES), X, y, optimizer)


CONSTRUCTOR_ERRORS = {
    # name: (solver, params, exception, fragments of the message)
    "negative-damping": ("exact", {"damping": -1.0}, ValueError, ["damping", "-1.0"]),
    "nan-damping": ("kfac", {"damping": float("nan")}, ValueError, ["damping", "nan"]),
    "negative-lr-ng": ("exact", {"learning_rate": -0.5}, ValueError, ["learning_rate", "-0.5"]),
    "negative-lr-gd": ("gd", {"learning_rate": -0.5}, ValueError, ["learning_rate", "-0.5"]),
    "zero-lr-adam": ("adam", {"learning_rate": 0.0}, ValueError, ["learning_rate", "0.0"]),
    "unknown-solver": ("nope", {}, ValueError, ["'nope'", "exact"]),
    "unknown-fisher": ("exact", {"fisher": "bogus"}, ValueError, ["fisher", "'bogus'"]),
    "unknown-step": ("exact", {"step": "bogus"}, ValueError, ["step", "'bogus'"]),
    "unknown-step-gd": ("gd", {"step": "bogus"}, ValueError, ["step", "'bogus'"]),
    "gd-lm": ("gd", {"step": "lm"}, ValueError, ["'lm'"]),
    "step-type": ("exact", {"step": 3}, TypeError, ["step", "int"]),
    "ema-decay-1": ("kfac", {"ema_decay": 1.0}, ValueError, ["ema_decay", "1.0"]),
    "ema-decay-neg": ("kfac", {"ema_decay": -0.1}, ValueError, ["ema_decay", "-0.1"]),
    "momentum-1": ("momentum", {"momentum": 1.0}, ValueError, ["momentum", "1.0"]),
    "inv-period-0": ("kfac", {"inv_period": 0}, ValueError, ["inv_period", "0"]),
    "mc-samples-float": ("exact", {"mc_samples": 1.5}, TypeError, ["mc_samples", "1.5"]),
    "preconditioner": ("cg", {"cg_preconditioner": "ilu"}, ValueError, ["'ilu'"]),
    "kfac-damping": ("kfac", {"kfac_damping": "huge"}, ValueError, ["'huge'"]),
    "lbfgs-memory": ("lbfgs", {"memory": 0}, ValueError, ["memory", "0"]),
    "adam-beta": ("adam", {"beta1": 1.0}, ValueError, ["beta1", "1.0"]),
    "foreign-key": ("adam", {"step": "armijo"}, TypeError, ["'adam'", "'step'", "beta1"]),
    "curvature-is-the-name": ("exact", {"curvature": "diag"}, TypeError, ["'curvature'"]),
}


@pytest.mark.parametrize("case", sorted(CONSTRUCTOR_ERRORS))
def test_bad_optimizer_parameters_raise_at_construction(case):
    solver, params, exc, fragments = CONSTRUCTOR_ERRORS[case]
    with pytest.raises(exc) as info:
        make_optimizer(solver, **params)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))

"""The driver reuses evaluations instead of recomputing them, with an honest clock
(``optim/driver.py``, "Reuse, with an honest clock"), and records every ``record_every``
iterations.

References are independent of the driver: the optimizer run by hand (``init``/``step``, or
``LBFGS.run``) on its own Objective, with real work counted by wrapping the model's forward
and backward passes and time read from a fake clock that only those passes advance.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from natgrad_core import MLP, make_optimizer, minimize
from natgrad_core.models import Objective

from .problems import binary_data, logistic_problem, mlp_problem

ALPHA = 1e-2
N_ITER = 6
FORWARD_SECONDS = 1.0
BACKWARD_SECONDS = 2.0
"""Fake cost of one forward pass and of one reverse (vjp) pass: powers of two sums, so
clock totals are exact."""

REUSE_CASES = {
    # solver → (problem, hyperparameters)
    "gd-fixed": ("gd", "logistic", {"step": "fixed", "learning_rate": 0.5}),
    "adam": ("adam", "mlp", {"learning_rate": 0.05}),
    "gd-armijo": ("gd", "logistic", {}),
    "exact-lm": ("exact", "mlp", {"damping": 1e-1}),
    "cg-lm": ("cg", "logistic", {"damping": 1e-3}),
    "lbfgs": ("lbfgs", "logistic", {}),
}
PROBLEMS = {"logistic": logistic_problem, "mlp": mlp_problem}


class Work:
    """Counts the model's forward and vjp passes and runs a fake clock they advance."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        self.forward = self.vjp = 0
        forward, vjp, fused = MLP.forward, MLP.vjp, MLP.loss_and_vjp

        def counting_forward(model, theta, X, **kwargs):
            self.forward += 1
            self.now += FORWARD_SECONDS
            return forward(model, theta, X, **kwargs)

        def counting_fused(model, theta, X_bar, Y, cache=None):
            if cache is None and len(model.layers) == 1:
                # a linear model's row-blocked pass: one forward and one reverse pass,
                # computed without calling forward or vjp
                self.forward += 1
                self.vjp += 1
                self.now += FORWARD_SECONDS + BACKWARD_SECONDS
            return fused(model, theta, X_bar, Y, cache)

        def counting_vjp(model, theta, cache, U):
            self.vjp += 1
            self.now += BACKWARD_SECONDS
            return vjp(model, theta, cache, U)

        monkeypatch.setattr(MLP, "forward", counting_forward)
        monkeypatch.setattr(MLP, "vjp", counting_vjp)
        monkeypatch.setattr(MLP, "loss_and_vjp", counting_fused)
        monkeypatch.setattr(time, "perf_counter", lambda: self.now)

    def snapshot(self):
        return self.forward, self.vjp, self.now


def _by_hand(optimizer, model, X, y, n_iter):
    """θ₀..θₙ, the oracle counts after each step, and the fake seconds the optimizer alone
    spent: the optimizer driven without ``minimize``."""
    objective = Objective(model, X, y, ALPHA)
    theta = model.init_params(0)
    iterates, counts = [theta], [objective.counts.as_dict()]
    if hasattr(optimizer, "run"):

        def callback(th):
            iterates.append(np.array(th, copy=True))
            counts.append(objective.counts.as_dict())
            if len(iterates) > n_iter:
                raise StopIteration

        optimizer.run(objective, theta, n_iter, 0.0, callback)
        return iterates, counts
    state = optimizer.init(objective, theta)
    for _ in range(n_iter):
        theta, state, _ = optimizer.step(objective, theta, state)
        iterates.append(theta)
        counts.append(objective.counts.as_dict())
    return iterates, counts


@pytest.mark.parametrize("case", sorted(REUSE_CASES))
def test_history_reuses_evaluations_and_charges_their_time(case, monkeypatch):
    solver, problem, params = REUSE_CASES[case]
    model, X, y = PROBLEMS[problem]()
    work = Work(monkeypatch)

    iterates, counts = _by_hand(make_optimizer(solver, **params), model, X, y, N_ITER)
    hand_forward, hand_vjp, hand_seconds = work.snapshot()
    result = minimize(
        model,
        X,
        y,
        make_optimizer(solver, **params),
        alpha=ALPHA,
        max_iter=N_ITER,
        tol=0.0,
        random_state=0,
    )
    forward = work.forward - hand_forward
    vjp = work.vjp - hand_vjp

    # the same trajectory and oracle counts as the optimizer alone
    assert result.n_iter == N_ITER
    np.testing.assert_array_equal(result.theta, iterates[-1])
    for row, theta, expected in zip(result.history.itertuples(), iterates, counts):
        assert {k: getattr(row, k) for k in expected} == expected
        loss, _ = Objective(model, X, y, ALPHA).loss_and_grad(theta, count=False)
        assert row.loss == loss
    # the clock shows what the optimizer alone spent, history evaluations excluded
    assert result.time == hand_seconds
    # the history adds at most one forward and one backward pass to the optimizer's own
    # work (at the final θ, which the optimizer never evaluates), where recomputing every
    # row would add one of each per iteration
    assert hand_forward <= forward <= hand_forward + 1
    assert hand_vjp <= vjp <= hand_vjp + 1


def test_lbfgs_history_costs_nothing(monkeypatch):
    """L-BFGS-B's accepted point is the last one it evaluated: every row is free."""
    model, X, y = logistic_problem()
    work = Work(monkeypatch)
    result = minimize(model, X, y, make_optimizer("lbfgs"), alpha=ALPHA, max_iter=N_ITER, tol=0.0)
    assert result.status == "max_iter"
    assert work.vjp == result.counts["n_grad"]


def test_a_linear_models_fused_pass_is_charged_in_proportion_to_its_flops(monkeypatch):
    """A linear model's forward and reverse passes run together over row blocks
    (``MLP.loss_and_vjp``): a counted ``loss`` reusing them is charged the forward share of
    the measured time, forward flops / gradient flops, and the gradient the rest."""
    model, X, y = logistic_problem()
    work = Work(monkeypatch)
    objective = Objective(model, X, y, ALPHA)
    theta = np.full(model.n_params, 0.1)
    objective.loss_and_grad(theta, count=False)
    assert (work.forward, work.vjp) == (1, 1)
    flops = model.pass_flops(X.shape[0])
    total = FORWARD_SECONDS + BACKWARD_SECONDS
    objective.loss(theta)
    forward_share = objective.take_charged_seconds()
    assert forward_share == pytest.approx(total * flops.forward / flops.gradient, rel=1e-15)
    objective.loss_and_grad(theta)
    assert forward_share + objective.take_charged_seconds() == pytest.approx(total, rel=1e-15)
    assert (work.forward, work.vjp) == (1, 1)


def test_uncounted_work_is_charged_once_when_a_counted_call_reuses_it(monkeypatch):
    model, X, y = mlp_problem()
    work = Work(monkeypatch)
    objective = Objective(model, X, y, ALPHA)
    theta = np.full(model.n_params, 0.1)

    objective.loss_and_grad(theta, count=False)
    assert (work.forward, work.vjp, objective.take_charged_seconds()) == (1, 1, 0.0)
    objective.loss(theta)  # reuses the forward pass: charged for it
    assert objective.take_charged_seconds() == FORWARD_SECONDS
    objective.loss_and_grad(theta)  # reuses the rest
    objective.loss_and_grad(theta)  # paid already
    assert objective.take_charged_seconds() == BACKWARD_SECONDS
    assert (work.forward, work.vjp) == (1, 1)
    assert (objective.counts.n_loss, objective.counts.n_grad) == (1, 2)

    objective.loss(theta + 1.0)  # counted work pays for itself
    objective.loss_and_grad(theta + 1.0, count=False)  # reuses it: owes the backward only
    objective.forward(theta + 1.0)
    assert objective.take_charged_seconds() == 0.0
    objective.loss_and_grad(theta + 1.0)
    assert objective.take_charged_seconds() == BACKWARD_SECONDS

    objective.clear_cache()
    objective.loss_and_grad(theta + 1.0)
    assert (work.forward, work.vjp) == (3, 3)


# ----------------------------------------------------------------------------- record_every
@pytest.mark.parametrize(
    ("solver", "params"), [("gd", {"step": "fixed", "learning_rate": 0.5}), ("lbfgs", {})]
)
@pytest.mark.parametrize(("record_every", "rows"), [(3, [0, 3, 6, 9, 10]), (20, [0, 10])])
def test_record_every_keeps_every_kth_row_and_the_last(solver, params, record_every, rows):
    model, X, y = logistic_problem()
    every = minimize(
        model, X, y, make_optimizer(solver, **params), alpha=ALPHA, max_iter=10, tol=0.0
    )
    some = minimize(
        model,
        X,
        y,
        make_optimizer(solver, **params),
        alpha=ALPHA,
        max_iter=10,
        tol=0.0,
        record_every=record_every,
    )
    assert list(some.history["iteration"]) == rows
    expected = every.history.set_index("iteration").loc[rows].drop(columns="time")
    actual = some.history.set_index("iteration").drop(columns="time")
    assert actual.equals(expected)
    np.testing.assert_array_equal(some.theta, every.theta)
    assert some.counts == every.counts


def test_lbfgs_converges_between_records_on_its_free_gradient():
    X, y = binary_data()
    model = logistic_problem()[0].__class__(X.shape[1], 2)
    every = minimize(model, X, y, make_optimizer("lbfgs"), alpha=ALPHA, tol=1e-8, max_iter=500)
    rare = minimize(
        model, X, y, make_optimizer("lbfgs"), alpha=ALPHA, tol=1e-8, max_iter=500, record_every=1000
    )
    assert every.status == rare.status == "converged"
    assert rare.n_iter == every.n_iter
    assert list(rare.history["iteration"]) == [0, every.n_iter]
    assert rare.grad_norm <= 1e-8


@pytest.mark.parametrize(
    ("problem", "step", "free"),
    [
        # the MLP's trial point is a forward pass only: ∇L at θ comes with the next step
        (mlp_problem, "lm", False),
        # a linear model's trial point runs the fused pass (prefetch_grad): ∇L at θ is free
        (logistic_problem, "lm", True),
        # fixed steps evaluate nothing at the new θ
        (logistic_problem, "fixed", False),
    ],
)
def test_step_optimizer_convergence_is_noticed_when_its_gradient_is_known(problem, step, free):
    model, X, y = problem()
    kwargs = {"alpha": ALPHA, "tol": 1e-3, "max_iter": 500, "random_state": 0}
    every = minimize(model, X, y, make_optimizer("exact", step=step), **kwargs)
    rare = minimize(model, X, y, make_optimizer("exact", step=step), record_every=4, **kwargs)
    assert every.status == rare.status == "converged"
    assert every.n_iter % 4 != 0  # else both ends coincide and the test shows nothing
    if free:
        assert rare.n_iter == every.n_iter
        expected = [*range(0, rare.n_iter, 4), rare.n_iter]
    else:
        assert rare.n_iter == 4 * -(-every.n_iter // 4)
        expected = list(range(0, rare.n_iter + 1, 4))
    assert list(rare.history["iteration"]) == expected


@pytest.mark.parametrize(
    ("record_every", "exc", "fragment"),
    [
        (0, ValueError, "record_every must be >= 1, got 0"),
        (-2, ValueError, "got -2"),
        (1.5, TypeError, "record_every must be an integer, got float"),
        (True, TypeError, "got bool"),
    ],
)
def test_record_every_must_be_a_positive_int(record_every, exc, fragment):
    model, X, y = logistic_problem()
    with pytest.raises(exc, match=fragment):
        minimize(model, X, y, make_optimizer("gd"), record_every=record_every)


def test_minimize_does_not_search_for_thread_pools_on_every_call(monkeypatch):
    """Finding the BLAS/OpenMP libraries walks every loaded shared object (~20 ms, as long
    as a small fit): once per process, not once per ``minimize``."""
    import threadpoolctl

    model, X, y = logistic_problem()
    minimize(model, X, y, make_optimizer("lbfgs"), max_iter=2)
    searches = []
    original = threadpoolctl.ThreadpoolController.__init__

    def counting_init(self, *args, **kwargs):
        searches.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(threadpoolctl.ThreadpoolController, "__init__", counting_init)
    for blas_threads in (None, 1, None):
        result = minimize(
            model, X, y, make_optimizer("lbfgs"), max_iter=2, blas_threads=blas_threads
        )
        assert result.blas_threads >= 1
    assert searches == []


# ----------------------------------------------------------------------------- solve's C·d
@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_levenberg_marquardt_takes_c_d_from_the_solve(solver):
    """The reduction ratio needs δᵀCδ; the solve already has (C + λI)x = ∇L − r, so no
    Fisher-vector product is spent on it. ρ still matches a dense finite-difference C."""
    from .problems import dense_curvature, run_with_iterates

    model, X, y = logistic_problem()
    optimizer = make_optimizer(solver, damping=1e-3)
    result, iterates = run_with_iterates(model, X, y, optimizer, alpha=ALPHA, max_iter=5, tol=0.0)
    h = result.history
    n_fvp_per_step = np.diff(h["n_fvp"]) - np.diff(h["n_cg_iter"])
    assert (n_fvp_per_step == 0).all()
    for k in range(1, len(h)):
        theta, delta = iterates[k - 1], iterates[k] - iterates[k - 1]
        if h["step_size"].iloc[k] == 0.0:
            continue
        loss, grad = Objective(model, X, y, ALPHA).loss_and_grad(theta, count=False)
        C = dense_curvature(model, X, y, theta, ALPHA)
        new_loss = Objective(model, X, y, ALPHA).loss(iterates[k], count=False)
        rho = (new_loss - loss) / (grad @ delta + 0.5 * delta @ C @ delta)
        assert h["rho"].iloc[k] == pytest.approx(rho, rel=1e-6)


@pytest.mark.parametrize("problem", [logistic_problem, mlp_problem])
def test_a_prefetched_gradient_is_one_pass_counted_when_asked_for(problem, monkeypatch):
    """``loss(θ, prefetch_grad=True)`` on a linear model is one fused pass (a forward and
    a reverse pass, counted as one loss) whose gradient the next ``loss_and_grad(θ)`` takes
    from the memo (counted as one gradient, no pass); an MLP's is a plain forward pass."""
    model, X, y = problem()
    theta = model.init_params(0) + 0.1
    fresh = Objective(model, X, y, ALPHA)
    expected_loss, expected_grad = fresh.loss_and_grad(theta)
    plain_loss = Objective(model, X, y, ALPHA).loss(theta)  # the forward pass alone
    objective = Objective(model, X, y, ALPHA)
    work = Work(monkeypatch)
    loss = objective.loss(theta, prefetch_grad=True)
    linear = len(model.layers) == 1
    assert (work.forward, work.vjp) == ((1, 1) if linear else (1, 0))
    loss_again, grad = objective.loss_and_grad(theta)
    assert (work.forward, work.vjp) == (1, 1)
    assert loss == loss_again == expected_loss == plain_loss  # bit-equal, as line searches need
    np.testing.assert_array_equal(grad, expected_grad)
    assert objective.counts.n_loss == objective.counts.n_grad == 1
    # the pass ran inside the caller's (counted) call: nothing is left to charge
    assert objective.take_charged_seconds() == 0.0

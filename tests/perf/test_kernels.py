"""pytest-benchmark microbenchmarks of the kernels, with convergence metrics in extra_info.

Run (timed) with ``pytest tests/perf --benchmark-enable``; in the ordinary test run the
benchmark fixture calls each function once, so these double as smoke tests. The CI gate
(``tools/perf_gate.py``) compares them with ``tests/perf/baseline.json``:

* every number in ``extra_info["metrics"]`` (iterations, oracle counts, final losses) is
  deterministic and must match the baseline (integers exactly, floats to 1e-9 relative);
* a timing is judged only as a ratio to its ``extra_info["control"]`` benchmark — one
  gradient evaluation on the same problem, measured in the same run — so a slower or
  busier machine moves both and cancels out.

Groups: gradient (the controls), fvp, kfac, dense, cg, step.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from natgrad_core import (
    KFAC,
    DenseFisher,
    ImplicitFisher,
    Objective,
    SingularCurvatureWarning,
    make_optimizer,
    minimize,
)
from natgrad_core.benchmarking.grid import NATGRAD_SOLVERS
from natgrad_core.benchmarking.problems import PROBLEMS
from natgrad_core.curvature import kfac_factors

SIZES = {"small": "wine-mlp", "large": "digits-logistic"}
# natgrad's own algorithms: the shipped scikit-learn plugins have no step to time
SOLVERS = {s.label: s for s in NATGRAD_SOLVERS}


@pytest.fixture(scope="module", params=sorted(SIZES))
def problem(request):
    data = PROBLEMS[SIZES[request.param]].load()
    objective = Objective(data.model, data.X_train, data.y_train, data.alpha)
    theta = data.model.init_params(0)
    if data.problem.convex:
        theta = theta + 0.01 * np.random.default_rng(0).standard_normal(theta.shape)
    v = np.random.default_rng(1).standard_normal(theta.shape)
    return request.param, data, objective, theta, v


def _control(size):
    return f"test_gradient[{size}]"


def _info(benchmark, size, **metrics):
    benchmark.extra_info["control"] = _control(size)
    benchmark.extra_info["metrics"] = metrics


@pytest.mark.benchmark(group="gradient")
def test_gradient(benchmark, problem):
    size, _, objective, theta, _ = problem

    def grad():
        objective.clear_cache()  # a fresh forward pass every time
        return objective.loss_and_grad(theta, count=False)

    loss, g = benchmark(grad)
    benchmark.extra_info["control"] = _control(size)
    benchmark.extra_info["metrics"] = {"loss": loss, "grad_norm": float(np.abs(g).max())}


@pytest.mark.benchmark(group="fvp")
def test_fisher_vector_product(benchmark, problem):
    size, _, objective, theta, v = problem
    op = ImplicitFisher(objective, theta)
    out = benchmark(op.matvec, v)
    assert float(v @ out) > 0  # the damped-free Fisher + L2 is positive definite here
    _info(benchmark, size, vFv=float(v @ out))


@pytest.mark.benchmark(group="kfac")
def test_kfac_update_and_inverse(benchmark, problem):
    size, _, objective, theta, v = problem

    def update_and_solve():
        op = KFAC(objective, factors=kfac_factors(objective, theta))
        return op.solve(v, 1e-3)

    x = benchmark(update_and_solve)
    op = KFAC(objective, factors=kfac_factors(objective, theta))
    np.testing.assert_allclose(op @ x + 1e-3 * x, v, rtol=1e-8, atol=1e-8)
    _info(benchmark, size, solution_norm=float(np.linalg.norm(x)))


@pytest.mark.benchmark(group="dense")
def test_dense_build_and_solve(benchmark, problem):
    size, _, objective, theta, v = problem

    def build_and_solve():
        return DenseFisher(objective, theta, method="parameter").solve(v, 1e-3)

    x = benchmark(build_and_solve)
    # checked against matrix-free products, which never form the dense matrix
    np.testing.assert_allclose(
        ImplicitFisher(objective, theta) @ x + 1e-3 * x, v, rtol=1e-7, atol=1e-7
    )
    _info(benchmark, size, solution_norm=float(np.linalg.norm(x)))


@pytest.mark.benchmark(group="cg")
@pytest.mark.filterwarnings("ignore::natgrad_core.CGMaxIterWarning")  # the cap is the point
def test_cg_solve(benchmark, problem):
    size, _, objective, theta, v = problem
    op = ImplicitFisher(objective, theta, cg_maxiter=20, cg_rtol=0.0)
    x = benchmark(op.solve, v, 1e-3)
    assert op.last_cg.n_iter == 20  # rtol 0 forces the cap
    _info(benchmark, size, cg_iterations=op.last_cg.n_iter, solution_norm=float(np.linalg.norm(x)))


def _convergence(solver, data, eps=1e-6, max_iter=60):
    """A short deterministic training run (outside the timer) for the metrics."""
    opt = make_optimizer(solver.solver, **solver.kwargs)
    res = minimize(
        data.model,
        data.X_train,
        data.y_train,
        opt,
        alpha=data.alpha,
        max_iter=max_iter,
        tol=0.0,
        random_state=0,
    )
    h = res.history
    best = h["loss"].cummin()
    reached = h.index[best <= best.iloc[-1] + eps]
    return {
        "final_loss": float(h["loss"].iloc[-1]),
        "iterations_to_eps": int(h["iteration"].iloc[reached[0]]),
        "n_grad": int(res.counts["n_grad"]),
        "n_loss": int(res.counts["n_loss"]),
        "n_fvp": int(res.counts["n_fvp"]),
        "n_cg_iter": int(res.counts["n_cg_iter"]),
        "n_factorizations": int(res.counts["n_factorizations"]),
        "status": res.status,
    }


@pytest.mark.benchmark(group="step")
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_one_step(benchmark, problem, solver):
    size, data, objective, theta, _ = problem
    config = SOLVERS[solver]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularCurvatureWarning)
        metrics = _convergence(config, data)
        opt = make_optimizer(config.solver, **config.kwargs)
        state = opt.init(objective, theta)

        def step():
            objective.clear_cache()
            if config.solver == "lbfgs":  # scipy drives L-BFGS-B: time one iteration of it
                return opt.run(objective, theta, 1, 0.0, lambda th: None).x, None, None
            return opt.step(objective, theta, state)

        new_theta, _, _ = benchmark(step)
    assert np.all(np.isfinite(new_theta))
    assert metrics["final_loss"] < float(objective.loss(theta, count=False))
    _info(benchmark, size, **metrics)

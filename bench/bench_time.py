"""time_ benchmarks: one optimizer step and the curvature kernels, at three sizes.

Sizes (``common.SIZES``): iris-logistic (15 parameters, 112 samples), wine-mlp (275
parameters, 133 samples) and digits-logistic (650 parameters, 1347 samples).
"""

from __future__ import annotations

import numpy as np

from . import common
from .common import DAMPING, SIZES, SOLVER_LABELS


def _noop(theta):
    return None


class OptimizerStep:
    """One ``optimizer.step`` of each DEFAULT_SOLVERS configuration.

    ``setup`` builds the objective, initializes the optimizer and takes two untimed
    warm-up steps (caches, BLAS, and a state past the first step: K-FAC moving averages,
    CG warm start, adapted damping). The timed call is one step from that state, including
    its gradient evaluation (the objective's memoized forward pass is cleared first, as at a
    new iterate). L-BFGS runs scipy's own loop and has no ``step``: its entry is one
    L-BFGS-B iteration (``LBFGS.run`` with ``max_iter=1``) from the warmed-up point.
    """

    params = (SIZES, SOLVER_LABELS)
    param_names = ("problem", "solver")
    repeat = (2, 5, 4.0)
    timeout = 120

    def setup(self, problem, solver):
        common.require("Objective", "make_optimizer", "minimize", "DEFAULT_SOLVERS")
        self.objective = common.objective(problem)
        self.optimizer = common.optimizer_for(solver)
        data = common.load(problem)
        theta = data.model.init_params(common.SEED)
        if hasattr(self.optimizer, "run"):  # L-BFGS: warm up through the driver
            result = common.minimize(
                data.model,
                data.X_train,
                data.y_train,
                self.optimizer,
                alpha=data.alpha,
                theta0=theta,
                max_iter=2,
                tol=0.0,
            )
            self.theta, self.state = result.theta, None
            return
        state = self.optimizer.init(self.objective, theta)
        with np.errstate(all="ignore"):
            for _ in range(2):
                theta, state, _ = self.optimizer.step(self.objective, theta, state)
        self.theta, self.state = theta, state

    def time_step(self, problem, solver):
        common.cold(self.objective)
        with np.errstate(all="ignore"):
            if self.state is None:
                self.optimizer.run(self.objective, self.theta, 1, 0.0, _noop)
            else:
                self.optimizer.step(self.objective, self.theta, self.state)


class Curvature:
    """The curvature kernels at a fixed parameter vector (``common.point``), damping 1e-4.

    time_fvp               one exact Fisher-vector product ``ImplicitFisher @ v``
    time_kfac_update       K-FAC factors (``kfac_factors``) and one ``KFAC(...).solve``
                           (eigendecompositions + the Kronecker solve)
    time_dense_solve       the parameter-space Fisher: ``DenseFisher(...).matrix()`` and one
                           ``.solve`` (Cholesky)
    time_cg_solve          one ``ImplicitFisher.solve`` by CG capped at 10 iterations
    """

    params = (SIZES,)
    param_names = ("problem",)
    repeat = (2, 5, 4.0)
    CG_MAXITER = 10

    def setup(self, problem):
        common.require("Objective", "ImplicitFisher", "DenseFisher", "KFAC", "kfac_factors")
        self.objective = common.objective(problem)
        self.theta = common.point(problem)
        rng = np.random.default_rng(1)
        self.v = rng.standard_normal(self.theta.size)
        _, self.grad = self.objective.loss_and_grad(self.theta, count=False)
        self.fisher = common.ImplicitFisher(self.objective, self.theta, "exact")
        self.fisher @ self.v  # warm-up

    def time_fvp(self, problem):
        self.fisher @ self.v

    def time_kfac_update(self, problem):
        common.cold(self.objective)
        factors = common.kfac_factors(self.objective, self.theta, "exact")
        common.KFAC(self.objective, factors=factors).solve(self.grad, DAMPING)

    def time_dense_solve(self, problem):
        common.cold(self.objective)
        op = common.DenseFisher(self.objective, self.theta, "exact", method="parameter")
        op.matrix()
        op.solve(self.grad, DAMPING)

    def time_cg_solve(self, problem):
        op = common.ImplicitFisher(
            self.objective, self.theta, "exact", cg_rtol=0.0, cg_maxiter=self.CG_MAXITER
        )
        op.solve(self.grad, DAMPING)

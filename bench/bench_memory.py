"""peakmem_ benchmarks: peak resident memory of the process (imports included).

asv runs every parameter combination in its own process, so the differences between
entries are what the measured code allocated.
"""

from __future__ import annotations

import numpy as np

from . import common
from .common import CUSTOM_PROBLEMS, DAMPING


class ExactFisherMemory:
    """One damped exact-Fisher solve, parameter space vs sample space.

    ``DenseFisher(method="parameter")`` forms and factors the (P, P) matrix;
    ``method="sample"`` factors the (R, R) Gram of Woodbury's identity (R = outputs ×
    samples). On synthetic-n400-d2000-k2 (P = 2001, R = 300) sample space should need far
    less; on synthetic-n1000-d50-k3 (P = 153, R = 2250) parameter space should.
    """

    params = (tuple(CUSTOM_PROBLEMS), ("parameter", "sample"))
    param_names = ("problem", "method")
    timeout = 120

    def setup(self, problem, method):
        common.require("Objective", "DenseFisher", "Problem")
        self.objective = common.objective(problem)
        self.theta = common.point(problem)
        _, self.grad = self.objective.loss_and_grad(self.theta, count=False)

    def peakmem_exact_fisher_solve(self, problem, method):
        op = common.DenseFisher(self.objective, self.theta, "exact", method=method)
        op.solve(self.grad, DAMPING)


class KFACStateMemory:
    """The state of one K-FAC natural-gradient step (moving-average factors and the
    operator with its eigendecompositions), ``NaturalGradient(curvature="kfac",
    ema_decay=0.95, step="quadratic")`` from the initialization."""

    params = (("wine-mlp", "digits-mlp"),)
    param_names = ("problem",)
    timeout = 120

    def setup(self, problem):
        common.require("Objective", "make_optimizer")
        self.objective = common.objective(problem)
        self.theta = common.load(problem).model.init_params(common.SEED)

    def peakmem_kfac_state(self, problem):
        opt = common.make_optimizer(
            "kfac", damping=DAMPING, step="quadratic", ema_decay=0.95, random_state=0
        )
        state = opt.init(self.objective, self.theta)
        with np.errstate(all="ignore"):
            _, state, _ = opt.step(self.objective, self.theta, state)
        return state

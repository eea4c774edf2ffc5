"""Optimizers: natural gradient, baselines, step rules and the ``minimize`` driver."""

from .base import BudgetedSolver, Optimizer, StepInfo, budget_grid
from .baselines import LBFGS, Adam, GradientDescent, Momentum
from .driver import STATUSES, Result, minimize
from .natural_gradient import PRECONDITIONERS, NaturalGradient, NGState
from .registry import RECOMMENDED, SOLVERS, make_optimizer, resolved_params
from .steps import (
    STEP_RULES,
    Armijo,
    FixedStep,
    KLTrustRegion,
    LevenbergMarquardt,
    QuadraticModel,
    StepContext,
    StepRule,
    get_step_rule,
)

__all__ = [
    "LBFGS",
    "PRECONDITIONERS",
    "RECOMMENDED",
    "SOLVERS",
    "STATUSES",
    "STEP_RULES",
    "Adam",
    "Armijo",
    "BudgetedSolver",
    "FixedStep",
    "GradientDescent",
    "KLTrustRegion",
    "LevenbergMarquardt",
    "Momentum",
    "NGState",
    "NaturalGradient",
    "Optimizer",
    "QuadraticModel",
    "Result",
    "StepContext",
    "StepInfo",
    "StepRule",
    "budget_grid",
    "get_step_rule",
    "make_optimizer",
    "minimize",
    "resolved_params",
]

"""Optimizers: natural gradient, baselines, step rules and the ``minimize`` driver."""

from .base import Optimizer, StepInfo
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
    "get_step_rule",
    "make_optimizer",
    "minimize",
    "resolved_params",
]

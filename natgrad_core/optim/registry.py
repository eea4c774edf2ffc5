"""Solver names → optimizers: the one list every test and benchmark parametrizes over."""

from __future__ import annotations

from .base import Optimizer
from .baselines import LBFGS, Adam, GradientDescent, Momentum
from .natural_gradient import PRECONDITIONERS, NaturalGradient

__all__ = ["SOLVERS", "make_optimizer"]


_BASELINES = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam, "lbfgs": LBFGS}
SOLVERS = PRECONDITIONERS + tuple(_BASELINES)


def make_optimizer(solver: str, **params) -> Optimizer:
    """An optimizer from a solver name: natural gradient with curvature ``solver`` for
    exact | diag | kfac | ekfac | cg, or a baseline gd | momentum | adam | lbfgs."""
    if solver in PRECONDITIONERS:
        return NaturalGradient(curvature=solver, **params)
    if solver not in _BASELINES:
        raise ValueError(f"Unknown solver {solver!r}; expected one of {list(SOLVERS)}.")
    return _BASELINES[solver](**params)

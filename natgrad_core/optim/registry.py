"""Solver names → optimizers: the one list every test and benchmark parametrizes over."""

from __future__ import annotations

from .base import Optimizer
from .baselines import LBFGS, Adam, GradientDescent, Momentum
from .natural_gradient import PRECONDITIONERS, NaturalGradient

__all__ = ["SOLVERS", "make_optimizer"]


SOLVERS = ("exact", "diag", "kfac", "ekfac", "cg", "gd", "momentum", "adam", "lbfgs")


def make_optimizer(solver: str, **params) -> Optimizer:
    """An optimizer from a solver name: natural gradient with curvature ``solver`` for
    exact | diag | kfac | ekfac | cg, or a baseline gd | momentum | adam | lbfgs."""
    if solver in PRECONDITIONERS:
        return NaturalGradient(curvature=solver, **params)
    baselines = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam, "lbfgs": LBFGS}
    if solver not in baselines:
        raise ValueError(f"Unknown solver {solver!r}; expected one of {list(SOLVERS)}.")
    return baselines[solver](**params)

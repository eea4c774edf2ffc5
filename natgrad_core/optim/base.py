"""The optimizer interface shared by natural gradient and the baselines.

An optimizer is a pure ``init`` / ``step`` pair in the spirit of optax's
``GradientTransformation``: ``init(objective, theta)`` returns an immutable state
(a NamedTuple) and ``step(objective, theta, state)`` returns ``(theta, state, StepInfo)``.
``objective`` is the (mini-)batch :class:`~natgrad_core.models.objective.Objective`; all
oracle calls go through it, so its shared :class:`OracleCounts` see every evaluation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .._validation import check_positive


class StepInfo(NamedTuple):
    """loss : batch loss at the start of the step; step_size : the multiplier applied to the
    direction (0 for a rejected step); damping : λ used; status : "ok" or what went wrong
    ("jitter", "pinv", "max_cg_iter", "rejected", "line_search_failed", …);
    extra : rule-specific diagnostics (e.g. "kl", "rho", "momentum")."""

    loss: float
    step_size: float
    damping: float
    status: str
    extra: dict


def _repr(self) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "name")
    return f"{type(self).__name__}({fields})"


class Optimizer:
    """Base class; subclasses set ``name`` and implement ``init`` and ``step``."""

    name = ""
    full_batch_only = False

    def init(self, objective, theta):
        raise NotImplementedError

    def step(self, objective, theta, state):
        raise NotImplementedError

    __repr__ = _repr


def is_optimizer(obj) -> bool:
    """Whether ``obj`` is an optimizer: an :class:`Optimizer`, or any instance with its
    ``init`` and ``step`` methods (a plugin need not subclass), or a
    :class:`BudgetedSolver`."""
    if isinstance(obj, (Optimizer, BudgetedSolver)):
        return True
    return (
        not isinstance(obj, type)
        and callable(getattr(obj, "init", None))
        and callable(getattr(obj, "step", None))
    )


class BudgetedSolver:
    """A solver that runs to an iteration budget and hands back θ — a library's ``fit``
    that cannot be stepped from outside (scikit-learn's estimators), as benchopt's
    ``Solver.run(n_iter)``.

    ``solve(objective, theta, budget)`` starts from ``theta`` and returns
    ``(theta, n_iter, message)``: the parameters at the end, the iterations it ran (fewer
    than ``budget`` when it stopped on its own criterion) and why it stopped. It reads the
    data from ``objective`` (``model``, ``X``, ``y``, ``alpha``) and must minimize the
    same objective (see :mod:`natgrad_core.models.objective`).

    Its curve is made by restarts (:func:`~natgrad_core.optim.minimize`): one fit from θ₀
    per budget of a geometric grid (:func:`budget_grid` with ``budget_growth``), each
    point's time the seconds of the fit that produced it. A fit's internal oracle calls
    cannot be observed, so its rows carry no oracle counts (NaN). A chain of warm-started
    fits would be cheaper to run but is a different algorithm: scikit-learn resets an
    L-BFGS memory or Adam's moments at every ``fit``.

    ``skip_reason(model)`` says why the solver cannot fit ``model`` (None: it can); the
    benchmark stores such runs as skipped, with the reason.
    """

    name = ""
    curve = "restarts"
    budget_growth = 1.5

    def solve(self, objective, theta, budget: int):
        raise NotImplementedError

    def skip_reason(self, model) -> str | None:
        return None

    __repr__ = _repr


def budget_grid(max_iter: int, growth: float = 1.5) -> list[int]:
    """Iteration budgets 1 = k₀ < k₁ < … < max_iter with k_{i+1} = max(k_i + 1,
    ⌈growth · k_i⌉): a geometric grid, as dense as the integers at the start.

    >>> budget_grid(100)
    [1, 2, 3, 5, 8, 12, 18, 27, 41, 62, 93, 100]
    """
    growth = check_growth(growth)
    budgets = [1]
    while budgets[-1] < max_iter:
        budgets.append(min(max_iter, max(budgets[-1] + 1, math.ceil(growth * budgets[-1]))))
    return budgets


def check_growth(growth) -> float:
    """``growth`` as a float, if it is a real number > 1 (the ratio of a budget grid)."""
    growth = check_positive(growth, "budget_growth")
    if not growth > 1:
        raise ValueError(f"budget_growth must be > 1, got {growth!r}.")
    return growth


def batch_refusal(optimizer) -> str | None:
    """Why ``optimizer`` takes no mini-batches from the driver, or None: a
    :class:`BudgetedSolver` draws its own, and an optimizer may be full-batch only
    (``full_batch_only``; a plugin need not have the attribute)."""
    if isinstance(optimizer, BudgetedSolver):
        return "draws its own mini-batches (its own hyperparameters say how)"
    if getattr(optimizer, "full_batch_only", False):
        return "is full-batch only"
    return None

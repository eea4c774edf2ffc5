"""The optimizer interface shared by natural gradient and the baselines.

An optimizer is a pure ``init`` / ``step`` pair in the spirit of optax's
``GradientTransformation``: ``init(objective, theta)`` returns an immutable state
(a NamedTuple) and ``step(objective, theta, state)`` returns ``(theta, state, StepInfo)``.
``objective`` is the (mini-)batch :class:`~natgrad_core.models.objective.Objective`; all
oracle calls go through it, so its shared :class:`OracleCounts` see every evaluation.
"""

from __future__ import annotations

from typing import NamedTuple


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


class Optimizer:
    """Base class; subclasses set ``name`` and implement ``init`` and ``step``."""

    name = ""
    full_batch_only = False

    def init(self, objective, theta):
        raise NotImplementedError

    def step(self, objective, theta, state):
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "name")
        return f"{type(self).__name__}({fields})"

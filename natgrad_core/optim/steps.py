"""Step rules: how far to move along a preconditioned direction, and how to adapt damping.

Every rule is a pure ``(init, __call__)`` pair in the style of optax: ``init()`` returns its
state (a NamedTuple), ``rule(ctx, state)`` returns ``(delta, new_state, info)`` where
``delta`` is the parameter update and ``info`` a dict of per-step diagnostics. ``ctx`` is a
:class:`StepContext` holding the batch objective, θ, L(θ), ∇L(θ), the descent direction
``d = −(C + λI)⁻¹∇L`` and a callable for exact Fisher-vector products ``C v`` (the exact
Fisher of the batch plus the L2 term; counted as FVPs).

Rules
-----
fixed        δ = η d.
kl           KL trust region (Schulman et al. 2015, TRPO, Appendix C): δ = β d with
             β = √(2ε / dᵀFd), so that ½ δᵀFδ = ε — the predicted KL divergence of the step.
             F is the exact Fisher of the model's predictive distribution (no L2 term). If
             the loss does not decrease, β is halved (at most ``max_backtracks`` times).
             β is capped at ``max_step`` (default 1: never longer than the full natural
             step, so the rule becomes Newton-like near the optimum; None disables the cap).
armijo       Backtracking line search (Nocedal & Wright 2006, Algorithm 3.1): the largest
             t ∈ {t₀ ρᵏ} with L(θ + t d) ≤ L(θ) + c t ∇Lᵀd.
lm           Levenberg–Marquardt damping (Martens 2010 §4.1; Martens & Grosse 2015 §6.5):
             δ = d, reduction ratio ρ = (L(θ+δ) − L(θ)) / M(δ), M(δ) = ∇Lᵀδ + ½ δᵀCδ;
             λ ← ω λ if ρ > 3/4, λ ← λ / ω if ρ < 1/4; a step with ρ ≤ 0 is rejected.
quadratic    K-FAC's quadratic-model learning rate and momentum (Martens & Grosse 2015 §7):
             δ = α d + μ δ_prev with (α, μ) minimizing M(δ) + ½ λ‖δ‖², i.e. solving
             [[dᵀĈd, dᵀĈδ₀], [δ₀ᵀĈd, δ₀ᵀĈδ₀]] [α, μ]ᵀ = −[∇Lᵀd, ∇Lᵀδ₀]ᵀ,  Ĉ = C + λI,
             with the exact curvature; combined with the Levenberg–Marquardt rule for λ by
             default, with ω = (19/20)^5 (Martens & Grosse's T₁ = 5 applied every step).
             The system needs only the quadratic forms of C on span{d, δ₀}, which the two
             forward-mode passes J d and J δ₀ give (``ctx.gram``; no reverse pass), and
             the ratio's δᵀCδ is [α, μ] (VᵀCV) [α, μ]ᵀ from the same 2×2 Gram: a step
             costs one gradient, one loss and two forward-mode passes, not three products.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .._typing import Array
from .._validation import check_nonnegative, check_positive, check_positive_int
from ..curvature import ImplicitFisher
from .base import StepInfo

__all__ = [
    "STEP_RULES",
    "Armijo",
    "FixedStep",
    "KLTrustRegion",
    "LevenbergMarquardt",
    "QuadraticModel",
    "StepContext",
    "StepRule",
    "exact_products",
    "get_step_rule",
    "take_step",
]


@dataclass
class StepContext:
    """What a step rule may look at. ``fvp(v)`` = C v (exact Fisher + L2), counted;
    ``fisher_vp(v)`` = F v without the L2 term (for KL), counted; ``gram(V)`` = VᵀCV for
    the columns of V from forward-mode passes alone
    (:meth:`~natgrad_core.curvature.ImplicitFisher.gram`), counted."""

    objective: Any
    theta: Array
    loss: float
    grad: Array
    direction: Array
    damping: float
    fvp: Callable[[Array], Array]
    fisher_vp: Callable[[Array], Array]
    gram: Callable[[Array], Array] | None = None


def exact_products(objective, theta, known=None):
    """(C v, F v) closures on the batch with exact Fisher-vector products (counted): the
    curvature with and without the L2 term. ``known = (d, C d)``, if given, answers a
    product with that very array ``d`` without computing (or counting) it. The operator is
    built at the first product it must compute (none, when ``known`` answers them all)."""
    ops: list = []

    def operator():
        if not ops:
            ops.append(ImplicitFisher(objective, theta, "exact"))
        return ops[0]

    def fvp(v):
        if known is not None and v is known[0]:
            return known[1].copy()
        return operator()._matvec(v)

    return fvp, lambda v: fvp(v) - objective.l2 * (objective.weight_mask * v)


def take_step(
    rule, rule_state, objective, theta, loss, grad, direction, damping, status="ok", product=None
):
    """Run ``rule`` along ``direction``; returns ``(delta, rule_state, StepInfo)``.

    ``status`` is the curvature's status; the rule's own ("rejected", …) is reported only
    when the curvature was fine. ``product`` is C·direction (exact Fisher plus L2) when the
    caller already has it from its solve, sparing the rule one Fisher-vector product.
    """
    fvp = fisher_vp = gram = None
    if rule.needs_curvature:
        known = None if product is None else (direction, product)
        fvp, fisher_vp = exact_products(objective, theta, known)

        def gram(V):  # its operator is built only by the rules that ask for it
            return ImplicitFisher(objective, theta, "exact").gram(V)

    ctx = StepContext(objective, theta, loss, grad, direction, damping, fvp, fisher_vp, gram)
    delta, rule_state, extra = rule(ctx, rule_state)
    rule_status = extra.pop("step_status", "ok")
    step_size = float(extra.pop("step_size", 1.0))
    info = StepInfo(loss, step_size, damping, rule_status if status == "ok" else status, extra)
    return delta, rule_state, info


class StepRule:
    """Base class. ``adapts_damping`` rules own λ: the optimizer asks ``damping(state)``."""

    name = ""
    adapts_damping = False
    needs_curvature = False

    def init(self, damping: float):
        return ()

    def damping(self, state, default: float) -> float:
        return default

    def __call__(self, ctx: StepContext, state):
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class FixedStep(StepRule):
    """δ = learning_rate · d."""

    name = "fixed"

    def __init__(self, learning_rate: float = 1.0):
        self.learning_rate = check_positive(learning_rate, "learning_rate")

    def __call__(self, ctx, state):
        return self.learning_rate * ctx.direction, state, {"step_size": self.learning_rate}


class KLTrustRegion(StepRule):
    """β = √(2 max_kl / dᵀFd); halve β while the loss does not decrease."""

    name = "kl"
    needs_curvature = True

    def __init__(
        self, max_kl: float = 1e-2, max_backtracks: int = 10, max_step: float | None = 1.0
    ):
        self.max_kl = check_positive(max_kl, "max_kl")
        self.max_backtracks = int(check_nonnegative(max_backtracks, "max_backtracks"))
        self.max_step = None if max_step is None else check_positive(max_step, "max_step")

    def __call__(self, ctx, state):
        d = ctx.direction
        dFd = float(d @ ctx.fisher_vp(d))
        if not np.isfinite(dFd) or dFd <= 0.0:
            return np.zeros_like(d), state, {"step_size": 0.0, "kl": 0.0, "step_status": "flat"}
        beta = np.sqrt(2.0 * self.max_kl / dFd)
        if self.max_step is not None:
            beta = min(beta, self.max_step)
        for _ in range(self.max_backtracks):
            if ctx.objective.loss(ctx.theta + beta * d) < ctx.loss:
                break
            beta *= 0.5
        return beta * d, state, {"step_size": beta, "kl": 0.5 * beta * beta * dFd}


class Armijo(StepRule):
    """Backtracking from ``initial`` by ``shrink`` until the Armijo condition holds."""

    name = "armijo"

    def __init__(
        self, initial: float = 1.0, c: float = 1e-4, shrink: float = 0.5, max_backtracks=30
    ):
        self.initial = check_positive(initial, "initial")
        self.c = check_positive(c, "c")
        self.shrink = check_positive(shrink, "shrink")
        if not (self.c < 1 and self.shrink < 1):
            raise ValueError(
                f"Armijo needs 0 < c < 1 and 0 < shrink < 1, got c={c}, shrink={shrink}."
            )
        self.max_backtracks = check_positive_int(max_backtracks, "max_backtracks")

    def __call__(self, ctx, state):
        d = ctx.direction
        slope = float(ctx.grad @ d)
        if not slope < 0:
            return np.zeros_like(d), state, {"step_size": 0.0, "step_status": "not_descent"}
        t = self.initial
        for _ in range(self.max_backtracks):
            if ctx.objective.loss(ctx.theta + t * d) <= ctx.loss + self.c * t * slope:
                return t * d, state, {"step_size": t}
            t *= self.shrink
        return np.zeros_like(d), state, {"step_size": 0.0, "step_status": "line_search_failed"}


class LMState(NamedTuple):
    damping: float


class LevenbergMarquardt(StepRule):
    """Adapt λ from the reduction ratio ρ; ω = ``decay`` (default 2/3, Martens 2010 §4.1)."""

    name = "lm"
    adapts_damping = True
    needs_curvature = True

    def __init__(self, decay: float = 2 / 3, min_damping: float = 1e-12, max_damping: float = 1e8):
        self.decay = check_positive(decay, "decay")
        if self.decay >= 1:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}.")
        self.min_damping = check_positive(min_damping, "min_damping")
        self.max_damping = check_positive(max_damping, "max_damping")

    def init(self, damping):
        return LMState(float(min(max(damping, self.min_damping), self.max_damping)))

    def damping(self, state, default):
        return state.damping

    def update(self, ctx, state, delta, new_loss, curvature=None):
        """ρ and the new damping for a proposed ``delta`` with loss ``new_loss``;
        ``curvature`` is δᵀCδ when the caller already knows it (else one product)."""
        if curvature is None:
            curvature = float(delta @ ctx.fvp(delta))
        model_change = float(ctx.grad @ delta + 0.5 * curvature)
        rho = (new_loss - ctx.loss) / model_change if model_change < 0 else -np.inf
        lam = state.damping
        if rho > 0.75:
            lam *= self.decay
        elif rho < 0.25:
            lam /= self.decay
        return rho, LMState(float(min(max(lam, self.min_damping), self.max_damping)))

    def __call__(self, ctx, state):
        delta = ctx.direction
        # a step is usually accepted, and the next one starts with ∇L at θ + δ
        new_loss = ctx.objective.loss(ctx.theta + delta, prefetch_grad=True)
        rho, new_state = self.update(ctx, state, delta, new_loss)
        if not (np.isfinite(new_loss) and rho > 0):
            return (
                np.zeros_like(delta),
                new_state,
                {"step_size": 0.0, "rho": rho, "step_status": "rejected"},
            )
        return delta, new_state, {"step_size": 1.0, "rho": rho}


class QMState(NamedTuple):
    damping: float
    previous: Array | None


class QuadraticModel(StepRule):
    """K-FAC's (α, μ) from the 2×2 quadratic model with the exact curvature (module doc)."""

    name = "quadratic"
    adapts_damping = True
    needs_curvature = True

    def __init__(self, momentum: bool = True, adapt_damping: bool = True, decay: float = 0.95**5):
        self.momentum = bool(momentum)
        self.adapt_damping = bool(adapt_damping)
        self._lm = LevenbergMarquardt(decay=decay)

    @property
    def decay(self) -> float:
        """ω of the Levenberg–Marquardt rule that adapts λ."""
        return self._lm.decay

    def init(self, damping):
        return QMState(self._lm.init(damping).damping, None)

    def damping(self, state, default):
        return state.damping

    def __call__(self, ctx, state):
        d, g, lam = ctx.direction, ctx.grad, state.damping
        prev = state.previous if self.momentum else None
        prev = prev if prev is not None and np.any(prev) else None
        V = d[:, None] if prev is None else np.column_stack([d, prev])
        C = ctx.gram(V)  # [[dᵀCd, dᵀCδ₀], [δ₀ᵀCd, δ₀ᵀCδ₀]]: two forward-mode passes
        M = C + lam * (V.T @ V)
        b = -(V.T @ g)
        alpha, mu = (b[0] / M[0, 0] if M[0, 0] > 0 else 0.0), 0.0
        if prev is not None:
            try:
                alpha, mu = np.linalg.solve(M, b)
            except np.linalg.LinAlgError:
                pass
        coef = np.array([alpha, mu][: V.shape[1]])
        delta = alpha * d + (mu * prev if mu != 0.0 else 0.0)
        info = {"step_size": float(alpha), "momentum": float(mu)}
        if not self.adapt_damping:
            return delta, QMState(lam, delta), info
        new_loss = ctx.objective.loss(ctx.theta + delta)
        rho, lm_state = self._lm.update(
            ctx, LMState(lam), delta, new_loss, curvature=float(coef @ C @ coef)
        )
        info["rho"] = rho
        if not (np.isfinite(new_loss) and rho > 0):
            info["step_status"] = "rejected"
            info["proposed_step_size"] = info["step_size"]
            info["step_size"] = 0.0
            return np.zeros_like(delta), QMState(lm_state.damping, None), info
        return delta, QMState(lm_state.damping, delta), info


STEP_RULES = {
    "fixed": FixedStep,
    "kl": KLTrustRegion,
    "armijo": Armijo,
    "lm": LevenbergMarquardt,
    "quadratic": QuadraticModel,
}


def get_step_rule(step, learning_rate: float = 1.0) -> StepRule:
    """A :class:`StepRule` from its name ("fixed" uses ``learning_rate``) or the rule itself."""
    if isinstance(step, StepRule):
        return step
    if not isinstance(step, str):
        raise TypeError(f"step must be a name or a StepRule, got {type(step).__name__}.")
    if step not in STEP_RULES:
        raise ValueError(f"Unknown step rule {step!r}; expected one of {sorted(STEP_RULES)}.")
    if step == "fixed":
        return FixedStep(learning_rate)
    if step == "armijo":
        return Armijo(initial=learning_rate)
    return STEP_RULES[step]()

"""Natural-gradient descent, θ ← θ + δ with δ from a step rule along d = −(C + λI)⁻¹ ∇L.

C is the Fisher of the model's predictive distribution plus the L2 term (Amari 1998): the
steepest-descent direction when distance is measured by KL divergence. Preconditioners:

exact   dense Fisher, Cholesky in parameter space or Woodbury in sample space (by cost);
diag    diag(F);
kfac    K-FAC with bias-corrected exponential moving averages of the factors, inverses
        refreshed every ``inv_period`` steps (Martens & Grosse 2015 §5);
ekfac   eigenvalue-corrected K-FAC (George et al. 2018), basis refreshed every ``inv_period``;
cg      conjugate gradient on exact Fisher-vector products (Martens 2010, "Hessian-free"),
        optionally preconditioned by diag or K-FAC and warm-started from the last solution.

One step, in call order:
1. ``loss_and_grad`` on the batch                         (sets L, ∇L; one gradient count)
2. ``damping = step_rule.damping(state)``                 (λ, adapted by "lm"/"quadratic")
3. ``curvature`` built or refreshed at θ                  (counts factorizations / FVPs)
4. ``d = −curvature.solve(∇L, λ)``                        (CG: warm start, iteration counts)
5. ``delta = step_rule(ctx)``                             (line search / trust region / ρ)
6. ``θ + delta`` returned with the new state and a :class:`StepInfo`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._typing import Array, Seed
from .._validation import check_choice, check_nonnegative, check_positive, check_positive_int
from ..curvature import (
    EKFAC,
    KFAC,
    DenseFisher,
    DiagonalFisher,
    FisherType,
    ImplicitFisher,
    KFACFactors,
    layer_statistics,
    parse_fisher_type,
)
from ..curvature.implicit import forcing_term
from ..curvature.kfac import KFACDamping, factors_from_statistics
from .base import Optimizer, StepInfo
from .steps import get_step_rule, take_step

__all__ = ["CG_FORCING", "PRECONDITIONERS", "NaturalGradient", "NGState"]

PRECONDITIONERS = ("exact", "diag", "kfac", "ekfac", "cg")
CG_FORCING = ("fixed", "eisenstat-walker")


class NGState(NamedTuple):
    """count : steps taken; rule : the step rule's state; factors : K-FAC moving averages
    (un-bias-corrected); operator : the cached K-FAC/EKFAC operator; cg_x : last CG solution;
    seed : the base seed for Monte-Carlo labels; cg_forcing : (‖∇L‖₂, CG tolerance) of the
    last CG step, for the next Eisenstat–Walker forcing term."""

    count: int
    rule: object
    factors: KFACFactors | None
    operator: object
    cg_x: Array | None
    seed: int
    cg_forcing: tuple[float, float] | None = None


class NaturalGradient(Optimizer):
    """Natural-gradient descent with a choice of Fisher representation and step rule.

    Parameters
    ----------
    curvature : {"exact", "diag", "kfac", "ekfac", "cg"}, default "exact"
    fisher : {"exact", "mc", "empirical"}, default "exact"
        Which Fisher (see :class:`~natgrad_core.curvature.FisherType`).
    damping : float or None, default None
        Tikhonov damping λ (initial value when the step rule adapts it). None: the
        recommended damping of ``curvature`` (:data:`~natgrad_core.optim.registry.RECOMMENDED`).
    step : str or StepRule, default "auto"
        "fixed", "kl", "armijo", "lm" or "quadratic" (see :mod:`natgrad_core.optim.steps`);
        "auto": the recommended step rule of ``curvature`` (Levenberg–Marquardt for exact
        and cg, the quadratic model for kfac and ekfac, Armijo for diag; the reasons are in
        :mod:`natgrad_core.optim.registry`).
    learning_rate : float, default 1.0
        Step size for ``step="fixed"``, initial trial step for "armijo"; unused by the
        rules that choose their own length ("kl", "lm", "quadratic").
    mc_samples : int, default 1
    kfac_damping : {"exact", "tikhonov", "per_factor"}, default "exact"
    ema_decay : float in [0, 1), default 0.0
        Decay of the K-FAC factor moving averages (0: use the current batch only).
    inv_period : int, default 1
        Recompute K-FAC inverses (EKFAC eigenbases) every this many steps (Martens & Grosse
        2015 §8's T₃). With ``ema_decay = 0`` K-FAC's steps in between compute no
        statistics either: they cost a gradient, the step rule's work and one solve.
    statistics_fraction : float in (0, 1], default 1.0
        K-FAC/EKFAC factors (and EKFAC scalings) from this fraction of the batch, rows drawn
        afresh each step (seeded by ``random_state``): the output columns' backward pass and
        the factor syrks cost this fraction, at the price of noisier factors.
    cg_maxiter : int, default 100;  cg_rtol : float, default 1e-10
    cg_forcing : {"fixed", "eisenstat-walker"}, default "fixed"
        CG's relative residual per step: ``cg_rtol`` every step, or the Eisenstat–Walker
        forcing term (:func:`~natgrad_core.curvature.implicit.forcing_term`, an inexact
        Newton method) floored at ``cg_rtol``. Recorded as ``cg_rtol`` in StepInfo.extra.
    cg_preconditioner : {None, "diag", "kfac"}, default None
    cg_warm_start : bool, default True
    dense_method : {"auto", "parameter", "sample"}, default "auto"
    random_state : int or None
        Seed for Monte-Carlo labels (step k uses the stream (random_state, k)).
    """

    def __init__(
        self,
        curvature: str = "exact",
        fisher: str = "exact",
        damping: float | None = None,
        step="auto",
        learning_rate: float = 1.0,
        mc_samples: int = 1,
        kfac_damping: str = "exact",
        ema_decay: float = 0.0,
        inv_period: int = 1,
        statistics_fraction: float = 1.0,
        cg_maxiter: int = 100,
        cg_rtol: float = 1e-10,
        cg_forcing: str = "fixed",
        cg_preconditioner: str | None = None,
        cg_warm_start: bool = True,
        dense_method: str = "auto",
        random_state: Seed = None,
    ):
        self.curvature = check_choice(curvature, "curvature", PRECONDITIONERS)
        self.fisher = parse_fisher_type(fisher)
        if damping is None or (isinstance(step, str) and step == "auto"):
            from .registry import RECOMMENDED  # the registry imports this module

            recommended = RECOMMENDED[self.curvature]
            damping = recommended["damping"] if damping is None else damping
            step = recommended["step"] if isinstance(step, str) and step == "auto" else step
        self.damping = check_nonnegative(damping, "damping")
        self.learning_rate = check_positive(learning_rate, "learning_rate")
        self.step_rule = get_step_rule(step, self.learning_rate)
        self.mc_samples = check_positive_int(mc_samples, "mc_samples")
        self.kfac_damping = check_choice(kfac_damping, "kfac_damping", KFACDamping)
        self.ema_decay = check_nonnegative(ema_decay, "ema_decay")
        if self.ema_decay >= 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}.")
        self.inv_period = check_positive_int(inv_period, "inv_period")
        self.statistics_fraction = check_positive(statistics_fraction, "statistics_fraction")
        if self.statistics_fraction > 1:
            raise ValueError(f"statistics_fraction must be in (0, 1], got {statistics_fraction!r}.")
        self.cg_maxiter = check_positive_int(cg_maxiter, "cg_maxiter")
        self.cg_rtol = check_nonnegative(cg_rtol, "cg_rtol")
        self.cg_forcing = check_choice(cg_forcing, "cg_forcing", CG_FORCING)
        self.cg_preconditioner = check_choice(
            cg_preconditioner, "cg_preconditioner", (None, "diag", "kfac")
        )
        self.cg_warm_start = bool(cg_warm_start)
        self.dense_method = check_choice(
            dense_method, "dense_method", ("auto", "parameter", "sample")
        )
        self.random_state = random_state
        self.name = f"ngd-{self.curvature}"

    @property
    def _random(self) -> bool:
        """Whether a step draws random numbers (Monte-Carlo labels, K-FAC statistics)."""
        return self.fisher is not FisherType.EXACT or self.curvature in ("kfac", "ekfac")

    def init(self, objective, theta) -> NGState:
        # the seed of every step's draws (none are drawn by a deterministic curvature)
        rng = np.random.default_rng(self.random_state) if self._random else None
        seed = 0 if rng is None else int(rng.integers(2**63 - 1))
        return NGState(0, self.step_rule.init(self.damping), None, None, None, seed)

    # ------------------------------------------------------------------ curvature
    def _kfac_operator(self, objective, theta, state, rng_seed):
        count = state.count + 1
        beta = self.ema_decay
        ekfac = self.curvature == "ekfac"
        refresh = state.operator is None or (count - 1) % self.inv_period == 0
        if not (refresh or ekfac or beta > 0.0):
            return state.operator, state.factors  # this batch's factors would go unused
        n_statistics = None
        if self.statistics_fraction < 1.0:
            n_statistics = max(1, math.ceil(self.statistics_fraction * objective.n_samples))
        statistics = layer_statistics(
            objective, theta, self.fisher, self.mc_samples, rng_seed, n_statistics
        )
        ema = state.factors
        if refresh or beta > 0.0:
            factors = factors_from_statistics(*statistics, objective.counts)
            if state.factors is None or beta == 0.0:
                ema = KFACFactors(
                    [(1 - beta) * A for A in factors.A], [(1 - beta) * G for G in factors.G]
                )
            else:
                ema = KFACFactors(
                    [beta * Ea + (1 - beta) * A for Ea, A in zip(state.factors.A, factors.A)],
                    [beta * Eg + (1 - beta) * G for Eg, G in zip(state.factors.G, factors.G)],
                )
        if not refresh:
            op = state.operator
            if ekfac:
                op = EKFAC(
                    objective,
                    theta,
                    factors=op.factors,
                    basis=op.eigendecompositions(),
                    statistics=statistics,
                )
            return op, ema
        correction = 1.0 - beta**count
        corrected = KFACFactors([A / correction for A in ema.A], [G / correction for G in ema.G])
        if ekfac:
            return EKFAC(objective, theta, factors=corrected, statistics=statistics), ema
        return KFAC(objective, damping_mode=self.kfac_damping.value, factors=corrected), ema

    def _cg_rtol(self, grad, state) -> tuple[float, tuple[float, float] | None]:
        """This step's CG tolerance and the forcing memory for the next step."""
        if self.cg_forcing == "fixed":
            return self.cg_rtol, None
        grad_norm = float(np.linalg.norm(grad))
        rtol = forcing_term(grad_norm, state.cg_forcing, self.cg_rtol)
        return rtol, (grad_norm, rtol)

    def _precondition(self, objective, theta, grad, damping, state, cg_rtol=None):
        rng_seed = np.random.SeedSequence([state.seed, state.count]) if self._random else None
        factors, operator, cg_x = state.factors, state.operator, state.cg_x
        if self.curvature == "exact":
            op = DenseFisher(
                objective, theta, self.fisher, self.mc_samples, rng_seed, method=self.dense_method
            )
            x = op.solve(grad, damping)
        elif self.curvature == "diag":
            op = DiagonalFisher(objective, theta, self.fisher, self.mc_samples, rng_seed)
            x = op.solve(grad, damping)
        elif self.curvature in ("kfac", "ekfac"):
            op, factors = self._kfac_operator(objective, theta, state, rng_seed)
            operator = op
            x = op.solve(grad, damping)
        else:
            pre = None
            if self.cg_preconditioner == "diag":
                pre = DiagonalFisher(objective, theta, self.fisher, self.mc_samples, rng_seed)
            elif self.cg_preconditioner == "kfac":
                pre = KFAC(
                    objective,
                    theta,
                    self.fisher,
                    self.mc_samples,
                    rng_seed,
                    damping_mode=self.kfac_damping.value,
                )
            op = ImplicitFisher(
                objective,
                theta,
                self.fisher,
                self.mc_samples,
                rng_seed,
                cg_rtol=cg_rtol,
                cg_maxiter=self.cg_maxiter,
                preconditioner=pre,
            )
            x0 = cg_x if (self.cg_warm_start and cg_x is not None) else None
            x = op.solve(grad, damping, x0=x0)
            cg_x = x
        return -x, op, factors, operator, cg_x

    def _direction_product(self, op, grad, direction, damping):
        """C d for d = −(C + λI)⁻¹∇L from the solve itself, when C is the exact Fisher:
        (C + λI) x = ∇L − r with r CG's residual (0 for a direct solve), so
        C d = −(∇L − r − λ x). None when the solve does not give it (approximate
        curvatures, a fallback that changed the matrix)."""
        if self.fisher is not FisherType.EXACT or op.status != "ok":
            return None
        if isinstance(op, ImplicitFisher):
            residual = op.last_cg.r
        elif isinstance(op, DenseFisher):
            residual = 0.0
        else:
            return None
        return -(grad - residual) - damping * direction

    # ------------------------------------------------------------------ step
    def step(self, objective, theta, state: NGState):
        loss, grad = objective.loss_and_grad(theta)
        damping = self.step_rule.damping(state.rule, self.damping)
        cg_rtol, forcing = (None, None)
        if self.curvature == "cg":
            cg_rtol, forcing = self._cg_rtol(grad, state)
        direction, solved, factors, operator, cg_x = self._precondition(
            objective, theta, grad, damping, state, cg_rtol
        )
        if not np.isfinite(direction).all():
            info = StepInfo(loss, 0.0, damping, "nonfinite_direction", {})
            return theta, state._replace(count=state.count + 1), info
        product = self._direction_product(solved, grad, direction, damping)
        delta, rule_state, info = take_step(
            self.step_rule,
            state.rule,
            objective,
            theta,
            loss,
            grad,
            direction,
            damping,
            solved.status,
            product,
        )
        new_state = NGState(
            state.count + 1, rule_state, factors, operator, cg_x, state.seed, forcing
        )
        if cg_rtol is not None:
            info.extra["cg_rtol"] = cg_rtol
        return theta + delta, new_state, info

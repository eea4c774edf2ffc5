"""The optimizers people use today, in the same interface as natural gradient.

gd        θ ← θ + δ along d = −∇L with a step rule ("fixed", "armijo" or "kl").
momentum  heavy ball (Polyak 1964): v ← μ v − η ∇L, θ ← θ + v; Nesterov's variant optional.
adam      Kingma & Ba (2015), Algorithm 1, with bias-corrected moments.
lbfgs     scipy's L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995), driven by its own loop; full batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize as scipy_minimize

from .._validation import check_nonnegative, check_positive, check_positive_int
from .base import Optimizer, StepInfo
from .steps import get_step_rule, take_step

__all__ = ["LBFGS", "Adam", "GradientDescent", "Momentum"]


class GDState(NamedTuple):
    count: int
    rule: object


class GradientDescent(Optimizer):
    """Gradient descent with a step rule (no damping: "lm" and "quadratic" are refused)."""

    name = "gd"

    def __init__(self, learning_rate: float = 0.1, step="fixed"):
        self.learning_rate = check_positive(learning_rate, "learning_rate")
        self.step_rule = get_step_rule(step, self.learning_rate)
        if self.step_rule.adapts_damping:
            raise ValueError(
                f"gradient descent has no damping to adapt; step must be 'fixed', 'armijo' "
                f"or 'kl', got {self.step_rule.name!r}."
            )

    def init(self, objective, theta):
        return GDState(0, self.step_rule.init(0.0))

    def step(self, objective, theta, state):
        loss, grad = objective.loss_and_grad(theta)
        delta, rule_state, info = take_step(
            self.step_rule, state.rule, objective, theta, loss, grad, -grad, 0.0
        )
        return theta + delta, GDState(state.count + 1, rule_state), info


class MomentumState(NamedTuple):
    velocity: np.ndarray


class Momentum(Optimizer):
    """Heavy-ball momentum: v ← μ v − η ∇L(θ [+ μ v if nesterov]); θ ← θ + v."""

    name = "momentum"

    def __init__(self, learning_rate: float = 0.1, momentum: float = 0.9, nesterov: bool = False):
        self.learning_rate = check_positive(learning_rate, "learning_rate")
        self.momentum = check_nonnegative(momentum, "momentum")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
        self.nesterov = bool(nesterov)

    def init(self, objective, theta):
        return MomentumState(np.zeros_like(theta))

    def step(self, objective, theta, state):
        lookahead = theta + self.momentum * state.velocity if self.nesterov else theta
        loss, grad = objective.loss_and_grad(lookahead)
        velocity = self.momentum * state.velocity - self.learning_rate * grad
        info = StepInfo(loss, self.learning_rate, 0.0, "ok", {})
        return theta + velocity, MomentumState(velocity), info


class AdamState(NamedTuple):
    count: int
    mu: np.ndarray
    nu: np.ndarray


class Adam(Optimizer):
    """Adam: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − η m̂ / (√v̂ + ε)."""

    name = "adam"

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.learning_rate = check_positive(learning_rate, "learning_rate")
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= check_nonnegative(b, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}.")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check_positive(eps, "eps")

    def init(self, objective, theta):
        return AdamState(0, np.zeros_like(theta), np.zeros_like(theta))

    def step(self, objective, theta, state):
        loss, grad = objective.loss_and_grad(theta)
        count = state.count + 1
        mu = self.beta1 * state.mu + (1 - self.beta1) * grad
        nu = self.beta2 * state.nu + (1 - self.beta2) * grad * grad
        mu_hat = mu / (1 - self.beta1**count)
        nu_hat = nu / (1 - self.beta2**count)
        delta = -self.learning_rate * mu_hat / (np.sqrt(nu_hat) + self.eps)
        info = StepInfo(loss, self.learning_rate, 0.0, "ok", {})
        return theta + delta, AdamState(count, mu, nu), info


class LBFGS(Optimizer):
    """scipy's L-BFGS-B on the full-batch objective.

    memory : int, default 10 — number of correction pairs.
    ftol : float, default 0 — scipy's relative-reduction test: stop when
        ``(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) ≤ ftol``. 0 stops on ``minimize``'s
        gradient test alone (‖∇L‖_∞ ≤ tol); scikit-learn's ``LogisticRegression`` passes
        ``64 · eps`` (≈ 1.4e-14), which usually ends its fits before the gradient test
        (at ‖∇L‖_∞ ≈ 1e-8 with tol = 1e-10). A run ended by it has status "stalled".

    It runs scipy's own loop: the driver calls :meth:`run` with a per-iteration callback
    instead of ``step``.
    """

    name = "lbfgs"
    full_batch_only = True

    def __init__(self, memory: int = 10, ftol: float = 0.0):
        self.memory = check_positive_int(memory, "memory")
        self.ftol = check_nonnegative(ftol, "ftol")

    def init(self, objective, theta):
        return ()

    def step(self, objective, theta, state):
        raise TypeError("LBFGS runs scipy's loop; use natgrad_core.minimize, which calls run().")

    def run(self, objective, theta, max_iter: int, tol: float, callback):
        """Run L-BFGS-B; ``callback(theta)`` after every iteration may raise StopIteration."""

        def fun(th):
            return objective.loss_and_grad(th)

        return scipy_minimize(
            fun,
            theta,
            jac=True,
            method="L-BFGS-B",
            callback=lambda intermediate_result: callback(intermediate_result.x),
            options={
                "maxiter": max_iter,
                "maxcor": self.memory,
                "gtol": tol,
                "ftol": self.ftol,
                "maxfun": 20 * max_iter + 20,
            },
        )

"""Small seeded problems and helpers shared by the optimizer tests."""

from __future__ import annotations

import numpy as np

from natgrad_core import MLP, LogisticModel, minimize
from natgrad_core.models import Objective
from natgrad_core.optim import Optimizer
from tests.conftest import dense_reference_fisher, exact_output_fisher

N_SAMPLES = 40
N_FEATURES = 4
N_CLASSES = 3


def multiclass_data(n=N_SAMPLES, d=N_FEATURES, k=N_CLASSES, seed=0):
    """Standard-normal inputs; the label is the argmax of the first k features plus noise
    (learnable, but not separable)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.argmax(X[:, :k] + 0.5 * rng.standard_normal((n, k)), axis=1)
    return X, y


def binary_data(n=60, d=3, seed=0):
    """Standard-normal inputs, labels drawn from a logistic model (not separable)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = np.linspace(1.0, -1.0, d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ w)))).astype(np.int64)
    return X, y


def logistic_problem():
    """(model, X, y): multinomial logistic regression, 15 parameters."""
    X, y = multiclass_data()
    return LogisticModel(N_FEATURES, N_CLASSES), X, y


def mlp_problem():
    """(model, X, y): 4 → 5 tanh → softmax(3), 43 parameters."""
    X, y = multiclass_data()
    return MLP(N_FEATURES, N_CLASSES, (5,), "tanh", "softmax"), X, y


PROBLEMS = {"logistic": logistic_problem, "mlp": mlp_problem}


def run_with_iterates(model, X, y, optimizer, **kwargs):
    """``minimize`` plus the array of parameter vectors θ₀, θ₁, … (one per history row;
    the driver calls the callback for iteration 0 too)."""
    iterates = []
    user_callback = kwargs.pop("callback", None)

    def callback(theta, row):
        iterates.append(np.array(theta, copy=True))
        if user_callback is not None:
            return user_callback(theta, row)
        return None

    result = minimize(model, X, y, optimizer, callback=callback, **kwargs)
    its = np.array(iterates)
    assert len(its) == len(result.history)
    return result, its


def dense_curvature(model, X, y, theta, alpha=0.0):
    """C = (1/N) Σₙ Jₙᵀ Λₙ Jₙ + (α/N) diag(mask) from finite-difference Jacobians and the
    textbook Λ (tests/conftest.py), independent of the model's derivative code."""
    Lam = exact_output_fisher(model, model.predict_outputs(theta, X))
    C = dense_reference_fisher(model, theta, X, Lam)
    return C + np.diag(alpha / X.shape[0] * model.weight_mask())


def loss_and_grad(model, X, y, theta, alpha=0.0):
    """Full-data (L, ∇L) without touching any oracle counter."""
    return Objective(model, X, y, alpha).loss_and_grad(theta, count=False)


class SpyOptimizer(Optimizer):
    """An optimizer that only records that it was used (to prove nothing ran)."""

    name = "spy"

    def __init__(self):
        self.calls = 0

    def init(self, objective, theta):
        self.calls += 1
        return None

    def step(self, objective, theta, state):
        self.calls += 1
        raise AssertionError("step must not be reached")

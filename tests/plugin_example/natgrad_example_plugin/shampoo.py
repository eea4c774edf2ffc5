"""A Shampoo-style preconditioner (Gupta, Koren & Singer 2018, Algorithm 1), per layer.

For each layer's gradient block G (shape (fan_in + 1, fan_out), natgrad's layout):

    L <- L + G Gᵀ;   R <- R + Gᵀ G;   W <- W - lr (L + eps I)^(-1/4) G (R + eps I)^(-1/4)

The matrix roots come from symmetric eigendecompositions. Written against natgrad's
public interface only: the gradient through ``objective.loss_and_grad`` (counted), the
layer blocks through ``objective.model.unpack`` / ``pack``. ``fail_above`` is a test hook:
the step raises when the model has more parameters (a plugin failing mid-grid).
"""

from typing import NamedTuple

import numpy as np

from natgrad_core.optim import Optimizer, StepInfo


class ShampooState(NamedTuple):
    left: tuple  # L per layer, shape (rows, rows)
    right: tuple  # R per layer, shape (fan_out, fan_out)


def _inverse_root(matrix, eps, power=0.25):
    values, vectors = np.linalg.eigh(matrix + eps * np.eye(matrix.shape[0]))
    return (vectors * np.maximum(values, eps) ** -power) @ vectors.T


class Shampoo(Optimizer):
    name = "shampoo"

    def __init__(self, learning_rate=0.1, eps=1e-4, fail_above=None):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}.")
        self.learning_rate, self.eps, self.fail_above = learning_rate, eps, fail_above

    def init(self, objective, theta):
        blocks = objective.model.unpack(theta)
        left = tuple(np.zeros((b.shape[0], b.shape[0])) for b in blocks)
        right = tuple(np.zeros((b.shape[1], b.shape[1])) for b in blocks)
        return ShampooState(left, right)

    def step(self, objective, theta, state):
        if self.fail_above is not None and theta.size > self.fail_above:
            raise RuntimeError(f"example failure: {theta.size} parameters > {self.fail_above}")
        loss, grad = objective.loss_and_grad(theta)
        left, right, steps = [], [], []
        for g, L, R in zip(objective.model.unpack(grad), state.left, state.right):
            L, R = L + g @ g.T, R + g.T @ g
            steps.append(_inverse_root(L, self.eps) @ g @ _inverse_root(R, self.eps))
            left.append(L)
            right.append(R)
        theta = theta - self.learning_rate * objective.model.pack(steps)
        info = StepInfo(loss, self.learning_rate, self.eps, "ok", {})
        return theta, ShampooState(tuple(left), tuple(right)), info

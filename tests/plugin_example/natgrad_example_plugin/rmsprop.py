"""RMSprop (Tieleman & Hinton 2012), the README's "Writing a solver" example as a plugin:

s <- rho s + (1 - rho) g**2;   theta <- theta - lr g / (sqrt(s) + eps)
"""

from typing import NamedTuple

import numpy as np

from natgrad_core.optim import Optimizer, StepInfo


class RMSpropState(NamedTuple):
    square: np.ndarray  # running mean of the squared gradient


class RMSprop(Optimizer):
    name = "rmsprop"

    def __init__(self, learning_rate=0.01, rho=0.9, eps=1e-8):
        self.learning_rate, self.rho, self.eps = learning_rate, rho, eps

    def init(self, objective, theta):
        return RMSpropState(np.zeros_like(theta))

    def step(self, objective, theta, state):
        loss, grad = objective.loss_and_grad(theta)  # counted: the tables see it
        square = self.rho * state.square + (1 - self.rho) * grad**2
        theta = theta - self.learning_rate * grad / (np.sqrt(square) + self.eps)
        return theta, RMSpropState(square), StepInfo(loss, self.learning_rate, 0.0, "ok", {})

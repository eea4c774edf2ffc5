"""Model cases as data: small models with data and a parameter vector, shared by all tests.

Each :class:`ModelCase` has an ``id`` and a function ``make(seed) -> (model, X, y, theta)``.
Sizes are tiny (7-15 samples, 3-5 features, hidden widths 3-6) so dense references and
finite differences stay cheap. ``theta`` is ``model.init_params(seed)`` plus ``0.3 · noise``,
so logistic models (which initialize at zero) are away from the origin.

ReLU cases are regenerated (new data and noise) until no hidden pre-activation is within
``RELU_MARGIN`` of the kink, so finite differences never straddle it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.special import erf

from natgrad_core.models import MLP, LogisticModel

__all__ = [
    "FISHER_TYPES",
    "MODEL_CASES",
    "MODEL_CASE_IDS",
    "RELU_MARGIN",
    "THETA_NOISE",
    "ModelCase",
    "make_labels",
    "reference_forward",
]

FISHER_TYPES = ["exact", "mc", "empirical"]

THETA_NOISE = 0.3
RELU_MARGIN = 0.05
_MAX_ATTEMPTS = 500


class ModelCase(NamedTuple):
    id: str
    make: Callable[[int], tuple]

    def __call__(self, seed: int = 0):
        return self.make(seed)


def make_labels(model, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Random targets in the format the model's head expects."""
    head = model.head.name
    if head == "softmax":
        # every class appears at least once when n_samples allows it
        y = rng.integers(0, model.n_targets, size=n_samples)
        y[: min(model.n_targets, n_samples)] = np.arange(min(model.n_targets, n_samples))
        return rng.permutation(y)
    if head == "sigmoid":
        shape = (n_samples,) if model.n_outputs == 1 else (n_samples, model.n_outputs)
        return rng.integers(0, 2, size=shape)
    if head == "gaussian":
        return rng.standard_normal((n_samples, model.n_targets))
    raise AssertionError(f"no label generator for head {head!r}")


def reference_forward(model, theta, X) -> tuple[list[np.ndarray], np.ndarray]:
    """(hidden pre-activations, outputs) from an explicit forward pass written from the
    documented layout: ``W̄_l`` of shape (fan_in [+ 1], fan_out), weights over the bias row,
    concatenated row-major. Independent of ``MLP.forward``."""
    activations = {
        "tanh": np.tanh,
        "relu": lambda t: np.maximum(t, 0.0),
        "sigmoid": lambda t: 1.0 / (1.0 + np.exp(-t)),
        "logistic": lambda t: 1.0 / (1.0 + np.exp(-t)),
        "erf": lambda t: erf(t / np.sqrt(2.0)),
        "identity": lambda t: t,
    }
    theta = np.asarray(theta, dtype=np.float64)
    widths = [model.n_features, *model.hidden_layer_sizes, model.n_outputs]
    offset = 0
    a = np.asarray(X, dtype=np.float64)
    pre = []
    for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        rows = fan_in + int(model.fit_intercept)
        W = theta[offset : offset + rows * fan_out].reshape(rows, fan_out)
        offset += rows * fan_out
        z = a @ W[:fan_in]
        if model.fit_intercept:
            z = z + W[fan_in]
        if layer == len(widths) - 2:
            assert offset == theta.size
            return pre, z
        pre.append(z)
        a = activations[model.activation](z)
    raise AssertionError("unreachable")


def _case(case_id: str, model_factory: Callable[[], object], n_samples: int) -> ModelCase:
    def make(seed: int = 0):
        model = model_factory()
        needs_margin = model.activation == "relu" and len(model.layers) > 1
        for attempt in range(_MAX_ATTEMPTS):
            rng = np.random.default_rng([seed, attempt])
            X = rng.standard_normal((n_samples, model.n_features))
            y = make_labels(model, n_samples, rng)
            theta = model.init_params(seed) + THETA_NOISE * rng.standard_normal(model.n_params)
            if not needs_margin:
                return model, X, y, theta
            pre, _ = reference_forward(model, theta, X)
            if min(float(np.min(np.abs(z))) for z in pre) > RELU_MARGIN:
                return model, X, y, theta
        raise RuntimeError(f"could not build case {case_id!r} away from the ReLU kink")

    return ModelCase(case_id, make)


MODEL_CASES = [
    _case("logistic_binary", lambda: LogisticModel(4, 2), 12),
    _case("logistic_multinomial", lambda: LogisticModel(3, 4), 10),
    _case("logistic_no_intercept", lambda: LogisticModel(4, 3, fit_intercept=False), 9),
    _case("mlp_tanh_softmax_1h", lambda: MLP(4, 3, (5,), "tanh", "softmax"), 11),
    _case("mlp_relu_softmax_2h", lambda: MLP(3, 3, (4, 3), "relu", "softmax"), 8),
    _case("mlp_sigmoid_sigmoid_binary_1h", lambda: MLP(5, 2, (4,), "sigmoid", "sigmoid"), 13),
    _case("mlp_tanh_sigmoid_multilabel_2h", lambda: MLP(4, 3, (3, 4), "tanh", "sigmoid"), 10),
    _case("mlp_identity_gaussian_1h", lambda: MLP(3, 2, (4,), "identity", "gaussian"), 7),
    _case("mlp_relu_gaussian_1h", lambda: MLP(4, 2, (6,), "relu", "gaussian"), 15),
    _case("mlp_erf_gaussian_1h", lambda: MLP(4, 1, (3,), "erf", "gaussian"), 9),
    _case("mlp_tanh_gaussian_2h", lambda: MLP(3, 2, (5, 3), "tanh", "gaussian"), 9),
    _case(
        "mlp_tanh_softmax_1h_no_intercept",
        lambda: MLP(3, 4, (4,), "tanh", "softmax", fit_intercept=False),
        12,
    ),
]

MODEL_CASE_IDS = [c.id for c in MODEL_CASES]

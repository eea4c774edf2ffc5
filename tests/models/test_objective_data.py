"""How the Objective holds its data: one augmented design matrix ``[X, 1]``, read in place by
every forward pass, on full data and mini-batches, in float64 and float32.

Losses and gradients are checked against an independent reference: the explicit forward
pass of ``tests.cases.reference_forward``, textbook negative log-likelihoods and central
finite differences of that reference loss (never the code under test).
"""

from __future__ import annotations

import tracemalloc
from typing import NamedTuple

import numpy as np
import pytest
from scipy.special import erf, expit, logsumexp

from natgrad_core.models import MLP, LogisticModel, Objective
from natgrad_core.models import mlp as mlp_module
from tests.cases import MODEL_CASE_IDS, MODEL_CASES, make_labels, reference_forward
from tests.conftest import ATOL, FD_EPS, RTOL, TIGHT, fd_gradient

ALPHA = 0.7
FLOAT32_RTOL = 1e-4
"""Relative error allowed for a float32 evaluation against the float64 reference."""
FLOAT32_ATOL = 1e-5
"""Absolute error allowed for a float32 gradient against the float64 reference."""
ALLOCATION_FRACTION = 0.5
"""A loss-and-gradient evaluation of a logistic model may allocate at most this fraction of
the bytes of X (its temporaries are of size n_samples × n_outputs); a copy of X exceeds it."""


def reference_loss(model, theta, X, y, alpha, n_total) -> float:
    """The documented objective from the explicit forward pass and textbook nll's."""
    _, z = reference_forward(model, theta, X)
    Y = model.head.encode(y, model.n_targets)
    if model.head.name == "softmax":
        nll = logsumexp(z, axis=1) - np.sum(Y * z, axis=1)
    elif model.head.name == "sigmoid":
        nll = -np.sum(Y * np.log(expit(z)) + (1 - Y) * np.log(expit(-z)), axis=1)
    else:
        nll = 0.5 * np.sum((z - Y) ** 2, axis=1) / model.head.variance
    widths = [model.n_features, *model.hidden_layer_sizes, model.n_outputs]
    offset, weights = 0, 0.0
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        rows = fan_in + int(model.fit_intercept)
        W = np.asarray(theta, dtype=np.float64)[offset : offset + rows * fan_out]
        weights += np.sum(W.reshape(rows, fan_out)[:fan_in] ** 2)
        offset += rows * fan_out
    return float(nll.mean()) + alpha * weights / (2 * n_total)


class DataCase(NamedTuple):
    id: str
    model: object
    n_samples: int
    rows: object  # None (full data), a slice or an index array (Objective.batch)
    dtype: type = np.float64


DATA_CASES = [
    DataCase("binary_full", LogisticModel(5, 2), 40, None),
    DataCase("multinomial_full", LogisticModel(4, 5), 30, None),
    DataCase("binary_no_intercept", LogisticModel(5, 2, fit_intercept=False), 25, None),
    DataCase("multinomial_no_intercept", LogisticModel(4, 3, fit_intercept=False), 25, None),
    DataCase("binary_batch_rows", LogisticModel(5, 2), 40, np.array([3, 0, 17, 17, 39, 8])),
    DataCase("multinomial_batch_slice", LogisticModel(4, 5), 30, slice(4, 19)),
    DataCase("mlp_batch_rows", MLP(4, 3, (5, 6), "tanh", "softmax"), 30, np.arange(1, 30, 3)),
    DataCase("mlp_relu_binary_full", MLP(3, 2, (4,), "relu", "sigmoid"), 20, None),
    DataCase("mlp_sigmoid_no_intercept", MLP(3, 2, (4,), "sigmoid", "gaussian", False), 20, None),
    DataCase("binary_float32", LogisticModel(5, 2, dtype=np.float32), 40, None, np.float32),
    DataCase(
        "mlp_float32_batch",
        MLP(4, 3, (5,), "tanh", "softmax", dtype=np.float32),
        30,
        slice(0, 12),
        np.float32,
    ),
]


def _problem(case: DataCase):
    rng = np.random.default_rng(0)
    model = case.model
    X = rng.standard_normal((case.n_samples, model.n_features))
    y = make_labels(model, case.n_samples, rng)
    theta = model.init_params(1) + 0.3 * rng.standard_normal(model.n_params)
    objective = Objective(model, X.astype(case.dtype), y, alpha=ALPHA)
    if case.rows is not None:
        objective = objective.batch(case.rows)
        X, y = X[case.rows], y[case.rows]
    return objective, X, y, theta


@pytest.mark.parametrize("block_bytes", [None, 7 * 6 * 8], ids=["one_block", "7_row_blocks"])
@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_loss_and_grad_match_independent_reference_on_full_data_and_batches(
    case, block_bytes, monkeypatch
):
    """Also with blocks of 7 rows of [X, 1] (5 features) for linear models, so that blocks
    do not divide n_samples; the memoized forward pass is the reference's too."""
    if block_bytes is not None:
        monkeypatch.setattr(mlp_module, "ROW_BLOCK_BYTES", block_bytes)
    objective, X, y, theta = _problem(case)
    n_total = case.n_samples

    def loss(t):
        return reference_loss(case.model, t, X, y, ALPHA, n_total)

    value, grad = objective.loss_and_grad(theta.astype(case.dtype))
    assert grad.dtype == case.dtype
    assert grad.shape == (case.model.n_params,)
    if case.dtype == np.float32:
        loss_rtol, rtol, atol = FLOAT32_RTOL, FLOAT32_RTOL, FLOAT32_ATOL
    else:
        loss_rtol, rtol, atol = TIGHT, RTOL, ATOL
    assert value == pytest.approx(loss(theta), rel=loss_rtol)
    assert objective.loss(theta.astype(case.dtype)) == pytest.approx(value, rel=loss_rtol)
    np.testing.assert_allclose(grad, fd_gradient(loss, theta), rtol=rtol, atol=atol)
    _, z = reference_forward(case.model, theta, X)
    np.testing.assert_allclose(objective.forward(theta).outputs, z, rtol=loss_rtol, atol=atol)


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_forward_reads_the_objectives_data_in_place(case):
    objective, X, _, theta = _problem(case)
    np.testing.assert_array_equal(objective.X, X.astype(case.dtype))
    assert objective.X.dtype == case.dtype
    cache = objective.forward(theta.astype(case.dtype))
    a0 = cache.inputs[0]
    assert np.shares_memory(a0, objective.X)
    expected = X if not case.model.fit_intercept else np.hstack([X, np.ones((len(X), 1))])
    np.testing.assert_array_equal(a0, expected.astype(case.dtype))
    # every cache shares the data, so nobody may write into it
    assert not a0.flags.writeable
    assert not objective.X.flags.writeable


ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda t: np.maximum(t, 0.0),
    "sigmoid": expit,
    "logistic": expit,
    "erf": lambda t: erf(t / np.sqrt(2.0)),
    "identity": lambda t: t,
}
"""φ for each activation name, written independently of natgrad's in-place versions."""


@pytest.mark.parametrize("case", MODEL_CASES, ids=MODEL_CASE_IDS)
def test_forward_cache_holds_augmented_activations_and_slopes(case):
    """``inputs[l + 1]`` is ``[φ(z_l), 1]`` and ``slopes[l]`` is ``φ'(z_l)`` (by central
    differences of φ), from the explicit reference forward pass."""
    model, X, _, theta = case(0)
    pre, z = reference_forward(model, theta, X)
    cache = model.forward(theta, X)
    np.testing.assert_allclose(cache.outputs, z, rtol=TIGHT, atol=TIGHT)
    act = ACTIVATIONS[model.activation]
    for layer, z_l in enumerate(pre):
        expected = act(z_l)
        if model.fit_intercept:
            expected = np.hstack([expected, np.ones((len(X), 1))])
        np.testing.assert_allclose(cache.inputs[layer + 1], expected, rtol=TIGHT, atol=TIGHT)
        slope = (act(z_l + FD_EPS) - act(z_l - FD_EPS)) / (2 * FD_EPS)
        np.testing.assert_allclose(cache.slopes[layer], slope, rtol=RTOL, atol=ATOL)


def test_user_data_is_neither_copied_per_evaluation_nor_frozen():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4000, 50))
    y = (X[:, 0] > 0).astype(int)
    for model in (LogisticModel(50, 2), LogisticModel(50, 2, fit_intercept=False)):
        objective = Objective(model, X, y, alpha=1.0)
        theta = np.full(model.n_params, 0.01)
        objective.loss_and_grad(theta)
        objective.clear_cache()
        tracemalloc.start()
        try:
            objective.loss_and_grad(theta)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < ALLOCATION_FRACTION * X.nbytes
        assert X.flags.writeable

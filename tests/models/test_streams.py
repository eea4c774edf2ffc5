"""ModelStream: reproducible, shaped draws whose labels follow the model at θ*."""

from __future__ import annotations

import numpy as np
import pytest

from natgrad_core.models import MLP, LogisticModel, ModelStream

THETA = np.array([1.0, -0.5, 0.5, 0.0, 0.25])
N_DRAWS = 200_000


def test_same_seed_same_examples_and_block_shapes():
    model = LogisticModel(4, 2)
    X1, Y1 = ModelStream(model, THETA, 3).draw((7, 11))
    X2, Y2 = ModelStream(model, THETA, 3).draw((7, 11))
    assert X1.shape == (7, 11, 4) and Y1.shape == (7, 11, 1)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)
    X3, _ = ModelStream(model, THETA, 4).draw((7, 11))
    assert not np.array_equal(X1, X3)
    assert set(np.unique(Y1)) <= {0.0, 1.0}


def test_inputs_are_standard_normal_and_labels_follow_the_sigmoid():
    X, Y = ModelStream(LogisticModel(4, 2), THETA, 0).draw(N_DRAWS)
    se = 1 / np.sqrt(N_DRAWS)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=5 * se)
    np.testing.assert_allclose(np.cov(X.T), np.eye(4), atol=10 * se)
    p = 1 / (1 + np.exp(-(X @ THETA[:4] + THETA[4])))  # independent of the head's code
    # the residual y − p has mean 0 given x: check it against x and within bins of p
    resid = Y[:, 0] - p
    np.testing.assert_allclose(resid.mean(), 0.0, atol=5 * 0.5 * se)
    np.testing.assert_allclose(resid @ X / N_DRAWS, 0.0, atol=5 * 0.5 * se)
    for lo, hi in ((0.0, 0.2), (0.4, 0.6), (0.8, 1.0)):
        sel = (p >= lo) & (p < hi)
        assert abs(Y[sel, 0].mean() - p[sel].mean()) < 5 * 0.5 / np.sqrt(sel.sum())


def test_softmax_model_draws_one_hot_labels():
    model = MLP(3, 4, (5,), head="softmax")
    X, Y = ModelStream(model, model.init_params(0), 1).draw(50)
    assert X.shape == (50, 3) and Y.shape == (50, 4)
    np.testing.assert_array_equal(Y.sum(axis=1), 1.0)


def test_bad_input_raises():
    model = LogisticModel(4, 2)
    with pytest.raises(TypeError, match="MLP or LogisticModel"):
        ModelStream("model", THETA)
    with pytest.raises(ValueError, match="Shape mismatch"):
        ModelStream(model, THETA[:4])
    with pytest.raises(ValueError, match="NaN or infinite"):
        ModelStream(model, np.full(5, np.nan))
    with pytest.raises(ValueError, match="integers >= 0"):
        ModelStream(model, THETA).draw((3, -1))

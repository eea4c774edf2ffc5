"""Arrays entering the library are real and finite, or refused where they enter.

Casting complex features to float64 used to drop the imaginary part with only a
ComplexWarning; an object or string array failed (or silently converted) deep inside
numpy. The models' ``check_X``, :class:`Objective` and the estimator refuse them, each
naming the array, what was expected and what was received.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris

from natgrad_core import NaturalGradientClassifier
from natgrad_core.models.mlp import MLP, LogisticModel
from natgrad_core.models.objective import Objective

X, Y = load_iris(return_X_y=True)
X, Y = X[:100], Y[:100]  # two classes


def with_nan(a, index):
    out = np.array(a, dtype=float)
    out[index] = np.nan
    return out


# (id, X, y, fragments of the message)
BAD_INPUTS = [
    ("complex-X", X * (1 + 1j), Y, ["X", "real numbers", "complex"]),
    ("complex-X-zero-imaginary", X + 0j, Y, ["X", "complex"]),
    ("string-X", X.astype(str), Y, ["X", "real numbers"]),
    ("object-X-of-dicts", np.array([[{"a": 1}] * 4] * 100, dtype=object), Y, ["X", "object"]),
    ("nan-X-last-row", with_nan(X, (99, 3)), Y, ["X", "1 NaN"]),
    ("inf-X", np.where(X > 6.9, np.inf, X), Y, ["X", "NaN or infinite"]),
    ("nan-y", X, with_nan(Y, 5), ["y", "1 NaN"]),
    ("complex-y", X, Y + 1j, ["y", "real numbers"]),
]
MODELS = [
    ("logistic", lambda: LogisticModel(4, 2)),
    ("mlp", lambda: MLP(4, 2, (3,), "tanh", "sigmoid")),
]


@pytest.mark.parametrize(
    ("X_bad", "y_bad", "fragments"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
@pytest.mark.parametrize("make_model", [m[1] for m in MODELS], ids=[m[0] for m in MODELS])
def test_objective_refuses_input_that_is_not_real_and_finite(make_model, X_bad, y_bad, fragments):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning is not an answer
        with pytest.raises(ValueError) as info:
            Objective(make_model(), X_bad, y_bad, alpha=1.0)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize(
    ("X_bad", "fragments"),
    [(c[1], c[3]) for c in BAD_INPUTS if c[0].endswith("X") or "-X-" in c[0]],
    ids=[c[0] for c in BAD_INPUTS if c[0].endswith("X") or "-X-" in c[0]],
)
def test_model_predictions_refuse_features_that_are_not_real_and_finite(X_bad, fragments):
    model = LogisticModel(4, 2)
    theta = np.zeros(model.n_params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as info:
            model.predict_outputs(theta, X_bad)
    assert all(f in str(info.value) for f in fragments), str(info.value)


# scikit-learn's conventions hold for the estimator: labels are categories (complex or
# string labels are classes), and numeric strings in X convert to floats
ESTIMATOR_CASES = [c for c in BAD_INPUTS if c[0] not in ("string-X", "complex-y")]


@pytest.mark.parametrize(
    ("X_bad", "y_bad"), [c[1:3] for c in ESTIMATOR_CASES], ids=[c[0] for c in ESTIMATOR_CASES]
)
def test_estimator_refuses_input_that_is_not_real_and_finite(X_bad, y_bad):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises((ValueError, TypeError)):
            NaturalGradientClassifier(max_iter=2).fit(X_bad, y_bad)


def test_estimator_refuses_a_nan_row_at_predict_time():
    clf = NaturalGradientClassifier(alpha=1.0, max_iter=20).fit(X, Y)
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(with_nan(X[:5], (4, 0)))

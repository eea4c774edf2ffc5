"""``NaturalGradientClassifier`` on bad input: every bad parameter is named, no status but
"converged" passes silently, and neither features too large to train on nor sparse X leak
an error from deep inside scipy."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning

import natgrad_core.sklearn as sk
from natgrad_core import SOLVERS, DivergenceWarning, NaturalGradientClassifier

X, Y = make_classification(60, 4, random_state=0)

# (parameter, bad value): each must be refused with an error naming the parameter
BAD_PARAMS = [
    ("hidden_layer_sizes", (0,)),
    ("hidden_layer_sizes", (-3,)),
    ("hidden_layer_sizes", (2.5,)),
    ("hidden_layer_sizes", 1.5),
    ("activation", "sigmoidal"),
    ("solver", "newton"),
    ("solver", ["exact"]),
    ("fisher", "fake"),
    ("fisher", 3),
    ("alpha", -1.0),
    ("alpha", np.nan),
    ("alpha", "1"),
    ("damping", -1.0),
    ("damping", np.inf),
    ("step", "bogus"),
    ("step", 3),
    ("learning_rate", 0.0),
    ("learning_rate", -1.0),
    ("max_iter", 0),
    ("max_iter", 1.5),
    ("tol", -1.0),
    ("tol", np.nan),
    ("batch_size", 0),
    ("batch_size", 2.5),
    ("fit_intercept", "yes"),
    ("random_state", -1),
    ("random_state", 1.5),
    ("random_state", "seed"),
    ("blas_threads", 0),
    ("blas_threads", 1.5),
]


@pytest.mark.parametrize(("name", "value"), BAD_PARAMS, ids=[f"{n}={v!r}" for n, v in BAD_PARAMS])
def test_bad_parameter_is_named(name, value):
    with pytest.raises((ValueError, TypeError), match=name.replace("_", "[_ ]")):
        NaturalGradientClassifier(**{name: value}, max_iter=3).fit(X, Y)


# every Result.status the driver documents, and the warning fit() must give for it
STATUS_WARNINGS = [
    ("max_iter", ConvergenceWarning),
    ("stalled", ConvergenceWarning),
    ("time_limit", ConvergenceWarning),
    ("stopped", ConvergenceWarning),
    ("diverged", DivergenceWarning),
]


@pytest.mark.parametrize(("status", "warning"), STATUS_WARNINGS)
def test_every_status_but_converged_warns(monkeypatch, status, warning):
    real = sk.minimize

    def ends_with(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), status=status, message="(test)")

    monkeypatch.setattr(sk, "minimize", ends_with)
    with pytest.warns(warning, match=status if status != "diverged" else "diverged"):
        NaturalGradientClassifier(solver="lbfgs", max_iter=3).fit(X, Y)


def test_lbfgs_abnormal_on_huge_features_warns():
    """L-BFGS-B gives up at iteration 0 on features scaled by 1e12 ("ABNORMAL")."""
    with pytest.warns(ConvergenceWarning, match="stalled"):
        model = NaturalGradientClassifier(solver="lbfgs", random_state=0).fit(X * 1e12, Y)
    assert model.status_ != "converged"


def test_converged_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = NaturalGradientClassifier(alpha=1.0, tol=1e-6).fit(X, Y)
    assert model.status_ == "converged"


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("scale", [1e160, 1e200, 1e300])
def test_features_too_large_are_refused_by_name(solver, scale):
    with pytest.raises(ValueError, match=r"too large to train on.*StandardScaler"):
        NaturalGradientClassifier(solver=solver, max_iter=3).fit(X * scale, Y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sparse_input_is_refused_with_the_dense_size():
    """The dense copy of a (60, 4) float64 matrix takes 60 · 4 · 8 = 1920 bytes."""
    sparse = scipy.sparse.csr_matrix(X)
    with pytest.raises(TypeError, match=r"toarray\(\) makes it dense in 1\.88 KiB"):
        NaturalGradientClassifier().fit(sparse, Y)
    fitted = NaturalGradientClassifier(max_iter=3).fit(X, Y)
    with pytest.raises(TypeError, match="toarray"):
        fitted.predict(sparse)

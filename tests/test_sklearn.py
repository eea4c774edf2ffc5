"""``NaturalGradientClassifier``: scikit-learn API compliance, every solver on real data,
attribute conventions shared with ``LogisticRegression`` / ``MLPClassifier``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from natgrad_core import SOLVERS, DivergenceWarning, NaturalGradientClassifier

COEF_ATOL = 1e-5
"""Coefficients vs LogisticRegression (both solved to a gradient max-norm of ~1e-10)."""
ACCURACY_FLOOR = {"iris": 0.85, "breast_cancer": 0.9}
"""Training accuracy after 30 iterations; every solver reaches >= 0.88 / 0.92 here."""
PROBA_ATOL = 1e-12

# learning rates that make each solver make steady progress in 30 full-batch steps of
# standardized data (the others use the estimator default, 1.0). The diagonal Fisher
# ignores the strong feature correlations of breast_cancer: unit steps oscillate (the loss
# ends ~100x above its start), and EKFAC's unit steps oscillate there too.
LEARNING_RATES = {"gd": 1.0, "momentum": 0.3, "adam": 0.05, "diag": 0.2, "ekfac": 0.5}
NG_SOLVERS = ("exact", "diag", "kfac", "ekfac", "cg")


def _dataset(name):
    loader = {"iris": load_iris, "breast_cancer": load_breast_cancer}[name]
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


# ----------------------------------------------------------------------------- API compliance
@parametrize_with_checks(
    [
        NaturalGradientClassifier(),
        NaturalGradientClassifier(solver="kfac", hidden_layer_sizes=(5,)),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------------- every solver
def _classifier(solver, hidden, **params):
    if solver in LEARNING_RATES:
        params.setdefault("learning_rate", LEARNING_RATES[solver])
    if solver in NG_SOLVERS and hidden:
        # a fixed unit step with λ = 1e-4 overshoots on an MLP; let λ adapt
        params.setdefault("step", "lm")
    return NaturalGradientClassifier(
        solver=solver, hidden_layer_sizes=hidden, max_iter=30, random_state=0, **params
    )


@pytest.mark.parametrize("hidden", [(), (8,)], ids=["logistic", "mlp"])
@pytest.mark.parametrize("dataset", ["iris", "breast_cancer"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_fit_predict_score_for_every_solver(solver, dataset, hidden):
    X, y = _dataset(dataset)
    classes = np.unique(y)
    n_classes = len(classes)
    clf = _classifier(solver, hidden)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 30 iterations is deliberately few
        assert clf.fit(X, y) is clf

    np.testing.assert_array_equal(clf.classes_, classes)
    assert clf.n_features_in_ == X.shape[1]
    assert clf.status_ in ("converged", "max_iter")
    assert 1 <= clf.n_iter_ <= 30
    assert len(clf.loss_curve_) == clf.n_iter_
    assert clf.loss_curve_[-1] < clf.result_.history["loss"].iloc[0]

    pred = clf.predict(X)
    proba = clf.predict_proba(X)
    assert pred.shape == (len(y),)
    assert set(pred) <= set(classes)
    assert proba.shape == (len(y), n_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=PROBA_ATOL)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(classes[np.argmax(proba, axis=1)], pred)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-12, atol=0)
    decision = clf.decision_function(X)
    assert decision.shape == ((len(y),) if n_classes == 2 else (len(y), n_classes))
    score = clf.score(X, y)
    assert score == accuracy_score(y, pred)
    assert score >= ACCURACY_FLOOR[dataset]


# ----------------------------------------------------------------------------- attributes
@pytest.mark.parametrize("dataset", ["iris", "breast_cancer"])
def test_logistic_attributes_follow_logistic_regression(dataset):
    X, y = _dataset(dataset)
    clf = NaturalGradientClassifier(alpha=1.0, max_iter=50, tol=1e-6).fit(X, y)
    sk = LogisticRegression(max_iter=200).fit(X, y)
    assert clf.status_ == "converged"
    assert clf.coef_.shape == sk.coef_.shape  # (1, d) binary, (K, d) multiclass
    assert clf.intercept_.shape == sk.intercept_.shape
    assert not hasattr(clf, "coefs_")
    # decision_function is the linear predictor X coef_ᵀ + intercept_
    np.testing.assert_allclose(
        clf.decision_function(X),
        np.squeeze(X @ clf.coef_.T + clf.intercept_),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("hidden", [(6,), (7, 4)])
@pytest.mark.parametrize("dataset", ["iris", "breast_cancer"])
def test_mlp_attributes_follow_mlp_classifier(dataset, hidden):
    X, y = _dataset(dataset)
    clf = NaturalGradientClassifier(hidden_layer_sizes=hidden, solver="kfac", max_iter=3)
    sk = MLPClassifier(hidden_layer_sizes=hidden, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        sk.fit(X, y)
    assert [c.shape for c in clf.coefs_] == [c.shape for c in sk.coefs_]
    assert [b.shape for b in clf.intercepts_] == [b.shape for b in sk.intercepts_]
    assert not hasattr(clf, "coef_")


def test_string_labels():
    X, y = _dataset("iris")
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = NaturalGradientClassifier(alpha=1.0, max_iter=50).fit(X, names)
    np.testing.assert_array_equal(clf.classes_, names[np.sort(np.unique(y, return_index=True)[1])])
    pred = clf.predict(X)
    assert pred.dtype.kind == "U"
    assert set(pred) <= set(names)
    assert clf.score(X, names) >= ACCURACY_FLOOR["iris"]
    # predict_proba columns follow classes_: same fit on integer labels gives the same table
    clf_int = NaturalGradientClassifier(alpha=1.0, max_iter=50).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), clf_int.predict_proba(X), rtol=0, atol=1e-12)


def test_binary_string_labels_follow_sorted_classes():
    X, y = _dataset("breast_cancer")
    labels = np.where(y == 1, "benign", "malignant")
    clf = NaturalGradientClassifier(alpha=1.0, max_iter=50).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["benign", "malignant"])
    proba = clf.predict_proba(X)
    # column 1 is P("malignant"), the positive class (y == 0)
    assert np.mean(proba[y == 0, 1]) > 0.8
    assert np.mean(proba[y == 1, 1]) < 0.2


# ----------------------------------------------------------------------------- reference
def test_logistic_coefficients_match_sklearn():
    X, y = _dataset("breast_cancer")
    C = 1.0
    sk = LogisticRegression(solver="newton-cholesky", C=C, tol=1e-12, max_iter=1000).fit(X, y)
    clf = NaturalGradientClassifier(alpha=1.0 / C, solver="exact", tol=1e-10, max_iter=100)
    clf.fit(X, y)
    assert clf.status_ == "converged"
    np.testing.assert_allclose(clf.coef_, sk.coef_, rtol=0, atol=COEF_ATOL)
    np.testing.assert_allclose(clf.intercept_, sk.intercept_, rtol=0, atol=COEF_ATOL)
    np.testing.assert_allclose(clf.predict_proba(X), sk.predict_proba(X), rtol=0, atol=COEF_ATOL)


# ----------------------------------------------------------------------------- warnings, errors
def test_convergence_warning_when_max_iter_is_hit():
    X, y = _dataset("breast_cancer")
    clf = NaturalGradientClassifier(solver="gd", max_iter=2, tol=1e-12)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        clf.fit(X, y)
    assert clf.status_ == "max_iter"
    assert clf.n_iter_ == 2


def test_no_convergence_warning_when_converged():
    X, y = _dataset("iris")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = NaturalGradientClassifier(alpha=1.0, tol=1e-6, max_iter=50).fit(X, y)
    assert clf.status_ == "converged"


def test_divergence_warns_and_keeps_finite_parameters():
    X, y = _dataset("iris")
    clf = NaturalGradientClassifier(
        solver="gd", hidden_layer_sizes=(5,), step="fixed", learning_rate=1e8, random_state=0
    )
    with pytest.warns(DivergenceWarning, match="diverged") as record:
        clf.fit(X, y)
    assert issubclass(DivergenceWarning, ConvergenceWarning)
    # once, from fit (the driver's own warning is folded into it)
    assert [w.category for w in record if issubclass(w.category, ConvergenceWarning)] == [
        DivergenceWarning
    ]
    assert clf.status_ == "diverged"
    assert all(np.all(np.isfinite(c)) for c in clf.coefs_)
    assert np.all(np.isfinite(clf.predict_proba(X)))


@pytest.mark.parametrize("solver", ["nope", "newton-cholesky"])
def test_unknown_solver_raises_at_fit(solver):
    X, y = _dataset("iris")
    clf = NaturalGradientClassifier(solver=solver)  # construction does not validate
    with pytest.raises(ValueError, match=repr(solver)):
        clf.fit(X, y)


def test_batch_size_larger_than_data_is_clipped():
    X, y = _dataset("iris")
    clf = NaturalGradientClassifier(solver="adam", batch_size=10_000, learning_rate=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.result_.history["n_grad"].iloc[-1] == clf.n_iter_
    assert clf.score(X, y) >= ACCURACY_FLOOR["iris"]


def test_random_state_makes_fits_reproducible():
    X, y = _dataset("iris")
    params = {"solver": "kfac", "hidden_layer_sizes": (5,), "fisher": "mc", "batch_size": 50}
    fits = [
        NaturalGradientClassifier(random_state=7, max_iter=10, step="lm", **params)
        for _ in range(2)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for clf in fits:
            clf.fit(X, y)
    for a, b in zip(fits[0].coefs_, fits[1].coefs_):
        np.testing.assert_array_equal(a, b)

"""Numerical trouble warns with a class that names it, and the README lists exactly those.

* singular curvature → :class:`SingularCurvatureWarning` (tested with each curvature);
* CG stopping at its cap → :class:`CGMaxIterWarning` (not singular curvature);
* a diverged run → :class:`DivergenceWarning` (tests/optim/test_driver.py, test_sklearn.py);
* an unconverged estimator fit — out of iterations, or L-BFGS-B ending on its own
  ("ABNORMAL") — → scikit-learn's ``ConvergenceWarning``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import natgrad_core
from natgrad_core import (
    CGMaxIterWarning,
    ImplicitFisher,
    NaturalGradient,
    NaturalGradientClassifier,
    SingularCurvatureWarning,
    minimize,
)
from natgrad_core.models import Objective

from .problems import logistic_problem

README = Path(__file__).resolve().parents[2] / "README.md"


def _iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_cg_cap_warns_cg_max_iter_not_singular_curvature():
    model, X, y = logistic_problem()
    obj = Objective(model, X, y, alpha=1.0)
    theta = np.zeros(model.n_params)
    _, grad = obj.loss_and_grad(theta)
    op = ImplicitFisher(obj, theta, cg_maxiter=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        op.solve(grad, 1e-3)
    categories = [w.category for w in record]
    assert categories == [CGMaxIterWarning]
    assert not issubclass(CGMaxIterWarning, SingularCurvatureWarning)
    assert op.status == "max_cg_iter" and op.last_cg.n_iter == 2
    assert "cap of 2 iterations" in str(record[0].message)


def test_cg_cap_in_a_run_warns_and_records_the_steps():
    model, X, y = logistic_problem()
    opt = NaturalGradient(curvature="cg", cg_maxiter=1, damping=1e-3)
    with pytest.warns(CGMaxIterWarning):
        result = minimize(model, X, y, opt, alpha=1.0, max_iter=3, tol=0.0)
    assert (result.history["status"].iloc[1:] == "max_cg_iter").all()


def test_converged_cg_does_not_warn():
    model, X, y = logistic_problem()
    obj = Objective(model, X, y, alpha=1.0)
    theta = np.zeros(model.n_params)
    _, grad = obj.loss_and_grad(theta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImplicitFisher(obj, theta).solve(grad, 1e-3)


def test_lbfgs_ending_on_its_own_warns_like_max_iter():
    # tol = 0 is out of reach: L-BFGS-B ends on its own ("stalled": ABNORMAL line search or
    # no relative reduction left), as unconverged as a run that used up max_iter
    X, y = _iris()
    clf = NaturalGradientClassifier(solver="lbfgs", alpha=1.0, tol=0.0, max_iter=500)
    with pytest.warns(ConvergenceWarning, match="before the gradient norm fell below tol"):
        clf.fit(X, y)
    assert clf.status_ == "stalled"
    assert clf.n_iter_ < 500


def test_readme_names_exactly_the_exported_warnings():
    named = set(re.findall(r"`(\w+Warning)`", README.read_text(encoding="utf-8")))
    exported = {n for n in natgrad_core.__all__ if n.endswith("Warning")}
    assert exported <= named, f"README does not document {sorted(exported - named)}"
    unknown = {n for n in named - exported if n != "ConvergenceWarning"}
    assert not unknown, f"README names warnings natgrad does not have: {sorted(unknown)}"

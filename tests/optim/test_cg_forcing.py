"""Inexact Newton CG: Eisenstat–Walker forcing terms (``cg_forcing="eisenstat-walker"``).

References: the formula of Eisenstat & Walker (1996), choice 2, written out here with
their constants; residuals checked against a dense curvature built from finite-difference
Jacobians (tests/conftest.py); gradients from a fresh Objective.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from natgrad_core import LogisticModel, make_optimizer, minimize
from natgrad_core.curvature.implicit import forcing_term
from natgrad_core.optim import NaturalGradient

from .problems import binary_data, dense_curvature, loss_and_grad, run_with_iterates

ALPHA = 1e-2
GAMMA, ORDER, ETA_MAX = 1.0, (1 + math.sqrt(5)) / 2, 0.5
RESIDUAL_SLACK = 1e-6
"""Relative error of the finite-difference dense curvature, added to each bound."""

FORCING_CASES = {
    # name → (‖∇Lₖ‖, (‖∇Lₖ₋₁‖, ηₖ₋₁) or None, floor, expected ηₖ from the paper's formula)
    "first step": (3.0, None, 1e-10, ETA_MAX),
    "fast decrease, safeguard binds": (0.1, (1.0, 0.5), 1e-10, GAMMA * 0.5**ORDER),
    "fast decrease, small previous": (0.1, (1.0, 0.2), 1e-10, GAMMA * 0.1**ORDER),
    "no decrease, capped": (2.0, (1.0, 0.01), 1e-10, ETA_MAX),
    "floor binds": (1e-9, (1.0, 1e-3), 1e-8, 1e-8),
}


@pytest.mark.parametrize("case", sorted(FORCING_CASES))
def test_forcing_term_is_eisenstat_walker_choice_2(case):
    grad_norm, previous, floor, expected = FORCING_CASES[case]
    assert forcing_term(grad_norm, previous, floor) == pytest.approx(expected, rel=1e-14)


def _binary_problem():
    X, y = binary_data(n=80, d=4)
    return LogisticModel(4, 2), X, y


def test_every_cg_solve_meets_its_forcing_term():
    model, X, y = _binary_problem()
    optimizer = make_optimizer("cg")
    assert optimizer.cg_forcing == "eisenstat-walker"
    result, iterates = run_with_iterates(model, X, y, optimizer, alpha=ALPHA, tol=1e-9)
    assert result.status == "converged"
    h = result.history
    previous = None
    for k in range(1, len(h)):
        _, grad = loss_and_grad(model, X, y, iterates[k - 1], ALPHA)
        grad_norm = float(np.linalg.norm(grad))
        eta = h["cg_rtol"].iloc[k]
        # the sequence recorded is the paper's, from the gradients at the iterates
        if previous is None:
            expected = ETA_MAX
        else:
            expected = GAMMA * (grad_norm / previous[0]) ** ORDER
            if GAMMA * previous[1] ** ORDER > 0.1:
                expected = max(expected, GAMMA * previous[1] ** ORDER)
        expected = min(ETA_MAX, max(expected, optimizer.cg_rtol))
        assert eta == pytest.approx(expected, rel=1e-10)
        previous = (grad_norm, eta)
        # an accepted Levenberg–Marquardt step is the CG solution: ‖(C + λI)x − ∇L‖ ≤ η‖∇L‖
        if h["step_size"].iloc[k] == 1.0:
            x = iterates[k - 1] - iterates[k]
            C = dense_curvature(model, X, y, iterates[k - 1], ALPHA)
            residual = (C + h["damping"].iloc[k] * np.eye(model.n_params)) @ x - grad
            assert np.linalg.norm(residual) <= (eta + RESIDUAL_SLACK) * grad_norm
    assert h["cg_rtol"].iloc[-1] < h["cg_rtol"].iloc[1]  # tighter near the optimum


def test_forcing_reaches_the_same_optimum_with_fewer_products():
    model, X, y = _binary_problem()
    runs = {
        forcing: minimize(
            model, X, y, make_optimizer("cg", cg_forcing=forcing), alpha=ALPHA, tol=1e-9
        )
        for forcing in ("fixed", "eisenstat-walker")
    }
    assert runs["fixed"].status == runs["eisenstat-walker"].status == "converged"
    np.testing.assert_allclose(runs["eisenstat-walker"].theta, runs["fixed"].theta, atol=1e-8)
    assert runs["eisenstat-walker"].counts["n_fvp"] < runs["fixed"].counts["n_fvp"]
    assert "cg_rtol" in runs["fixed"].history
    assert (runs["fixed"].history["cg_rtol"].iloc[1:] == 1e-10).all()


def test_a_given_cg_rtol_means_a_fixed_tolerance():
    assert make_optimizer("cg", cg_rtol=1e-6).cg_forcing == "fixed"
    assert make_optimizer("cg", cg_rtol=1e-6, cg_forcing="eisenstat-walker").cg_forcing == (
        "eisenstat-walker"
    )


def test_unknown_forcing_is_refused():
    with pytest.raises(ValueError, match="Unknown cg_forcing 'sqrt'; expected one of"):
        NaturalGradient("cg", cg_forcing="sqrt")

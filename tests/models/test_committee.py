"""The soft committee machine: closed-form ε_g and analytic Fisher against Monte Carlo over
inputs and explicit sums written from the definitions (never the code under test)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from natgrad_core.models import Objective
from natgrad_core.models.committee import (
    TeacherStream,
    committee_fisher,
    committee_natural_gradient,
    committee_overlaps,
    committee_params,
    generalization_error,
    soft_committee,
)
from tests.conftest import TIGHT

N_MC = 400_000
"""Monte-Carlo inputs; the standard error of each averaged quantity is ≲ 0.2% of its scale."""
MC_REL = 0.02
"""Error allowed for a Monte-Carlo average, relative to the largest entry (≥ 5 standard errors)."""


def committee_output(W, U):
    """Σ_k erf(w_kᵀu/√2), written from the definition."""
    return erf(U @ W / np.sqrt(2.0)).sum(axis=1)


def inputs(n_features, n_samples, seed):
    return np.random.default_rng(seed).standard_normal((n_samples, n_features)) / np.sqrt(
        n_features
    )


@pytest.mark.parametrize("k,m", [(2, 2), (3, 2), (1, 3)])
def test_generalization_error_matches_monte_carlo(k, m):
    rng = np.random.default_rng([k, m])
    n = 6
    W, B = rng.normal(0, 1.2, (n, k)), rng.normal(0, 1.0, (n, m))
    U = inputs(n, N_MC, 1)
    mc = 0.5 * np.mean((committee_output(W, U) - committee_output(B, U)) ** 2)
    closed = generalization_error(*committee_overlaps(W, B))
    assert closed == pytest.approx(mc, rel=MC_REL)


def test_generalization_error_is_zero_for_the_teacher_and_minimal_at_the_symmetric_point():
    B = np.random.default_rng(0).standard_normal((8, 2))
    assert generalization_error(*committee_overlaps(B, B)) == pytest.approx(0.0, abs=TIGHT)
    # K = M = 2, T = I, both units a·(b1 + b2): Q = C = 2a², R = a; the best a is 1/√6
    # (Saad & Solla 1995's symmetric fixed point), found here by brute force
    a = np.linspace(0.2, 0.6, 4001)
    eps = [
        generalization_error(np.full((2, 2), 2 * s * s), np.full((2, 2), s), np.eye(2)) for s in a
    ]
    assert a[int(np.argmin(eps))] == pytest.approx(1 / np.sqrt(6), abs=1e-3)


def test_fisher_matches_monte_carlo_jacobians_of_the_network():
    """E[Jᵀ J] over inputs from the MLP's own per-example Jacobians (first-layer columns)."""
    rng = np.random.default_rng(3)
    n, k = 4, 2
    W = rng.normal(0, 1.5, (n, k))
    model = soft_committee(n, k)
    U = inputs(n, N_MC, 4)
    J = model.jacobian(committee_params(model, W), U)[:, 0, : n * k]
    mc = J.T @ J / len(U)
    F = committee_fisher(W)
    assert F.shape == (n * k, n * k)
    np.testing.assert_allclose(F, mc, atol=MC_REL * np.abs(mc).max())


def test_fisher_closed_forms():
    n = 5
    # at W = 0 every slope is √(2/π): F = (2/(πN)) I_N ⊗ 1_{K×K}
    expected = 2 / (np.pi * n) * np.kron(np.eye(n), np.ones((3, 3)))
    np.testing.assert_allclose(committee_fisher(np.zeros((n, 3))), expected, atol=TIGHT)
    # two equal units: the Fisher is singular (w1 − w2 directions change nothing)
    w = np.random.default_rng(0).standard_normal((n, 1))
    F = committee_fisher(np.hstack([w, w]))
    assert np.linalg.eigvalsh(F)[0] == pytest.approx(0.0, abs=TIGHT)
    assert np.allclose(F, F.T, atol=TIGHT)


@pytest.mark.parametrize("n,k", [(5, 2), (9, 3), (60, 2)])
def test_structured_natural_gradient_equals_the_dense_solve(n, k):
    rng = np.random.default_rng([n, k])
    W, g = rng.normal(0, 1.3, (n, k)), rng.standard_normal(n * k)
    x = committee_natural_gradient(W, g)
    np.testing.assert_allclose(committee_fisher(W) @ x, g, rtol=1e-8, atol=1e-10)


def test_stream_is_seeded_and_labels_by_the_teacher():
    B = np.random.default_rng(0).standard_normal((7, 2))
    U1, y1 = TeacherStream(B, 5).draw(30)
    U2, y2 = TeacherStream(B, 5).draw(30)
    np.testing.assert_array_equal(U1, U2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(y1, committee_output(B, U1), rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(U1.std() * np.sqrt(7), 1.0, atol=0.2)


def test_objective_loss_is_half_squared_error_of_the_committee():
    rng = np.random.default_rng(1)
    B, W = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    U, y = TeacherStream(B, 2).draw(50)
    model = soft_committee(6, 2)
    loss = Objective(model, U, y).loss(committee_params(model, W))
    expected = 0.5 * np.mean((committee_output(W, U) - y) ** 2)
    assert loss == pytest.approx(expected, rel=TIGHT)


def test_bad_input_raises():
    model = soft_committee(4, 2)
    with pytest.raises(ValueError, match="expected W with 4 rows"):
        committee_params(model, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected a soft committee"):
        committee_params(soft_committee(4, 2).__class__(4, 1, (2, 2), "erf", "gaussian"), 0)
    with pytest.raises(ValueError, match="Shape mismatch"):
        generalization_error(np.eye(2), np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match=r"expected grad of shape \(8,\)"):
        committee_natural_gradient(np.ones((4, 2)), np.ones(6))
    with pytest.raises(ValueError, match="expected B with 4 rows"):
        committee_overlaps(np.zeros((4, 2)), np.zeros((5, 2)))

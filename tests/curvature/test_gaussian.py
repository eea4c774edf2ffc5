"""gaussian_logistic_fisher: the population Fisher against explicit sample sums, the
library's DenseFisher on a large sample, a closed form and one-dimensional quadrature."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from natgrad_core.curvature import DenseFisher, gaussian_logistic_fisher
from natgrad_core.models import LogisticModel, Objective
from tests.conftest import TIGHT

N_MC = 400_000
MC_ATOL = 3e-3
"""Absolute tolerance against a sample average over N_MC inputs: each entry's standard
error is below 0.25 · 3 / √N_MC ≈ 1.2e-3 (σ' ≤ 1/4, E[x_i² x_j²] ≤ 3)."""
QUAD_ATOL = 1e-10
"""Against scipy's adaptive quadrature of the three moments."""

THETAS = [
    np.array([1.0, -0.5, 0.5, 0.0, 0.25]),
    np.array([-2.0, 1.0, 0.3, 1.5, -1.0]),
]


def sigma_prime(z):
    e = np.exp(-np.abs(z))
    return e / (1 + e) ** 2


@pytest.mark.parametrize("theta", THETAS)
def test_matches_an_explicit_sample_average_and_dense_fisher(theta):
    model = LogisticModel(4, 2)
    X = np.random.default_rng(0).standard_normal((N_MC, 4))
    Xb = np.column_stack([X, np.ones(N_MC)])
    reference = (Xb * sigma_prime(Xb @ theta)[:, None]).T @ Xb / N_MC
    G = gaussian_logistic_fisher(model, theta)
    np.testing.assert_allclose(G, reference, atol=MC_ATOL)
    dense = DenseFisher(Objective(model, X, np.zeros(N_MC)), theta, "exact").matrix()
    np.testing.assert_allclose(dense, reference, atol=TIGHT)


@pytest.mark.parametrize("theta", THETAS)
def test_matches_adaptive_quadrature_of_each_entry(theta):
    """Each entry E[σ'(z) x̄_i x̄_j] as a 1-D integral over u along w (scipy.quad)."""
    model = LogisticModel(4, 2)
    w, b = theta[:4], theta[4]
    s = np.linalg.norm(w)

    def moment(k):
        f = lambda u: sigma_prime(s * u + b) * u**k * norm.pdf(u)  # noqa: E731
        return quad(f, -np.inf, np.inf, epsabs=1e-13, epsrel=1e-12)[0]

    m0, m1, m2 = moment(0), moment(1), moment(2)
    w_hat = w / s
    reference = np.zeros((5, 5))
    reference[:4, :4] = m0 * np.eye(4) + (m2 - m0) * np.outer(w_hat, w_hat)
    reference[:4, 4] = reference[4, :4] = m1 * w_hat
    reference[4, 4] = m0
    np.testing.assert_allclose(gaussian_logistic_fisher(model, theta), reference, atol=QUAD_ATOL)


def test_zero_weights_give_a_multiple_of_the_identity():
    b = 0.7
    G = gaussian_logistic_fisher(LogisticModel(3, 2), np.array([0.0, 0.0, 0.0, b]))
    np.testing.assert_allclose(G, sigma_prime(b) * np.eye(4), atol=TIGHT)


def test_batches_and_no_intercept():
    model = LogisticModel(4, 2)
    batch = np.stack(THETAS).reshape(2, 1, 5)
    G = gaussian_logistic_fisher(model, batch)
    assert G.shape == (2, 1, 5, 5)
    for i, theta in enumerate(THETAS):
        np.testing.assert_allclose(G[i, 0], gaussian_logistic_fisher(model, theta), atol=TIGHT)
    no_b = LogisticModel(4, 2, fit_intercept=False)
    theta = THETAS[1][:4]
    with_zero_b = gaussian_logistic_fisher(model, np.append(theta, 0.0))[:4, :4]
    np.testing.assert_allclose(gaussian_logistic_fisher(no_b, theta), with_zero_b, atol=TIGHT)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="binary LogisticModel"):
        gaussian_logistic_fisher(LogisticModel(4, 3), np.zeros(15))
    with pytest.raises(ValueError, match="Shape mismatch"):
        gaussian_logistic_fisher(LogisticModel(4, 2), np.zeros(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        gaussian_logistic_fisher(LogisticModel(4, 2), np.full(5, np.inf))
    with pytest.raises(ValueError, match=">= 1"):
        gaussian_logistic_fisher(LogisticModel(4, 2), np.zeros(5), n_nodes=0)

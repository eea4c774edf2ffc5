"""Natural gradient is invariant to reparametrization (Amari 1998; Martens & Grosse 2015 §10).

An invertible affine map of the inputs, x' = A x + c, is absorbed by the first layer: with
augmented inputs x̄ = [x; 1] and x̄' = M x̄, M = [[A, c], [0, 1]], the first-layer block
W̄' = M⁻ᵀ W̄ gives identical pre-activations (x̄'ᵀ W̄' = x̄ᵀ Mᵀ M⁻ᵀ W̄ = x̄ᵀ W̄). The map
θ ↦ T θ is linear, so the exact Fisher transforms as F' = T⁻ᵀ F T⁻¹ and the gradient as
g' = T⁻ᵀ g: the undamped natural-gradient step transforms as d' = T d, and every iterate on
(X', T θ₀) is T times the iterate on (X, θ₀). K-FAC keeps this property for maps acting on
a layer's inputs (A' = M A Mᵀ, G unchanged), the diagonal Fisher only for per-feature
rescalings (diagonal M), plain gradient descent for neither.

L2 regularization and damping break invariance (‖W̄'‖ ≠ ‖W̄‖), so alpha = damping = 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from natgrad_core import MLP, LogisticModel, SingularCurvatureWarning, make_optimizer

from .problems import binary_data, run_with_iterates

INVARIANT_RTOL = 1e-8
"""Max relative distance between mapped iterates for an invariant method."""
NOT_INVARIANT = 1e-3
"""Min relative distance showing that a method is *not* invariant to a map."""
N_STEPS = 5
LEARNING_RATE = 0.2
"""Fixed step. Undamped exact NG on the MLP with steps of 0.5+ overshoots into saturated
units (singular Fisher); invariance holds for any step, but needs well-posed iterates."""


def _affine_map(seed=1):
    """A well-conditioned (cond = 4) random A and a random offset c."""
    rng = np.random.default_rng(seed)
    Q1 = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    Q2 = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    return Q1 @ np.diag([0.5, 1.0, 2.0]) @ Q2, rng.standard_normal(3)


def _rescaling():
    """Per-feature rescaling (no offset); not powers of two, so rounding is exercised."""
    return np.diag([0.3, 1.7, 5.0]), np.zeros(3)


MAPS = {"affine": _affine_map, "rescale": _rescaling}


def _augmented(A, c):
    d = A.shape[0]
    M = np.eye(d + 1)
    M[:d, :d] = A
    M[:d, d] = c
    return M


def map_theta(model, theta, M):
    """θ with the first-layer block W̄ replaced by M⁻ᵀ W̄; other layers unchanged."""
    blocks = [np.array(b, copy=True) for b in model.unpack(theta)]
    blocks[0] = np.linalg.solve(M.T, blocks[0])
    return model.pack(blocks)


def _problem(kind):
    """(model, X, y, theta0) with a nonzero start."""
    if kind == "logistic":
        X, y = binary_data(n=60, d=3, seed=0)
        model = LogisticModel(3, 2)
        theta0 = 0.3 * np.random.default_rng(2).standard_normal(model.n_params)
        return model, X, y, theta0
    # small regression MLP, 21 parameters. With a Gaussian head and 100 samples the undamped
    # exact Fisher is nonsingular (condition number ~3e3 at θ₀) along the whole run; the
    # seed is chosen for that: many random starts of an undamped MLP hit near-singular
    # Fisher matrices, where rounding (cond · eps) rather than the method limits agreement.
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 3))
    y = np.tanh(X @ np.array([1.0, -1.0, 0.5]))[:, None] + 0.1 * rng.standard_normal((100, 1))
    model = MLP(3, 1, (4,), "tanh", "gaussian")
    theta0 = model.init_params(1) + 0.3 * rng.standard_normal(model.n_params)
    return model, X, y, theta0


def _optimizer(solver):
    if solver == "gd":
        return make_optimizer("gd", learning_rate=LEARNING_RATE, step="fixed")
    return make_optimizer(solver, damping=0.0, learning_rate=LEARNING_RATE, step="fixed")


def _mapped_distance(kind, solver, map_name, strict):
    """Max over iterates of ‖θ'_k − T θ_k‖ / ‖T θ_k‖, runs on (X, θ₀) and (X', T θ₀)."""
    model, X, y, theta0 = _problem(kind)
    A, c = MAPS[map_name]()
    M = _augmented(A, c)
    X_mapped = X @ A.T + c
    theta0_mapped = map_theta(model, theta0, M)
    # the parameter map reproduces the outputs exactly (up to rounding)
    np.testing.assert_allclose(
        model.predict_outputs(theta0_mapped, X_mapped),
        model.predict_outputs(theta0, X),
        rtol=1e-12,
        atol=1e-12,
    )
    with warnings.catch_warnings():
        # a jitter or pseudo-inverse fallback would itself break invariance
        warnings.simplefilter("error" if strict else "ignore", SingularCurvatureWarning)
        kwargs = {"alpha": 0.0, "tol": 0.0, "max_iter": N_STEPS}
        res, its = run_with_iterates(model, X, y, _optimizer(solver), theta0=theta0, **kwargs)
        res_m, its_m = run_with_iterates(
            model, X_mapped, y, _optimizer(solver), theta0=theta0_mapped, **kwargs
        )
    if strict:
        assert res.status == res_m.status == "max_iter", (res.message, res_m.message)
        # sanity: the iterates make progress (the comparison is not between two stalls)
        assert res.history["loss"].iloc[-1] < res.history["loss"].iloc[0]
    n = min(len(its), len(its_m))
    expected = np.array([map_theta(model, t, M) for t in its[:n]])
    with np.errstate(all="ignore"):
        rel = np.linalg.norm(its_m[:n] - expected, axis=1) / np.linalg.norm(expected, axis=1)
    rel = np.where(np.isfinite(rel), rel, np.inf)
    return float(np.max(rel[1:]))


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
@pytest.mark.parametrize("solver", ["exact", "kfac"])
@pytest.mark.parametrize("map_name", ["affine", "rescale"])
def test_natural_gradient_iterates_are_affine_invariant(kind, solver, map_name):
    assert _mapped_distance(kind, solver, map_name, strict=True) <= INVARIANT_RTOL


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_diagonal_ng_is_invariant_to_feature_rescaling(kind):
    assert _mapped_distance(kind, "diag", "rescale", strict=True) <= INVARIANT_RTOL


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_diagonal_ng_is_not_invariant_to_a_general_affine_map(kind):
    assert _mapped_distance(kind, "diag", "affine", strict=False) > NOT_INVARIANT


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
@pytest.mark.parametrize("map_name", ["affine", "rescale"])
def test_gradient_descent_is_not_invariant(kind, map_name):
    assert _mapped_distance(kind, "gd", map_name, strict=False) > NOT_INVARIANT

"""K-FAC and EKFAC: exactness where theory says so, the damping modes, factors and scaling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import block_diag

from natgrad_core._validation import SingularCurvatureWarning
from natgrad_core.curvature import EKFAC, KFAC, DenseFisher, KFACFactors, kfac_factors
from natgrad_core.models import MLP, Gaussian, LogisticModel, Objective
from tests.cases import FISHER_TYPES, MODEL_CASES
from tests.conftest import (
    ATOL,
    RTOL,
    SOLVE_RTOL,
    TIGHT,
    exact_output_fisher,
    fd_jacobian,
    layer_slices,
    random_vector,
    rel_err,
)

ALPHA = 0.7
MC_SEED = 17
DAMPING_MODES = ["exact", "tikhonov", "per_factor"]
BLOCK_ATOL = 1e-12
NOT_EQUAL_THRESHOLD = 1e-6
INTERCEPT_CASES = [c for c in MODEL_CASES if c(0)[0].fit_intercept]


def _objective(case, alpha=0.0, seed=0, rows=None):
    model, X, y, theta = case(seed)
    if rows is not None:
        X, y = X[rows], y[rows]
    return Objective(model, X, y, alpha=alpha), theta


def _kw(fisher_type="exact"):
    return {"fisher_type": fisher_type, "mc_samples": 3, "random_state": MC_SEED}


def _diagonal_blocks(M, model):
    return [M[sl, sl] for sl in layer_slices(model)]


def _max_block_difference(A, B, model):
    return max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(_diagonal_blocks(A, model), _diagonal_blocks(B, model))
    )


def _off_block_diagonal(M, model):
    mask = np.ones(M.shape, dtype=bool)
    for sl in layer_slices(model):
        mask[sl, sl] = False
    return M[mask]


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
def test_kfac_blocks_are_exact_for_a_single_sample(case, fisher_type):
    obj, theta = _objective(case, rows=slice(0, 1))
    model = obj.model
    kfac = KFAC(obj, theta, **_kw(fisher_type)).to_dense()
    dense = DenseFisher(obj, theta, **_kw(fisher_type)).to_dense()
    assert _max_block_difference(kfac, dense, model) < BLOCK_ATOL
    np.testing.assert_array_equal(_off_block_diagonal(kfac, model), 0.0)


def test_kfac_blocks_are_exact_when_all_inputs_are_identical(case):
    model, X, _, theta = case(0)
    X_same = np.tile(X[:1], (10, 1))
    y_many = case(1)[2]
    y_many = np.concatenate([y_many, y_many])[:10]
    obj = Objective(model, X_same, y_many)
    kfac = KFAC(obj, theta).to_dense()
    dense = DenseFisher(obj, theta).to_dense()
    assert _max_block_difference(kfac, dense, model) < BLOCK_ATOL


@pytest.mark.parametrize("variance", [1.0, 2.5])
@pytest.mark.parametrize("n_samples", [4, 13])
def test_kfac_blocks_are_exact_for_a_deep_linear_gaussian_network(n_samples, variance):
    model = MLP(3, 2, (4, 3), "identity", Gaussian(variance))
    rng = np.random.default_rng(n_samples)
    X = rng.standard_normal((n_samples, 3))
    y = rng.standard_normal((n_samples, 2))
    theta = model.init_params(0) + 0.3 * rng.standard_normal(model.n_params)
    obj = Objective(model, X, y)
    kfac = KFAC(obj, theta).to_dense()
    dense = DenseFisher(obj, theta).to_dense()
    assert _max_block_difference(kfac, dense, model) < BLOCK_ATOL


def test_kfac_blocks_differ_for_a_generic_tanh_network():
    # negative control: the exactness tests above can fail
    model = MLP(4, 3, (5,), "tanh", "softmax")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 4))
    theta = model.init_params(0) + 0.3 * rng.standard_normal(model.n_params)
    obj = Objective(model, X, np.arange(10) % 3)
    kfac = KFAC(obj, theta).to_dense()
    dense = DenseFisher(obj, theta).to_dense()
    assert _max_block_difference(kfac, dense, model) > NOT_EQUAL_THRESHOLD


# ----------------------------------------------------------------------------- factors
@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
def test_kfac_input_factors_are_mean_outer_products_of_layer_inputs(case, fisher_type):
    obj, theta = _objective(case)
    inputs = obj.model.forward(theta, obj.X).inputs
    factors = kfac_factors(obj, theta, **_kw(fisher_type))
    assert len(factors.A) == len(obj.model.layers)
    for A, a_bar, lay in zip(factors.A, inputs, obj.model.layers):
        assert A.shape == (lay.rows, lay.rows)
        np.testing.assert_allclose(A, a_bar.T @ a_bar / obj.n_samples, rtol=1e-12, atol=TIGHT)
        if lay.bias:
            assert A[-1, -1] == pytest.approx(1.0)


@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
@pytest.mark.parametrize("case_", INTERCEPT_CASES, ids=[c.id for c in INTERCEPT_CASES])
def test_kfac_output_factors_equal_the_fisher_block_of_the_intercepts(case_, fisher_type):
    # the intercept's input is the constant 1, so its Fisher block is exactly G_l
    obj, theta = _objective(case_)
    dense = DenseFisher(obj, theta, **_kw(fisher_type)).to_dense()
    factors = kfac_factors(obj, theta, **_kw(fisher_type))
    for G, lay in zip(factors.G, obj.model.layers):
        bias = slice(lay.offset + lay.fan_in * lay.fan_out, lay.offset + lay.size)
        assert G.shape == (lay.fan_out, lay.fan_out)
        np.testing.assert_allclose(G, dense[bias, bias], rtol=1e-12, atol=TIGHT)


def test_kfac_from_precomputed_factors_equals_kfac_from_theta(case):
    obj, theta = _objective(case, alpha=ALPHA)
    from_theta = KFAC(obj, theta)
    from_factors = KFAC(obj, factors=kfac_factors(obj, theta))
    np.testing.assert_allclose(from_factors.to_dense(), from_theta.to_dense(), atol=TIGHT)


def test_kfac_to_dense_and_matvec_are_blockdiag_kron_plus_l2(case):
    obj, theta = _objective(case, alpha=ALPHA)
    kfac = KFAC(obj, theta)
    A, G = kfac_factors(obj, theta)
    expected = block_diag(*[np.kron(a, g) for a, g in zip(A, G)]) + obj.l2 * np.eye(obj.n_params)
    np.testing.assert_allclose(kfac.to_dense(), expected, rtol=1e-12, atol=TIGHT)
    v = random_vector(obj.n_params)
    np.testing.assert_allclose(kfac @ v, expected @ v, rtol=1e-12, atol=TIGHT)


# ----------------------------------------------------------------------------- damping modes
def _expected_damped_matrix(mode, A_list, G_list, gamma):
    blocks = []
    for A, G in zip(A_list, G_list):
        if mode == "exact":
            blocks.append(np.kron(A, G) + gamma * np.eye(A.shape[0] * G.shape[0]))
            continue
        if mode == "tikhonov":
            pi = np.sqrt((np.trace(A) / A.shape[0]) / (np.trace(G) / G.shape[0]))
        else:
            pi = 1.0
        root = np.sqrt(gamma)
        blocks.append(
            np.kron(A + pi * root * np.eye(A.shape[0]), G + root / pi * np.eye(G.shape[0]))
        )
    return block_diag(*blocks)


@pytest.mark.parametrize("damping", [1e-2, 1.0])
@pytest.mark.parametrize("mode", DAMPING_MODES)
def test_kfac_solve_inverts_the_matrix_of_its_damping_mode(case, mode, damping):
    obj, theta = _objective(case, alpha=ALPHA)
    kfac = KFAC(obj, theta, damping_mode=mode)
    A, G = kfac_factors(obj, theta)
    gamma = ALPHA / obj.n_samples + damping
    M = _expected_damped_matrix(mode, A, G, gamma)
    np.testing.assert_allclose(kfac.damped_dense(damping), M, rtol=1e-12, atol=TIGHT)
    v = random_vector(obj.n_params)
    V = random_vector(obj.n_params, seed=3, k=2)
    x = kfac.solve(v, damping)
    assert kfac.status == "ok"
    assert rel_err(x, np.linalg.solve(M, v)) < SOLVE_RTOL
    assert rel_err(kfac.solve(V, damping), np.linalg.solve(M, V)) < SOLVE_RTOL


def test_tikhonov_pi_matches_trace_formula(case):
    obj, theta = _objective(case, alpha=ALPHA)
    kfac = KFAC(obj, theta, damping_mode="tikhonov")
    A, G = kfac_factors(obj, theta)
    expected = [np.sqrt((np.trace(a) / len(a)) / (np.trace(g) / len(g))) for a, g in zip(A, G)]
    np.testing.assert_allclose(kfac.pi(), expected, rtol=1e-12)


@pytest.mark.parametrize("mode", DAMPING_MODES)
def test_kfac_sum_reduction_is_n_times_mean(case, mode):
    obj, theta = _objective(case, alpha=ALPHA)
    n, damping = obj.n_samples, 0.05
    mean = KFAC(obj, theta, damping_mode=mode, reduction="mean")
    total = KFAC(obj, theta, damping_mode=mode, reduction="sum")
    v = random_vector(obj.n_params)
    np.testing.assert_allclose(total.to_dense(), n * mean.to_dense(), rtol=1e-12, atol=TIGHT)
    np.testing.assert_allclose(total @ v, n * (mean @ v), rtol=1e-12, atol=TIGHT)
    np.testing.assert_allclose(
        total.damped_dense(n * damping), n * mean.damped_dense(damping), rtol=1e-12, atol=TIGHT
    )
    assert rel_err(total.solve(v, n * damping), mean.solve(v, damping) / n) < SOLVE_RTOL


def test_kfac_exact_mode_with_zero_damping_on_a_singular_fisher_warns():
    rng = np.random.default_rng(2)
    model = LogisticModel(3, 4)
    obj = Objective(model, rng.standard_normal((10, 3)), np.arange(10) % 4)
    kfac = KFAC(obj, 0.3 * rng.standard_normal(model.n_params))
    with pytest.warns(SingularCurvatureWarning):
        x = kfac.solve(random_vector(model.n_params), 0.0)
    assert kfac.status == "pinv"
    assert np.all(np.isfinite(x))


# ----------------------------------------------------------------------------- EKFAC
@pytest.mark.parametrize("damping", [1e-2, 1.0])
def test_ekfac_solve_inverts_its_dense_matrix_plus_damping(case, damping):
    obj, theta = _objective(case, alpha=ALPHA)
    ekfac = EKFAC(obj, theta)
    M = ekfac.to_dense() + damping * np.eye(obj.n_params)
    v = random_vector(obj.n_params)
    assert rel_err(ekfac.solve(v, damping), np.linalg.solve(M, v)) < SOLVE_RTOL
    np.testing.assert_allclose(ekfac @ v, ekfac.to_dense() @ v, rtol=1e-12, atol=TIGHT)


def test_ekfac_eigenbasis_diagonal_matches_explicit_second_moments(case):
    # s = (1/N) Σₙ Σₘ ((Q_A ⊗ Q_G)ᵀ Jₙᵀ mₙₘ)², Λₙ = Σₘ mₙₘ mₙₘᵀ, with J from finite
    # differences and the factor mₙₘ from numpy's eigh of Λₙ
    obj, theta = _objective(case, alpha=ALPHA)
    model = obj.model
    ekfac = EKFAC(obj, theta)
    J = fd_jacobian(model, theta, obj.X)
    Lam = exact_output_fisher(model, model.predict_outputs(theta, obj.X))
    A, G = kfac_factors(obj, theta)
    dense = ekfac.to_dense()
    for (_, QA, _, QG), sl, a, g in zip(ekfac.eigendecompositions(), layer_slices(model), A, G):
        # the basis is K-FAC's: orthonormal eigenvectors of A and G
        np.testing.assert_allclose(QA.T @ QA, np.eye(len(QA)), atol=TIGHT)
        np.testing.assert_allclose(QG.T @ QG, np.eye(len(QG)), atol=TIGHT)
        for Q, F in ((QA, a), (QG, g)):
            R = Q.T @ F @ Q
            np.testing.assert_allclose(R - np.diag(np.diag(R)), 0.0, atol=TIGHT)
        Q = np.kron(QA, QG)
        s_ref = np.zeros(Q.shape[1])
        for n in range(obj.n_samples):
            w, V = np.linalg.eigh(Lam[n])
            factor = V * np.sqrt(np.clip(w, 0.0, None))
            rows = Q.T @ J[n][:, sl].T @ factor
            s_ref += np.sum(rows**2, axis=1)
        s_ref /= obj.n_samples
        block = dense[sl, sl] - obj.l2 * np.eye(Q.shape[0])
        D = Q.T @ block @ Q
        np.testing.assert_allclose(np.diag(D), s_ref, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(D - np.diag(np.diag(D)), 0.0, atol=TIGHT)


@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
def test_ekfac_blocks_are_exact_for_a_single_sample(case, fisher_type):
    obj, theta = _objective(case, rows=slice(0, 1))
    ekfac = EKFAC(obj, theta, **_kw(fisher_type)).to_dense()
    dense = DenseFisher(obj, theta, **_kw(fisher_type)).to_dense()
    assert _max_block_difference(ekfac, dense, obj.model) < BLOCK_ATOL


def test_ekfac_is_at_least_as_close_to_the_fisher_blocks_as_kfac(case):
    # EKFAC is the best diagonal in K-FAC's eigenbasis; K-FAC is one such diagonal
    obj, theta = _objective(case)
    dense = DenseFisher(obj, theta).to_dense()
    kfac = KFAC(obj, theta).to_dense()
    ekfac = EKFAC(obj, theta).to_dense()
    for F, K, E in zip(*(_diagonal_blocks(M, obj.model) for M in (dense, kfac, ekfac))):
        assert np.linalg.norm(F - E) <= np.linalg.norm(F - K) + TIGHT


def test_ekfac_sum_reduction_is_n_times_mean(case):
    obj, theta = _objective(case, alpha=ALPHA)
    n, damping = obj.n_samples, 0.05
    mean = EKFAC(obj, theta, reduction="mean")
    total = EKFAC(obj, theta, reduction="sum")
    v = random_vector(obj.n_params)
    np.testing.assert_allclose(total.to_dense(), n * mean.to_dense(), rtol=1e-10, atol=TIGHT)
    assert rel_err(total.solve(v, n * damping), mean.solve(v, damping) / n) < SOLVE_RTOL


# ----------------------------------------------------------------------------- validation
@pytest.fixture
def two_layer_problem():
    model = MLP(3, 2, (4,), "tanh", "gaussian")
    rng = np.random.default_rng(3)
    obj = Objective(model, rng.standard_normal((6, 3)), rng.standard_normal((6, 2)))
    theta = model.init_params(0)
    return obj, theta, kfac_factors(obj, theta)


def _bad_factors(factors, kind):
    A, G = list(factors.A), list(factors.G)
    if kind == "A_too_large":
        A[0] = np.eye(A[0].shape[0] + 1)
    elif kind == "G_not_square":
        G[1] = np.ones((G[1].shape[0], G[1].shape[0] + 1))
    elif kind == "layers_swapped":
        A, G = A[::-1], G[::-1]
    elif kind == "missing_layer":
        A, G = A[:1], G[:1]
    elif kind == "A_and_G_exchanged":
        A, G = G, A
    elif kind == "extra_A_factor":
        A = [*A, np.eye(2)]
    return KFACFactors(A, G)


@pytest.mark.parametrize(
    "kind",
    [
        "A_too_large",
        "G_not_square",
        "layers_swapped",
        "missing_layer",
        "A_and_G_exchanged",
        "extra_A_factor",
    ],
)
def test_kfac_rejects_factors_of_the_wrong_shape(two_layer_problem, kind):
    obj, _, factors = two_layer_problem
    with pytest.raises(ValueError, match="Shape mismatch"):
        KFAC(obj, factors=_bad_factors(factors, kind))


def test_kfac_needs_theta_or_factors(two_layer_problem):
    obj, _, _ = two_layer_problem
    with pytest.raises(ValueError, match="theta or precomputed factors"):
        KFAC(obj)


def test_kfac_rejects_unknown_damping_mode(two_layer_problem):
    obj, theta, _ = two_layer_problem
    with pytest.raises(ValueError, match="Unknown K-FAC damping mode 'levenberg'"):
        KFAC(obj, theta, damping_mode="levenberg")


def test_kfac_rejects_negative_damping_and_wrong_vector(two_layer_problem):
    obj, theta, _ = two_layer_problem
    kfac = KFAC(obj, theta)
    with pytest.raises(ValueError, match="damping"):
        kfac.solve(np.ones(obj.n_params), -1.0)
    with pytest.raises(ValueError, match="Shape mismatch"):
        kfac.solve(np.ones(obj.n_params + 1), 1.0)

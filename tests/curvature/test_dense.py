"""DenseFisher: the matrix against explicit references, the two solvers, and the contracts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.linalg import cg, eigsh

import natgrad_core.curvature.dense as dense_module
from natgrad_core._validation import SingularCurvatureWarning
from natgrad_core.curvature import DenseFisher, class_block_fisher, output_factors
from natgrad_core.models import MLP, LogisticModel, Objective
from tests.cases import FISHER_TYPES, MODEL_CASES
from tests.conftest import (
    ATOL,
    FD2_ATOL,
    MC_RTOL,
    RTOL,
    SOLVE_RTOL,
    TIGHT,
    dense_reference_fisher,
    exact_output_fisher,
    fd_hessian,
    random_vector,
    rel_err,
)

ALPHA = 0.7
MC_SEED = 17
LOGISTIC_CASES = [c for c in MODEL_CASES if c.id.startswith("logistic")]


def _objective(case, alpha=0.0, seed=0):
    model, X, y, theta = case(seed)
    return Objective(model, X, y, alpha=alpha), theta


def _fisher(obj, theta, fisher_type="exact", **kwargs):
    kwargs.setdefault("mc_samples", 3)
    kwargs.setdefault("random_state", MC_SEED)
    return DenseFisher(obj, theta, fisher_type, **kwargs)


def _damped(C, damping):
    return C + damping * np.eye(C.shape[0])


# ----------------------------------------------------------------------------- the matrix
def test_exact_fisher_matches_explicit_sum_of_jacobian_products(case):
    obj, theta = _objective(case)
    model = obj.model
    z = model.predict_outputs(theta, obj.X)
    reference = dense_reference_fisher(model, theta, obj.X, exact_output_fisher(model, z))
    F = DenseFisher(obj, theta, "exact").to_dense()
    assert F.shape == (model.n_params, model.n_params)
    np.testing.assert_allclose(F, reference, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(F, F.T, atol=TIGHT)


def test_exact_fisher_with_l2_adds_l2_times_mask_on_the_diagonal(case):
    obj0, theta = _objective(case, alpha=0.0)
    obja, _ = _objective(case, alpha=ALPHA)
    F0 = DenseFisher(obj0, theta).to_dense()
    Fa = DenseFisher(obja, theta).to_dense()
    mask = obja.model.weight_mask()
    np.testing.assert_allclose(Fa - F0, np.diag(ALPHA / obja.n_samples * mask), atol=TIGHT)


@pytest.mark.parametrize("alpha", [0.0, ALPHA])
@pytest.mark.parametrize("case_", LOGISTIC_CASES, ids=[c.id for c in LOGISTIC_CASES])
def test_logistic_exact_fisher_equals_finite_difference_hessian(case_, alpha):
    # canonical link and a linear model: the exact Fisher is the Hessian of the loss
    obj, theta = _objective(case_, alpha=alpha)
    H = fd_hessian(lambda t: obj.loss(t, count=False), theta)
    F = DenseFisher(obj, theta).to_dense()
    np.testing.assert_allclose(F, H, rtol=RTOL, atol=FD2_ATOL)


def test_empirical_fisher_is_mean_outer_product_of_per_example_gradients(case):
    obj, theta = _objective(case, alpha=ALPHA)
    G = obj.per_example_grads(theta)
    expected = G.T @ G / obj.n_samples + np.diag(obj.l2 * obj.weight_mask)
    F = DenseFisher(obj, theta, "empirical").to_dense()
    np.testing.assert_allclose(F, expected, rtol=1e-12, atol=TIGHT)


def test_matvec_equals_dense_matrix_product_for_vectors_and_matrices(case):
    obj, theta = _objective(case, alpha=ALPHA)
    C = DenseFisher(obj, theta).to_dense()
    v = random_vector(obj.n_params)
    V = random_vector(obj.n_params, k=3)
    # a fresh operator per method, so the sample-space product runs before any matrix exists
    for method in ("parameter", "sample"):
        np.testing.assert_allclose(DenseFisher(obj, theta, method=method) @ v, C @ v, atol=TIGHT)
        np.testing.assert_allclose(DenseFisher(obj, theta, method=method) @ V, C @ V, atol=TIGHT)


def test_chunked_matrix_assembly_equals_single_chunk(monkeypatch):
    model = MLP(3, 3, (4,), "tanh", "softmax")
    rng = np.random.default_rng(0)
    obj = Objective(model, rng.standard_normal((9, 3)), np.arange(9) % 3, alpha=0.3)
    theta = model.init_params(0)
    full = DenseFisher(obj, theta).to_dense()
    monkeypatch.setattr(dense_module, "_CHUNK_ELEMENTS", 3 * model.n_params * 2)
    chunked = DenseFisher(obj, theta).to_dense()
    np.testing.assert_allclose(chunked, full, atol=TIGHT)


ONE_OUTPUT_LINEAR = {
    "binary logistic": lambda: LogisticModel(4, 2),
    "binary logistic, no intercept": lambda: LogisticModel(4, 2, fit_intercept=False),
    "linear regression": lambda: MLP(4, 1, (), "tanh", "gaussian"),
}


@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
@pytest.mark.parametrize("row_block_bytes", [None, 3 * 5 * 8])
@pytest.mark.parametrize("name", sorted(ONE_OUTPUT_LINEAR))
def test_one_output_linear_fisher_matches_explicit_sum(
    monkeypatch, name, row_block_bytes, fisher_type
):
    """The one-syrk build of √w·X̄ (in row blocks of 3 rows when forced) against the sum
    over samples of Jₙᵀ (Σₘ uₘₙ uₘₙᵀ) Jₙ with finite-difference Jacobians, the factors u
    drawn with the same seed."""
    model = ONE_OUTPUT_LINEAR[name]()
    rng = np.random.default_rng(3)
    X = rng.standard_normal((10, 4))
    y = rng.integers(0, 2, 10) if model.head.name == "sigmoid" else rng.standard_normal(10)
    theta = rng.standard_normal(model.n_params)
    obj = Objective(model, X, y, alpha=ALPHA)
    if row_block_bytes is not None:
        monkeypatch.setattr(dense_module, "ROW_BLOCK_BYTES", row_block_bytes)
    C = _fisher(obj, theta, fisher_type).to_dense()
    U = output_factors(obj, theta, fisher_type, 3, MC_SEED)
    Lam = np.einsum("mni,mnj->nij", U, U)
    reference = dense_reference_fisher(model, theta, X, Lam)
    reference += np.diag(obj.l2 * obj.weight_mask)
    np.testing.assert_allclose(C, reference, rtol=RTOL, atol=ATOL)
    assert obj.counts.n_backprop == U.shape[0]


# ----------------------------------------------------------------------------- class blocks
def _class_block_reference(Xb, Lam):
    _, r = Xb.shape
    k = Lam.shape[1]
    return np.einsum("ni,nj,nab->iajb", Xb, Xb, Lam).reshape(r * k, r * k)


@pytest.mark.parametrize("chunk_elements", [None, 5])
def test_class_block_fisher_matches_einsum_reference(monkeypatch, chunk_elements):
    rng = np.random.default_rng(1)
    n, r, k = 7, 4, 3
    Xb = rng.standard_normal((n, r))
    B = rng.standard_normal((n, k, k))
    Lam = B @ B.transpose(0, 2, 1)
    if chunk_elements is not None:
        monkeypatch.setattr(dense_module, "_CHUNK_ELEMENTS", chunk_elements)
    np.testing.assert_allclose(
        class_block_fisher(Xb, Lam), _class_block_reference(Xb, Lam), rtol=1e-12, atol=TIGHT
    )


def test_class_block_fisher_is_used_consistently_for_multinomial_logistic():
    rng = np.random.default_rng(2)
    model = LogisticModel(3, 4)
    X = rng.standard_normal((10, 3))
    obj = Objective(model, X, np.arange(10) % 4)
    theta = rng.standard_normal(model.n_params)
    Xb = np.hstack([X, np.ones((10, 1))])
    Lam = exact_output_fisher(model, model.predict_outputs(theta, X))
    expected = _class_block_reference(Xb, Lam) / 10
    np.testing.assert_allclose(DenseFisher(obj, theta).to_dense(), expected, atol=TIGHT)


# ----------------------------------------------------------------------------- solves
@pytest.mark.parametrize("damping", [1e-2, 1.0])
@pytest.mark.parametrize("method", ["parameter", "sample"])
@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
def test_solve_matches_numpy_solve_of_damped_dense_matrix(case, fisher_type, method, damping):
    obj, theta = _objective(case, alpha=ALPHA)
    F = _fisher(obj, theta, fisher_type, method=method)
    A = _damped(_fisher(obj, theta, fisher_type, method="parameter").to_dense(), damping)
    v = random_vector(obj.n_params)
    V = random_vector(obj.n_params, seed=9, k=3)
    x = F.solve(v, damping)
    X = F.solve(V, damping)
    assert x.shape == v.shape
    assert X.shape == V.shape
    assert F.status == "ok"
    assert rel_err(x, np.linalg.solve(A, v)) < SOLVE_RTOL
    assert rel_err(X, np.linalg.solve(A, V)) < SOLVE_RTOL


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_auto_method_picks_sample_space_only_when_rows_are_fewer_and_damping_positive(
    case, damping
):
    obj, theta = _objective(case, alpha=0.0)
    F = DenseFisher(obj, theta)
    n_rows = obj.model.n_outputs * obj.n_samples
    assert F.n_rows == n_rows
    expected = "sample" if (n_rows < obj.n_params and damping > 0) else "parameter"
    assert F.solve_method(damping) == expected


def test_auto_method_exercises_both_branches():
    model = MLP(4, 3, (5,), "tanh", "softmax")
    rng = np.random.default_rng(3)
    theta = model.init_params(0)
    few = Objective(model, rng.standard_normal((2, 4)), np.array([0, 2]))
    many = Objective(model, rng.standard_normal((40, 4)), np.arange(40) % 3)
    assert DenseFisher(few, theta).solve_method(0.1) == "sample"
    assert DenseFisher(few, theta).solve_method(0.0) == "parameter"
    assert DenseFisher(many, theta).solve_method(0.1) == "parameter"
    assert DenseFisher(few, theta, method="parameter").solve_method(0.1) == "parameter"
    assert DenseFisher(many, theta, method="sample").solve_method(0.1) == "sample"


def test_sample_space_is_feasible_without_damping_when_l2_covers_every_parameter():
    # no intercepts and alpha > 0: E = l2·I > 0, so Woodbury needs no damping
    model = MLP(3, 3, (4,), "tanh", "softmax", fit_intercept=False)
    rng = np.random.default_rng(4)
    obj = Objective(model, rng.standard_normal((3, 3)), np.array([0, 1, 2]), alpha=0.5)
    theta = model.init_params(1)
    F = DenseFisher(obj, theta)
    assert F.solve_method(0.0) == "sample"
    v = random_vector(obj.n_params)
    x = DenseFisher(obj, theta, method="sample").solve(v, 0.0)
    assert rel_err(x, np.linalg.solve(F.to_dense(), v)) < SOLVE_RTOL


@pytest.mark.parametrize("alpha", [0.0, ALPHA])
def test_sample_method_with_zero_damping_and_intercepts_raises(alpha):
    case_ = next(c for c in MODEL_CASES if c.id == "mlp_tanh_softmax_1h")
    obj, theta = _objective(case_, alpha=alpha)
    F = DenseFisher(obj, theta, method="sample")
    with pytest.raises(ValueError, match="method='sample' needs a positive diagonal"):
        F.solve(random_vector(obj.n_params), 0.0)
    with pytest.raises(ValueError, match="method='sample'"):
        F.solve_method(0.0)


# ----------------------------------------------------------------------------- scaling
@pytest.mark.parametrize("method", ["parameter", "sample"])
def test_sum_reduction_is_n_times_mean_reduction(case, method):
    obj, theta = _objective(case, alpha=ALPHA)
    n = obj.n_samples
    mean = DenseFisher(obj, theta, method=method, reduction="mean")
    total = DenseFisher(obj, theta, method=method, reduction="sum")
    v = random_vector(obj.n_params)
    damping = 0.05
    np.testing.assert_allclose(total @ v, n * (mean @ v), rtol=1e-12, atol=TIGHT)
    np.testing.assert_allclose(total.to_dense(), n * mean.to_dense(), rtol=1e-12, atol=TIGHT)
    x_sum = total.solve(v, n * damping)
    x_mean = mean.solve(v, damping)
    assert rel_err(x_sum, x_mean / n) < SOLVE_RTOL


# ----------------------------------------------------------------------------- Monte Carlo
def test_mc_fisher_converges_to_exact_fisher(case):
    obj, theta = _objective(case)
    exact = DenseFisher(obj, theta, "exact").to_dense()
    errors = {
        k: rel_err(DenseFisher(obj, theta, "mc", mc_samples=k, random_state=0).to_dense(), exact)
        for k in (10, 10000, 20000)
    }
    assert errors[20000] < MC_RTOL, errors
    assert errors[10000] < errors[10], errors


def test_mc_output_factors_are_scaled_gradients_at_sampled_labels(case):
    # U[m, n] = ∇_z nll(zₙ, ỹₘₙ) / √k, with ỹ drawn exactly as output_factors draws them
    obj, theta = _objective(case)
    head, k = obj.model.head, 4
    z = obj.model.predict_outputs(theta, obj.X)
    Y_sampled = head.sample(z, np.random.default_rng(MC_SEED), k)
    expected = np.stack([head.grad(z, Y_sampled[m]) for m in range(k)]) / np.sqrt(k)
    U = output_factors(obj, theta, "mc", mc_samples=k, random_state=MC_SEED)
    assert U.shape == (k, obj.n_samples, obj.model.n_outputs)
    np.testing.assert_allclose(U, expected, rtol=1e-12, atol=TIGHT)


def test_mc_fisher_is_deterministic_for_a_fixed_random_state(case):
    obj, theta = _objective(case)
    a = DenseFisher(obj, theta, "mc", mc_samples=2, random_state=5).to_dense()
    b = DenseFisher(obj, theta, "mc", mc_samples=2, random_state=5).to_dense()
    c = DenseFisher(obj, theta, "mc", mc_samples=2, random_state=6).to_dense()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fisher_type_aliases_are_accepted(case):
    obj, theta = _objective(case)
    exact = DenseFisher(obj, theta, "exact").to_dense()
    for alias in ("true", "type-2"):
        np.testing.assert_array_equal(DenseFisher(obj, theta, alias).to_dense(), exact)


# ----------------------------------------------------------------------------- scipy interop
def test_aslinearoperator_works_with_scipy_cg_and_eigsh(case):
    obj, theta = _objective(case, alpha=ALPHA)
    damping = 0.1
    F = DenseFisher(obj, theta)
    A = _damped(F.to_dense(), damping)
    op = F.aslinearoperator(damping)
    assert op.shape == (obj.n_params, obj.n_params)
    v = random_vector(obj.n_params)
    np.testing.assert_allclose(op @ v, A @ v, atol=TIGHT)
    x, info = cg(op, v, rtol=1e-12, atol=0.0, maxiter=10 * obj.n_params)
    assert info == 0
    assert rel_err(x, np.linalg.solve(A, v)) < 1e-9
    top = eigsh(op, k=2, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), np.linalg.eigvalsh(A)[-2:], rtol=1e-9)


# ----------------------------------------------------------------------------- singular
def test_singular_multinomial_fisher_warns_and_returns_finite_solution():
    rng = np.random.default_rng(5)
    model = LogisticModel(3, 4)
    obj = Objective(model, rng.standard_normal((10, 3)), np.arange(10) % 4, alpha=0.0)
    theta = 0.3 * rng.standard_normal(model.n_params)
    F = DenseFisher(obj, theta)
    C = F.to_dense()
    # the softmax is invariant to adding the same vector to every class: a (d+1)-dim nullspace
    assert np.linalg.matrix_rank(C) == model.n_params - (model.n_features + 1)
    v = C @ random_vector(model.n_params)  # consistent right-hand side
    with pytest.warns(SingularCurvatureWarning):
        x = F.solve(v, 0.0)
    assert np.all(np.isfinite(x))
    assert F.status != "ok"
    assert F.status in ("jitter", "pinv")
    assert rel_err(C @ x, v) < 1e-6
    assert obj.counts.n_factorizations >= 1


# ----------------------------------------------------------------------------- validation
@pytest.fixture
def fisher():
    model = MLP(3, 2, (4,), "tanh", "gaussian")
    rng = np.random.default_rng(6)
    obj = Objective(model, rng.standard_normal((5, 3)), rng.standard_normal((5, 2)))
    return DenseFisher(obj, model.init_params(0))


def test_negative_damping_raises(fisher):
    with pytest.raises(ValueError, match="damping must be >= 0"):
        fisher.solve(np.ones(fisher.n_params), -1.0)
    with pytest.raises(ValueError, match="damping"):
        fisher.aslinearoperator(-1.0)


@pytest.mark.parametrize(
    "shape_fn",
    [lambda p: (p + 1,), lambda p: (p - 1, 2), lambda p: (2, p, 1), lambda p: ()],
    ids=["too_long", "wrong_rows", "three_dimensional", "scalar"],
)
def test_wrong_vector_shape_raises(fisher, shape_fn):
    v = np.ones(shape_fn(fisher.n_params))
    with pytest.raises(ValueError, match="Shape mismatch"):
        fisher.solve(v, 1.0)
    with pytest.raises(ValueError, match="Shape mismatch"):
        fisher @ v


def test_non_finite_vector_raises(fisher):
    v = np.ones(fisher.n_params)
    v[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fisher.solve(v, 1.0)


def test_unknown_fisher_type_raises(fisher):
    with pytest.raises(ValueError, match="Unknown fisher type 'hessian'"):
        DenseFisher(fisher.objective, fisher.theta, "hessian")


def test_unknown_method_raises(fisher):
    with pytest.raises(ValueError, match="Unknown method 'cholesky'"):
        DenseFisher(fisher.objective, fisher.theta, method="cholesky")


def test_unknown_reduction_raises(fisher):
    with pytest.raises(ValueError, match="Unknown reduction 'median'"):
        DenseFisher(fisher.objective, fisher.theta, reduction="median")


@pytest.mark.parametrize("mc_samples", [0, -2])
def test_non_positive_mc_samples_raise(fisher, mc_samples):
    with pytest.raises(ValueError, match="mc_samples"):
        DenseFisher(fisher.objective, fisher.theta, "mc", mc_samples=mc_samples)

"""MLP / LogisticModel passes and the Objective (loss, gradient, L2 convention, validation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from natgrad_core.models import MLP, LogisticModel, Objective
from tests.cases import MODEL_CASES, reference_forward
from tests.conftest import (
    ATOL,
    RTOL,
    TIGHT,
    fd_gradient,
    fd_jacobian,
    layer_slices,
    random_vector,
)

ALPHA = 0.7
FLOAT32_RTOL = 1e-4
FLOAT32_ATOL = 1e-5


def _clone(model, dtype):
    if isinstance(model, LogisticModel):
        return LogisticModel(model.n_features, model.n_targets, model.fit_intercept, dtype=dtype)
    return MLP(
        model.n_features,
        model.n_targets,
        model.hidden_layer_sizes,
        model.activation,
        model.head,
        model.fit_intercept,
        dtype=dtype,
    )


def _expected_mask(model) -> np.ndarray:
    """1 on weights, 0 on intercept rows, from the documented layout only."""
    widths = [model.n_features, *model.hidden_layer_sizes, model.n_outputs]
    parts = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        block = np.ones((fan_in + int(model.fit_intercept), fan_out))
        if model.fit_intercept:
            block[-1] = 0.0
        parts.append(block.ravel())
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- passes
def test_forward_matches_independent_reference_forward(case):
    model, X, _, theta = case(0)
    _, z_ref = reference_forward(model, theta, X)
    z = model.predict_outputs(theta, X)
    assert z.shape == (X.shape[0], model.n_outputs)
    np.testing.assert_allclose(z, z_ref, rtol=TIGHT, atol=TIGHT)


def test_n_params_matches_layer_widths(case):
    model, *_ = case(0)
    widths = [model.n_features, *model.hidden_layer_sizes, model.n_outputs]
    b = int(model.fit_intercept)
    assert model.n_params == sum((i + b) * o for i, o in zip(widths[:-1], widths[1:]))


def test_jacobian_matches_finite_differences(case):
    model, X, _, theta = case(0)
    J = model.jacobian(theta, X)
    assert J.shape == (X.shape[0], model.n_outputs, model.n_params)
    np.testing.assert_allclose(J, fd_jacobian(model, theta, X), rtol=RTOL, atol=ATOL)


def test_jvp_matches_fd_jacobian_times_vector(case):
    model, X, _, theta = case(0)
    v = random_vector(model.n_params)
    jv = model.jvp(theta, model.forward(theta, X), v)
    expected = np.einsum("nkp,p->nk", fd_jacobian(model, theta, X), v)
    np.testing.assert_allclose(jv, expected, rtol=RTOL, atol=ATOL)


def test_vjp_matches_fd_jacobian_transpose_times_output_vectors(case):
    model, X, _, theta = case(0)
    U = random_vector(X.shape[0] * model.n_outputs).reshape(X.shape[0], model.n_outputs)
    vj = model.vjp(theta, model.forward(theta, X), U)
    expected = np.einsum("nkp,nk->p", fd_jacobian(model, theta, X), U)
    assert vj.shape == (model.n_params,)
    np.testing.assert_allclose(vj, expected, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- objective
def test_loss_and_grad_matches_finite_differences_of_loss_with_l2(case):
    model, X, y, theta = case(0)
    obj = Objective(model, X, y, alpha=ALPHA)
    loss, grad = obj.loss_and_grad(theta)
    assert loss == pytest.approx(obj.loss(theta), rel=1e-14)
    fd = fd_gradient(lambda t: obj.loss(t, count=False), theta)
    np.testing.assert_allclose(grad, fd, rtol=RTOL, atol=ATOL)


def test_l2_penalty_gradient_hits_weights_but_not_intercepts(case):
    model, X, y, theta = case(0)
    mask = model.weight_mask()
    np.testing.assert_array_equal(mask, _expected_mask(model))
    _, g0 = Objective(model, X, y, alpha=0.0).loss_and_grad(theta)
    _, ga = Objective(model, X, y, alpha=ALPHA).loss_and_grad(theta)
    diff = ga - g0
    np.testing.assert_allclose(diff, ALPHA / X.shape[0] * mask * theta, rtol=1e-12, atol=TIGHT)
    np.testing.assert_array_equal(diff[mask == 0], 0.0)
    assert np.all(np.abs(diff[mask == 1]) > 0)
    if model.fit_intercept:
        assert np.count_nonzero(mask == 0) == sum(lay.fan_out for lay in model.layers)
    else:
        np.testing.assert_array_equal(mask, 1.0)


def test_per_example_grads_mean_plus_penalty_equals_gradient(case):
    model, X, y, theta = case(0)
    obj = Objective(model, X, y, alpha=ALPHA)
    pe = obj.per_example_grads(theta)
    assert pe.shape == (X.shape[0], model.n_params)
    _, grad = obj.loss_and_grad(theta)
    penalty_grad = ALPHA / X.shape[0] * model.weight_mask() * theta
    np.testing.assert_allclose(pe.mean(axis=0) + penalty_grad, grad, rtol=1e-12, atol=TIGHT)


def test_per_example_grads_are_jacobian_transpose_times_output_gradient(case):
    model, X, y, theta = case(0)
    obj = Objective(model, X, y)
    z = model.predict_outputs(theta, X)
    expected = np.einsum("nkp,nk->np", fd_jacobian(model, theta, X), model.head.grad(z, obj.Y))
    np.testing.assert_allclose(obj.per_example_grads(theta), expected, rtol=RTOL, atol=ATOL)


def test_pack_unpack_roundtrip(case):
    model, _, _, theta = case(0)
    blocks = model.unpack(theta)
    assert [b.shape for b in blocks] == [(lay.rows, lay.fan_out) for lay in model.layers]
    np.testing.assert_array_equal(model.pack(blocks), theta)
    for block, sl in zip(blocks, layer_slices(model)):
        np.testing.assert_array_equal(block.ravel(), theta[sl])
    assert sum(b.size for b in blocks) == model.n_params


def test_init_params_is_seeded_with_zero_intercepts(case):
    model, *_ = case(0)
    a, b = model.init_params(3), model.init_params(3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (model.n_params,)
    np.testing.assert_array_equal(a[model.weight_mask() == 0], 0.0)
    if isinstance(model, LogisticModel):
        np.testing.assert_array_equal(a, 0.0)
    else:
        assert not np.array_equal(a, model.init_params(4))


def test_float32_model_matches_float64_and_keeps_dtype(case):
    model64, X, y, theta = case(0)
    model32 = _clone(model64, np.float32)
    obj64 = Objective(model64, X, y, alpha=ALPHA)
    obj32 = Objective(model32, X.astype(np.float32), y, alpha=ALPHA)
    theta32 = theta.astype(np.float32)
    loss32, grad32 = obj32.loss_and_grad(theta32)
    loss64, grad64 = obj64.loss_and_grad(theta)
    assert obj32.X.dtype == np.float32
    assert obj32.Y.dtype == np.float32
    assert model32.predict_outputs(theta32, obj32.X).dtype == np.float32
    assert grad32.dtype == np.float32
    assert obj32.per_example_grads(theta32).dtype == np.float32
    assert model32.init_params(0).dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=FLOAT32_RTOL)
    np.testing.assert_allclose(grad32, grad64, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL)


# ----------------------------------------------------------------------------- L2 convention
@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_objective_equals_mean_nll_plus_alpha_weight_norm_over_2n(n_classes):
    rng = np.random.default_rng(0)
    n, d, alpha = 11, 4, 2.5
    X = rng.standard_normal((n, d))
    y = np.arange(n) % n_classes
    model = LogisticModel(d, n_classes)
    theta = rng.standard_normal(model.n_params)
    k = 1 if n_classes == 2 else n_classes
    Wb = theta.reshape(d + 1, k)
    W, b = Wb[:d], Wb[d]
    z = X @ W + b
    if n_classes == 2:
        nll = np.logaddexp(0.0, z[:, 0]) - y * z[:, 0]
    else:
        nll = logsumexp(z, axis=1) - z[np.arange(n), y]
    expected = nll.mean() + alpha * np.sum(W**2) / (2 * n)
    obj = Objective(model, X, y, alpha=alpha)
    assert obj.loss(theta) == pytest.approx(expected, rel=1e-13)
    assert obj.l2 == pytest.approx(alpha / n)


def test_batch_loss_uses_full_training_set_size_for_the_penalty():
    rng = np.random.default_rng(1)
    n, d, alpha = 12, 3, 1.5
    X = rng.standard_normal((n, d))
    y = np.arange(n) % 3
    model = LogisticModel(d, 3)
    theta = rng.standard_normal(model.n_params)
    obj = Objective(model, X, y, alpha=alpha)
    idx = np.array([0, 3, 4, 9])
    batch = obj.batch(idx)
    assert batch.n_samples == idx.size
    assert batch.n_total == n
    assert batch.l2 == pytest.approx(alpha / n)
    W = theta.reshape(d + 1, 3)[:d]
    z = model.predict_outputs(theta, X[idx])
    nll = logsumexp(z, axis=1) - z[np.arange(idx.size), y[idx]]
    expected = nll.mean() + alpha * np.sum(W**2) / (2 * n)
    assert batch.loss(theta) == pytest.approx(expected, rel=1e-13)
    _, grad = batch.loss_and_grad(theta)
    fd = fd_gradient(lambda t: batch.loss(t, count=False), theta)
    np.testing.assert_allclose(grad, fd, rtol=RTOL, atol=ATOL)
    # the batch shares the parent's oracle counts
    assert batch.counts is obj.counts
    assert obj.counts.n_grad == 1


def test_oracle_counts_increment_only_when_counted():
    rng = np.random.default_rng(2)
    model = LogisticModel(3, 2)
    obj = Objective(model, rng.standard_normal((6, 3)), np.array([0, 1] * 3))
    theta = rng.standard_normal(model.n_params)
    obj.loss(theta)
    obj.loss(theta)
    obj.loss_and_grad(theta)
    obj.loss(theta, count=False)
    obj.loss_and_grad(theta, count=False)
    assert obj.counts.n_loss == 2
    assert obj.counts.n_grad == 1
    assert obj.counts.as_dict()["n_loss"] == 2


def test_forward_cache_is_invalidated_when_theta_changes_in_place():
    rng = np.random.default_rng(3)
    model = MLP(3, 2, (4,), "tanh", "gaussian")
    X, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    obj = Objective(model, X, y)
    t1, t2 = rng.standard_normal(model.n_params), rng.standard_normal(model.n_params)
    buf = t1.copy()
    obj.loss(buf)
    buf[:] = t2
    assert obj.loss(buf) == pytest.approx(Objective(model, X, y).loss(t2), rel=1e-14)
    assert obj.loss(t1) == pytest.approx(Objective(model, X, y).loss(t1), rel=1e-14)


# ----------------------------------------------------------------------------- validation
@pytest.fixture
def small_problem():
    rng = np.random.default_rng(4)
    model = MLP(3, 3, (4,), "tanh", "softmax")
    X = rng.standard_normal((6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    return model, X, y, model.init_params(0)


def test_objective_rejects_X_with_wrong_number_of_features(small_problem):
    model, X, y, _ = small_problem
    with pytest.raises(ValueError, match=r"3 features, got 2"):
        Objective(model, X[:, :2], y)


def test_objective_rejects_nan_in_X(small_problem):
    model, X, y, _ = small_problem
    X = X.copy()
    X[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains 1 NaN"):
        Objective(model, X, y)


def test_objective_rejects_one_dimensional_X(small_problem):
    model, X, y, _ = small_problem
    with pytest.raises(ValueError, match="2-dimensional"):
        Objective(model, X[:, 0], y)


def test_objective_rejects_inf_in_y():
    model = MLP(3, 2, (4,), "tanh", "gaussian")
    X = np.zeros((4, 3))
    y = np.zeros((4, 2))
    y[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"y contains 1 NaN or infinite"):
        Objective(model, X, y)


def test_objective_rejects_y_length_mismatch(small_problem):
    model, X, y, _ = small_problem
    with pytest.raises(ValueError, match=r"X has 6 samples but y has 5"):
        Objective(model, X, y[:5])


def test_objective_rejects_empty_data(small_problem):
    model, X, y, _ = small_problem
    with pytest.raises(ValueError, match="at least one sample"):
        Objective(model, X[:0], y[:0])


def test_objective_rejects_labels_outside_the_classes(small_problem):
    model, X, y, _ = small_problem
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        Objective(model, X, np.where(y == 2, 3, y))


def test_objective_rejects_negative_alpha(small_problem):
    model, X, y, _ = small_problem
    with pytest.raises(ValueError, match="alpha"):
        Objective(model, X, y, alpha=-1.0)


def test_objective_rejects_non_model():
    with pytest.raises(TypeError, match="MLP"):
        Objective("not a model", np.zeros((2, 2)), np.zeros(2))


@pytest.mark.parametrize("method", ["loss", "loss_and_grad", "per_example_grads"])
def test_wrong_theta_shape_raises_shape_mismatch(small_problem, method):
    model, X, y, theta = small_problem
    obj = Objective(model, X, y)
    match = rf"Shape mismatch: expected parameters of shape \({model.n_params},\)"
    with pytest.raises(ValueError, match=match):
        getattr(obj, method)(theta[:-1])


def test_unpack_rejects_two_dimensional_theta(small_problem):
    model, _, _, theta = small_problem
    with pytest.raises(ValueError, match="Shape mismatch"):
        model.unpack(theta[None, :])


def test_unknown_activation_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"Unknown activation 'swish'.*relu"):
        MLP(3, 2, (4,), activation="swish")


def test_unknown_head_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"Unknown head 'hinge'"):
        MLP(3, 2, (4,), head="hinge")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_features": 0, "n_targets": 2}, "n_features"),
        ({"n_features": 3, "n_targets": 2.0}, "n_targets"),
        ({"n_features": 3, "n_targets": 2, "hidden_layer_sizes": (4, 0)}, "hidden_layer_sizes"),
        ({"n_features": 3, "n_targets": 1, "head": "softmax"}, "n_targets >= 2"),
        ({"n_features": 3, "n_targets": 2, "dtype": np.int64}, "floating"),
    ],
    ids=["zero_features", "float_targets", "zero_width", "softmax_one_class", "int_dtype"],
)
def test_mlp_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


@pytest.mark.parametrize("n_classes", [1, True, 2.0])
def test_logistic_model_rejects_bad_n_classes(n_classes):
    with pytest.raises(ValueError, match="n_classes"):
        LogisticModel(3, n_classes)


def test_all_model_cases_have_unique_ids():
    ids = [c.id for c in MODEL_CASES]
    assert len(ids) == len(set(ids))

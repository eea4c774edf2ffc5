"""Output distributions: derivatives, Fisher identities, sampling, KL and label encoding."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss

from natgrad_core.models import Bernoulli, Categorical, Gaussian, get_head
from natgrad_core.models.losses import OutputDistribution
from tests.conftest import ATOL, FD2_ATOL, FD2_STEP, FD_EPS, MC_ATOL, RTOL, TIGHT

N_SAMPLES = 6
N_DRAWS = 20000


class HeadCase(NamedTuple):
    id: str
    make: Callable[[], OutputDistribution]
    n_targets: int
    n_outputs: int


HEAD_CASES = [
    HeadCase("softmax", Categorical, 4, 4),
    HeadCase("sigmoid_binary", Bernoulli, 2, 1),
    HeadCase("sigmoid_multilabel", Bernoulli, 3, 3),
    HeadCase("gaussian", Gaussian, 2, 2),
    HeadCase("gaussian_variance_2.5", lambda: Gaussian(2.5), 2, 2),
]


@pytest.fixture(params=HEAD_CASES, ids=[h.id for h in HEAD_CASES])
def head_case(request):
    return request.param


def _logits(hc: HeadCase, seed: int = 0) -> np.ndarray:
    return 1.5 * np.random.default_rng(seed).standard_normal((N_SAMPLES, hc.n_outputs))


def _targets(hc: HeadCase, head, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if head.name == "softmax":
        y = rng.integers(0, hc.n_targets, N_SAMPLES)
    elif head.name == "sigmoid":
        y = rng.integers(0, 2, (N_SAMPLES, hc.n_outputs))
    else:
        y = rng.standard_normal((N_SAMPLES, hc.n_targets))
    return head.encode(y, hc.n_targets)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _label_distribution(head, z):
    """All labels with their probabilities, [(prob (n,), encoded Y (n, K))], by enumeration
    (softmax, sigmoid) or by an exact Gauss–Hermite rule (Gaussian; the integrands are
    polynomials of degree ≤ 2 in y)."""
    n, k = z.shape
    if head.name == "softmax":
        p = _softmax(z)
        return [(p[:, c], np.tile(np.eye(k)[c], (n, 1))) for c in range(k)]
    if head.name == "sigmoid":
        p = _sigmoid(z)
        out = []
        for bits in itertools.product((0.0, 1.0), repeat=k):
            Y = np.tile(np.array(bits), (n, 1))
            prob = np.prod(np.where(Y == 1.0, p, 1.0 - p), axis=1)
            out.append((prob, Y))
        return out
    nodes, weights = hermegauss(4)
    weights = weights / np.sqrt(2.0 * np.pi)
    sd = np.sqrt(head.variance)
    out = []
    for idx in itertools.product(range(nodes.size), repeat=k):
        prob = np.full(n, np.prod(weights[list(idx)]))
        out.append((prob, z + sd * nodes[list(idx)]))
    return out


# ----------------------------------------------------------------------------- derivatives
def test_grad_matches_finite_differences_of_nll(head_case):
    head = head_case.make()
    z, Y = _logits(head_case), _targets(head_case, head)
    fd = np.empty_like(z)
    for k in range(z.shape[1]):
        step = np.zeros_like(z)
        step[:, k] = FD_EPS
        fd[:, k] = (head.nll(z + step, Y) - head.nll(z - step, Y)) / (2 * FD_EPS)
    grad = head.grad(z, Y)
    assert grad.shape == z.shape
    np.testing.assert_allclose(grad, fd, rtol=RTOL, atol=ATOL)


def test_lam_equals_finite_difference_hessian_of_nll(head_case):
    # canonical links: the output-space Fisher equals the Hessian of the nll in z
    head = head_case.make()
    z, Y = _logits(head_case), _targets(head_case, head)
    n, k = z.shape
    h = FD2_STEP
    H = np.empty((n, k, k))
    eye = np.eye(k) * h
    for i in range(k):
        for j in range(k):
            H[:, i, j] = (
                head.nll(z + eye[i] + eye[j], Y)
                - head.nll(z + eye[i] - eye[j], Y)
                - head.nll(z - eye[i] + eye[j], Y)
                + head.nll(z - eye[i] - eye[j], Y)
            ) / (4 * h * h)
    lam = head.lam(z)
    assert lam.shape == (n, k, k)
    np.testing.assert_allclose(lam, H, rtol=RTOL, atol=FD2_ATOL)


def test_lam_equals_expected_outer_product_of_score_over_labels(head_case):
    head = head_case.make()
    z = _logits(head_case)
    dist = _label_distribution(head, z)
    total = sum(prob for prob, _ in dist)
    np.testing.assert_allclose(total, 1.0, atol=TIGHT)
    mean_score = sum(prob[:, None] * head.grad(z, Y) for prob, Y in dist)
    np.testing.assert_allclose(mean_score, 0.0, atol=TIGHT)
    expected = sum(
        prob[:, None, None] * np.einsum("ni,nj->nij", head.grad(z, Y), head.grad(z, Y))
        for prob, Y in dist
    )
    np.testing.assert_allclose(head.lam(z), expected, rtol=TIGHT, atol=TIGHT)


def test_sqrt_lam_times_its_transpose_is_lam(head_case):
    head = head_case.make()
    z = _logits(head_case)
    M = head.sqrt_lam(z)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", M, M), head.lam(z), atol=TIGHT)


def test_lam_mv_equals_lam_times_vector(head_case):
    head = head_case.make()
    z = _logits(head_case)
    U = np.random.default_rng(5).standard_normal(z.shape)
    expected = np.einsum("nij,nj->ni", head.lam(z), U)
    np.testing.assert_allclose(head.lam_mv(z, U), expected, atol=TIGHT)


def test_lam_is_symmetric_positive_semidefinite(head_case):
    head = head_case.make()
    lam = head.lam(_logits(head_case))
    np.testing.assert_allclose(lam, lam.transpose(0, 2, 1), atol=TIGHT)
    assert np.linalg.eigvalsh(lam).min() > -TIGHT


def test_predict_matches_textbook_mean(head_case):
    head = head_case.make()
    z = _logits(head_case)
    expected = {"softmax": _softmax, "sigmoid": _sigmoid, "gaussian": lambda t: t}[head.name](z)
    np.testing.assert_allclose(head.predict(z), expected, atol=TIGHT)


def test_n_outputs_per_head():
    assert Bernoulli().n_outputs(2) == 1
    assert Bernoulli().n_outputs(3) == 3
    assert Categorical().n_outputs(4) == 4
    assert Gaussian().n_outputs(2) == 2


# ----------------------------------------------------------------------------- sampling
def test_sample_frequencies_approach_predicted_mean(head_case):
    head = head_case.make()
    z = _logits(head_case)
    draws = head.sample(z, np.random.default_rng(7), N_DRAWS)
    assert draws.shape == (N_DRAWS, *z.shape)
    np.testing.assert_allclose(draws.mean(axis=0), head.predict(z), atol=MC_ATOL)
    if head.name == "gaussian":
        np.testing.assert_allclose(draws.var(axis=0), head.variance, rtol=0.05)


def test_samples_are_valid_encoded_labels(head_case):
    head = head_case.make()
    z = _logits(head_case)
    draws = head.sample(z, np.random.default_rng(8), 50)
    if head.name == "softmax":
        assert set(np.unique(draws)) <= {0.0, 1.0}
        np.testing.assert_array_equal(draws.sum(axis=2), 1.0)
    elif head.name == "sigmoid":
        assert set(np.unique(draws)) <= {0.0, 1.0}
    else:
        assert np.all(np.isfinite(draws))


def test_sample_is_reproducible_for_a_seed(head_case):
    head = head_case.make()
    z = _logits(head_case)
    a = head.sample(z, np.random.default_rng(11), 5)
    b = head.sample(z, np.random.default_rng(11), 5)
    c = head.sample(z, np.random.default_rng(12), 5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_categorical_never_samples_a_zero_probability_class():
    z = np.array([[0.0, -1e4, 0.0], [-1e4, 5.0, -1e4]])
    draws = Categorical().sample(z, np.random.default_rng(0), 2000)
    assert draws[:, 0, 1].sum() == 0
    np.testing.assert_array_equal(draws[:, 1, 1], 1.0)


# ----------------------------------------------------------------------------- KL
def _kl_reference(head, zp, zq):
    if head.name == "softmax":
        p, q = _softmax(zp), _softmax(zq)
        return np.sum(p * np.log(p / q), axis=1)
    if head.name == "sigmoid":
        p, q = _sigmoid(zp), _sigmoid(zq)
        return np.sum(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)), axis=1)
    return 0.5 * np.sum((zp - zq) ** 2, axis=1) / head.variance


def test_kl_matches_direct_formula(head_case):
    head = head_case.make()
    zp, zq = _logits(head_case, 0), _logits(head_case, 1)
    kl = head.kl(zp, zq)
    assert kl.shape == (N_SAMPLES,)
    np.testing.assert_allclose(kl, _kl_reference(head, zp, zq), rtol=1e-12, atol=TIGHT)
    assert np.all(kl > 0)


def test_kl_of_a_distribution_with_itself_is_zero(head_case):
    head = head_case.make()
    z = _logits(head_case)
    np.testing.assert_allclose(head.kl(z, z), 0.0, atol=TIGHT)


def test_kl_is_finite_for_saturated_logits():
    zp = np.array([[800.0, 0.0, -800.0]])
    zq = np.array([[0.0, 0.0, 0.0]])
    kl = Categorical().kl(zp, zq)
    np.testing.assert_allclose(kl, [np.log(3.0)], atol=1e-9)
    kl_b = Bernoulli().kl(np.array([[40.0]]), np.array([[0.0]]))
    np.testing.assert_allclose(kl_b, [np.log(2.0)], atol=1e-9)


def test_nll_and_grad_are_stable_for_large_logits():
    z = np.array([[1000.0, 0.0]])
    Y = Categorical().encode(np.array([1]), 2)
    np.testing.assert_allclose(Categorical().nll(z, Y), [1000.0])
    np.testing.assert_allclose(Categorical().grad(z, Y), [[1.0, -1.0]])
    zb = np.array([[800.0], [-800.0]])
    Yb = np.array([[0.0], [1.0]])
    np.testing.assert_allclose(Bernoulli().nll(zb, Yb), [800.0, 800.0])
    np.testing.assert_allclose(Bernoulli().grad(zb, Yb), [[1.0], [-1.0]])


# ----------------------------------------------------------------------------- encoding
def test_softmax_encode_gives_one_hot_rows():
    Y = Categorical().encode(np.array([2, 0, 3]), 4)
    np.testing.assert_array_equal(Y, np.eye(4)[[2, 0, 3]])
    np.testing.assert_array_equal(Categorical().encode(np.array([2.0, 0.0, 3.0]), 4), Y)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([0, 1, 4]), r"\[0, 4\)"),
        (np.array([0, -1, 2]), r"\[0, 4\)"),
        (np.array([0.0, 1.5, 2.0]), "integer"),
        (np.array([[0, 1], [2, 3]]), r"shape \(n_samples,\)"),
        (np.array(["a", "b"]), "integer"),
    ],
    ids=["label_too_large", "negative_label", "non_integer_float", "two_dimensional", "strings"],
)
def test_softmax_encode_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        Categorical().encode(labels, 4)


@pytest.mark.parametrize(
    ("labels", "n_targets", "match"),
    [
        (np.array([0, 1, 3]), 2, r"\{0, 1\}"),
        (np.array([0, 1, -1]), 2, r"\{0, 1\}"),
        (np.array([0.5, 1.0]), 2, r"\{0, 1\}"),
        (np.zeros((3, 2)), 2, r"\(n_samples, 1\)"),
        (np.zeros(3), 3, r"\(n_samples, 3\)"),
    ],
    ids=["label_3", "label_minus_1", "fraction", "binary_two_columns", "multilabel_one_column"],
)
def test_sigmoid_encode_rejects_bad_labels(labels, n_targets, match):
    with pytest.raises(ValueError, match=match):
        Bernoulli().encode(labels, n_targets)


def test_sigmoid_encode_accepts_column_and_flat_binary_labels():
    flat = Bernoulli().encode(np.array([0, 1, 1]), 2)
    col = Bernoulli().encode(np.array([[0], [1], [1]]), 2)
    np.testing.assert_array_equal(flat, [[0.0], [1.0], [1.0]])
    np.testing.assert_array_equal(col, flat)


def test_gaussian_encode_rejects_wrong_number_of_target_columns():
    with pytest.raises(ValueError, match=r"\(n_samples, 2\)"):
        Gaussian().encode(np.zeros((4, 3)), 2)
    np.testing.assert_array_equal(Gaussian().encode(np.arange(3.0), 1), [[0.0], [1.0], [2.0]])


@pytest.mark.parametrize("variance", [0.0, -1.0, np.inf, np.nan])
def test_gaussian_rejects_non_positive_or_non_finite_variance(variance):
    with pytest.raises(ValueError, match="variance"):
        Gaussian(variance)


# ----------------------------------------------------------------------------- get_head
def test_get_head_unknown_name_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="poisson"):
        get_head("poisson")


def test_get_head_rejects_non_string():
    with pytest.raises(TypeError, match=r"string.*int"):
        get_head(3)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("softmax", Categorical),
        ("sigmoid", Bernoulli),
        ("logistic", Bernoulli),
        ("gaussian", Gaussian),
        ("squared_error", Gaussian),
    ],
)
def test_get_head_resolves_names_and_aliases(name, cls):
    assert type(get_head(name)) is cls


def test_get_head_passes_instances_through():
    head = Gaussian(3.0)
    assert get_head(head) is head


# ----------------------------------------------------------------------------- fused loss
def _textbook_nll_and_grad(head, z, Y):
    """Per-sample nll and ∂nll/∂z from the textbook formulas (independent of the heads)."""
    if head.name == "softmax":
        p = _softmax(z)
        return -np.log(np.sum(p * Y, axis=1)), p - Y
    if head.name == "sigmoid":
        p = _sigmoid(z)
        return -np.sum(Y * np.log(p) + (1.0 - Y) * np.log1p(-p), axis=1), p - Y
    return np.sum((z - Y) ** 2, axis=1) / (2.0 * head.variance), (z - Y) / head.variance


@pytest.mark.parametrize("order", ["C", "F"])
def test_nll_and_grad_match_textbook_formulas_and_leave_z_alone(head_case, order):
    head = head_case.make()
    z = np.asarray(_logits(head_case), order=order)
    z_before = z.copy()
    Y = _targets(head_case, head)
    nll_ref, grad_ref = _textbook_nll_and_grad(head, z, Y)
    nll, G = head.nll_and_grad(z, Y, 0.25)
    np.testing.assert_allclose(nll, nll_ref, rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(G, 0.25 * grad_ref, rtol=TIGHT, atol=TIGHT)
    # the fused nll is nll()'s to the last bit: losses from both compare exactly
    np.testing.assert_array_equal(nll, head.nll(z, Y))
    np.testing.assert_array_equal(z, z_before)


def test_fused_nll_and_grad_are_stable_for_large_logits():
    z = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    Y = Categorical().encode(np.array([1, 0]), 2)
    nll, G = Categorical().nll_and_grad(z, Y)
    np.testing.assert_allclose(nll, [1000.0, 0.0], atol=TIGHT)
    np.testing.assert_allclose(G, [[1.0, -1.0], [0.0, 0.0]], atol=TIGHT)
    zb = np.array([[800.0], [-800.0]])
    Yb = np.array([[0.0], [1.0]])
    nll, G = Bernoulli().nll_and_grad(zb, Yb, 0.5)
    np.testing.assert_allclose(nll, [800.0, 800.0])
    np.testing.assert_allclose(G, [[0.5], [-0.5]], atol=TIGHT)

"""The copy-free dense kernels: values against references built another way (einsum sums,
explicit per-sample products), and the copies they must not make, counted in bytes.

Copies are measured with ``tracemalloc`` (numpy reports its buffers to it): the peak of
new allocations while a kernel runs, in units of the arrays a copy would duplicate. A
bound of "less than one copy" fails on any implementation that copies its input.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from natgrad_core.curvature import (
    KFAC,
    DenseFisher,
    ImplicitFisher,
    factors_from_statistics,
    kfac_factors,
    softmax_class_block_fisher,
)
from natgrad_core.curvature._linalg import add_to_diagonal, symmetrize_upper, syrk_t
from natgrad_core.curvature.base import layer_statistics
from natgrad_core.models import MLP, LogisticModel, Objective
from natgrad_core.optim import make_optimizer, minimize
from tests.conftest import ATOL, RTOL

FLOAT64 = 8


def _peak_bytes(func):
    """(result, peak bytes newly allocated while ``func`` ran)."""
    tracemalloc.start()
    try:
        result = func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def _tall(layout, m=20_000, n=8, seed=0):
    a = np.random.default_rng(seed).standard_normal((m, 2 * n))
    return {
        "C": np.ascontiguousarray(a[:, :n]),
        "F": np.asfortranarray(a[:, :n]),
    }[layout]


# ----------------------------------------------------------------------------- syrk
@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_syrk_never_copies_a_contiguous_input(layout, accumulate):
    a = _tall(layout)
    reference = np.einsum("mi,mj->ij", a, a)
    out = np.asfortranarray(np.eye(a.shape[1])) if accumulate else None
    c, peak = _peak_bytes(lambda: syrk_t(a, out=out, alpha=0.5))
    expected = 0.5 * reference + (np.eye(a.shape[1]) if accumulate else 0.0)
    np.testing.assert_allclose(c, expected, rtol=1e-12, atol=1e-10)
    assert peak < a.nbytes / 4  # a copy of ``a`` would be a.nbytes
    if accumulate:
        assert np.shares_memory(c, out)  # updated in place


def test_syrk_of_a_strided_view_is_still_right():
    a = np.random.default_rng(1).standard_normal((40, 12))[::3, ::2]
    np.testing.assert_allclose(
        syrk_t(a, out=np.zeros((6, 6), order="F")), np.einsum("mi,mj->ij", a, a), rtol=1e-12
    )


def test_syrk_accumulates_the_upper_triangle_and_symmetrizes_once():
    a, b = _tall("C", 50, 300, seed=2), _tall("C", 70, 300, seed=3)
    out = np.zeros((300, 300), order="F")
    syrk_t(a, out=out, symmetrize=False)
    syrk_t(b, out=out, symmetrize=False)
    full = symmetrize_upper(out)
    reference = np.einsum("mi,mj->ij", a, a) + np.einsum("mi,mj->ij", b, b)
    np.testing.assert_allclose(full, reference, rtol=1e-12, atol=1e-10)
    assert np.array_equal(full, full.T)


@pytest.mark.parametrize(
    ("out", "what"),
    [
        (np.zeros((4, 4)), "C-ordered"),
        (np.zeros((3, 3), order="F"), "(3, 3)"),
        (np.zeros((4, 4), dtype=np.float32, order="F"), "float32"),
    ],
)
def test_syrk_rejects_an_out_it_cannot_update_in_place(out, what):
    with pytest.raises(ValueError, match="expected out as an F-ordered float64") as info:
        syrk_t(np.ones((5, 4)), out=out)
    assert what in str(info.value)


# ----------------------------------------------------------------------------- dense Fisher
def _binary(n=30_000, d=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    model = LogisticModel(d, 2)
    theta = 0.3 * rng.standard_normal(model.n_params)
    return Objective(model, X, rng.integers(0, 2, n), alpha=0.5), theta


def test_binary_fisher_is_one_weighted_syrk_of_the_augmented_inputs():
    obj, theta = _binary(n=2_000)
    Xb = np.hstack([obj.X, np.ones((obj.n_samples, 1))])
    p = 1.0 / (1.0 + np.exp(-(Xb @ theta)))
    w = p * (1.0 - p)
    reference = np.einsum("n,ni,nj->ij", w, Xb, Xb) / obj.n_samples
    reference += np.diag(obj.l2 * obj.weight_mask)
    np.testing.assert_allclose(DenseFisher(obj, theta).to_dense(), reference, rtol=RTOL, atol=ATOL)


def _mlp(n=200, seed=0):
    rng = np.random.default_rng(seed)
    model = MLP(6, 3, (16, 12))
    X, y = rng.standard_normal((n, 6)), rng.integers(0, 3, n)
    return Objective(model, X, y, alpha=0.5), model.init_params(seed)


def _dense_build_bytes(obj, theta):
    """Bytes the parameter-space build may hold beyond its inputs: the (P, P) result and
    one buffer of per-example gradient rows (at most the whole S)."""
    op = DenseFisher(obj, theta, method="parameter")
    _ = op.layer_grads  # the backward pass is not what is measured
    n_rows = op.U.shape[0] * obj.n_samples
    budget = FLOAT64 * (obj.n_params**2 + n_rows * obj.n_params)
    return op, budget


@pytest.mark.parametrize("problem", [_binary, _mlp], ids=["binary-logistic", "mlp"])
def test_dense_fisher_build_makes_no_copy_of_the_gradient_rows_or_the_matrix(problem):
    obj, theta = problem()
    op, budget = _dense_build_bytes(obj, theta)
    F, peak = _peak_bytes(op.matrix)
    # the old build also held a concatenated copy of S, its F-ordered copy and three
    # (P, P) temporaries of the symmetrization: far above the budget
    assert peak < 1.2 * budget
    assert np.array_equal(F, F.T)


SOFTMAX_CASES = [
    # (n_samples, n_rows, n_classes, logit scale): scale 30 puts p_c within 1e-12 of 1
    (50, 4, 3, 1.0),
    (300, 7, 5, 30.0),
    (9, 3, 2, 0.1),
]


@pytest.mark.parametrize(("n", "r", "k", "scale"), SOFTMAX_CASES)
def test_softmax_class_blocks_match_the_kronecker_sum_of_lambda(n, r, k, scale):
    rng = np.random.default_rng(n)
    Xb = rng.standard_normal((n, r))
    z = scale * rng.standard_normal((n, k))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    lam = np.einsum("nc,cd->ncd", p, np.eye(k)) - np.einsum("nc,nd->ncd", p, p)
    reference = np.einsum("ni,nj,ncd->icjd", Xb, Xb, lam).reshape(r * k, r * k)
    F = softmax_class_block_fisher(Xb, p)
    np.testing.assert_allclose(F, reference, rtol=1e-12, atol=1e-13 * np.abs(reference).max())
    assert np.array_equal(F, F.T)


def test_multinomial_fisher_build_holds_no_pairwise_weighted_copy():
    rng = np.random.default_rng(8)
    n, d, k = 2_000, 10, 5
    model = LogisticModel(d, k)
    obj = Objective(model, rng.standard_normal((n, d)), rng.integers(0, k, n), alpha=0.5)
    theta = 0.2 * rng.standard_normal(model.n_params)
    op = DenseFisher(obj, theta, method="parameter")
    _, peak = _peak_bytes(op.matrix)
    r = d + 1
    # the result twice, B = [x̄ ⊗ p], four (n, k) arrays (p, Λ_cc, √Λ_cc, a temporary) and
    # the k diagonal blocks; the pair GEMMs held n·r·k(k+1)/2 weighted entries (2.6 MB here)
    budget = FLOAT64 * (2 * model.n_params**2 + n * r * k + 4 * n * k + k * r * r)
    assert peak < 1.2 * budget


# ----------------------------------------------------------------------------- K-FAC
def test_kfac_factors_copy_no_layer_input():
    rng = np.random.default_rng(4)
    model = MLP(200, 3, (4,))
    obj = Objective(model, rng.standard_normal((5_000, 200)), rng.integers(0, 3, 5_000))
    theta = model.init_params(0)
    inputs, _ = layer_statistics(obj, theta, "exact")
    factors, peak = _peak_bytes(lambda: kfac_factors(obj, theta))
    np.testing.assert_allclose(
        factors.A[0],
        np.einsum("ni,nj->ij", inputs[0], inputs[0]) / 5_000,
        rtol=1e-12,
        atol=1e-15,
    )
    assert peak < inputs[0].nbytes / 4  # the old syrk copied ā to F order


SUBSAMPLE_CASES = [
    # (fisher type, rows kept of 40)
    ("exact", 10),
    ("mc", 25),
    ("empirical", 39),
]


@pytest.mark.parametrize(("fisher_type", "n_statistics"), SUBSAMPLE_CASES)
def test_subsampled_statistics_are_the_statistics_of_the_drawn_rows(fisher_type, n_statistics):
    rng = np.random.default_rng(5)
    model = MLP(4, 3, (5,))
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    theta = model.init_params(1)
    obj = Objective(model, X, y)
    inputs, grads = layer_statistics(obj, theta, fisher_type, 2, 11, n_statistics)
    draws = np.random.default_rng(11)
    rows = np.sort(draws.choice(40, n_statistics, replace=False))
    # reference: the same statistics from an objective built on those rows only, with the
    # Monte-Carlo labels drawn from the same generator after the rows
    sub = Objective(model, X[rows], y[rows])
    ref_inputs, ref_grads = layer_statistics(sub, theta, fisher_type, 2, draws)
    assert [a.shape[0] for a in inputs] == [n_statistics] * 2
    for got, ref in zip(inputs + grads, ref_inputs + ref_grads):
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


def test_subsampled_kfac_costs_the_fraction_in_factor_flops():
    rng = np.random.default_rng(6)
    model = MLP(4, 3, (5,))
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    theta = model.init_params(1)
    full, part = Objective(model, X, y), Objective(model, X, y)
    KFAC(full, factors=kfac_factors(full, theta))
    inputs, grads = layer_statistics(part, theta, "exact", 1, 0, 10)
    factors_from_statistics(inputs, grads, part.counts)
    # syrks: Σ_l N·rows(rows+1) + 3N·fan_out(fan_out+1), layers (5, 5), (6, 3)
    per_sample = 5 * 6 + 6 * 7 + 3 * (5 * 6 + 3 * 4)
    assert full.counts.n_flops == 40 * per_sample
    assert part.counts.n_flops == 10 * per_sample


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_statistics_fraction_outside_zero_one_is_rejected(fraction):
    with pytest.raises(ValueError, match="statistics_fraction") as info:
        make_optimizer("kfac", statistics_fraction=fraction)
    assert repr(fraction) in str(info.value) or str(fraction) in str(info.value)


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_subsampled_kfac_trains_and_full_fraction_changes_nothing(solver):
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((120, 5)), rng.integers(0, 3, 120)
    model = MLP(5, 3, (8,))

    def run(**params):
        return minimize(
            model,
            X,
            y,
            make_optimizer(solver, random_state=0, **params),
            max_iter=8,
            tol=0,
            random_state=0,
        )

    base, same, part = run(), run(statistics_fraction=1.0), run(statistics_fraction=0.25)
    assert np.array_equal(base.theta, same.theta)
    assert part.loss < part.history["loss"].iloc[0]
    assert part.counts["n_flops"] < base.counts["n_flops"]


def test_kfac_operator_with_n_statistics_uses_the_drawn_rows_factors():
    rng = np.random.default_rng(9)
    model = MLP(4, 3, (5,))
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    theta = model.init_params(2)
    op = KFAC(Objective(model, X, y), theta, n_statistics=12, random_state=3)
    rows = np.sort(np.random.default_rng(3).choice(40, 12, replace=False))
    reference = kfac_factors(Objective(model, X[rows], y[rows]), theta)
    for got, ref in zip(op.factors.A + op.factors.G, reference.A + reference.G):
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("head", "depends_on_z"), [("softmax", "predict"), ("sigmoid", "_var")])
def test_matrix_free_fisher_computes_the_output_probabilities_once(head, depends_on_z, monkeypatch):
    """CG applies the Fisher many times at one θ: what Λ depends on (the head's
    probabilities) is computed when the operator is built, not on every product; the
    products still equal Jᵀ Λ J v / n from the dense per-sample Λ."""
    rng = np.random.default_rng(0)
    n, d = 40, 5
    k = 3 if head == "softmax" else 1
    X = rng.standard_normal((n, d))
    y = rng.integers(0, 3 if head == "softmax" else 2, n)
    model = MLP(d, 3 if head == "softmax" else 2, (4,), "tanh", head)
    objective = Objective(model, X, y)
    theta = model.init_params(0)
    J = model.jacobian(theta, X)  # (n, outputs, params)
    assert J.shape[1] == k
    Lam = model.head.lam(objective.forward(theta).outputs)
    F = np.einsum("noi,nop,npj->ij", J, Lam, J) / n
    op = ImplicitFisher(objective, theta)
    calls = []
    original = getattr(type(model.head), depends_on_z)

    def counting(self, z):
        calls.append(1)
        return original(self, z)

    monkeypatch.setattr(type(model.head), depends_on_z, counting)
    for seed in range(5):
        v = np.random.default_rng(seed).standard_normal(model.n_params)
        np.testing.assert_allclose(op @ v, F @ v, rtol=RTOL, atol=ATOL)
    assert calls == []


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_add_to_diagonal_adds_in_place_in_every_layout(layout):
    base = np.arange(36.0).reshape(6, 6)
    A = {"C": base.copy(), "F": np.asfortranarray(base), "strided": np.zeros((12, 6))[::2]}[layout]
    if layout == "strided":
        A[...] = base
    v = np.arange(1.0, 7.0)
    out = add_to_diagonal(A, v)
    assert out is A
    np.testing.assert_array_equal(A, base + np.diag(v))

"""Curvature cost counts: back-propagated columns and dense flops, against hand counts.

Expected numbers are derived by hand from the shapes (the formulas are written next to each
case); back-propagations are also counted independently by a spy on ``MLP.backward``.
"""

from __future__ import annotations

import numpy as np
import pytest

from natgrad_core import LogisticModel, NaturalGradient, minimize
from natgrad_core.curvature import EKFAC, KFAC, DenseFisher, DiagonalFisher, kfac_factors
from natgrad_core.curvature._linalg import SymmetricSolver, syrk_t
from natgrad_core.models import MLP, Objective, OracleCounts
from tests.cases import FISHER_TYPES

MC_SAMPLES = 3
DAMPING = 0.5

# (model, n_samples, forward, backward, propagation), counted by hand:
#   forward = Σ_l 2 N rows_l fan_out_l, propagation = Σ_{l≥2} 2 N fan_in_l fan_out_l
PASS_FLOP_CASES = [
    # layers (rows, fan_out): (5, 5), (6, 3): 2·10·(25 + 18) = 860; 2·10·(5·3) = 300
    (MLP(4, 3, (5,)), 10, 860, 1160, 300),
    # one layer (65, 10): 2·100·650 = 130000 both ways; nothing to propagate
    (LogisticModel(64, 10), 100, 130_000, 130_000, 0),
    # layers (4, 4), (5, 5), (6, 2): 2·7·53 = 742; 2·7·(4·5 + 5·2) = 420
    (MLP(3, 2, (4, 5)), 7, 742, 1162, 420),
    # binary logistic: one logit, layer (4, 1): 2·9·4 = 72
    (LogisticModel(3, 2), 9, 72, 72, 0),
]


@pytest.mark.parametrize(("model", "n", "forward", "backward", "propagation"), PASS_FLOP_CASES)
def test_pass_flops_match_hand_count(model, n, forward, backward, propagation):
    flops = model.pass_flops(n)
    assert (flops.forward, flops.backward, flops.propagation) == (forward, backward, propagation)
    assert flops.gradient == forward + backward


# ----------------------------------------------------------------------------- backprops
def _expected_columns(model, fisher_type):
    return {"exact": model.n_outputs, "mc": MC_SAMPLES, "empirical": 1}[fisher_type]


BUILDERS = {
    "dense-parameter": lambda o, t, f: DenseFisher(
        o, t, f, MC_SAMPLES, 0, method="parameter"
    ).solve(np.ones(o.n_params), DAMPING),
    "dense-sample": lambda o, t, f: DenseFisher(o, t, f, MC_SAMPLES, 0, method="sample").solve(
        np.ones(o.n_params), DAMPING
    ),
    "diag": lambda o, t, f: DiagonalFisher(o, t, f, MC_SAMPLES, 0),
    "kfac": lambda o, t, f: KFAC(o, t, f, MC_SAMPLES, 0).solve(np.ones(o.n_params), DAMPING),
    "ekfac": lambda o, t, f: EKFAC(o, t, f, MC_SAMPLES, 0).solve(np.ones(o.n_params), DAMPING),
}


@pytest.fixture
def backward_spy(monkeypatch):
    """Counts output columns passed to ``MLP.backward`` (independently of OracleCounts)."""
    seen = []
    original = MLP.backward

    def spy(self, theta, cache, U):
        seen.append(int(np.prod(U.shape[:-2], dtype=np.int64)))
        return original(self, theta, cache, U)

    monkeypatch.setattr(MLP, "backward", spy)
    return seen


@pytest.mark.parametrize("fisher_type", FISHER_TYPES)
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_one_curvature_build_backprops_each_output_column_once(
    case, builder, fisher_type, backward_spy
):
    model, X, y, theta = case(0)
    obj = Objective(model, X, y, alpha=0.3)
    BUILDERS[builder](obj, theta, fisher_type)
    expected = _expected_columns(model, fisher_type)
    assert obj.counts.n_backprop == expected
    one_layer_dense = builder == "dense-parameter" and len(model.layers) == 1
    if one_layer_dense:
        # the class-block build pulls the factor columns back inside one GEMM, the
        # one-output build weights the rows of X̄ by them: no backward pass
        assert backward_spy == []
    else:
        assert backward_spy == [expected]


def test_first_order_work_counts_no_backprop_and_no_flops(case):
    model, X, y, theta = case(0)
    obj = Objective(model, X, y)
    obj.loss_and_grad(theta)
    obj.loss(theta)
    assert (obj.counts.n_backprop, obj.counts.n_flops) == (0, 0)


# ----------------------------------------------------------------------------- flops
def _spd(n, seed=0):
    a = np.random.default_rng(seed).standard_normal((2 * n, n))
    return a.T @ a + n * np.eye(n)


@pytest.mark.parametrize("n", [1, 7, 50])
def test_cholesky_adds_n_cubed_over_three_and_each_solve_two_n_squared(n):
    counts = OracleCounts()
    solver = SymmetricSolver(_spd(n), counts)
    assert solver.status == "ok"
    assert (counts.n_factorizations, counts.n_flops) == (1, n**3 // 3)
    solver.solve(np.ones((n, 3)))
    assert counts.n_flops == n**3 // 3 + 3 * 2 * n * n


@pytest.mark.parametrize(("m", "n"), [(1, 1), (9, 4), (4, 9)])
def test_syrk_counts_m_n_n_plus_one(m, n):
    counts = OracleCounts()
    a = np.random.default_rng(1).standard_normal((m, n))
    np.testing.assert_allclose(syrk_t(a, counts=counts), a.T @ a, rtol=1e-12, atol=1e-12)
    assert counts.n_flops == m * n * (n + 1)


def test_kfac_eigendecompositions_add_nine_n_cubed_per_factor():
    model = MLP(4, 3, (5,))
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((11, 4)), rng.integers(0, 3, 11)
    obj = Objective(model, X, y)
    op = KFAC(obj, factors=kfac_factors(Objective(model, X, y), model.init_params(0)))
    assert obj.counts.n_flops == 0
    op.eigendecompositions()
    # layers (rows, fan_out) = (5, 5), (6, 3): 9 · (5³ + 5³ + 6³ + 3³)
    assert obj.counts.n_flops == 9 * (125 + 125 + 216 + 27)
    assert obj.counts.n_factorizations == 4


def test_dense_logistic_step_counts_class_blocks_cholesky_and_solve():
    # K = 3 classes, 4 features + bias: r = 5, P = 15, N = 20
    n, d, k = 20, 4, 3
    rng = np.random.default_rng(3)
    model = LogisticModel(d, k)
    obj = Objective(model, rng.standard_normal((n, d)), rng.integers(0, k, n))
    theta = 0.1 * rng.standard_normal(model.n_params)
    DenseFisher(obj, theta, "exact", method="parameter").solve(np.ones(model.n_params), DAMPING)
    r, p = d + 1, model.n_params
    # softmax class blocks: one syrk of the (n, r·k) matrix [x̄ ⊗ p] and one per class
    class_blocks = n * (r * k) * (r * k + 1) + k * n * r * (r + 1)
    assert obj.counts.n_backprop == k
    assert obj.counts.n_flops == class_blocks + p**3 // 3 + 2 * p * p


def test_natural_gradient_steps_record_backprops_per_iteration():
    n, d, k = 30, 3, 4
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((n, d)), rng.integers(0, k, n)
    for curvature, per_step in (("exact", k), ("cg", 0), ("kfac", k)):
        opt = NaturalGradient(curvature=curvature, damping=1e-2)
        res = minimize(LogisticModel(d, k), X, y, opt, alpha=1.0, max_iter=3, tol=0.0)
        h = res.history
        np.testing.assert_array_equal(h["n_backprop"], per_step * h["iteration"])
        assert (np.diff(h["n_flops"]) > 0).all() == (curvature != "cg")

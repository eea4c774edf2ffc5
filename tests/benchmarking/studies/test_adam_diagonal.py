"""The adam-diagonal study, quick size: its findings recomputed from its table, and its
step-0 cosines recomputed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets

from natgrad_core.benchmarking.studies import run_study
from natgrad_core.curvature import DenseFisher
from natgrad_core.models import MLP, Objective

DIRECTIONS = {"adam", "diag-ef", "diag-ef-sqrt", "diag-true", "kfac", "gradient"}


@pytest.fixture(scope="module")
def result():
    return run_study("adam-diagonal", quick=True, seed=0)[0]


def medians(table):
    return table.groupby("direction")["cosine"].median().to_dict()


def test_table_covers_every_direction_at_every_recorded_step(result):
    table = result.table
    assert set(table["direction"]) == DIRECTIONS
    counts = table.groupby("step")["direction"].nunique()
    assert (counts == len(DIRECTIONS)).all() and len(counts) == 11
    assert table["cosine"].between(-1.0, 1.0).all()
    assert (table["damping"] > 0).all()


def test_findings_rest_on_the_tables_medians(result):
    med = medians(result.table)
    ordering, *pairs, kfac = result.findings
    for name, value in ordering.numbers.items():
        assert value == pytest.approx(med[name], rel=1e-12)
    ranking = " > ".join(f"{n} {med[n]:.3f}" for n in sorted(med, key=lambda n: -med[n]))
    assert ranking in ordering.statement
    diagonal = ("adam", "diag-ef", "diag-ef-sqrt", "diag-true")
    assert ordering.held == (min(med[n] for n in diagonal) > med["gradient"])
    for finding in pairs:
        a, b = finding.numbers
        assert finding.numbers[a] == pytest.approx(med[a], rel=1e-12)
        assert finding.numbers[b] == pytest.approx(med[b], rel=1e-12)
        assert finding.held == (med[a] > med[b])
    best = max(diagonal, key=lambda n: med[n])
    assert kfac.numbers == pytest.approx({"kfac": med["kfac"], best: med[best]}, rel=1e-12)
    # robust at quick size: K-FAC is far closer to natural gradient than any diagonal
    assert kfac.held and med["kfac"] > med[best] + 0.1


def test_step_zero_cosines_recomputed_by_hand(result):
    """At step 0 Adam's update is g / (|g| + ε) (m̂ = g, v̂ = g²); the exact NG direction is
    (F + λI)⁻¹ g with F the explicit dense Fisher."""
    rng = np.random.default_rng(0)
    X, y = datasets.load_digits(return_X_y=True)
    rows = np.sort(rng.choice(len(y), 300, replace=False))
    model = MLP(64, 10, (16,), "tanh", "softmax")
    objective = Objective(model, X[rows] / 16.0, y[rows])
    theta = model.init_params(rng)
    _, g = objective.loss_and_grad(theta)
    F = DenseFisher(objective, theta, "exact").to_dense()
    lam = 1e-3 * np.trace(F) / model.n_params
    ng = np.linalg.solve(F + lam * np.eye(len(F)), g)
    at0 = result.table[result.table["step"] == 0].set_index("direction")
    assert at0.loc["adam", "damping"] == pytest.approx(lam, rel=1e-10)
    for name, d in (("adam", g / (np.abs(g) + 1e-8)), ("gradient", g)):
        cosine = d @ ng / np.linalg.norm(d) / np.linalg.norm(ng)
        assert at0.loc[name, "cosine"] == pytest.approx(cosine, abs=1e-6)

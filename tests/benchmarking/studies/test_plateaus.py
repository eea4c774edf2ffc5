"""The plateaus study at its quick size: its findings recomputed from its own table."""

from __future__ import annotations

import numpy as np
import pytest

from natgrad_core.benchmarking.studies import plateaus


@pytest.fixture(scope="module")
def quick():
    # the study's own run function: the framework test swaps the registry for a copy, so
    # whether "plateaus" is registered in this session depends on test order
    return plateaus.run(True, 0)


def best_eta(rows):
    """The η whose median α to target over seeds is smallest (ties: the smaller η)."""
    med = {eta: np.median(g["alpha_to_target"]) for eta, g in rows.groupby("eta")}
    return min(med, key=lambda eta: (med[eta], eta)), med


def test_table_has_every_method_eta_and_seed(quick):
    table = quick.table
    assert list(table.columns) == ["method", "eta", "seed", "alpha_to_target", "plateau_length"]
    assert set(table["method"]) == {"sgd", "natural gradient"}
    grid = quick.settings["eta_grid"]
    n_seeds = len(quick.settings["seeds"])
    assert len(table) == n_seeds * sum(len(v) for v in grid.values())
    assert (table["alpha_to_target"] > 0).all()
    assert (table["plateau_length"] >= 0).all()


def test_findings_are_recomputed_from_the_table(quick):
    table = quick.table
    fewer, shorter, _ = quick.findings
    sgd_eta, sgd_med = best_eta(table[table["method"] == "sgd"])
    ng_eta, ng_med = best_eta(table[table["method"] == "natural gradient"])
    assert fewer.numbers["sgd_eta"] == sgd_eta
    assert fewer.numbers["natural_gradient_eta"] == ng_eta
    assert fewer.numbers["sgd_median_alpha"] == pytest.approx(sgd_med[sgd_eta])
    assert fewer.numbers["natural_gradient_median_alpha"] == pytest.approx(ng_med[ng_eta])
    assert fewer.held == (ng_med[ng_eta] < sgd_med[sgd_eta])
    assert f"{ng_med[ng_eta]:.1f}" in fewer.statement

    def plateau(method, eta):
        rows = table[(table["method"] == method) & (table["eta"] == eta)]
        return np.median(rows["plateau_length"])

    assert shorter.numbers["sgd_median_plateau"] == pytest.approx(plateau("sgd", sgd_eta))
    assert shorter.numbers["natural_gradient_median_plateau"] == pytest.approx(
        plateau("natural gradient", ng_eta)
    )
    assert shorter.held == (plateau("natural gradient", ng_eta) < plateau("sgd", sgd_eta))


def test_same_eta_finding_is_recomputed_from_the_table(quick):
    table = quick.table
    same_eta = quick.findings[2]
    shared = sorted(
        set(table.loc[table["method"] == "sgd", "eta"])
        & set(table.loc[table["method"] == "natural gradient", "eta"])
    )
    assert shared, "the quick grids must share an η"
    held = True
    for eta in shared:
        medians = {
            m: np.median(table[(table["method"] == m) & (table["eta"] == eta)]["plateau_length"])
            for m in ("sgd", "natural gradient")
        }
        assert same_eta.numbers[f"eta_{eta:g}"] == pytest.approx(medians)
        held &= medians["natural gradient"] < medians["sgd"]
    assert same_eta.held == held


def test_robust_claims_hold_at_quick_size(quick):
    """Natural gradient needs fewer examples and a shorter plateau than SGD (each at its best
    η, and at the same η), even at N = 20."""
    assert [f.held for f in quick.findings] == [True, True, True]

"""The fisher-efficiency study at quick size: its findings recomputed from its table."""

from __future__ import annotations

import numpy as np
import pytest

from natgrad_core.benchmarking.studies import run_study

D = 5  # 4 features and an intercept
METHODS = ["NG, running G(θ_t)", "NG, G(θ*)", "SGD"]


@pytest.fixture(scope="module")
def result():
    return run_study("fisher-efficiency", quick=True, seed=0)[0]


def test_the_table_has_every_method_at_every_checkpoint(result):
    table = result.table
    assert list(table.columns) == ["method", "T", "scaled_error", "scaled_error_se", "n_runs"]
    assert list(dict.fromkeys(table["method"])) == METHODS
    grids = [tuple(table.loc[table["method"] == m, "T"]) for m in METHODS]
    assert grids[0] == grids[1] == grids[2]
    assert grids[0][0] == 10 and grids[0][-1] == result.settings["n_steps"]
    assert (table["n_runs"] == result.settings["n_runs"]).all()
    assert np.isfinite(table[["scaled_error", "scaled_error_se"]].to_numpy()).all()
    assert (table["scaled_error_se"] > 0).all()
    # the population Fisher agrees with the library's DenseFisher on 1e5 stream inputs
    assert result.settings["fisher_check_max_abs_diff"] < 5e-3


def test_findings_are_recomputed_from_the_table(result):
    table = result.table
    T_max = table["T"].max()
    at = {m: table[(table["method"] == m) & (table["T"] == T_max)].iloc[0] for m in METHODS}
    ng, sgd = at[METHODS[0]], at[METHODS[2]]
    efficient, above, growing = result.findings

    assert efficient.numbers["T"] == T_max
    assert efficient.numbers["scaled_error"] == pytest.approx(ng["scaled_error"], rel=1e-12)
    assert efficient.numbers["se"] == pytest.approx(ng["scaled_error_se"], rel=1e-12)
    assert efficient.numbers["relative_deviation"] == pytest.approx(
        ng["scaled_error"] / D - 1, rel=1e-12
    )
    assert above.numbers["ratio_to_d"] == pytest.approx(sgd["scaled_error"] / D, rel=1e-12)
    assert above.numbers["ratio_to_ng"] == pytest.approx(
        sgd["scaled_error"] / ng["scaled_error"], rel=1e-12
    )
    sgd_rows = table[(table["method"] == "SGD") & (table["T"] >= T_max / 10)]
    x, y = np.log(sgd_rows["T"].to_numpy(float)), np.log(sgd_rows["scaled_error"].to_numpy())
    slope = ((x - x.mean()) @ (y - y.mean())) / ((x - x.mean()) @ (x - x.mean()))
    assert growing.numbers["slope"] == pytest.approx(slope, rel=1e-9)
    assert 0 < growing.numbers["lambda_min"] < 0.25  # σ' ≤ 1/4 and E[x̄x̄ᵀ] = I
    assert growing.numbers["predicted_slope"] == pytest.approx(
        1 - 2 * growing.numbers["lambda_min"], rel=1e-12
    )
    for finding in result.findings:
        assert f"{T_max}" in finding.statement or "slope" in finding.statement


def test_the_claims_hold_at_quick_size(result):
    efficient, above, growing = result.findings
    # natural gradient within 15% of d, and within 4 standard errors of it
    assert abs(efficient.numbers["relative_deviation"]) <= 0.15 and efficient.held
    assert abs(efficient.numbers["scaled_error"] - D) < 4 * efficient.numbers["se"]
    # SGD far above the bound and still growing, as 1 − 2 λ_min > 0 predicts
    assert above.numbers["ratio_to_d"] >= 2 and above.held
    assert growing.numbers["slope"] > 0.5 and growing.held
    # the natural gradient with the true Fisher nears d too (from above at this size)
    table = result.table
    last = table[table["T"] == table["T"].max()].set_index("method")["scaled_error"]
    assert abs(last[METHODS[1]] / D - 1) <= 0.25
    assert last["SGD"] > 2 * last[METHODS[0]]

"""The invariance study, quick size: its findings recomputed from its table."""

from __future__ import annotations

import numpy as np
import pytest

from natgrad_core.benchmarking.studies import run_study

TRANSFORMS = ("affine inputs", "rescaled inputs", "affine hidden units")
ROUNDING = 1e-10  # float64 rounding grown over 10 steps, far below any real discrepancy
DIFFERENT = 1e-3


@pytest.fixture(scope="module")
def result():
    return run_study("invariance", quick=True, seed=0)[0]


def test_both_parameterizations_start_as_the_same_function(result):
    table = result.table
    assert set(table["transform"]) == set(TRANSFORMS)
    assert set(table["method"]) == {"gd", "diag", "kfac", "exact"}
    assert table["step"].max() == 10
    assert (table.loc[table["step"] == 0, "discrepancy"] < ROUNDING).all()


def test_findings_numbers_are_the_tables_maxima(result):
    table = result.table
    by_method = {f.statement.split(":")[0]: f for f in result.findings}
    assert set(by_method) == {"gd", "diag", "kfac", "exact"}
    for method, finding in by_method.items():
        for transform in TRANSFORMS:
            rows = table[(table["method"] == method) & (table["transform"] == transform)]
            assert finding.numbers[transform] == pytest.approx(rows["discrepancy"].max(), rel=1e-12)
            assert f"{transform}: {rows['discrepancy'].max():.2e}" in finding.statement


def test_who_is_invariant_to_what(result):
    table = result.table
    worst = table.groupby(["transform", "method"])["discrepancy"].max()
    invariant = {
        "exact": set(TRANSFORMS),
        "kfac": set(TRANSFORMS),
        "diag": {"rescaled inputs"},
        "gd": set(),
    }
    for method, expected in invariant.items():
        for transform in TRANSFORMS:
            if transform in expected:
                assert worst[transform, method] < ROUNDING, (transform, method)
            else:
                assert worst[transform, method] > DIFFERENT, (transform, method)
    assert all(f.held for f in result.findings)
    assert np.isfinite(table["discrepancy"]).all()

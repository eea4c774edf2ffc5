"""The trpo-kl study at quick size: its findings recomputed from its table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from natgrad_core.benchmarking.studies import run_study, trpo_kl  # noqa: F401 (registers)

RTOL = 1e-12


@pytest.fixture(scope="module")
def result():
    result, _ = run_study("trpo-kl", quick=True, seed=0)
    yield result
    plt.close(result.figure)


def test_the_table_has_every_run_and_step(result):
    table = result.table
    steps = result.settings["steps"]
    runs = table.groupby(["problem", "rule", "eps", "learning_rate"], dropna=False)
    assert len(runs) == 2 * (3 + 2)
    assert (runs.size() == steps).all()
    assert (table.measured_kl > 0).all() and (table.quadratic_kl > 0).all()


def test_an_uncapped_full_kl_step_has_quadratic_kl_equal_to_its_target(result):
    kl = result.table[result.table.rule == "kl"]
    # β = √(2ε/dᵀFd) without cap gives ½δᵀFδ = ε; each halving divides it by 4
    levels = np.log(kl.eps / kl.quadratic_kl) / np.log(4.0)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-6)
    assert (np.round(levels) >= 0).all()


def _by(findings, word):
    (finding,) = [f for f in findings if word in f.claim]
    return finding


def test_median_ratio_finding(result):
    kl = result.table[result.table.rule == "kl"]
    finding = _by(result.findings, "holds the per-step KL")
    expected = {}
    for problem in kl.problem.unique():
        for eps in kl.eps.unique():
            rows = kl[(kl.problem == problem) & (kl.eps == eps)]
            expected[f"{problem} eps={eps:g}"] = np.median(rows.measured_kl.to_numpy() / eps)
    got = finding.numbers["median_ratio"]
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=RTOL)
    assert finding.held == all(0.5 <= v <= 2 for v in expected.values())
    small = [v for k, v in expected.items() if not k.endswith("eps=0.1")]
    assert all(0.5 <= v <= 2 for v in small)


def test_quadratic_model_finding(result):
    kl = result.table[result.table.rule == "kl"]
    finding = _by(result.findings, "is within 2×")
    for eps in (1e-3, 1e-2, 1e-1):
        rows = kl[kl.eps == eps]
        r = rows.measured_kl.to_numpy() / rows.quadratic_kl.to_numpy()
        expected = np.mean((r > 2) | (r < 0.5))
        assert finding.numbers["fraction_off"][f"eps={eps:g}"] == pytest.approx(expected)
    assert finding.held


def test_fixed_rate_spread_finding(result):
    table = result.table
    finding = _by(result.findings, "uncontrolled")
    held = True
    for problem in table.problem.unique():
        fixed = table[(table.problem == problem) & (table.rule == "fixed")]
        kl = table[(table.problem == problem) & (table.rule == "kl") & (table.eps <= 1e-2)]
        fixed_spread = [
            g.measured_kl.max() / g.measured_kl.min() for _, g in fixed.groupby("learning_rate")
        ]
        kl_spread = [g.measured_kl.max() / g.measured_kl.min() for _, g in kl.groupby("eps")]
        for lr, value in zip(sorted(fixed.learning_rate.unique()), fixed_spread):
            key = f"{problem} fixed lr={lr:g}"
            assert finding.numbers["fixed_spread"][key] == pytest.approx(value, rel=RTOL)
        held &= min(fixed_spread) > max(kl_spread)
        assert max(kl_spread) < 2.0
    assert finding.held == held
    assert finding.held


def test_backtracking_finding(result):
    kl = result.table[result.table.rule == "kl"]
    finding = _by(result.findings, "misses ε")
    full = kl[kl.quadratic_kl >= 0.99 * kl.eps]
    assert finding.numbers["backtracked_share"]["eps=0.001"] == pytest.approx(
        1 - len(full[full.eps == 1e-3]) / len(kl[kl.eps == 1e-3])
    )
    medians = {
        f"{p} eps={e:g}": np.median(g.measured_kl / e)
        for (p, e), g in full.groupby(["problem", "eps"])
    }
    for key, value in medians.items():
        assert finding.numbers["full_step_median_ratio"][key] == pytest.approx(value, rel=RTOL)
    assert finding.held == all(0.5 <= v <= 2 for v in medians.values())
    assert finding.held

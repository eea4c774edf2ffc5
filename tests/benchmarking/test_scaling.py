"""``natgrad scaling``: the exponent fit, the cost models, sizes and seeds, skip rules, the
files written and the command's errors.

References are independent of the code under test: exact power laws and the closed-form
least-squares slope cov(x, y) / var(x) for the fit, textbook exponents for the cost
models, scikit-learn's ``make_classification`` for the data, and call counts (never
wall-clock) for what is timed.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking import scaling
from natgrad_core.benchmarking.cli import main
from natgrad_core.optim import SOLVERS

FIT_RTOL = 1e-12
"""An exact power law fitted in float64: rounding only."""

POWER_LAWS = [
    pytest.param(2.5e-6, 1.0, id="linear"),
    pytest.param(3e-9, 2.0, id="quadratic"),
    pytest.param(1e-10, 3.0, id="cubic"),
    pytest.param(0.7, 0.5, id="square-root"),
    pytest.param(4.0, -1.0, id="inverse"),
]


@pytest.mark.parametrize(("a", "b"), POWER_LAWS)
def test_fit_recovers_an_exact_power_law(a, b):
    sizes = np.array([1_000, 3_000, 10_000, 30_000, 100_000])
    fit_b, fit_a = scaling.fit_exponent(sizes, a * sizes**b)
    np.testing.assert_allclose([fit_b, fit_a], [b, a], rtol=FIT_RTOL)


def test_fit_is_least_squares_on_log_log():
    """With noise, b is the least-squares slope of log t on log s: cov / var."""
    rng = np.random.default_rng(0)
    sizes = np.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    times = 1e-5 * sizes**2 * np.exp(rng.normal(scale=0.2, size=sizes.size))
    x, y = np.log(sizes), np.log(times)
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    np.testing.assert_allclose(scaling.fit_exponent(sizes, times)[0], slope, rtol=FIT_RTOL)


@pytest.mark.parametrize(
    ("sizes", "times", "message"),
    [
        ([1, 2, 3], [1, 2], "expected two 1-d arrays of one length, got shapes"),
        ([1, 2], [1, 0], "expected positive finite values"),
        ([1, 2], [1, np.nan], "expected positive finite values"),
        ([-1, 2], [1, 2], "expected positive finite values"),
        ([5, 5], [1, 2], "expected at least 2 distinct values"),
    ],
)
def test_fit_rejects_bad_points(sizes, times, message):
    with pytest.raises(ValueError, match=message):
        scaling.fit_exponent(sizes, times)


def test_every_registered_solver_has_a_cost():
    assert set(scaling.COSTS) == set(SOLVERS)


# textbook exponents of one iteration, asymptotically: (in n at fixed d, in d at n >> d)
THEORY = {
    **dict.fromkeys(("gd", "momentum", "adam", "lbfgs", "diag", "cg"), (1.0, 1.0)),
    **dict.fromkeys(("exact", "kfac", "ekfac"), (1.0, 2.0)),
}
COST_RTOL = 0.02
"""Lower-order terms still present at the sizes below."""


@pytest.mark.parametrize("solver", list(THEORY))
@pytest.mark.parametrize("k", [1, 10])
def test_cost_models_have_the_textbook_exponents(solver, k):
    flops = scaling.COSTS[solver].flops
    n = np.array([1e6, 1e7, 1e8])
    d = np.array([1e4, 2e4, 4e4])
    b_n = scaling.fit_exponent(n, [flops(s, 100, k) for s in n])[0]
    b_d = scaling.fit_exponent(d, [flops(1e12, s, k) for s in d])[0]
    np.testing.assert_allclose([b_n, b_d], THEORY[solver], rtol=COST_RTOL)


def test_exact_cost_switches_to_sample_space():
    """Woodbury in sample space when n·K' < P: cubic in n, linear in d (P)."""
    flops = scaling.COSTS["exact"].flops
    b_d = scaling.fit_exponent([1e5, 2e5], [flops(100, d, 1) for d in (1e5, 2e5)])[0]
    np.testing.assert_allclose(b_d, 1.0, rtol=COST_RTOL)


@pytest.mark.parametrize(
    ("n_samples", "n_features", "n_classes"), [(100, 8, 2), (1000, 100, 2), (3000, 20, 10)]
)
def test_point_data_have_exact_sizes_and_are_seeded(n_samples, n_features, n_classes):
    """A point trains on exactly n standardized samples of every class, from seeded
    synthetic data: building the same problem afresh gives the same arrays."""
    problem = scaling._problem(n_samples, n_features, n_classes)
    assert (problem.dataset, problem.seed) == ("synthetic", scaling.SEED)
    data = problem.load(scaling.SEED)
    assert data.X_train.shape == (n_samples, n_features)
    np.testing.assert_array_equal(np.unique(data.y_train), np.arange(n_classes))
    np.testing.assert_allclose(data.X_train.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.X_train.std(0), 1.0, rtol=1e-12)
    again = replace(problem, name="built again").load(scaling.SEED)  # not the cached one
    assert again is not data
    np.testing.assert_array_equal(again.X_train, data.X_train)
    np.testing.assert_array_equal(again.y_train, data.y_train)


def test_full_sweeps_have_the_issues_sizes():
    n_sizes, d_sizes = (1_000, 3_000, 10_000, 30_000, 100_000), (10, 30, 100, 300, 1_000)
    full = scaling.sweeps()
    assert [(s.vary, s.sizes, s.n_classes) for s in full] == [
        ("n_samples", n_sizes, 2),
        ("n_features", d_sizes, 2),
        ("n_samples", n_sizes, 10),
    ]
    assert all(len(s.sizes) >= 2 for s in scaling.sweeps(quick=True))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sizes": (100,)}, ValueError, "expected at least 2 increasing sizes"),
        ({"sizes": (200, 100)}, ValueError, "expected at least 2 increasing sizes"),
        ({"vary": "n_classes"}, ValueError, "n_classes"),
        ({"fixed": 0}, ValueError, "size"),
    ],
)
def test_sweep_rejects_bad_sizes(kwargs, error, message):
    spec = {"name": "s", "vary": "n_samples", "sizes": (100, 200), "fixed": 4} | kwargs
    with pytest.raises(error, match=message):
        scaling.Sweep(**spec)


# ----------------------------------------------------------------------------- runs
TINY = [scaling.Sweep("n, binary, d = 4", "n_samples", (60, 120), 4)]


class _CountingMinimize:
    """``minimize`` that counts its calls and their steps."""

    def __init__(self, monkeypatch):
        self.calls, self.steps = 0, []
        real = scaling.minimize

        def counted(*args, **kwargs):
            result = real(*args, **kwargs)
            self.calls += 1
            self.steps.append(result.n_iter)
            return result

        monkeypatch.setattr(scaling, "minimize", counted)


def test_each_point_is_repeats_runs_of_iterations_steps(monkeypatch):
    counter = _CountingMinimize(monkeypatch)
    table, _ = scaling.run_scaling(solvers=["gd", "exact"], iterations=4, repeats=3, selected=TINY)
    assert counter.calls == 3 * len(table) == 3 * 2 * 2
    assert counter.steps == [4] * counter.calls
    assert (table["iterations"] == 4).all() and (table["repeats"] == 3).all()
    assert table["status"].eq("ok").all()
    assert (table["time_min"] <= table["time_median"]).all() and (table["time_min"] > 0).all()
    assert table["n_params"].eq(5).all()  # d + 1


def test_points_above_the_budgets_are_recorded_as_skipped(monkeypatch):
    """Budgets between the first-order and the exact cost: every exact point is a row
    with the reason and no time, and is never run; the others run."""
    counter = _CountingMinimize(monkeypatch)
    flops = [scaling.COSTS["gd"].flops(120, 4, 1), scaling.COSTS["exact"].flops(60, 4, 1)]
    table, record = scaling.run_scaling(
        solvers=["exact", "gd"], selected=TINY, flop_budget=np.sqrt(flops[0] * flops[1])
    )
    skipped = table[table["solver"].eq("exact")]
    assert (
        len(skipped) == 2 and skipped["status"].str.contains("flops per iteration > budget").all()
    )
    assert skipped["time_min"].isna().all() and (skipped["iterations"] == 0).all()
    assert table[table["solver"].eq("gd")]["status"].eq("ok").all()
    assert counter.calls == 2 * scaling.REPEATS
    assert record["settings"]["flop_budget"] == np.sqrt(flops[0] * flops[1])
    table, _ = scaling.run_scaling(solvers=["exact"], selected=TINY, memory_budget=8 * 5**2 - 1)
    assert table["status"].str.contains("bytes > budget").all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeats": 2}, "repeats must be >= 3, got 2"),
        ({"iterations": 0}, "iterations"),
        ({"solvers": ["newton"]}, "solver"),
        ({"solvers": []}, "expected some of"),
        ({"flop_budget": -1.0}, "flop_budget"),
    ],
)
def test_run_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scaling.run_scaling(selected=TINY, **kwargs)


def test_finished_sweeps_are_handed_over_as_they_end():
    seen = []
    sweeps = [*TINY, scaling.Sweep("d, binary, n = 60", "n_features", (2, 4), 60)]
    table, _ = scaling.run_scaling(
        solvers=["gd"], selected=sweeps, on_sweep=lambda t, record: seen.append(len(t))
    )
    assert seen == [2, 4] and len(table) == 4


def test_exponents_fit_the_largest_points_and_all():
    """A table of exact power laws t = n^b (b = 1 for gd, 2 for exact): the fit over the
    FIT_POINTS largest sizes and over all recovers b; skipped points are left out."""
    sizes = [100, 200, 400, 800, 1600]
    rows = [
        {"sweep": "n", "solver": solver, "n_samples": n, "n_features": 4, "n_classes": 2,
         "model_flops": scaling.COSTS[solver].flops(n, 4, 1), "time_min": float(n) ** b,
         "status": "ok" if n < 1600 or solver == "gd" else "skipped: test"}
        for solver, b in (("gd", 1.0), ("exact", 2.0))
        for n in sizes
    ]  # fmt: skip
    fitted = scaling.exponents(pd.DataFrame(rows)).set_index("solver")
    np.testing.assert_allclose(fitted["exponent"], [1.0, 2.0], rtol=FIT_RTOL)
    np.testing.assert_allclose(fitted["exponent_all"], [1.0, 2.0], rtol=FIT_RTOL)
    assert fitted.loc["gd", "points"] == "400, 800, 1600"
    assert fitted.loc["exact", "points"] == "200, 400, 800"
    assert fitted.loc["exact", "points_all"] == "100, 200, 400, 800"
    np.testing.assert_allclose(fitted.loc["gd", "theory"], 1.0, rtol=FIT_RTOL)


# ----------------------------------------------------------------------------- command
def test_quick_runs_end_to_end(tmp_path, capsys):
    """``natgrad scaling --quick`` times every solver at every point of every sweep and
    writes both tables (CSV, sidecar with provenance, Markdown, LaTeX) and the figure."""
    out = tmp_path / "scaling"
    assert main(["scaling", "--quick", "--quiet", "--out", str(out)]) == 0
    table = pd.read_csv(out / "scaling.csv")
    assert list(table.columns) == list(scaling.COLUMNS)
    quick = scaling.sweeps(quick=True)
    assert len(table) == len(SOLVERS) * sum(len(s.sizes) for s in quick)
    assert table["status"].eq("ok").all(), table["status"].tolist()
    for sweep in quick:
        rows = table[table["sweep"].eq(sweep.name)]
        assert set(rows["solver"]) == set(SOLVERS)
        assert sorted(set(rows[sweep.vary])) == list(sweep.sizes)
    fitted = pd.read_csv(out / "exponents.csv")
    assert len(fitted) == len(SOLVERS) * len(quick)
    assert np.isfinite(fitted[["exponent", "theory", "exponent_all"]]).all().all()
    sidecar = json.loads((out / "scaling.json").read_text())
    prov = sidecar["provenance"]
    assert {"code_versions", "machines", "git", "date", "settings"} <= set(prov)
    (pools,) = prov["blas"]  # read inside the measurement: every pool at one thread
    assert pools and all(pool["num_threads"] == 1 for pool in pools)
    assert prov["settings"]["quick"] is True and prov["settings"]["seed"] == scaling.SEED
    assert sidecar["columns"]["time_min"]["unit"] == "seconds"
    for name in ("scaling.md", "scaling.tex", "exponents.md", "exponents.tex", "exponents.json"):
        assert (out / name).stat().st_size > 0
    for suffix in ("png", "pdf"):
        assert (out / f"scaling.{suffix}").stat().st_size > 0
    assert f"scaling: {len(table)} points, 0 skipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repeats", "2"], "--repeats >= 3"),
        (["--iterations", "0"], "--iterations >= 1, got None, 3 and 0"),
        (["--solvers", "exact,newton"], "expected --solvers among exact,"),
        (["--out", "FILE"], "is a file; expected a folder"),
    ],
)
def test_cli_bad_arguments(argv, message, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    argv = [str(file) if a == "FILE" else a for a in argv]
    assert main(["scaling", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err

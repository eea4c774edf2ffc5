"""The report: exact statistics on hand-made results tables, files, HTML, comparisons."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking import report
from natgrad_core.benchmarking.compare import compare
from natgrad_core.benchmarking.report import metrics
from natgrad_core.benchmarking.store import SCHEMA, SCHEMA_VERSION, conform

EPS = (1e-2, 1e-4, 1e-6, 1e-8)
PROV = {
    "natgrad": "0.1.0",
    "code_version": "c0ffee123456",
    "git_commit": "abc123def456",
    "git_dirty": False,
    "dependencies": {"numpy": "2.0"},
}


def make_run(problem, solver, seed, subs, times=None, **columns):
    """One run following store.SCHEMA, with the given per-iteration suboptimality.

    Defaults: iteration = 0..n-1, time = iteration, loss = suboptimality + 1, counters
    n_grad = n_loss = iteration and n_fvp = 0, grad_time = 1, fidelity NaN, convex.
    Any SCHEMA column can be given as a scalar or a per-iteration sequence.
    """
    subs = np.asarray(subs, dtype=np.float64)
    n = subs.size
    it = np.arange(n)
    data = {
        "schema_version": SCHEMA_VERSION,
        "run_key": f"{problem}|{solver}|{seed}",
        "config_id": f"cfg-{solver}",
        "code_version": "test",
        "problem": problem,
        "convex": True,
        "n_params": 3,
        "n_train": 10,
        "solver": solver,
        "algorithm": "gd",
        "params": "{}",
        "seed": seed,
        "batch_size": 0,
        "iteration": it,
        "time": it.astype(float) if times is None else np.asarray(times, dtype=float),
        "loss": subs + 1.0,
        "suboptimality": subs,
        "rel_suboptimality": subs,
        "reference_loss": np.nan,
        "dist_to_opt": np.nan,
        "grad_norm": np.nan,
        "test_metric": 0.5,
        "n_loss": it,
        "n_grad": it,
        "n_fvp": 0,
        "n_cg_iter": 0,
        "n_factorizations": 0,
        "n_backprop": 0,
        "n_flops": 0,
        "grad_flops": 1000,
        "backprop_flops": 0,
        "grad_time": 1.0,
        "fidelity": np.nan,
        "step_status": "ok",
        "status": "max_iter",
        "message": "",
        "n_concurrent": 1,
        "blas_threads": 1,
        "machine": "m0",
        "curve": "run",
        "n_rejected": 0,
        "n_cg_capped": 0,
        "n_fallbacks": 0,
        "flags": "",
    }
    unknown = set(columns) - set(SCHEMA)
    assert not unknown, unknown
    data.update(columns)
    return conform(pd.DataFrame(data))


def frame_of(*runs):
    return pd.concat(runs, ignore_index=True)


def row(table, **where):
    mask = np.logical_and.reduce([table[k] == v for k, v in where.items()])
    assert mask.sum() == 1, (where, mask.sum())
    return table[mask].iloc[0]


# ----------------------------------------------------------------------------- to-ε costs
def test_time_to_eps_is_first_crossing_and_inf_when_never_reached():
    # crosses 1e-2 at iteration 2, goes back up, crosses again at 4; never reaches 1e-8
    subs = [1.0, 0.5, 0.005, 0.02, 1e-5, 1e-7]
    times = [0.0, 0.1, 0.3, 0.6, 1.0, 1.5]
    frame = make_run("p", "s", 0, subs, times, n_grad=np.arange(6), n_loss=2 * np.arange(6))
    tables = report.summary_tables(frame, EPS)
    t = tables["time_to_eps"]
    assert row(t, eps=1e-2)["median"] == 0.3
    assert row(t, eps=1e-4)["median"] == 1.0
    assert row(t, eps=1e-6)["median"] == 1.5
    assert row(t, eps=1e-8)["median"] == np.inf
    assert row(t, eps=1e-8)["reached"] == 0
    assert row(t, eps=1e-2)["reached"] == 1
    it = tables["iterations_to_eps"]
    assert list(it.sort_values("eps", ascending=False)["median"]) == [2.0, 4.0, 5.0, np.inf]


def test_first_order_calls_formula():
    n = np.arange(5)
    frame = make_run(
        "p", "s", 0, [1.0, 0.1, 1e-3, 1e-5, 1e-9], n_grad=n, n_loss=2 * n + 1, n_fvp=3 * n
    )
    calls = report.summary_tables(frame, EPS)["first_order_calls_to_eps"]
    # n_grad + n_loss + 2 n_fvp = n + (2n + 1) + 6n = 9n + 1 at the first crossing
    expected = {1e-2: 9 * 2 + 1, 1e-4: 9 * 3 + 1, 1e-6: 9 * 4 + 1, 1e-8: 9 * 4 + 1}
    for e, value in expected.items():
        assert row(calls, eps=e)["median"] == value


def test_work_adds_curvature_construction_in_gradient_units():
    # per step: 1 gradient, 10 pulled-back columns of 300 flops, 47_000 dense flops;
    # one gradient = 2_000 flops -> 1 + (10 * 300 + 47_000) / 2_000 = 26 per step
    n = np.arange(5)
    frame = make_run(
        "p",
        "s",
        0,
        [1.0, 0.1, 1e-3, 1e-5, 1e-9],
        n_grad=n,
        n_loss=0,
        n_backprop=10 * n,
        n_flops=47_000 * n,
        grad_flops=2_000,
        backprop_flops=300,
    )
    tables = report.summary_tables(frame, EPS)
    expected = {1e-2: 2, 1e-4: 3, 1e-6: 4, 1e-8: 4}
    for e, steps in expected.items():
        assert row(tables["work_to_eps"], eps=e)["median"] == 26 * steps
        assert row(tables["first_order_calls_to_eps"], eps=e)["median"] == steps


def test_work_is_nan_without_the_gradient_unit():
    # rows stored before grad_flops existed: curvature work cannot be converted
    frame = make_run("p", "s", 0, [1.0, 1e-9], n_flops=[0, 5], grad_flops=0)
    _, crossing = report.run_metrics(frame, (1e-2,))
    assert np.isnan(crossing["work_to_eps"].iloc[0])


def test_median_and_iqr_over_three_seeds():
    # seeds reach 1e-2 at times 1, 4, 10; only two of them reach 1e-4 (at 2 and 8)
    runs = [
        make_run("p", "s", 0, [1.0, 1e-3, 1e-5], [0, 1, 2]),
        make_run("p", "s", 1, [1.0, 1e-3, 1e-3], [0, 4, 6]),
        make_run("p", "s", 2, [1.0, 1e-3, 1e-5], [0, 10, 8]),
    ]
    t = report.summary_tables(frame_of(*runs), EPS)["time_to_eps"]
    r = row(t, eps=1e-2)
    # sorted 1, 4, 10: median 4; q25 = 1 + 0.5 * 3; q75 = 4 + 0.5 * 6
    assert (r["median"], r["q25"], r["q75"], r["reached"], r["n_runs"]) == (4, 2.5, 7, 3, 3)
    r = row(t, eps=1e-4)  # sorted 2, 8, inf
    assert (r["median"], r["q25"], r["q75"], r["reached"]) == (8, 5, np.inf, 2)
    r = row(t, eps=1e-6)  # inf, inf, inf
    assert (r["median"], r["q25"], r["q75"], r["reached"]) == (np.inf, np.inf, np.inf, 0)


def test_median_is_inf_when_most_seeds_never_reach():
    runs = [
        make_run("p", "s", 0, [1.0, 1e-3], [0, 2]),
        make_run("p", "s", 1, [1.0, 1.0], [0, 2]),
        make_run("p", "s", 2, [1.0, 1.0], [0, 2]),
    ]
    r = row(report.summary_tables(frame_of(*runs), EPS)["time_to_eps"], eps=1e-2)
    assert (r["median"], r["q25"], r["q75"]) == (np.inf, np.inf, np.inf)
    assert np.isfinite(metrics._quantile([2.0, np.inf, np.inf], 0.0))


# ----------------------------------------------------------------------------- final metrics
def test_final_metrics_cost_per_step_fidelity_status():
    runs = [
        # final time 6 after 3 iterations, grad_time 0.5: (6 / 3) / 0.5 = 4 gradients/step
        make_run(
            "p",
            "s",
            0,
            [1.0, 0.5, 0.25, 0.125],
            [0.0, 1.0, 2.0, 6.0],
            grad_time=0.5,
            fidelity=[np.nan, 0.5, 1.0, np.nan],
            test_metric=[0.1, 0.2, 0.3, 0.9],
            status="max_iter",
        ),
        # (3 / 3) / 0.5 = 2
        make_run(
            "p",
            "s",
            1,
            [1.0, 0.5, 0.25, 0.5],
            [0.0, 1.0, 2.0, 3.0],
            grad_time=0.5,
            fidelity=[np.nan, 0.2, 0.2, 0.2],
            test_metric=0.7,
            status="target",
        ),
        # a failed run: one row, no step, no grad_time, nothing recorded
        make_run(
            "p",
            "s",
            2,
            [np.nan],
            grad_time=np.nan,
            test_metric=np.nan,
            status="error",
        ),
    ]
    tables = report.summary_tables(frame_of(*runs), EPS)
    cost = row(tables["cost_per_step"], solver="s")
    assert (cost["median"], cost["q25"], cost["q75"], cost["n_runs"]) == (3.0, 2.5, 3.5, 3)
    fid = row(tables["fidelity"], solver="s")  # run means 0.75 and 0.2; failed run NaN
    assert fid["median"] == pytest.approx(0.475)
    final = row(tables["final_suboptimality"], solver="s")  # 0.125 and 0.5, NaN ignored
    assert (final["median"], final["q25"], final["q75"]) == (0.3125, 0.21875, 0.40625)
    assert final["reference"] == "exact optimum"
    assert row(tables["test_metric"], solver="s")["median"] == pytest.approx(0.8)
    status = row(tables["step_diagnostics"], solver="s")
    assert (status["n_runs"], status["target"], status["max_iter"], status["error"]) == (3, 1, 1, 1)
    assert list(tables["step_diagnostics"].columns) == [
        "problem",
        "solver",
        "n_runs",
        "target",
        "max_iter",
        "error",
        "steps",
        "rejected",
        "cg_capped",
        "fallbacks",
        "flagged",
        "flags",
    ]
    assert "status" not in tables  # folded into step_diagnostics
    # the failed run never reaches any ε
    assert row(tables["time_to_eps"], eps=1e-2)["n_runs"] == 3


def test_fidelity_nan_when_never_recorded():
    frame = make_run("p", "s", 0, [1.0, 0.5])
    assert np.isnan(report.summary_tables(frame, EPS)["fidelity"]["median"].iloc[0])


# ----------------------------------------------------------------------------- best known
def test_add_best_known_fills_non_convex_only():
    nan = np.nan
    a = make_run("mlp", "s", 0, [nan, nan, nan], convex=False, loss=[3.0, -1.0, -1.5])
    b = make_run("mlp", "t", 0, [nan, nan, nan], convex=False, loss=[4.0, -2.0, np.inf])
    c = make_run("lr", "s", 0, [0.5, 1e-3, 0.0], rel_suboptimality=[5.0, 1e-2, 0.0])
    out = report.add_best_known(frame_of(a, b, c))
    mlp = out[out["problem"] == "mlp"]
    # F*_best = -2 (the inf loss is ignored): sub = loss + 2, rel = sub / 2
    np.testing.assert_array_equal(mlp["suboptimality"], [5.0, 1.0, 0.5, 6.0, 0.0, np.inf])
    np.testing.assert_array_equal(mlp["rel_suboptimality"], [2.5, 0.5, 0.25, 3.0, 0.0, np.inf])
    assert set(mlp["reference"]) == {"best known"}
    lr = out[out["problem"] == "lr"]
    np.testing.assert_array_equal(lr["suboptimality"], [0.5, 1e-3, 0.0])
    np.testing.assert_array_equal(lr["rel_suboptimality"], [5.0, 1e-2, 0.0])
    assert set(lr["reference"]) == {"exact optimum"}
    assert "reference" not in frame_of(a, b, c).columns  # input untouched


def test_best_known_is_per_seed_since_the_seed_draws_the_data():
    # seed 1 trains on another split: its losses are lower, but not better optimized
    a0 = make_run("mlp", "s", 0, [np.nan] * 2, convex=False, loss=[1.0, 0.5])
    b0 = make_run("mlp", "t", 0, [np.nan] * 2, convex=False, loss=[1.0, 0.7])
    a1 = make_run("mlp", "s", 1, [np.nan] * 2, convex=False, loss=[0.4, 0.3])
    out = report.add_best_known(frame_of(a0, b0, a1))
    final = out.groupby(["solver", "seed"])["suboptimality"].last()
    assert final.to_dict() == {("s", 0): 0.0, ("s", 1): 0.0, ("t", 0): pytest.approx(0.2)}


def test_summary_tables_apply_best_known():
    a = make_run("mlp", "s", 0, [np.nan] * 3, convex=False, loss=[1.0, 0.5, 0.2])
    b = make_run("mlp", "t", 0, [np.nan] * 3, convex=False, loss=[1.0, 0.6, 0.2 + 1e-3])
    t = report.summary_tables(frame_of(a, b), EPS)["iterations_to_eps"]
    assert row(t, solver="s", eps=1e-8)["median"] == 2
    assert row(t, solver="t", eps=1e-2)["median"] == 2
    assert row(t, solver="t", eps=1e-4)["median"] == np.inf
    assert set(t["reference"]) == {"best known"}


# ----------------------------------------------------------------------------- profiles
def profile_frame():
    """Median times to 1e-6: P1: A = 1, B = 2; P2: A never, B = 3."""
    return frame_of(
        make_run("P1", "A", 0, [1.0, 1e-7], [0, 1]),
        make_run("P1", "A", 1, [1.0, 1e-7], [0, 1]),
        make_run("P1", "A", 2, [1.0, 1e-7], [0, 5]),
        make_run("P1", "B", 0, [1.0, 1e-7], [0, 2], n_fvp=[0, 10]),
        make_run("P2", "A", 0, [1.0, 1e-3], [0, 1]),
        make_run("P2", "B", 0, [1.0, 1e-7], [0, 3]),
    )


def test_performance_profile_hand_computed():
    prof = report.performance_profile(profile_frame(), 1e-6, "time")
    assert list(prof.columns) == ["solver", "tau", "fraction"]
    assert prof.attrs["n_problems"] == 2
    # ratios: P1: A 1, B 2; P2: A inf, B 1
    for solver, sp in prof.groupby("solver"):
        tau, frac = sp["tau"].to_numpy(), sp["fraction"].to_numpy()
        assert tau[0] == 1.0 and tau[-1] == 2.0 and np.all(np.diff(tau) > 0)
        if solver == "A":
            np.testing.assert_array_equal(frac, 0.5)
        else:
            np.testing.assert_array_equal(frac, np.where(tau >= 2.0, 1.0, 0.5))
    assert prof.groupby("solver").size().min() > 10  # the log-spaced grid is there


def test_performance_profile_other_measures():
    # first-order calls (n_grad + n_loss + 2 n_fvp): P1: A = 2, B = 22 -> ratio 11; P2: B only
    prof = report.performance_profile(profile_frame(), 1e-6, "first_order_calls", n_tau=5)
    b = prof[prof["solver"] == "B"]
    assert b["tau"].max() == 11.0
    np.testing.assert_array_equal(b["fraction"], np.where(b["tau"] >= 11.0, 1.0, 0.5))
    # nobody reaches 1e-12: everything inf, fractions 0, grid just [1]
    none = report.performance_profile(profile_frame(), 1e-12)
    assert list(none["tau"]) == [1.0, 1.0] and list(none["fraction"]) == [0.0, 0.0]
    with pytest.raises(ValueError, match="measure"):
        report.performance_profile(profile_frame(), 1e-6, "bogus")


# ----------------------------------------------------------------------------- files
def test_write_tables_formats_and_provenance(tmp_path):
    table = pd.DataFrame(
        {
            "problem": ["p_1", "p|2"],
            "solver": ["a&b", "c"],
            "eps": [1e-6, 1e-6],
            "median": [1.5, np.inf],
            "q25": [np.nan, 2e-9],
            "q75": [1.61, np.inf],
            "n_runs": [3, 3],
        }
    )
    paths = report.write_tables({"time_to_eps": table}, tmp_path, PROV)
    names = sorted(p.name for p in paths)
    assert names == [f"time_to_eps.{ext}" for ext in ("csv", "json", "md", "tex")]

    md = (tmp_path / "time_to_eps.md").read_text(encoding="utf-8")
    assert "git_commit: abc123def456" in md and "code_version: c0ffee123456" in md
    assert md.startswith("<!--")
    # constant columns are stated once; times to 2 significant figures
    assert "| p_1 | a&b | 1.5 | – | 1.6 |" in md
    assert r"| p\|2 | c | ∞ | 2e-9 | ∞ |" in md
    assert "|:---|:---|---:|---:|---:|" in md
    assert "eps = 1e-6 in every row." in md and "n_runs = 3 in every row." in md

    tex = (tmp_path / "time_to_eps.tex").read_text(encoding="utf-8")
    assert "% git_commit: abc123def456" in tex and "numpy 2.0" in tex
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{llrrr}"):
        assert rule in tex
    assert r"p\_1 & a\&b & 1.5 & -- & 1.6 \\" in tex
    assert r"p|2 & c & $\infty$ & $2\times 10^{-9}$ & $\infty$ \\" in tex
    assert all(line.startswith("%") for line in tex.split(r"\begin")[0].splitlines())

    csv = tmp_path / "time_to_eps.csv"
    assert not csv.read_text(encoding="utf-8").startswith("#")
    pd.testing.assert_frame_equal(pd.read_csv(csv), table, check_dtype=False)


@pytest.fixture(scope="module")
def tiny_store_frame(tmp_path_factory):
    from natgrad_core.benchmarking.problems import PROBLEMS
    from natgrad_core.benchmarking.runner import RunSpec, SolverConfig, execute
    from natgrad_core.benchmarking.store import ResultsStore

    root = tmp_path_factory.mktemp("report_store")
    store = ResultsStore(root / "results")
    solvers = [
        SolverConfig.make("gd", "gd", learning_rate=1.0, step="armijo"),
        SolverConfig.make("kfac", "kfac", step="quadratic"),
    ]
    for name in ("iris-logistic", "iris-mlp"):
        for solver in solvers:
            for seed in range(2):
                spec = RunSpec(PROBLEMS[name], solver, seed, max_iter=10)
                store.write_run(spec.key(), execute(spec, cache_dir=root / "cache"))
    return store.load()


def test_build_report_on_real_store(tiny_store_frame, tmp_path):
    frame = tiny_store_frame
    assert frame["run_key"].nunique() == 8
    index = report.build_report(frame, tmp_path / "report", config={"suite": "tiny"})
    assert index == tmp_path / "report" / "index.html"
    text = index.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", text, re.IGNORECASE)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower()
    for word in ("Provenance", "How to read this", "best known", "Work", "First-order calls", "∞"):
        assert word in text
    figures = tmp_path / "report" / "figures"
    for stem in (
        "suboptimality_iris-logistic",
        "suboptimality_iris-mlp",
        "performance_profiles",
        "data_profiles",
        "fidelity",
    ):
        assert (figures / f"{stem}.png").stat().st_size > 0
        assert (figures / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        assert (figures / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
    assert text.count("data:image/png;base64,") == 5
    tables = tmp_path / "report" / "tables"
    names = ["headline_time", "headline_work", "hyperparameters", *report.summary_tables(frame)]
    for name in names:
        for ext in ("csv", "json", "md", "tex"):
            assert (tables / f"{name}.{ext}").is_file()
    prov = json.loads((tables / "provenance.json").read_text())
    assert prov["results"]["n_runs"] == 8
    assert prov["config_hash"] is not None


# ----------------------------------------------------------------------------- diagnostics
def test_step_diagnostics_sum_the_run_counts_and_show_flags():
    # counts written by the runner, summed by hand: 3 + 0 rejected, 1 + 2 capped, ...
    runs = [
        make_run(
            "P",
            "s",
            0,
            [1.0, 0.5, 0.4, 0.3],
            n_rejected=3,
            n_cg_capped=1,
            n_fallbacks=0,
            flags="mostly_rejected",
        ),
        make_run(
            "P",
            "s",
            1,
            [1.0, 2.0],
            n_rejected=0,
            n_cg_capped=2,
            n_fallbacks=1,
            flags="loss_increased;mostly_rejected",
        ),
        make_run("P", "t", 0, [1.0, 0.5]),
    ]
    tables = report.summary_tables(frame_of(*runs), EPS)
    s = row(tables["step_diagnostics"], solver="s")
    assert (s["n_runs"], s["steps"], s["rejected"], s["cg_capped"], s["fallbacks"]) == (
        2,
        4,
        3,
        3,
        1,
    )
    assert (s["flagged"], s["flags"]) == (2, "loss_increased x1, mostly_rejected x2")
    t = row(tables["step_diagnostics"], solver="t")
    assert (t["rejected"], t["flagged"], t["flags"]) == (0, 0, "")


# ----------------------------------------------------------------------------- compare
def _runs(solver, iterations, time=1.0, machine="m0", seeds=(0,), **columns):
    """Runs of ("P", solver) reaching 1e-7 after ``iterations`` steps in ``time`` seconds."""
    subs = np.r_[np.ones(iterations), 1e-7]
    times = np.linspace(0.0, time, iterations + 1)
    return [make_run("P", solver, s, subs, times, machine=machine, **columns) for s in seeds]


def test_compare_judges_deterministic_measures_not_time_across_machines():
    # the case: same iterations and counts, times 3x slower on another CPU
    a = frame_of(*_runs("s1", 5), *_runs("s2", 5), *_runs("s3", 5), *_runs("s4", 5))
    b = frame_of(
        *_runs("s1", 5, time=3.0, machine="m1"),
        *_runs("s2", 6, machine="m1"),  # one more iteration: worse
        *_runs("s3", 4, machine="m1"),  # one fewer: better
        *_runs("s4", 5, machine="m1", status="diverged"),  # a failed run: worse
    )
    with pytest.warns(UserWarning, match="different machines"):
        out = compare(a, b, eps=1e-6)
    verdict = dict(zip(out["solver"], out["verdict"]))
    assert verdict == {"s1": "same", "s2": "worse", "s3": "better", "s4": "worse"}
    assert list(out["solver"]) == ["s2", "s4", "s3", "s1"]  # worse first
    s2 = row(out, solver="s2")
    assert (s2["iterations_a"], s2["iterations_b"], s2["worse"]) == (
        5,
        6,
        "iterations, work",
    )
    assert row(out, solver="s4")["worse"] == "failed_runs"
    s1 = row(out, solver="s1")
    assert (s1["time_ratio"], s1["time_judged"]) == (3.0, False)


@pytest.mark.parametrize(
    ("time_b", "threshold", "expected"),
    [
        (3.0, 1.5, "worse"),
        (1.4, 1.5, "same"),
        (0.5, 1.5, "better"),
        (3.0, 4.0, "same"),
        (100.0, np.inf, "same"),  # deterministic measures only
    ],
)
def test_compare_judges_time_on_one_machine(time_b, threshold, expected):
    a, b = frame_of(*_runs("s", 5)), frame_of(*_runs("s", 5, time=time_b))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one machine: no warning
        out = compare(a, b, time_threshold=threshold)
    assert (out["time_judged"].iloc[0], out["verdict"].iloc[0]) == (True, expected)


def test_compare_floors_final_suboptimality_at_eps_and_counts_flags():
    # both end below eps = 1e-6 (1e-9 vs 1e-8): no change; B's run is flagged: failed
    a = make_run("P", "s", 0, [1.0, 1e-9])
    b = make_run("P", "s", 0, [1.0, 1e-8], flags="loss_increased")
    out = compare(a, b, eps=1e-6).iloc[0]
    assert (out["final_suboptimality_a"], out["final_suboptimality_ratio"]) == (1e-6, 1.0)
    assert (out["failed_runs_a"], out["failed_runs_b"], out["verdict"]) == (0, 1, "worse")


def test_compare_without_common_rows_raises():
    a, b = frame_of(*_runs("s1", 5)), frame_of(*_runs("s2", 5))
    with pytest.raises(ValueError, match=r"no \(problem, solver\) in common.*s1.*s2"):
        compare(a, b)


def test_compare_uses_a_common_best_known_reference():
    a = make_run("mlp", "s", 0, [np.nan] * 2, [0, 1], convex=False, loss=[1.0, 0.5])
    b = make_run("mlp", "s", 0, [np.nan] * 2, [0, 1], convex=False, loss=[1.0, 0.25])
    out = compare(a, b, eps=1e-6)
    # common F* = 0.25: A ends at 0.25 (never reaches 1e-6), B at 0 (reaches at t = 1;
    # final suboptimality floored at eps)
    r = out.iloc[0]
    assert (r["final_suboptimality_a"], r["final_suboptimality_b"]) == (0.25, 1e-6)
    assert (r["time_a"], r["time_b"], r["verdict"]) == (np.inf, 1.0, "better")
    assert (r["iterations_a"], r["iterations_b"], r["worse"]) == (np.inf, 1.0, "")


def test_a_restart_curve_is_labelled_but_not_reported_as_separated(tmp_path):
    frame = frame_of(
        make_run("p", "sk", 0, [1.0, 0.1], algorithm="sklearn-lbfgs", curve="restarts"),
        make_run("p", "gd", 0, [1.0, 0.5]),
        make_run("p", "two", 0, [1.0, 0.5], config_id="c1"),
        make_run("p", "two", 1, [1.0, 0.5], config_id="c2"),
    )
    report.build_report(frame, tmp_path, eps=(1e-2,))
    record = json.loads((tmp_path / "tables" / "provenance.json").read_text())["results"]
    # only the label that really has two configurations was split
    assert record["separated_labels"] == ["two [cfg c1]", "two [cfg c2]"]
    table = pd.read_csv(tmp_path / "tables" / "final_suboptimality.csv")
    assert "sk (restarts)" in set(table["solver"])

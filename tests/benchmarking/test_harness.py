"""Tests of the benchmark harness: problems, references, runner, store, grid, resume.

Everything runs on a tiny grid (iris-logistic and iris-mlp, two solvers, a few seeds,
max_iter 8), so the whole file takes seconds. Subprocesses get ``PYTHONPATH`` pointing at
this checkout, so they exercise the same sources as the in-process tests.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, softmax
from sklearn import datasets
from sklearn.linear_model import LogisticRegression

from natgrad_core.benchmarking import cli, reference, runner, store
from natgrad_core.benchmarking.grid import DEFAULT_SOLVERS, GridConfig, load_config, run_grid
from natgrad_core.benchmarking.problems import (
    BUNDLED,
    PROBLEMS,
    SUITES,
    Problem,
    get_problem,
    problem_from_dict,
)
from natgrad_core.benchmarking.reference import REFERENCE_TOL, reference_solution
from natgrad_core.benchmarking.runner import RunSpec, SolverConfig, execute
from natgrad_core.benchmarking.store import (
    SCHEMA,
    SCHEMA_VERSION,
    DamagedRunWarning,
    ResultsStore,
    conform,
)
from natgrad_core.benchmarking.tuning import tuning_grid
from natgrad_core.models import Objective
from tests.benchmarking.tiny import TINY_PROBLEMS, TINY_SOLVERS, tiny_toml
from tests.conftest import dense_reference_fisher, exact_output_fisher

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_SCHEMA = Path(__file__).with_name("golden_schema.json")

# Columns that legitimately differ between two executions of the same run.
TIMING_COLUMNS = ["time", "grad_time"]


def write_tiny(directory: Path, seeds=(0, 1), max_iter: int = 8, name="tiny.toml") -> Path:
    path = directory / name
    path.write_text(tiny_toml(seeds, max_iter))
    return path


def subprocess_env() -> dict:
    """The environment for child processes: this checkout first on the import path."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def natgrad_command() -> list[str]:
    """The installed ``natgrad`` console script next to this interpreter (or ``-m``)."""
    script = Path(sys.executable).with_name("natgrad")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "natgrad_core.benchmarking.cli"]


def spec(problem="iris-logistic", solver=None, seed=0, **budget) -> RunSpec:
    solver = solver or SolverConfig.make("kfac-quadratic", "kfac", step="quadratic")
    budget = {"max_iter": 8, "time_limit": 30.0, **budget}
    return RunSpec(get_problem(problem), solver, seed, **budget)


def csv_files(runs_dir: Path) -> list[Path]:
    return sorted(runs_dir.glob("*.csv")) if runs_dir.is_dir() else []


# ================================================================================ reference
@pytest.mark.parametrize("name", ["iris-logistic", "breast_cancer-logistic"])
def test_reference_matches_sklearn_newton_cholesky(name):
    problem = get_problem(name)
    data = problem.load()
    ref = reference_solution(data)
    assert ref.kind == "exact"
    # ‖∇L(w*)‖_∞ <= REFERENCE_TOL (1e-12): the Newton phase runs to exactly this tolerance
    assert ref.grad_norm <= REFERENCE_TOL
    clf = LogisticRegression(C=1 / problem.alpha, solver="newton-cholesky", tol=1e-12)
    clf.fit(data.X_train, data.y_train)
    n = data.X_train.shape[0]
    proba = clf.predict_proba(data.X_train)
    nll = -np.mean(np.log(proba[np.arange(n), data.y_train]))
    sk_loss = nll + problem.alpha * np.sum(clf.coef_**2) / (2 * n)
    assert abs(ref.loss - sk_loss) <= 1e-10
    # same optimum, not just the same value: the predicted probabilities agree too
    z = data.model.predict_outputs(ref.theta, data.X_train)
    ours = softmax(z, axis=1) if z.shape[1] > 1 else np.c_[1 - expit(z[:, 0]), expit(z[:, 0])]
    np.testing.assert_allclose(ours, proba, atol=1e-8)


def test_reference_is_cached_by_content_hash(tmp_path, monkeypatch):
    data = get_problem("iris-logistic").load()
    cache = tmp_path / "cache"
    first = reference_solution(data, cache)
    path = cache / f"{data.content_hash()}.npz"
    assert path.is_file()
    assert sorted(p.name for p in cache.iterdir()) == [path.name], "temporary file left over"

    def no_newton(_data):
        raise AssertionError("reference recomputed although it is cached")

    monkeypatch.setattr(reference, "_newton", no_newton)
    second = reference_solution(data, cache)
    assert second.kind == "exact"
    assert second.loss == first.loss
    assert second.grad_norm == first.grad_norm
    np.testing.assert_array_equal(second.theta, first.theta)
    # another L2 strength is another problem: the cache must miss (and call Newton)
    other = replace(data.problem, alpha=2.0).load()
    with pytest.raises(AssertionError, match="recomputed"):
        reference_solution(other, cache)


def test_reference_of_nonconvex_problem_is_none(tmp_path):
    data = get_problem("iris-mlp").load()
    ref = reference_solution(data, tmp_path / "cache")
    assert ref.kind == "none"
    assert ref.theta is None
    assert math.isnan(ref.loss) and math.isnan(ref.grad_norm)
    assert not (tmp_path / "cache").exists()


# ================================================================================= problems
# The three 100k-sample synthetic problems (up to 800 MB of features) are too big for unit
# tests; their generator is the same as that of the smaller ones tested here.
LOADABLE = [n for n, p in PROBLEMS.items() if p.dataset != "synthetic" or p.n_samples <= 10_000]


@pytest.mark.parametrize("name", LOADABLE)
def test_registry_problem_loads_standardized_and_stratified(name):
    problem = PROBLEMS[name]
    data = problem.load()
    X_raw, y_raw = problem._raw()
    n = X_raw.shape[0]
    n_test = math.ceil(problem.test_size * n)
    assert data.X_train.shape == (n - n_test, X_raw.shape[1])
    assert data.X_test.shape == (n_test, X_raw.shape[1])
    assert np.all(np.isfinite(data.X_train)) and np.all(np.isfinite(data.X_test))
    # standardized with training statistics: mean 0, std 1 (constant columns stay 0)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0.0, atol=1e-10)
    std = data.X_train.std(axis=0)
    assert np.all(np.isclose(std, 1.0, atol=1e-10) | np.isclose(std, 0.0, atol=1e-12))
    assert data.model.n_params > 0
    if problem.model == "autoencoder":
        np.testing.assert_array_equal(data.y_train, data.X_train)
        return
    # stratified: each class's test count is its share of the test set, up to rounding
    classes, counts = np.unique(y_raw, return_counts=True)
    assert set(np.unique(data.y_train)) == set(range(len(classes)))
    test_counts = np.bincount(data.y_test, minlength=len(classes))
    assert np.all(np.abs(test_counts - counts * n_test / n) <= 1.0), (test_counts, counts)


def test_bundled_problems_cover_every_bundled_dataset():
    assert {p.dataset for p in PROBLEMS.values()} >= set(BUNDLED)


def test_synthetic_problem_is_deterministic_for_a_seed():
    def load(seed):
        return Problem(
            "syn", "synthetic", n_samples=200, n_features=6, n_classes=3, seed=seed
        ).load()

    a, b, c = load(0), load(0), load(1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert a.content_hash() == b.content_hash()
    assert a.X_train.shape == c.X_train.shape
    assert not np.allclose(a.X_train, c.X_train)
    assert a.content_hash() != c.content_hash()


@pytest.fixture
def iris_files(tmp_path):
    X, y = datasets.load_iris(return_X_y=True)
    svm = tmp_path / "iris.svm"
    datasets.dump_svmlight_file(X, y, str(svm))
    csv_last = tmp_path / "iris_last.csv"
    np.savetxt(csv_last, np.c_[X, y], delimiter=",")
    csv_first = tmp_path / "iris_first.csv"
    np.savetxt(csv_first, np.c_[y, X], delimiter=",")
    npz = tmp_path / "iris.npz"
    np.savez(npz, X=X, y=y)
    return {"svmlight": svm, "csv": csv_last, "csv0": csv_first, "npz": npz}


@pytest.mark.parametrize("kind", ["svmlight", "csv", "csv0", "npz"])
def test_file_problem_loads_like_the_bundled_dataset(iris_files, kind):
    entry = {"name": f"iris-{kind}", "dataset": "file", "path": str(iris_files[kind])}
    entry["format"] = "csv" if kind.startswith("csv") else kind
    if kind == "csv0":
        entry["label_column"] = 0
    data = problem_from_dict(entry).load()
    bundled = get_problem("iris-logistic").load()
    np.testing.assert_allclose(data.X_train, bundled.X_train, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(data.y_train, bundled.y_train)
    np.testing.assert_allclose(data.X_test, bundled.X_test, rtol=1e-12, atol=1e-12)
    assert data.model.n_params == bundled.model.n_params


def test_file_problem_errors_name_the_culprit(tmp_path):
    missing = tmp_path / "absent.svm"
    with pytest.raises(ValueError, match=re.escape(repr(str(missing)))):
        problem_from_dict(
            {"name": "m", "dataset": "file", "path": str(missing), "format": "svmlight"}
        )
    npz = tmp_path / "only_x.npz"
    np.savez(npz, X=np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"only_x\.npz.*'y'"):
        problem_from_dict(
            {"name": "n", "dataset": "file", "path": str(npz), "format": "npz"}
        ).load()
    csv = tmp_path / "header.csv"
    csv.write_text("a,b,label\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match=r"header\.csv"):
        problem_from_dict(
            {"name": "c", "dataset": "file", "path": str(csv), "format": "csv"}
        ).load()
    with pytest.raises(ValueError, match="parquet"):
        problem_from_dict({"name": "f", "dataset": "file", "path": str(csv), "format": "parquet"})


def test_unknown_model_dataset_or_key_is_named():
    with pytest.raises(ValueError, match="'perceptron'"):
        problem_from_dict({"name": "p", "dataset": "iris", "model": "perceptron"})
    with pytest.raises(ValueError, match="'mnist-ish'"):
        problem_from_dict({"name": "p", "dataset": "mnist-ish"})
    with pytest.raises(ValueError, match="'colour'"):
        problem_from_dict({"name": "p", "dataset": "iris", "colour": "red"})
    with pytest.raises(ValueError, match="'no-such-problem'"):
        get_problem("no-such-problem")


def test_content_hash_tracks_alpha_and_data(tmp_path):
    base = Problem("h", "iris", alpha=1.0)
    assert base.load().content_hash() == base.load().content_hash()
    assert replace(base, alpha=2.0).load().content_hash() != base.load().content_hash()
    X, y = datasets.load_iris(return_X_y=True)
    path = tmp_path / "iris.csv"
    np.savetxt(path, np.c_[X, y], delimiter=",")
    from_file = problem_from_dict(
        {"name": "f", "dataset": "file", "path": str(path), "format": "csv"}
    )
    before = from_file.load().content_hash()
    X[:, 0] = X[:, 0] ** 2  # not undone by standardization
    np.savetxt(path, np.c_[X, y], delimiter=",")
    assert from_file.load().content_hash() != before


# =================================================================================== runner
def test_execute_rows_follow_the_schema():
    frame = execute(spec(), n_concurrent=3, blas_threads=1)
    assert list(frame.columns) == list(SCHEMA)
    for column, (dtype, _) in SCHEMA.items():
        if dtype == "str":
            assert frame[column].map(type).eq(str).all(), column
        else:
            assert frame[column].dtype == dtype, (column, frame[column].dtype)
    assert frame["iteration"].tolist() == list(range(len(frame)))
    first = frame.iloc[0]
    assert first["iteration"] == 0 and first["step_status"] == "start" and first["time"] == 0
    assert math.isnan(first["fidelity"])
    assert (frame["schema_version"] == SCHEMA_VERSION).all()
    assert frame["run_key"].nunique() == 1 and frame["run_key"].iloc[0] == spec().key()
    assert (frame["n_concurrent"] == 3).all() and (frame["blas_threads"] == 1).all()
    assert (frame["status"] == "max_iter").all() and len(frame) == 9
    assert (np.diff(frame["time"]) >= 0).all()
    assert (frame["grad_time"] > 0).all()
    assert json.loads(frame["params"].iloc[0]) == {"step": "quadratic"}


@pytest.mark.parametrize(
    "solver",
    [
        SolverConfig.make("exact-lm", "exact", damping=1e-4, step="lm"),
        SolverConfig.make("kfac-quadratic", "kfac", damping=1e-4, step="quadratic"),
    ],
    ids=lambda s: s.label,
)
def test_convex_suboptimality_is_nonnegative_and_decreasing(solver, tmp_path):
    frame = execute(spec(solver=solver, max_iter=15), cache_dir=tmp_path)
    sub = frame["suboptimality"].to_numpy()
    assert np.all(np.isfinite(sub))
    assert sub.min() >= -1e-12
    assert np.all(np.diff(sub) <= 1e-12), "natural-gradient steps increased the loss"
    assert sub[-1] < 1e-3 * sub[0]
    assert np.all(frame["dist_to_opt"] >= 0)
    assert frame["dist_to_opt"].iloc[-1] < 0.1 * frame["dist_to_opt"].iloc[0]
    np.testing.assert_allclose(
        frame["rel_suboptimality"], sub / abs(frame["loss"].iloc[-1] - sub[-1]), rtol=1e-12
    )


def test_nonconvex_suboptimality_is_nan():
    frame = execute(spec("iris-mlp"))
    assert not frame["convex"].any()
    assert frame[["suboptimality", "rel_suboptimality", "dist_to_opt"]].isna().all().all()
    assert frame["test_metric"].between(0, 1).all()


def test_target_status_when_target_reached():
    exact = SolverConfig.make("exact-lm", "exact", damping=1e-4, step="lm")
    frame = execute(spec(solver=exact, max_iter=50, target_suboptimality=1e-8))
    assert (frame["status"] == "target").all()
    assert "1e-08" in frame["message"].iloc[0]
    sub = frame["suboptimality"]
    assert sub.iloc[-1] <= 1e-8
    assert (sub.iloc[:-1] > 1e-8).all(), "the run went on after reaching the target"
    assert frame["iteration"].iloc[-1] < 50


@pytest.mark.parametrize(
    "params",
    [
        {"damping": 1e-4, "step": "lm"},  # as in DEFAULT_SOLVERS: damping adapted per step
        {"damping": 1e-4, "step": "quadratic"},
        {"damping": 1e-10, "step": "armijo"},
        {"damping": 1e-3, "step": "fixed", "learning_rate": 0.5},
    ],
    ids=lambda p: p["step"],
)
def test_fidelity_is_one_for_the_exact_solver(params):
    # fidelity compares each step with the exact natural-gradient direction at the damping
    # that step used: the exact solver's steps lie along it, whatever the step rule
    exact = SolverConfig.make("exact", "exact", **params)
    for problem in TINY_PROBLEMS:
        frame = execute(spec(problem, exact, max_iter=20))
        fidelity = frame.loc[frame["iteration"] >= 1, "fidelity"].dropna()
        assert len(fidelity) >= 5, problem
        np.testing.assert_allclose(fidelity, 1.0, atol=1e-6, err_msg=problem)
        # rejected steps (θ unchanged) have no direction to compare
        rejected = frame["step_status"] == "rejected"
        assert frame.loc[rejected, "fidelity"].isna().all()


@pytest.mark.parametrize("solver_name", ["gd", "kfac", "diag", "lbfgs"])
def test_fidelity_is_a_cosine_for_other_solvers(solver_name):
    solver = SolverConfig.make(solver_name, solver_name)
    for problem in TINY_PROBLEMS:
        frame = execute(spec(problem, solver))
        fidelity = frame["fidelity"].iloc[1:].dropna()
        assert len(fidelity) > 0, (problem, solver_name)
        assert fidelity.between(-1 - 1e-12, 1 + 1e-12).all(), (problem, solver_name)


def test_fidelity_matches_an_independent_natural_gradient_direction():
    """Step 1 of fixed-rate GD is -lr·g; its recorded fidelity must equal the cosine with
    -(F + l2·mask + λI)⁻¹ g, F built from finite-difference Jacobians and textbook Λ."""
    gd = SolverConfig.make("gd", "gd", learning_rate=0.5)
    frame = execute(spec(solver=gd, max_iter=2))
    data = get_problem("iris-logistic").load()
    model, X = data.model, data.X_train
    theta0 = np.zeros(model.n_params)  # logistic regression starts at zero
    _, grad = Objective(model, X, data.y_train, data.alpha).loss_and_grad(theta0)
    Lam = exact_output_fisher(model, model.predict_outputs(theta0, X))
    F = dense_reference_fisher(model, theta0, X, Lam)
    l2 = np.diag(data.alpha / len(X) * model.weight_mask())
    C = F + l2 + runner.FIDELITY_DAMPING * np.eye(len(F))
    natural = -np.linalg.solve(C, grad)
    expected = (-grad @ natural) / (np.linalg.norm(grad) * np.linalg.norm(natural))
    recorded = frame.loc[frame["iteration"] == 1, "fidelity"].item()
    assert abs(recorded - expected) < 1e-6
    assert expected < 0.99  # GD is not already the natural direction here: a real check


def test_fidelity_not_recorded_when_disabled_or_too_big(monkeypatch):
    assert execute(spec(fidelity=False))["fidelity"].isna().all()
    monkeypatch.setattr(runner, "FIDELITY_MAX_PARAMS", 10)  # iris-logistic has 15
    assert execute(spec())["fidelity"].isna().all()


@pytest.mark.parametrize(
    "limit, value, reason",
    [("DENSE_MEMORY_LIMIT", 64, "exact Fisher needs"), ("dense_flop_limit", 1e3, "flops")],
)
def test_infeasible_exact_run_is_skipped(monkeypatch, limit, value, reason):
    exact = SolverConfig.make("exact-lm", "exact", damping=1e-4, step="lm")
    run = spec(solver=exact)
    if limit.isupper():  # a module limit
        if not hasattr(runner, limit):
            pytest.fail(f"runner.{limit} is gone; update this test")
        monkeypatch.setattr(runner, limit, value)
    else:  # a grid's budget, in the run's specification
        run = replace(run, **{limit: value})
    frame = execute(run)
    assert list(frame.columns) == list(SCHEMA)
    assert len(frame) == 1 and frame["iteration"].iloc[0] == 0
    assert frame["status"].iloc[0] == "skipped"
    assert reason in frame["message"].iloc[0]
    assert frame["n_params"].iloc[0] == 15
    # only dense curvature is limited
    assert execute(spec())["status"].iloc[0] == "max_iter"


def _fail_loading(monkeypatch, name):
    original = Problem.load

    def load(self, seed=0):
        if self.name == name:
            raise RuntimeError(f"cannot read {name}")
        return original(self, seed)

    monkeypatch.setattr(Problem, "load", load)


def test_exception_in_a_run_becomes_error_status(monkeypatch, tmp_path):
    _fail_loading(monkeypatch, "iris-mlp")
    frame = execute(spec("iris-mlp"))
    assert list(frame.columns) == list(SCHEMA)
    assert len(frame) == 1
    assert frame["status"].iloc[0] == "error"
    assert frame["message"].iloc[0].startswith("RuntimeError: cannot read iris-mlp")
    # an error row is storable like any other
    path = ResultsStore(tmp_path).write_run(frame["run_key"].iloc[0], frame)
    stored = ResultsStore(tmp_path).load()
    assert stored["status"].tolist() == ["error"]
    assert stored["message"].iloc[0] == frame["message"].iloc[0]  # multi-line traceback
    assert path.stem == frame["run_key"].iloc[0]


def test_grid_goes_on_after_a_failing_run(monkeypatch, tmp_path):
    _fail_loading(monkeypatch, "iris-mlp")
    config = load_config(str(write_tiny(tmp_path)))
    results = ResultsStore(tmp_path / "results")
    summary = run_grid(config, results, cache_dir=tmp_path / "cache", progress=False)
    assert (summary.n_total, summary.n_ran, summary.n_errors) == (8, 8, 4)
    table = results.load()
    runs = table.groupby("run_key").last()
    assert len(runs) == 8
    assert (runs.loc[runs["problem"] == "iris-mlp", "status"] == "error").all()
    assert (runs.loc[runs["problem"] == "iris-logistic", "status"] == "max_iter").all()


def test_grid_goes_on_when_a_convex_problem_fails_to_load(tmp_path):
    # A data file that validates but is damaged before the grid runs. For a convex
    # problem the grid computes the reference up front; that failure must not lose the
    # grid either: the other problem's runs are stored and the bad ones recorded as errors.
    X, y = datasets.load_iris(return_X_y=True)
    np.savetxt(tmp_path / "bad.csv", np.c_[X, y], delimiter=",")
    config_path = tmp_path / "bad.toml"
    config_path.write_text(
        tiny_toml([0], 3).replace('"iris-logistic"', '"bad-csv"')
        + '\n[[problem]]\nname = "bad-csv"\ndataset = "file"\npath = "bad.csv"\nformat = "csv"\n'
    )
    config = load_config(str(config_path))
    (tmp_path / "bad.csv").write_text("x1,x2,label\n1,2,0\n3,4,1\n")
    results = ResultsStore(tmp_path / "results")
    summary = run_grid(config, results, cache_dir=tmp_path / "cache", progress=False)
    assert (summary.n_total, summary.n_ran, summary.n_errors) == (4, 4, 2)
    runs = results.load().groupby("run_key").last()
    bad = runs[runs["problem"] == "bad-csv"]
    assert (bad["status"] == "error").all()
    assert bad["message"].str.contains("bad.csv").all()


# ============================================================================== determinism
@pytest.mark.parametrize(
    "solver",
    [
        SolverConfig.make("kfac-quadratic", "kfac", step="quadratic"),
        SolverConfig.make("gd-armijo", "gd", step="armijo"),
        SolverConfig.make("adam", "adam", learning_rate=0.01),
    ],
    ids=lambda s: s.label,
)
def test_same_run_twice_gives_identical_rows(solver):
    one = execute(spec("iris-mlp", solver, seed=3))
    two = execute(spec("iris-mlp", solver, seed=3))
    pd.testing.assert_frame_equal(
        one.drop(columns=TIMING_COLUMNS), two.drop(columns=TIMING_COLUMNS)
    )
    other = execute(spec("iris-mlp", solver, seed=4))
    assert other["run_key"].iloc[0] != one["run_key"].iloc[0]
    assert other["loss"].iloc[0] != one["loss"].iloc[0]  # another initialization
    assert not np.allclose(other["loss"].iloc[-1], one["loss"].iloc[-1])


# ==================================================================================== seeds
def test_run_seed_redraws_the_stratified_split():
    problem = get_problem("wine-logistic")
    _, y = datasets.load_wine(return_X_y=True)
    one, two = problem.load(0), problem.load(1)
    assert problem.load(0) is one  # cached per (problem, seed)
    # the same split would give the same standardized training matrix
    assert one.X_train.shape == two.X_train.shape
    assert not np.array_equal(one.X_train, two.X_train)
    # both splits partition the same data, with the same class counts (stratified)
    for data in (one, two):
        assert len(data.y_train) + len(data.y_test) == len(y)
        np.testing.assert_array_equal(
            np.bincount(data.y_train) + np.bincount(data.y_test), np.bincount(y)
        )
    np.testing.assert_array_equal(np.bincount(one.y_train), np.bincount(two.y_train))
    assert one.content_hash() != two.content_hash()
    with pytest.raises(ValueError, match="integer >= 0, got -1"):
        problem.load(-1)


def test_reference_is_the_optimum_of_each_seeds_data():
    # independent reference: scikit-learn's Newton solver on the same seed's training data
    problem = get_problem("breast_cancer-logistic")
    losses = []
    for seed in (0, 1):
        data = problem.load(seed)
        clf = LogisticRegression(C=1 / problem.alpha, solver="newton-cholesky", tol=1e-12)
        clf.fit(data.X_train, data.y_train)
        n = data.X_train.shape[0]
        proba = clf.predict_proba(data.X_train)[np.arange(n), data.y_train]
        sk_loss = -np.mean(np.log(proba)) + problem.alpha * np.sum(clf.coef_**2) / (2 * n)
        losses.append(reference_solution(data).loss)
        assert abs(losses[-1] - sk_loss) <= 1e-10
    assert abs(losses[0] - losses[1]) > 1e-6


def test_seeds_of_a_logistic_problem_give_different_numbers_and_a_seed_repeats():
    exact = SolverConfig.make("exact", "exact", damping=1e-4, step="lm")
    zero, one, again = (
        execute(spec("breast_cancer-logistic", exact, seed=s, max_iter=20)) for s in (0, 1, 0)
    )
    # the start is theta = 0 for every seed, so only the data can make these differ
    for column in ("loss", "test_metric"):
        assert zero[column].iloc[-1] != one[column].iloc[-1], column
    for frame in (zero, one):  # each seed measured against its own optimum
        assert frame["suboptimality"].iloc[-1] >= 0
        assert frame["status"].iloc[-1] == "target"
    pd.testing.assert_frame_equal(
        zero.drop(columns=TIMING_COLUMNS), again.drop(columns=TIMING_COLUMNS)
    )


# ========================================================================= step diagnostics
DIAGNOSTIC_CASES = [
    # (problem, solver, max_iter, expected flags)
    ("wine-mlp", SolverConfig.make("x", "exact", damping=1e-12, step="lm"), 6, "mostly_rejected"),
    (
        "iris-mlp",
        SolverConfig.make("y", "gd", learning_rate=30.0, step="fixed"),
        4,
        "loss_increased",
    ),
    ("wine-mlp", SolverConfig.make("z", "cg", cg_maxiter=2, step="lm"), 4, ""),
    ("iris-logistic", SolverConfig.make("k", "kfac", step="quadratic"), 8, ""),
]


@pytest.mark.parametrize(("problem", "solver", "max_iter", "flags"), DIAGNOSTIC_CASES)
def test_runs_count_step_troubles_and_flag_failure(problem, solver, max_iter, flags):
    frame = execute(spec(problem, solver, max_iter=max_iter, fidelity=False))
    steps = frame[frame["iteration"] > 0]
    loss = frame["loss"].to_numpy()
    last = frame.iloc[-1]
    # references from the per-iteration columns: a step not taken leaves the loss unchanged
    assert last["n_rejected"] == np.sum(loss[1:] == loss[:-1])
    assert last["n_cg_capped"] == (steps["step_status"] == "max_cg_iter").sum()
    assert last["n_fallbacks"] == steps["step_status"].isin(["jitter", "pinv"]).sum()
    assert last["flags"] == flags
    assert (loss[-1] > loss[0]) == ("loss_increased" in flags)
    assert (last["n_rejected"] > max_iter / 2) == ("mostly_rejected" in flags)
    for column in ("n_rejected", "n_cg_capped", "n_fallbacks", "flags", "machine"):
        assert frame[column].nunique() == 1, column  # run-level constants


def test_machine_id_names_the_machine(monkeypatch):
    from natgrad_core.benchmarking import provenance

    here = provenance.machine_id()
    assert re.fullmatch(r"[0-9a-f]{12}", here)
    assert execute(spec(max_iter=1))["machine"].iloc[0] == here
    monkeypatch.setattr(provenance.platform, "node", lambda: "another-host")
    provenance.machine_id.cache_clear()
    try:
        assert provenance.machine_id() != here
    finally:
        monkeypatch.undo()
        provenance.machine_id.cache_clear()
    assert provenance.machine_id() == here


# ==================================================================================== store
def _small_frame(seed=0) -> pd.DataFrame:
    return execute(spec("iris-logistic", SolverConfig.make("gd", "gd"), seed=seed, max_iter=2))


def test_write_run_round_trips(tmp_path):
    frame = _small_frame()
    key = frame["run_key"].iloc[0]
    results = ResultsStore(tmp_path)
    path = results.write_run(key, frame)
    assert path == tmp_path / "runs" / f"{key}.csv"
    assert results.done_keys() == {key}
    loaded = results.load()
    pd.testing.assert_frame_equal(loaded, conform(frame))


def test_write_run_is_atomic(tmp_path, monkeypatch):
    frame = _small_frame()
    key = frame["run_key"].iloc[0]
    results = ResultsStore(tmp_path)

    def crash(src, dst):
        raise OSError("simulated crash during os.replace")

    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        results.write_run(key, frame)
    assert list((tmp_path / "runs").iterdir()) == [], "partial or temporary file left behind"
    assert results.done_keys() == set()
    monkeypatch.undo()
    # an earlier complete file survives a failed rewrite untouched
    path = results.write_run(key, frame)
    before = path.read_bytes()
    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(OSError):
        results.write_run(key, _small_frame(seed=1).assign(run_key=key))
    assert path.read_bytes() == before
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names == [f"{key}.csv", f"{key}.json"]


def test_load_of_empty_store_has_schema_columns(tmp_path):
    for results in (ResultsStore(tmp_path / "absent"), ResultsStore(tmp_path)):
        (tmp_path / "runs").mkdir(exist_ok=True)
        frame = results.load()
        assert frame.empty
        assert list(frame.columns) == list(SCHEMA)
        assert results.done_keys() == set()


def test_load_rejects_other_schema_version(tmp_path):
    frame = _small_frame()
    results = ResultsStore(tmp_path)
    path = results.write_run(frame["run_key"].iloc[0], frame)
    table = pd.read_csv(path, keep_default_na=False)
    table["schema_version"] = SCHEMA_VERSION + 1
    table.to_csv(path, index=False)
    with pytest.raises(ValueError, match=rf"schema versions \[.*{SCHEMA_VERSION + 1}.*\]"):
        results.load()


def test_load_skips_a_run_file_with_missing_columns_and_names_it(tmp_path):
    frame = _small_frame()
    results = ResultsStore(tmp_path)
    path = results.write_run(frame["run_key"].iloc[0], frame)
    path.with_suffix(".json").unlink()  # no checksum: the columns themselves must tell
    pd.read_csv(path).drop(columns=["fidelity"]).to_csv(path, index=False)
    with pytest.warns(DamagedRunWarning, match=rf"{path.name}.*fidelity"):
        assert results.load().empty


def test_schema_matches_golden_file():
    golden = json.loads(GOLDEN_SCHEMA.read_text())
    current = [{"name": name, "dtype": dtype} for name, (dtype, _) in SCHEMA.items()]
    hint = (
        "The stored results layout changed. If this is deliberate, bump "
        "store.SCHEMA_VERSION and update tests/benchmarking/golden_schema.json in the "
        "same change (old result folders will then be rejected on load)."
    )
    assert current == golden["columns"], hint
    assert golden["schema_version"] == SCHEMA_VERSION, hint
    assert all(description for _, description in SCHEMA.values())


def test_suite_config_with_overrides(tmp_path):
    quick = load_config("quick")
    assert quick.problems == tuple(get_problem(n) for n in SUITES["quick"])
    assert quick.solvers == DEFAULT_SOLVERS
    assert quick.specs() == []  # a tuned suite: its runs are known after the tuning phase
    untuned = replace(quick, tune=None)
    assert len(untuned.specs()) == len(SUITES["quick"]) * len(DEFAULT_SOLVERS) * 3
    path = tmp_path / "quicker.toml"
    path.write_text('[run]\nsuite = "quick"\nproblems = ["iris-mlp"]\nseeds = [5]\nmax_iter = 4\n')
    tuned = load_config(str(path))
    assert tuned.tune == quick.tune  # the suite's search comes with it
    assert {(s.problem.name, s.seed, s.max_iter) for s in tuning_grid(tuned).specs()} == {
        ("iris-mlp", seed, 4) for seed in quick.tune.seeds
    }
    config = replace(tuned, tune=None)
    assert config.name == "quicker"
    assert [s.problem.name for s in config.specs()] == ["iris-mlp"] * len(DEFAULT_SOLVERS)
    assert {(s.seed, s.max_iter, s.time_limit) for s in config.specs()} == {
        (5, 4, quick.time_limit)
    }


# ================================================================================= run keys
def test_run_keys_are_independent_of_grid_order(tmp_path):
    config = load_config(str(write_tiny(tmp_path, seeds=(0, 1, 2))))
    shuffled = GridConfig(
        "other-name",
        tuple(reversed(config.problems)),
        tuple(reversed(config.solvers)),
        tuple(reversed(config.seeds)),
        config.max_iter,
        config.time_limit,
        config.target_suboptimality,
        config.tol,
        config.batch_size,
        config.fidelity,
    )

    def keys(specs):
        return {(s.problem.name, s.solver.label, s.seed): s.key() for s in specs}

    specs = config.specs()
    assert len(set(keys(specs).values())) == len(specs) == 12
    assert keys(shuffled.specs()) == keys(specs)
    mixed = specs[:]
    random.Random(0).shuffle(mixed)
    assert [s.key() for s in mixed] == [keys(specs)[k] for k in keys(mixed)]
    # keyword order of the hyperparameters does not matter either
    a = SolverConfig.make("k", "kfac", damping=1e-3, step="lm")
    b = SolverConfig.make("k", "kfac", step="lm", damping=1e-3)
    assert spec(solver=a).key() == spec(solver=b).key()


def test_run_key_changes_with_every_setting():
    base_solver = SolverConfig.make("kfac", "kfac", damping=1e-4, step="quadratic")
    base = spec(solver=base_solver)
    iris = base.problem
    variants = {
        "seed": replace(base, seed=1),
        "max_iter": replace(base, max_iter=9),
        "time_limit": replace(base, time_limit=31.0),
        "target": replace(base, target_suboptimality=1e-9),
        "tol": replace(base, tol=1e-9),
        "batch_size": replace(base, batch_size=16),
        "fidelity": replace(base, fidelity=False),
        "damping": replace(
            base, solver=SolverConfig.make("kfac", "kfac", damping=1e-3, step="quadratic")
        ),
        "step": replace(base, solver=SolverConfig.make("kfac", "kfac", damping=1e-4, step="lm")),
        "extra param": replace(
            base,
            solver=SolverConfig.make("kfac", "kfac", damping=1e-4, step="quadratic", inv_period=2),
        ),
        "solver": replace(
            base, solver=SolverConfig.make("kfac", "ekfac", damping=1e-4, step="quadratic")
        ),
        "label": replace(
            base, solver=SolverConfig.make("kfac2", "kfac", damping=1e-4, step="quadratic")
        ),
        "alpha": replace(base, problem=replace(iris, alpha=0.5)),
        "split seed": replace(base, problem=replace(iris, seed=1)),
        "test_size": replace(base, problem=replace(iris, test_size=0.3)),
        "problem": replace(base, problem=get_problem("wine-logistic")),
    }
    keys = {name: s.key() for name, s in variants.items()}
    for name, key in keys.items():
        assert key != base.key(), f"changing {name} did not change the run key"
    assert len(set(keys.values())) == len(keys)
    assert re.fullmatch(r"[0-9a-f]{12}", base.key())


def test_run_key_of_file_problem_follows_data_not_path_spelling(tmp_path, monkeypatch):
    """A file problem's key must identify its data: the same file named by a relative or an
    absolute path is one run (else resuming depends on the working directory and keys
    embed machine paths), and new contents in the same file are a new run (else a rerun
    after editing the data silently reuses stale results)."""
    X, y = datasets.load_iris(return_X_y=True)
    np.savetxt(tmp_path / "iris.csv", np.c_[X, y], delimiter=",")

    def key():
        problem = problem_from_dict(
            {"name": "iris-file", "dataset": "file", "path": "iris.csv", "format": "csv"}
        )
        absolute = replace(problem, path=str(tmp_path / "iris.csv"))
        keys = {replace(base, problem=p).key() for p in (problem, absolute)}
        assert len(keys) == 1, "the run key depends on how the data path is spelled"
        return keys.pop()

    base = spec()
    monkeypatch.chdir(tmp_path)
    before = key()
    X[:, 0] = X[:, 0] ** 2
    np.savetxt(tmp_path / "iris.csv", np.c_[X, y], delimiter=",")
    assert key() != before, "the run key ignores the contents of the data file"


# ========================================================================= resume after kill
def test_resume_after_kill(tmp_path):
    config = write_tiny(tmp_path, seeds=range(10))  # 2 problems x 2 solvers x 10 seeds
    n_total = 40
    out = tmp_path / "results"
    runs_dir = out / "runs"
    cmd = [*natgrad_command(), "run", str(config), "--out", str(out), "--no-report", "--quiet"]
    with open(tmp_path / "killed.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env())
        deadline = time.monotonic() + 90
        try:
            while proc.poll() is None and not csv_files(runs_dir):
                assert time.monotonic() < deadline, "no run finished within 90 s"
                time.sleep(0.002)
            finished_early = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    log_text = (tmp_path / "killed.log").read_text()
    assert not finished_early, f"grid ended before it could be killed:\n{log_text}"
    assert proc.returncode == -signal.SIGKILL

    # a crash in the middle of a write leaves at most hidden temporary files: plant one
    # of the killed process, which the rerun removes
    orphan = runs_dir / f".0123456789ab.csv.{proc.pid}.partial.tmp"
    orphan.write_text("schema_version,run_key\n1,01")
    first = csv_files(runs_dir)
    assert 1 <= len(first) < n_total
    for path in first:
        table = conform(pd.read_csv(path, keep_default_na=False, na_values=["", "NaN", "nan"]))
        assert table["run_key"].unique().tolist() == [path.stem]
        assert table["iteration"].tolist() == list(range(len(table)))
        assert table["status"].iloc[-1] in {"max_iter", "converged", "target", "time_limit"}
    results = ResultsStore(out)
    assert results.done_keys() == {p.stem for p in first}
    for extra in set(runs_dir.iterdir()) - set(first):
        # temporary files, and run records (written just before their run's CSV)
        assert re.fullmatch(r"\..+\.tmp|[0-9a-f]{12}\.json", extra.name), (
            f"unexpected file {extra.name}"
        )
    assert results.load()["run_key"].nunique() == len(first)
    snapshot = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in first}

    done = subprocess.run(
        cmd, capture_output=True, text=True, env=subprocess_env(), timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    n_first = len(first)
    assert (
        f"tiny: {n_total} runs, {n_first} already stored, {n_total - n_first} ran, 0 errors"
        in done.stdout
    ), done.stdout
    final = csv_files(runs_dir)
    assert len(final) == n_total
    assert not orphan.exists()
    for name, (mtime, content) in snapshot.items():
        path = runs_dir / name
        assert path.stat().st_mtime_ns == mtime, f"finished run {name} was rerun"
        assert path.read_bytes() == content
    table = results.load()
    assert not table.duplicated(["run_key", "iteration"]).any()
    runs = table.groupby("run_key")[["problem", "solver", "seed"]].first()
    assert len(runs) == n_total
    assert not runs.duplicated().any()
    assert set(map(tuple, runs.to_numpy())) == {
        (p, s, seed) for p in TINY_PROBLEMS for s in TINY_SOLVERS for seed in range(10)
    }


# =============================================================================== bad config
SOLVER_OK = '\n[[solver]]\nlabel = "gd-armijo"\nsolver = "gd"\nstep = "armijo"\n'
RUN_OK = '[run]\nproblems = ["iris-logistic"]\nseeds = [0]\nmax_iter = 8\n'
BAD_CONFIGS = {
    "unknown-solver": (
        RUN_OK + '\n[[solver]]\nlabel = "newton-x"\nsolver = "newton"\n',
        ["newton-x", "'newton'"],
    ),
    "unknown-problem": (
        RUN_OK.replace("iris-logistic", "no-such-problem") + SOLVER_OK,
        ["'no-such-problem'"],
    ),
    "negative-damping": (
        RUN_OK + '\n[[solver]]\nlabel = "kfac-neg"\nsolver = "kfac"\ndamping = -1\n',
        ["'kfac-neg'", "damping"],
    ),
    "missing-data-file": (
        RUN_OK.replace("iris-logistic", "mine")
        + SOLVER_OK
        + '\n[[problem]]\nname = "mine"\ndataset = "file"\npath = "nothere.csv"\nformat = "csv"\n',
        ["'mine'", "nothere.csv"],
    ),
    "malformed-toml": (RUN_OK + "\n[[solver\n", ["malformed TOML", "bad.toml"]),
    "unknown-run-key": (RUN_OK + "bogus_key = 3\n" + SOLVER_OK, ["[run]", "bogus_key"]),
    "duplicate-labels": (RUN_OK + SOLVER_OK + SOLVER_OK, ["duplicate", "gd-armijo"]),
    "max-iter-zero": (
        RUN_OK.replace("max_iter = 8", "max_iter = 0") + SOLVER_OK,
        ["[run].max_iter", ">= 1, got 0"],
    ),
    "unknown-hyperparameter": (
        RUN_OK + '\n[[solver]]\nlabel = "gd-typo"\nsolver = "gd"\nlearning_rat = 0.1\n',
        ["'gd-typo'", "learning_rat"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fails_before_any_run(case, tmp_path, capsys):
    text, fragments = BAD_CONFIGS[case]
    config = tmp_path / "bad.toml"
    config.write_text(text)
    out = tmp_path / "results"
    code = cli.main(["run", str(config), "--out", str(out), "--no-report", "--quiet"])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.startswith("natgrad run: ")
    for fragment in fragments:
        assert fragment in captured.err, (fragment, captured.err)
    assert csv_files(out / "runs") == []
    assert not out.exists()


def test_duplicate_seeds_do_not_double_count_runs(tmp_path, capsys):
    # seeds = [0, 0] names the same runs twice: either reject the config up front or run
    # each distinct run once; never execute a run twice and report runs that were not stored
    config = write_tiny(tmp_path, seeds=(0, 0), max_iter=2)
    out = tmp_path / "results"
    code = cli.main(["run", str(config), "--out", str(out), "--no-report", "--quiet"])
    captured = capsys.readouterr()
    if code == 2:
        assert "seed" in captured.err
        assert csv_files(out / "runs") == []
    else:
        assert code == 0, captured
        assert "tiny: 4 runs, 0 already stored, 4 ran, 0 errors" in captured.out
        assert len(csv_files(out / "runs")) == 4


def test_full_batch_only_solver_with_mini_batches_fails_before_any_run(tmp_path, capsys):
    # grid.py promises every hyperparameter is validated before the first run; L-BFGS is
    # full-batch only, so a mini-batch budget can never run and must be rejected up front.
    config = tmp_path / "lbfgs.toml"
    config.write_text(
        RUN_OK + "batch_size = 16\n" + '\n[[solver]]\nlabel = "lbfgs"\nsolver = "lbfgs"\n'
    )
    out = tmp_path / "results"
    code = cli.main(["run", str(config), "--out", str(out), "--no-report", "--quiet"])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "lbfgs" in captured.err and "batch" in captured.err
    assert csv_files(out / "runs") == []

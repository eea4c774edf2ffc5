"""The tuning protocol, epoch budgets and long reference runs (grid, tuning, runner)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking.cli import main
from natgrad_core.benchmarking.grid import config_from_dict, suite_config
from natgrad_core.benchmarking.problems import PROBLEMS
from natgrad_core.benchmarking.reference import ReferenceSpec, reference_solution
from natgrad_core.benchmarking.runner import RunSpec, SolverConfig, execute
from natgrad_core.benchmarking.store import ResultsStore
from natgrad_core.benchmarking.tuning import (
    DEFAULT_SUFFIX,
    TUNED_SUFFIX,
    TuneSpec,
    candidates,
    points,
    select,
    tune_from_table,
)
from natgrad_core.optim import make_optimizer, minimize

from .test_report import make_run

# --------------------------------------------------------------------------- the [tune] table
BASE = {
    "run": {"problems": ["iris-mlp"], "seeds": [0, 1], "max_iter": 4},
    "solver": [
        {"solver": "adam", "params": {"learning_rate": 0.01}},
        {"solver": "momentum", "label": "sgd"},
        {"solver": "kfac"},
    ],
}


def with_tune(**tune) -> dict:
    return {**BASE, "tune": tune}


def test_a_tune_table_is_read_in_declared_order():
    config = config_from_dict(
        with_tune(
            seeds=[7, 8],
            space={"adam": {"learning_rate": [0.1, 0.001]}, "sgd": {"momentum": [0.5, 0.9]}},
        ),
        "t",
    )
    assert config.tune.seeds == (7, 8)
    assert config.tune.labels == ("adam", "sgd")
    assert config.tune.rule == "final_loss"
    assert config.specs() == []  # the reported runs are known after tuning only


@pytest.mark.parametrize(
    "tune, fragment",
    [
        ({"seeds": [0], "space": {"adam": {"learning_rate": [0.1]}}}, r"share \[0\]"),
        ({"space": {"adam": {"learning_rate": [0.1]}}}, "needs seeds"),
        ({"seeds": [5], "space": {}}, "no search space"),
        ({"seeds": [5], "space": {"nadam": {"learning_rate": [0.1]}}}, "no solver is labelled"),
        ({"seeds": [5], "space": {"adam": {"learning_rate": []}}}, "lists no values"),
        ({"seeds": [5], "space": {"adam": {"learning_rate": [0.1, 0.1]}}}, "a value twice"),
        ({"seeds": [5], "space": {"adam": {"learning_rate": 0.1}}}, "must be a list"),
        ({"seeds": [5], "space": {"adam": {"learning_rate": [-1.0]}}}, "learning_rate"),
        ({"seeds": [5], "space": {"adam": {"lr": [0.1]}}}, "no hyperparameter 'lr'"),
        ({"seeds": [5], "rule": "best_test", "space": {"adam": {"learning_rate": [1.0]}}}, "rule"),
        ({"seeds": [5], "budget": 3, "space": {"adam": {"learning_rate": [1.0]}}}, "unknown"),
        ({"seeds": [5, 5], "space": {"adam": {"learning_rate": [1.0]}}}, "duplicate seeds"),
    ],
)
def test_a_bad_tune_table_is_refused_naming_what_is_wrong(tune, fragment):
    with pytest.raises(ValueError, match=fragment):
        config_from_dict(with_tune(**tune), "t")


def test_a_full_batch_only_solver_cannot_search_batch_sizes():
    raw = {
        **BASE,
        "solver": [{"solver": "lbfgs"}],
        "tune": {"seeds": [5], "space": {"lbfgs": {"memory": [5], "batch_size": [16]}}},
    }
    with pytest.raises(ValueError, match="full-batch only"):
        config_from_dict(raw, "t")


def test_candidates_are_the_product_first_knob_slowest_other_params_kept():
    solver = SolverConfig.make("adam", "adam", learning_rate=0.01, beta1=0.8)
    spec = tune_from_table(
        {"seeds": [3], "space": {"adam": {"learning_rate": [0.1, 0.01], "batch_size": [8, 16]}}},
        ["adam"],
    )
    got = candidates(spec, solver)
    assert [c.label for c in got] == [
        "adam [learning_rate=0.1, batch_size=8]",
        "adam [learning_rate=0.1, batch_size=16]",
        "adam [learning_rate=0.01, batch_size=8]",
        "adam [learning_rate=0.01, batch_size=16]",
    ]
    assert [(c.kwargs["learning_rate"], c.batch_size) for c in got] == [
        (0.1, 8),
        (0.1, 16),
        (0.01, 8),
        (0.01, 16),
    ]
    assert all(c.kwargs["beta1"] == 0.8 for c in got)
    assert points(spec, "adam")[2] == {"learning_rate": 0.01, "batch_size": 8}


# --------------------------------------------------------------------------- selection
def _final(problem, label, seed, loss, status="max_iter", seconds=1.0):
    run = make_run(problem, label, seed, [loss - 1.0, loss - 1.0], times=[0.0, seconds])
    run["loss"] = [loss + 1.0, loss]
    run["status"] = status
    run["run_key"] = f"{problem}-{label}-{seed}"
    return run


def _spec():
    return TuneSpec((0, 1), (("adam", (("learning_rate", (1.0, 0.1, 0.01)),)),))


def test_select_takes_the_lowest_median_final_loss_and_counts_the_cost():
    spec = _spec()
    solver = SolverConfig.make("adam", "adam")
    names = [c.label for c in candidates(spec, solver)]
    frame = pd.concat(
        [
            _final("P", names[0], 0, 5.0),
            _final("P", names[0], 1, math.nan, status="diverged"),
            _final("P", names[1], 0, 0.3, seconds=2.0),
            _final("P", names[1], 1, 0.1, seconds=2.0),
            _final("P", names[2], 0, 0.25),
            _final("P", names[2], 1, 0.25),
        ]
    )
    (sel,) = select(spec, [PROBLEMS["iris-mlp"].__class__("P", "iris")], [solver], frame)
    assert sel.point == {"learning_rate": 0.1}
    assert sel.chosen.kwargs["learning_rate"] == 0.1
    assert sel.score == pytest.approx(0.2)  # median of 0.3 and 0.1
    assert (sel.n_candidates, sel.n_runs, sel.n_failed) == (3, 6, 1)
    assert sel.seconds == pytest.approx(1 + 1 + 2 + 2 + 1 + 1)
    assert sel.tuned(solver).label == "adam" + TUNED_SUFFIX


def test_select_breaks_ties_by_declared_order_and_counts_a_diverged_run_as_inf():
    spec = _spec()
    solver = SolverConfig.make("adam", "adam")
    names = [c.label for c in candidates(spec, solver)]
    frame = pd.concat(
        [
            _final("P", names[0], 0, 0.5),
            _final("P", names[0], 1, 0.5),
            _final("P", names[1], 0, 0.5),
            _final("P", names[1], 1, 0.5),
            _final("P", names[2], 0, 0.01),
            _final("P", names[2], 1, 0.01, status="diverged"),  # median of 0.01 and inf
        ]
    )
    (sel,) = select(spec, [PROBLEMS["iris-mlp"].__class__("P", "iris")], [solver], frame)
    assert sel.point == {"learning_rate": 1.0}


def test_select_refuses_to_choose_on_part_of_the_evidence():
    spec = _spec()
    solver = SolverConfig.make("adam", "adam")
    names = [c.label for c in candidates(spec, solver)]
    frame = pd.concat([_final("P", n, 0, 0.5) for n in names])
    with pytest.raises(ValueError, match=r"no stored run for tuning seeds \[1\]"):
        select(spec, [PROBLEMS["iris-mlp"].__class__("P", "iris")], [solver], frame)


# --------------------------------------------------------------------------- end to end
TUNED_TOML = """\
[run]
problems = ["iris-mlp"]
seeds = [0, 1]
epochs = 3
record_every = 2
batch_size = 16
tol = 0.0
fidelity = false
target_gap = 0.5

[[solver]]
solver = "momentum"
label = "sgd"
[solver.params]
learning_rate = 0.1

[[solver]]
solver = "kfac"
[solver.params]
ema_decay = 0.95
inv_period = 5

[tune]
seeds = [10, 11]
[tune.space.sgd]
learning_rate = [0.001, 0.3]
batch_size = [16, 32]

[reference]
solver = "kfac"
max_iter = 40
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    path = root / "grid.toml"
    path.write_text(TUNED_TOML)
    out = root / "out"
    code = main(["tune", str(path), "--out", str(out), "--quiet"])
    assert code == 0
    code = main(["run", str(path), "--out", str(out), "--quiet", "--no-report"])
    return path, out, code


def test_tune_then_run_reports_tuned_and_default_on_the_reported_seeds(tuned):
    _, out, code = tuned
    assert code == 0
    tuning = ResultsStore(out / "tuning").load()
    assert set(tuning["seed"]) == {10, 11}
    assert tuning["run_key"].nunique() == 4 * 2  # 2 x 2 candidates x 2 tuning seeds
    runs = ResultsStore(out).load()
    assert set(runs["seed"]) == {0, 1}
    assert set(runs["solver"]) == {"sgd" + TUNED_SUFFIX, "sgd" + DEFAULT_SUFFIX, "kfac"}
    # the selection is the lowest median final loss of the stored tuning runs
    last = tuning.sort_values("iteration").groupby("run_key").tail(1)
    medians = last.groupby("solver")["loss"].median()
    best = medians.idxmin()
    selection = json.loads((out / "tuning" / "selection.json").read_text())
    (row,) = selection
    assert row["score"] == pytest.approx(medians[best])
    chosen = json.loads(row["selected"])
    assert (
        best
        == f"sgd [learning_rate={chosen['learning_rate']:g}, batch_size={chosen['batch_size']}]"
    )
    assert row["runs"] == 8 and row["candidates"] == 4
    assert row["seconds"] == pytest.approx(last["time"].sum())
    tuned_runs = runs[runs["solver"] == "sgd" + TUNED_SUFFIX]
    assert set(tuned_runs["batch_size"]) == {chosen["batch_size"]}
    assert json.loads(tuned_runs["params"].iloc[0])["learning_rate"] == chosen["learning_rate"]
    default = runs[runs["solver"] == "sgd" + DEFAULT_SUFFIX]
    assert set(default["batch_size"]) == {16}
    assert json.loads(default["params"].iloc[0])["learning_rate"] == 0.1


def test_a_tuned_grid_resumes_both_phases(tuned, capsys):
    path, out, _ = tuned
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-report"]) == 0
    text = capsys.readouterr().out
    assert "-tuning: 8 runs, 8 already stored, 0 ran" in text
    assert ": 6 runs, 6 already stored, 0 ran" in text


def test_epochs_are_passes_over_the_training_data(tuned):
    _, out, _ = tuned
    runs = ResultsStore(out).load()
    n_train = int(runs["n_train"].iloc[0])
    for (_, batch), group in runs.groupby(["run_key", "batch_size"]):
        assert group["iteration"].max() == 3 * math.ceil(n_train / batch)
        recorded = group["iteration"].to_numpy()
        assert set(recorded[1:-1] % 2) == {0}  # every record_every-th step, and the last


def test_runs_are_measured_against_the_long_reference_run(tuned):
    _, out, _ = tuned
    runs = ResultsStore(out).load()
    problem = PROBLEMS["iris-mlp"]
    spec = ReferenceSpec("kfac", (), 40)
    for seed in (0, 1):
        data = problem.load(seed)
        # independently: the same long run through minimize, its lowest recorded loss
        res = minimize(
            data.model,
            data.X_train,
            data.y_train,
            make_optimizer("kfac"),
            alpha=data.alpha,
            max_iter=40,
            tol=0.0,
            random_state=seed,
        )
        lowest = res.history["loss"].min()
        rows = runs[runs["seed"] == seed]
        np.testing.assert_allclose(rows["reference_loss"], lowest, rtol=1e-12)
        np.testing.assert_allclose(
            rows["suboptimality"], rows["loss"] - lowest, rtol=1e-12, atol=1e-15
        )
        cached = reference_solution(data, out / "cache", spec, seed)
        assert cached.kind == "long run" and cached.loss == pytest.approx(lowest, rel=1e-12)


def test_the_reference_run_is_refused_when_it_cannot_run():
    with pytest.raises(ValueError, match="full-batch only"):
        ReferenceSpec("lbfgs", (), 10, 32)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        ReferenceSpec("adam", (), 0)
    with pytest.raises(ValueError, match="unknown_knob"):
        ReferenceSpec("adam", (("unknown_knob", 1),), 10)


def test_an_exact_run_above_the_dense_flop_limit_is_skipped_with_the_reason():
    spec = RunSpec(
        PROBLEMS["iris-mlp"],
        SolverConfig.make("exact", "exact"),
        0,
        max_iter=3,
        dense_flop_limit=1e3,
    )
    frame = execute(spec)
    assert set(frame["status"]) == {"skipped"}
    assert "dense_flop_limit 1e+03" in frame["message"].iloc[0]


def test_the_stochastic_suites_are_valid_and_tune_their_baselines():
    for name in ("stochastic", "stochastic-quick"):
        config = suite_config(name)
        assert config.tune is not None and config.reference is not None
        assert {"sgd-momentum", "adam"} <= set(config.tune.labels)
        assert not set(config.tune.seeds) & set(config.seeds)
        assert config.epochs and config.batch_size and config.target_gap


# --------------------------------------------------------------------------- per-problem keys
MINI = {
    "run": {
        "problems": ["iris-mlp", "wine-mlp"],
        "seeds": [0],
        "epochs": 4,
        "batch_size": 16,
        "records_per_epoch": 2,
        "target_gap": 0.1,
        "by_problem": {"wine-mlp": {"epochs": 2, "target_gap": 0.3, "records_per_epoch": 1}},
    },
    "solver": [{"solver": "adam"}],
    "reference": {
        "solver": "lbfgs",
        "max_iter": 30,
        "by_problem": {"wine-mlp": {"max_iter": 7}},
    },
}


def test_a_problem_can_have_its_own_budget_target_and_reference():
    config = config_from_dict(MINI, "mini")
    iris, wine = config.specs()
    assert (iris.epochs, iris.records_per_epoch, iris.reference.max_iter) == (4, 2, 30)
    assert (wine.epochs, wine.records_per_epoch, wine.reference.max_iter) == (2, 1, 7)
    assert wine.reference.solver == "lbfgs"
    assert config.target_gaps() == {"iris-mlp": 0.1, "wine-mlp": 0.3}
    n_train = 133  # wine: 178 samples, 25% held out
    assert wine.updates(n_train) == 2 * math.ceil(n_train / 16)
    assert wine.record_interval(n_train) == math.ceil(n_train / 16)
    assert iris.record_interval(112) == math.ceil(112 / 16) // 2


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"by_problem": {"digits-mlp": {"epochs": 2}}}, "no problem 'digits-mlp' in this grid"),
        ({"by_problem": {"wine-mlp": {"max_iter": 2}}}, "unknown keys"),
        ({"by_problem": {"wine-mlp": {"target_gap": 1.5}}}, r"target_gap must be in \(0, 1\)"),
        ({"by_problem": {"wine-mlp": {"epochs": 0}}}, "epochs must be >= 1"),
        ({"max_iter": 10}, "both max_iter and epochs"),
        ({"record_every": 3}, "both record_every and records_per_epoch"),
        ({"target_gap": 0.0}, "target_gap"),
        ({"dense_flop_limit": -1.0}, "dense_flop_limit"),
    ],
)
def test_bad_per_problem_and_budget_keys_are_refused(change, fragment):
    raw = json.loads(json.dumps(MINI))
    raw["run"].update(change)
    with pytest.raises(ValueError, match=fragment):
        config_from_dict(raw, "mini")


def test_a_bad_reference_override_names_its_problem():
    raw = json.loads(json.dumps(MINI))
    raw["reference"]["by_problem"] = {"wine-mlp": {"batch_size": 8}}
    with pytest.raises(ValueError, match=r"by_problem.wine-mlp\]: reference run: .*full-batch"):
        config_from_dict(raw, "mini")


def test_tune_takes_a_suites_quick_variant_and_refuses_a_grid_without_tuning(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["tune", "stochastic", "--quick", "--dry-run", "--out", out]) == 0
    assert capsys.readouterr().out.startswith("stochastic-quick-tuning: ")
    path = tmp_path / "plain.toml"
    path.write_text('[run]\nproblems = ["iris-mlp"]\nmax_iter = 2\n')
    assert main(["tune", str(path), "--out", out]) == 2
    assert "declares no tuning" in capsys.readouterr().err


SKLEARN_TUNED_TOML = """
[run]
problems = ["iris-logistic", "iris-mlp"]
seeds = [0]
max_iter = 8
fidelity = false

[[solver]]
solver = "sklearn-mlp-adam"

[tune]
seeds = [10]
[tune.space.sklearn-mlp-adam]
learning_rate_init = [0.001, 0.1]
"""


def test_a_plugin_is_tuned_where_it_applies_and_left_alone_where_it_does_not(tmp_path):
    """scikit-learn's MLP Adam, tuned on an MLP problem; on logistic regression every
    tuning run is not applicable, so there is no selection and the plain label stays."""
    path = tmp_path / "grid.toml"
    path.write_text(SKLEARN_TUNED_TOML)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    (row,) = json.loads((out / "tuning" / "selection.json").read_text())
    assert row["problem"] == "iris-mlp" and row["candidates"] == 2
    tuning = ResultsStore(out / "tuning").load()
    last = tuning.sort_values("iteration").groupby("run_key").tail(1)
    on_mlp = last[last["problem"] == "iris-mlp"].set_index("solver")["loss"]
    best = on_mlp.idxmin()
    assert json.loads(row["selected"])["learning_rate_init"] == (0.001 if "0.001" in best else 0.1)
    runs = ResultsStore(out).load()
    labels = runs.groupby("problem")["solver"].unique().map(set).to_dict()
    assert labels == {
        "iris-mlp": {"sklearn-mlp-adam" + TUNED_SUFFIX, "sklearn-mlp-adam" + DEFAULT_SUFFIX},
        "iris-logistic": {"sklearn-mlp-adam"},
    }
    assert set(runs.loc[runs["problem"] == "iris-logistic", "status"]) == {"skipped"}
    # the tables show the MLP rows, marked as restarted fits, and not the inapplicable one
    table = pd.read_csv(out / "tables" / "final_suboptimality.csv")
    assert set(zip(table["problem"], table["solver"])) == {
        ("iris-mlp", "sklearn-mlp-adam (tuned) (restarts)"),
        ("iris-mlp", "sklearn-mlp-adam (default) (restarts)"),
    }

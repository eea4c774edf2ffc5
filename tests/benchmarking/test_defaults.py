"""One source of defaults in the benchmark harness: a TOML ``[[solver]]`` gets the same
configuration ``natgrad list``, DEFAULT_SOLVERS and the estimator use, and
``natgrad run --dry-run`` shows every resolved hyperparameter without running anything."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest

from natgrad_core import NaturalGradientClassifier
from natgrad_core.benchmarking import cli
from natgrad_core.benchmarking.grid import (
    DEFAULT_SOLVERS,
    config_from_dict,
    load_config,
    run_grid,
    suite_config,
)
from natgrad_core.benchmarking.problems import SUITES
from natgrad_core.benchmarking.store import SCHEMA, SCHEMA_VERSION, ResultsStore
from natgrad_core.benchmarking.tuning import points
from natgrad_core.optim import NaturalGradient
from natgrad_core.optim.registry import RECOMMENDED, optimizer_params

SEED = 0
BUDGET = {"max_iter": 12, "time_limit": 30.0, "tol": 1e-9, "target_suboptimality": 1e-8}
LOSS_RTOL = 1e-12
"""A step the Levenberg–Marquardt rule accepts has ρ > 0: the loss never goes up."""


def _toml(path, solver_lines: str, problems=("wine-mlp",), seeds=(SEED,)) -> str:
    text = (
        "[run]\n"
        f"problems = {json.dumps(list(problems))}\n"
        f"seeds = {json.dumps(list(seeds))}\n"
        f"max_iter = {BUDGET['max_iter']}\n"
        f"time_limit = {BUDGET['time_limit']}\n"
        f"tol = {BUDGET['tol']}\n"
        f"target_suboptimality = {BUDGET['target_suboptimality']}\n"
        "fidelity = false\n\n" + solver_lines
    )
    path.write_text(text)
    return str(path)


def _listed_solvers(capsys) -> dict:
    """``natgrad list solvers`` parsed back: label → {key: value as printed}."""
    assert cli.main(["list", "solvers"]) == 0
    listed = {}
    lines = capsys.readouterr().out.splitlines()
    own = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("solvers shipped"))]
    for line in own:  # natgrad's own algorithms; the plugins follow
        label, _, params = line.strip().partition(" ")
        listed[label] = dict(p.split("=") for p in params.strip().split(", ") if p)
    return listed


@pytest.mark.parametrize("solver", list(RECOMMENDED))
@pytest.mark.parametrize("label_line", ["", 'label = "{solver}"\n'])
def test_toml_solver_is_the_listed_default_and_the_estimator_auto(
    solver, label_line, tmp_path, capsys
):
    entry = f'[[solver]]\nsolver = "{solver}"\n' + label_line.format(solver=solver)
    (config,) = load_config(_toml(tmp_path / "one.toml", entry)).solvers
    (default,) = [s for s in DEFAULT_SOLVERS if s.label == solver]
    assert config == default
    listed = _listed_solvers(capsys)[solver]
    assert listed == {k: str(v) for k, v in RECOMMENDED[solver].items()}
    assert {k: str(v) for k, v in config.params} == listed
    estimator = NaturalGradientClassifier(solver=solver)._make_optimizer(SEED)
    assert config.resolved(SEED) == optimizer_params(estimator)


def test_a_toml_key_overrides_one_hyperparameter(tmp_path):
    entry = '[[solver]]\nsolver = "kfac"\nlabel = "kfac-pf"\nkfac_damping = "per_factor"\n'
    (config,) = load_config(_toml(tmp_path / "one.toml", entry)).solvers
    assert config.kwargs == {**RECOMMENDED["kfac"], "kfac_damping": "per_factor"}
    resolved = config.resolved()
    assert resolved["kfac_damping"] == "per_factor"
    assert resolved["step"]["name"] == RECOMMENDED["kfac"]["step"]


@pytest.mark.parametrize(
    "entry, fragments",
    [
        ({"solver": "adam", "step": "armijo"}, ["adam", "'step'", "beta1"]),
        ({"solver": "newton"}, ["'newton'", "exact"]),
        ({"label": "x"}, ["'solver'", "None"]),
    ],
)
def test_bad_solver_entries_name_the_problem(entry, fragments):
    raw = {"run": {"problems": ["iris-logistic"]}, "solver": [entry]}
    with pytest.raises(ValueError) as info:
        config_from_dict(raw, "cfg")
    for fragment in ["cfg", *fragments]:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_toml_exact_on_wine_mlp_descends(tmp_path):
    """Written as in the issue; it used to take fixed unit steps (loss 0.97 → 5.8e6 in four
    steps, every step recorded "ok"). Levenberg–Marquardt only accepts steps with ρ > 0, so
    the recorded full-batch loss must never rise and must end below its start."""
    entry = '[[solver]]\nlabel = "exact"\nsolver = "exact"\n'
    config = load_config(_toml(tmp_path / "exact.toml", entry))
    store = ResultsStore(tmp_path / "results")
    summary = run_grid(config, store, progress=False)
    assert (summary.n_ran, summary.n_errors) == (1, 0)
    frame = store.load().sort_values("iteration")
    loss = frame["loss"].to_numpy()
    assert frame["status"].iloc[-1] != "diverged", frame["message"].iloc[-1]
    assert np.all(np.isfinite(loss))
    assert np.all(np.diff(loss) <= LOSS_RTOL * np.abs(loss[:-1])), loss
    assert loss[-1] < loss[0]


# ================================================================================= dry run
def _blocks(out: str) -> list[list[str]]:
    """The dry run's runs: a header line each, then its indented lines (budget, solver,
    and a plugin's identity)."""
    blocks = []
    for line in out.splitlines()[1:]:
        if line.startswith(" "):
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def test_dry_run_prints_every_run_with_resolved_parameters_and_budget(tmp_path, capsys):
    entries = '[[solver]]\nsolver = "exact"\n\n[[solver]]\nsolver = "adam"\nlabel = "adam-3"\n'
    entries += "learning_rate = 1e-3\n"
    path = _toml(tmp_path / "grid.toml", entries, ("iris-logistic", "wine-mlp"), (0, 4))
    out_dir = tmp_path / "results"
    assert cli.main(["run", path, "--dry-run", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert not out_dir.exists()  # nothing ran, nothing was written
    blocks = _blocks(out)
    expected = [
        (p, label, seed)
        for p in ("iris-logistic", "wine-mlp")
        for label in ("exact", "adam-3")
        for seed in (0, 4)
    ]
    assert [tuple(b[0].split()) for b in blocks] == [
        (p, label, f"seed={seed}") for p, label, seed in expected
    ]
    for block, (_, label, seed) in zip(blocks, expected):
        budget = dict(item.split("=") for item in block[1].split(":", 1)[1].split())
        assert {k: float(budget[k]) for k in BUDGET} == BUDGET
        assert budget["batch_size"] == "full"
        solver, _, params = block[2].split(":", 1)[1].strip().partition(" ")
        params = json.loads(params)
        if label == "exact":
            names = [n for n in inspect.signature(NaturalGradient).parameters]
            assert list(params) == names
            assert params["damping"] == RECOMMENDED["exact"]["damping"]
            assert params["step"]["name"] == RECOMMENDED["exact"]["step"]
            assert params["random_state"] == seed  # the run seed drives MC labels
        else:
            assert (solver, params["learning_rate"], params["beta1"]) == ("adam", 1e-3, 0.9)


def test_dry_run_of_a_suite_lists_the_whole_grid(tmp_path, capsys):
    assert cli.main(["run", "quick", "--dry-run", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    tune = suite_config("quick").tune
    n_points = sum(len(points(tune, label)) for label in tune.labels)
    n_runs = len(SUITES["quick"]) * n_points * len(tune.seeds)
    assert out.splitlines()[0].startswith(f"quick-tuning: {n_runs} runs")
    *runs, after = out.splitlines()
    assert len(_blocks("\n".join(runs))) == n_runs
    assert "(tuned)" in after and "(default)" in after  # what the tuning phase decides
    assert not (tmp_path / "r").exists()


def test_dry_run_marks_the_runs_a_resume_would_skip(tmp_path, capsys):
    path = _toml(tmp_path / "grid.toml", '[[solver]]\nsolver = "lbfgs"\n', seeds=(0, 1))
    stored = load_config(path).specs()[1]
    runs = tmp_path / "results" / "runs"
    row = {c: "" if dtype == "str" else 0 for c, (dtype, _) in SCHEMA.items()}
    row.update(schema_version=SCHEMA_VERSION, run_key=stored.key(), status="max_iter")
    ResultsStore(tmp_path / "results").write_run(stored.key(), pd.DataFrame([row]))
    files = sorted(p.name for p in runs.iterdir())
    assert cli.main(["run", path, "--dry-run", "--out", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 1 already stored" in out.splitlines()[0]
    assert [b[0].endswith("[stored]") for b in _blocks(out)] == [False, True]
    assert sorted(p.name for p in runs.iterdir()) == files

"""The kfac-autoencoder study at quick size: its findings recomputed from its table."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from natgrad_core.benchmarking.problems import get_problem
from natgrad_core.benchmarking.studies import (
    kfac_autoencoder,  # registers
    run_study,
)

RTOL = 1e-12
SELECTION = Path(__file__).parents[3] / "results" / "stochastic" / "tuning" / "selection.json"


@pytest.fixture(scope="module")
def result():
    result, _ = run_study("kfac-autoencoder", quick=True, seed=0)
    yield result
    plt.close(result.figure)


def test_the_tuned_hyperparameters_are_the_committed_selection():
    selection = json.loads(SELECTION.read_text())
    for problem, solvers in kfac_autoencoder.TUNED.items():
        for label, (_, params) in solvers.items():
            (row,) = [
                r
                for r in selection
                if r["problem"] == problem and r["solver"] == f"{label} (tuned)"
            ]
            selected = json.loads(row["selected"])
            assert selected.pop("batch_size", 128) == 128
            assert {k: params[k] for k in selected} == selected


def test_the_table_has_every_solver_and_seed(result):
    table = result.table
    assert set(table.solver) == {"kfac", "ekfac", "adam", "sgd-momentum"}
    assert table.groupby("solver").size().eq(result.settings["n_seeds"]).all()
    # the reference is one per seed, shared by every solver
    assert table.groupby("seed").reference_loss.nunique().eq(1).all()
    assert (table.reference_loss < table.initial_loss).all()
    # a run that reached the target has at most its total updates and seconds
    reached = table[np.isfinite(table.updates_to_target)]
    n_train = get_problem(result.settings["problem"]).load(0).X_train.shape[0]
    assert (reached.updates_to_target <= reached.updates).all()
    assert (reached.seconds_to_target <= reached.seconds).all()
    np.testing.assert_allclose(
        reached.epochs_to_target, reached.updates_to_target * 128 / n_train, rtol=RTOL
    )


def _median(table, solver, column):
    return np.median(table[table.solver == solver][column].to_numpy())


@pytest.mark.parametrize("natural", ["kfac", "ekfac"])
@pytest.mark.parametrize("baseline", ["adam", "sgd-momentum"])
def test_fewer_updates_finding(result, natural, baseline):
    table = result.table
    (finding,) = [
        f
        for f in result.findings
        if f.claim.startswith(f"{natural} reaches") and f.claim.endswith(f"tuned {baseline}")
    ]
    fewer = _median(table, baseline, "updates_to_target") / _median(
        table, natural, "updates_to_target"
    )
    slower = _median(table, natural, "seconds_to_target") / _median(
        table, baseline, "seconds_to_target"
    )
    per_run = table[table.solver == natural]
    overhead = np.median(per_run.seconds / per_run.updates / per_run.grad_seconds)
    assert finding.numbers["updates_ratio"] == pytest.approx(fewer, rel=RTOL)
    assert finding.numbers["time_ratio"] == pytest.approx(slower, rel=RTOL)
    assert finding.numbers["overhead"] == pytest.approx(overhead, rel=RTOL)
    assert f"{fewer:.3g}× fewer updates" in finding.statement
    assert finding.held == (fewer >= 2)
    assert finding.held  # robust at quick size: 3-4× fewer updates


def test_overhead_finding(result):
    table = result.table
    (finding,) = [f for f in result.findings if "small constant factor" in f.claim]
    for solver in ("kfac", "ekfac", "adam", "sgd-momentum"):
        runs = table[table.solver == solver]
        value = np.median(runs.seconds / runs.updates / runs.grad_seconds)
        where = "overhead" if solver in ("kfac", "ekfac") else "baseline_overhead"
        assert finding.numbers[where][solver] == pytest.approx(value, rel=RTOL)
    assert finding.held == all(v <= 3 for v in finding.numbers["overhead"].values())
    # a K-FAC update (factors, inverses, the quadratic model) costs more than an Adam one
    assert min(finding.numbers["overhead"].values()) > max(
        finding.numbers["baseline_overhead"].values()
    )


def test_wall_time_findings(result):
    table = result.table
    for natural in ("kfac", "ekfac"):
        (finding,) = [f for f in result.findings if f.claim.startswith(f"{natural}'s fewer")]
        ratios = {
            b: _median(table, natural, "seconds_to_target") / _median(table, b, "seconds_to_target")
            for b in ("adam", "sgd-momentum")
        }
        for b, value in ratios.items():
            assert finding.numbers["time_ratio"][b] == pytest.approx(value, rel=RTOL)
        assert finding.held == all(v < 1 for v in ratios.values())

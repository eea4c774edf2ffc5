"""The stochastic suite's results say what their runs say.

Checks a results folder of ``natgrad run stochastic`` — the committed
``results/stochastic`` by default; CI points ``NATGRAD_STOCHASTIC_RESULTS`` at a fresh
``natgrad run stochastic --quick`` — against its own stored runs, recomputed here from the
raw per-run rows, independently of the report's code:

* every finding's numbers (median updates and seconds to the training-loss target, who
  wins) and its choice of rows;
* every tuned configuration is the one the declared rule selects from the stored tuning
  runs, and the reported seeds are not the tuning seeds;
* every baseline is labelled tuned or default.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking.grid import SUITE_TABLES, suite_config
from natgrad_core.benchmarking.store import ResultsStore

RESULTS = Path(
    os.environ.get(
        "NATGRAD_STOCHASTIC_RESULTS",
        Path(__file__).resolve().parents[2] / "results" / "stochastic",
    )
)
NATURAL_GRADIENT = {"exact", "diag", "kfac", "ekfac", "cg"}
BASELINES = {"gd", "momentum", "adam", "lbfgs"}


def _number(value) -> float:
    return float(value)  # "inf" and "nan" as findings.json writes them


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    frame = ResultsStore(RESULTS).load()
    if frame.empty:
        pytest.fail(f"no stored runs under {RESULTS}; run `natgrad run stochastic`")
    return frame


@pytest.fixture(scope="module")
def found() -> list[dict]:
    return json.loads((RESULTS / "tables" / "findings.json").read_text())["findings"]


@pytest.fixture(scope="module")
def gaps(runs) -> dict:
    name = RESULTS.name
    assert name in SUITE_TABLES, f"{RESULTS} is not the folder of a stochastic suite"
    return suite_config(name).target_gaps()


def _reach(run: pd.DataFrame, fstar: float, gap: float) -> tuple[float, float]:
    """(updates, seconds) at the first record with loss - F* <= gap (L0 - F*), or inf."""
    run = run.sort_values("iteration")
    loss = run["loss"].to_numpy(float)
    hit = np.flatnonzero(loss - fstar <= gap * (loss[0] - fstar))
    if hit.size == 0:
        return math.inf, math.inf
    return float(run["iteration"].iloc[hit[0]]), float(run["time"].iloc[hit[0]])


def _medians(runs: pd.DataFrame, problem: str, label: str, gap: float) -> tuple[float, float]:
    """Median updates and seconds to the target over the seeds of one (problem, label),
    F* per seed = the lowest of the long reference run and every run of that seed."""
    rows = runs[runs["problem"] == problem]
    updates, seconds = [], []
    for (_, seed), run in rows[rows["solver"] == label].groupby(["run_key", "seed"]):
        same = rows[rows["seed"] == seed]
        fstar = min(same["reference_loss"].min(), same["loss"].min())
        u, s = _reach(run, fstar, gap)
        updates.append(u)
        seconds.append(s)
    return float(np.median(updates)), float(np.median(seconds))


def _best(runs, problem, labels, gap) -> str:
    """The label with the fewest median updates, ties by median seconds, then by name."""
    scored = sorted((*_medians(runs, problem, label, gap), label) for label in labels)
    return scored[0][2]


def _pool(runs: pd.DataFrame, problem: str, family: set) -> list[str]:
    rows = runs[(runs["problem"] == problem) & runs["algorithm"].isin(family)]
    rows = rows[rows["status"] != "skipped"]
    labels = sorted(set(rows["solver"]))
    tuned = [label for label in labels if label.endswith(" (tuned)")]
    if family is BASELINES:
        return tuned or labels
    return [label for label in labels if not label.endswith(" (default)")] if tuned else labels


def test_every_finding_is_recomputed_from_the_runs(runs, found, gaps):
    per_problem = [f for f in found if f["problem"] != "all"]
    assert {f["problem"] for f in per_problem} == set(runs["problem"])
    for finding in per_problem:
        problem, gap = finding["problem"], gaps[finding["problem"]]
        assert finding["natural_gradient"] == _best(
            runs, problem, _pool(runs, problem, NATURAL_GRADIENT), gap
        )
        assert finding["baseline"] == _best(runs, problem, _pool(runs, problem, BASELINES), gap)
        ng = _medians(runs, problem, finding["natural_gradient"], gap)
        bl = _medians(runs, problem, finding["baseline"], gap)
        for side, (updates, seconds) in (("natural_gradient", ng), ("baseline", bl)):
            assert _number(finding["updates"][side]) == updates, (problem, side)
            assert _number(finding["seconds"][side]) == pytest.approx(seconds, rel=1e-12)
        assert finding["ng_fewer_updates"] == (ng[0] < bl[0])
        assert finding["ng_less_time"] == (ng[1] < bl[1])
        for updates in (ng[0], bl[0]):
            if math.isfinite(updates) and updates.is_integer():
                assert f"{int(updates)}" in finding["statement"]
    (summary,) = [f for f in found if f["problem"] == "all"]
    assert summary["ng_fewer_updates"] == sum(f["ng_fewer_updates"] for f in per_problem)
    assert summary["ng_less_time"] == sum(f["ng_less_time"] for f in per_problem)


def test_tuned_configurations_are_what_the_rule_selects_from_the_tuning_runs(runs):
    selection = json.loads((RESULTS / "tuning" / "selection.json").read_text())
    tuning = ResultsStore(RESULTS / "tuning").load()
    assert not set(tuning["seed"]) & set(runs["seed"])
    last = tuning.sort_values("iteration").groupby("run_key").tail(1)
    failed = last["status"].isin(["diverged", "error"]) | ~np.isfinite(last["loss"])
    last = last.assign(score=last["loss"].where(~failed, np.inf))
    assert selection
    for row in selection:
        base = row["solver"].removesuffix(" (tuned)")
        mine = last[
            (last["problem"] == row["problem"]) & last["solver"].str.startswith(base + " [")
        ]
        medians = mine.groupby("solver")["score"].median()
        assert len(medians) == row["candidates"] and len(mine) == row["runs"]
        assert row["score"] == pytest.approx(medians.min(), rel=1e-12)
        selected = json.loads(row["selected"])
        tuned = runs[(runs["problem"] == row["problem"]) & (runs["solver"] == row["solver"])]
        assert not tuned.empty
        params = json.loads(tuned["params"].iloc[0])
        for knob, value in selected.items():
            got = tuned["batch_size"].iloc[0] if knob == "batch_size" else params[knob]
            assert got == value, (row["problem"], row["solver"], knob)

        # the stored runs with the selected settings are the ones with the lowest median
        def has_selected(r, selected=selected):
            params = json.loads(r["params"])
            return all(
                (r["batch_size"] if k == "batch_size" else params.get(k)) == v
                for k, v in selected.items()
            )

        chosen = mine[mine.apply(has_selected, axis=1)]
        assert chosen["solver"].nunique() == 1 and len(chosen) == len(mine) / len(medians)
        assert chosen["score"].median() == pytest.approx(medians.min(), rel=1e-12)


def test_every_baseline_is_labelled_tuned_or_default(runs):
    baselines = set(runs.loc[runs["algorithm"].isin(BASELINES), "solver"])
    assert baselines
    assert all(label.endswith((" (tuned)", " (default)")) for label in baselines), baselines


def test_every_non_convex_run_carries_its_long_reference_run(runs):
    reference = runs.groupby(["problem", "seed"])["reference_loss"].agg(["min", "max"])
    assert np.isfinite(reference.to_numpy()).all()
    assert (reference["min"] == reference["max"]).all()


@pytest.mark.skipif(
    "NATGRAD_STOCHASTIC_RESULTS" in os.environ, reason="the README states the committed run"
)
def test_the_readme_states_the_committed_findings(found):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for finding in found:
        assert finding["statement"] in readme, finding["problem"]

"""``natgrad peers``: the objective both sides share, the check before timing, the command.

References are independent of the code under test: scikit-learn's own ``predict_proba``
and ``log_loss`` for the objective, hand-made mismatches for the check, call counts (not
wall-clock) for what is timed.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from natgrad_core import LogisticModel, Objective
from natgrad_core.benchmarking import peers
from natgrad_core.benchmarking.cli import main
from natgrad_core.benchmarking.store import ResultsStore

EXACT_RTOL = 1e-12
"""The same objective evaluated two ways in float64: rounding only."""

DATASETS = [
    pytest.param(load_breast_cancer, id="binary"),
    pytest.param(load_iris, id="multinomial"),
]


def _data(load):
    X, y = load(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


@pytest.mark.parametrize("load", DATASETS)
@pytest.mark.parametrize("C", [0.1, 1.0, 30.0])
def test_alpha_is_one_over_c(load, C):
    """Our L(θ) with alpha = 1/C, times C·N, is scikit-learn's LogisticRegression
    objective C Σ nll + ‖w‖²/2 at the same coefficients (read off θ's documented layout:
    one (n_features + 1, n_outputs) block, intercepts in the last row)."""
    X, y = _data(load)
    n, d = X.shape
    n_classes = len(np.unique(y))
    model = LogisticModel(d, n_classes)
    theta = np.random.default_rng(0).normal(scale=0.3, size=model.n_params)
    w_bar = theta.reshape(d + 1, model.n_outputs)
    estimator = LogisticRegression(C=C)
    estimator.classes_ = np.arange(n_classes)
    estimator.coef_, estimator.intercept_ = w_bar[:-1].T.copy(), w_bar[-1].copy()
    nll_sum = log_loss(y, estimator.predict_proba(X), normalize=False)
    sklearn_objective = C * nll_sum + 0.5 * np.sum(estimator.coef_**2)
    ours = Objective(model, X, y, alpha=1.0 / C).loss(theta)
    np.testing.assert_allclose(C * n * ours, sklearn_objective, rtol=EXACT_RTOL)
    np.testing.assert_array_equal(peers.theta_from_estimator(model, estimator), theta)


def test_loss_gradient_rows_agree():
    """The two sides of each loss+gradient row (multinomial digits, binary synthetic)
    agree: ``sklearn_coef`` is the layout ``LinearModelLoss`` documents and
    ``l2_reg_strength = alpha / N`` our penalty."""
    rows = [r for r in peers.comparisons(quick=True)[0] if r.kind == "loss+gradient"]
    assert {r.work.split(", ")[1] for r in rows} == {"binary logistic", "multinomial logistic"}
    for row in rows:
        ok, text = row.check(row.ours(), row.peer())
        assert ok, (row.work, text)


def _counted(value):
    calls = []

    def func():
        calls.append(1)
        return value

    return func, calls


GRADIENT = np.array([1.0, -2.0, 0.5])
MISMATCHES = [
    pytest.param((1.0, GRADIENT), (1.0 + 1e-6, GRADIENT), id="loss"),
    pytest.param((1.0, GRADIENT), (1.0, GRADIENT + [0, 0, 1e-6]), id="gradient"),
    pytest.param((1.0, GRADIENT), (1.0, GRADIENT[:2]), id="shape"),
]


@pytest.mark.parametrize(("ours", "peer"), MISMATCHES)
def test_check_refuses_mismatched_loss_gradient(ours, peer):
    ok, text = peers.check_loss_gradient(ours, peer)
    assert not ok and text.startswith("FAILED")
    ok, text = peers.check_loss_gradient(ours, (ours[0] * (1 + 1e-12), ours[1] * (1 + 1e-12)))
    assert ok and text.startswith("ok")


@pytest.mark.parametrize(
    ("f_peer", "expected"), [(1.0 + 1e-7, False), (1.0 - 1e-7, False), (1.0 + 1e-10, True)]
)
def test_check_objectives(f_peer, expected):
    assert peers.check_objectives(1.0, f_peer)[0] is expected


def test_failed_check_is_not_timed():
    """A row whose check fails reports the failure, no time, no ratio and "no": each side
    ran once (the warm-up the check needs) and was never timed."""
    ours, ours_calls = _counted((1.0, GRADIENT))
    peer, peer_calls = _counted((2.0, GRADIENT))
    floor, floor_calls = _counted(None)
    comparison = peers.Comparison(
        "loss+gradient, test", "loss+gradient", "3", "a", "b", ours, peer,
        peers.check_loss_gradient, lambda out: (floor, 1),
    )  # fmt: skip
    row = peers.measure(comparison, repeats=5, min_time=1e-6)
    assert row["check"].startswith("FAILED") and row["met"] == "no"
    assert all(np.isnan(row[c]) for c in ("ours_min", "peer_median", "ratio", "floor"))
    assert (len(ours_calls), len(peer_calls), len(floor_calls)) == (1, 1, 0)


def test_agreeing_row_is_timed_with_repeats():
    """A passing row runs the warm-up plus ``repeats`` timed repeats of each side (at
    least one call each), and its ratio is ours_min / peer_min."""
    ours, ours_calls = _counted((1.0, GRADIENT))
    peer, peer_calls = _counted((1.0, GRADIENT))
    comparison = peers.Comparison(
        "loss+gradient, test", "loss+gradient", "3", "a", "b", ours, peer,
        peers.check_loss_gradient,
    )  # fmt: skip
    row = peers.measure(comparison, repeats=6, min_time=1e-12)
    assert row["check"].startswith("ok")
    assert len(ours_calls) == len(peer_calls) == 1 + 6
    assert row["ratio"] == row["ours_min"] / row["peer_min"]
    assert row["target"] == peers.TARGETS["loss+gradient"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"repeats": 3}, "repeats must be >= 5, got 3"), ({"min_time": 0.0}, "min_time")],
)
def test_measure_rejects_bad_arguments(kwargs, message):
    comparison = peers.Comparison("w", "loss+gradient", "", "a", "b", int, int, None)
    with pytest.raises(ValueError, match=message):
        peers.measure(comparison, **kwargs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repeats", "3"], "expected --repeats >= 5 and --min-time > 0, got 3 and None"),
        (["--min-time", "0"], "expected --repeats >= 5 and --min-time > 0, got 5 and 0.0"),
        (["--out", "FILE"], "is a file; expected a folder"),
    ],
)
def test_cli_bad_arguments(argv, message, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    argv = [str(file) if a == "FILE" else a for a in argv]
    assert main(["peers", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err


def test_torch_rows_skipped_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    rows, skipped = peers.comparisons(quick=True)
    assert rows and not any(r.peer_name.startswith("torch") for r in rows)
    assert any("torch is not installed" in s and ".[peers]" in s for s in skipped)


def test_quick_runs_end_to_end(tmp_path, capsys):
    """``natgrad peers --quick`` measures every row, every check passes, and it writes
    the plain CSV, the sidecar with provenance, Markdown, LaTeX and the figure."""
    out = tmp_path / "peers"
    assert main(["peers", "--quick", "--quiet", "--out", str(out)]) == 0
    table = pd.read_csv(out / "peers.csv")
    assert list(table.columns) == list(peers.COLUMNS)
    assert table["check"].str.startswith("ok").all(), table["check"].tolist()
    assert (table[["ours_min", "peer_min", "ratio"]] > 0).all().all()
    assert (table["ours_min"] <= table["ours_median"]).all()
    assert set(table["met"]) <= {"yes", "no"}
    kinds = {"loss+gradient", "exact NG fit", "CG NG fit", "L-BFGS fit"}
    assert all(any(w.startswith(k) for w in table["work"]) for k in kinds)
    assert table["floor"].notna().any()
    sidecar = json.loads((out / "peers.json").read_text())
    prov = sidecar["provenance"]
    assert {"code_versions", "machines", "git", "date", "settings"} <= set(prov)
    (pools,) = prov["blas"]  # read inside the measurement: every pool at one thread
    assert pools and all(pool["num_threads"] == 1 for pool in pools)
    assert sidecar["columns"]["ratio"]["description"] == peers.COLUMNS["ratio"][0]
    for suffix in ("md", "tex", "png"):
        assert (out / f"peers.{suffix}").stat().st_size > 0
    assert "targets met" in capsys.readouterr().out
    assert ResultsStore(tmp_path).foreign_files() == []  # `natgrad run` may share the root

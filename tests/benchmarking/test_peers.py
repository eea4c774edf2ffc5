"""``natgrad peers``: the objective both sides share, the check before timing, the command.

References are independent of the code under test: scikit-learn's own ``predict_proba``,
``log_loss`` and ``MLPClassifier.loss_`` for the objective, torch autograd for the
parameter layout, hand-made mismatches for the check, call counts (not wall-clock) for
what is timed.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from natgrad_core import MLP, LogisticModel, Objective
from natgrad_core.benchmarking import peers, provenance
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


def test_rounds_continue_until_every_side_has_run_min_total():
    """With ``min_total``, rounds go on past ``repeats`` until every side's batches add up
    to that many seconds (a fake clock: each call takes one second), then stop."""
    clock = {"now": 0.0}
    calls = {"ours": 0, "peer": 0}

    def side(name):
        def call():
            calls[name] += 1
            clock["now"] += 1.0
            return (1.0, GRADIENT)

        return call

    comparison = peers.Comparison(
        "loss+gradient, test", "loss+gradient", "3", "a", "b", side("ours"), side("peer"),
        peers.check_loss_gradient,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(peers.time, "perf_counter", lambda: clock["now"])
        peers.measure(comparison, repeats=5, min_time=1.0, min_total=12.0)
    # one warm-up each, then 12 rounds of one call: 12 s per side
    assert calls == {"ours": 13, "peer": 13}


def test_sides_are_timed_interleaved():
    """After the warm-ups, every repeat times ours, the peer and the floor in turn (a slow
    phase of the machine hits all three alike), one call each when a call outlasts
    ``min_time``."""
    order = []

    def side(name, out):
        def call():
            order.append(name)
            return out

        return call

    comparison = peers.Comparison(
        "loss+gradient, test", "loss+gradient", "3", "a", "b",
        side("ours", (1.0, GRADIENT)), side("peer", (1.0, GRADIENT)),
        peers.check_loss_gradient, lambda out: (side("floor", None), 2),
    )  # fmt: skip
    row = peers.measure(comparison, repeats=5, min_time=1e-12)
    assert order == ["ours", "peer", "floor"] + ["ours", "peer", "floor"] * 5
    assert row["floor"] > 0 and row["met"] in ("yes", "no")


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
    assert row["ratio"] == row["versus_ratio"] == row["ours_min"] / row["peer_min"]
    assert (row["target"], row["versus"]) == peers.TARGETS["loss+gradient"]
    assert row["met"] == ("yes" if row["versus_ratio"] <= row["target"] else "no")


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
        (["--repeats", "3"], "--min-time > 0 and --min-total >= 0, got 3, None and None"),
        (["--min-time", "0"], "--min-time > 0 and --min-total >= 0, got 5, 0.0 and None"),
        (["--min-total", "-1"], "--min-total >= 0, got 5, None and -1.0"),
        (["--min-total", "nan"], "--min-total >= 0, got 5, None and nan"),
        (["--out", "FILE"], "is a file; expected a folder"),
    ],
)
def test_cli_bad_arguments(argv, message, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    argv = [str(file) if a == "FILE" else a for a in argv]
    assert main(["peers", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err


def _without(monkeypatch, *packages):
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)  # import raises ImportError


TORCH_KINDS = {"MLP loss+gradient", "K-FAC update", "Fisher-vector product", "exact NG step"}


def test_torch_rows_skipped_without_torch(monkeypatch):
    _without(monkeypatch, "torch", "curvlinops")
    rows, skipped = peers.comparisons(quick=True)
    assert rows and not {r.kind for r in rows} & TORCH_KINDS
    assert any("torch is not installed" in s and ".[peers]" in s for s in skipped)
    assert any(s.startswith("curvlinops rows") and ".[peers]" in s for s in skipped)
    assert "MLP fit" in {r.kind for r in rows}  # its peer is scikit-learn's


def test_curvlinops_rows_skipped_without_curvlinops(monkeypatch):
    pytest.importorskip("torch")
    _without(monkeypatch, "curvlinops")
    rows, skipped = peers.comparisons(quick=True)
    kinds = {r.kind for r in rows}
    assert "MLP loss+gradient" in kinds
    assert not kinds & {"K-FAC update", "Fisher-vector product", "exact NG step"}
    assert skipped == [peers._SKIPPED["curvlinops"]]


QUICK_RUNS = [
    pytest.param((), id="with-torch"),
    pytest.param(("torch", "curvlinops"), id="without-torch"),
]


@pytest.mark.parametrize("missing", QUICK_RUNS)
def test_quick_runs_end_to_end(missing, tmp_path, capsys, monkeypatch):
    """``natgrad peers --quick`` measures every row, every check passes, and it writes
    the plain CSV, the sidecar with provenance, Markdown, LaTeX and the figure; without
    torch the PyTorch rows are skipped with a message and the rest still runs."""
    if not missing:
        pytest.importorskip("torch")
        pytest.importorskip("curvlinops")
    _without(monkeypatch, *missing)
    out = tmp_path / "peers"
    assert main(["peers", "--quick", "--quiet", "--out", str(out)]) == 0
    table = pd.read_csv(out / "peers.csv")
    assert list(table.columns) == list(peers.COLUMNS)
    assert table["check"].str.startswith("ok").all(), table["check"].tolist()
    assert (table[["ours_min", "peer_min", "ratio", "versus_ratio"]] > 0).all().all()
    assert (table["ours_min"] <= table["ours_median"]).all()
    assert set(table["met"]) <= {"yes", "no"}
    kinds = {"loss+gradient", "exact NG fit", "CG NG fit", "L-BFGS fit", "MLP fit"}
    if not missing:
        kinds |= TORCH_KINDS
    assert {k for k in peers.TARGETS if any(w.startswith(k) for w in table["work"])} == kinds
    versus = table.set_index("work")["versus"]
    assert set(versus) == ({"peer"} if missing else set(peers.VERSUS))
    assert table["floor"].notna().any()
    for name, column in peers.VERSUS.items():
        rows = table[table["versus"] == name]
        np.testing.assert_array_equal(rows["versus_ratio"], rows["ours_min"] / rows[column])
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


# ----------------------------------------------------------------------------- targets
def test_every_target_names_a_reference():
    assert all(versus in peers.VERSUS for _, versus in peers.TARGETS.values())
    assert set(peers.VERSUS.values()) <= set(peers.COLUMNS)


def _vector(value):
    return lambda: np.array([value, 1.0])


@pytest.mark.parametrize(
    ("kind", "missing"),
    [("exact NG step", "floor"), ("Fisher-vector product", "our gradient")],
)
def test_row_without_its_reference_is_refused(kind, missing):
    with pytest.raises(ValueError, match=f"versus {missing}: expected its {missing} callable"):
        peers.Comparison("w", kind, "", "a", "b", int, int, peers.check_vectors)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"kind must be one of .*got 'speed'"):
        peers.Comparison("w", "speed", "", "a", "b", int, int, peers.check_vectors)


@pytest.mark.parametrize(
    ("kind", "column"),
    [("exact NG step", "floor"), ("Fisher-vector product", "gradient")],
)
def test_target_is_met_against_its_reference(kind, column):
    """versus_ratio divides our minimum by the reference the row's target names (not the
    peer's), ``met`` follows it, and the reference ran once untimed plus the repeats."""
    reference, calls = _counted(None)
    extra = {"floor": lambda out: (reference, 1)} if column == "floor" else {}
    extra |= {"gradient": reference} if column == "gradient" else {}
    comparison = peers.Comparison(
        "w", kind, "", "a", "b", _vector(1.0), _vector(1.0), peers.check_vectors, **extra
    )
    row = peers.measure(comparison, repeats=5, min_time=1e-12)
    assert row["versus"] == peers.TARGETS[kind][1]
    assert row["versus_ratio"] == row["ours_min"] / row[column]
    assert row["met"] == ("yes" if row["versus_ratio"] <= peers.TARGETS[kind][0] else "no")
    assert len(calls) == 1 + 5


# ----------------------------------------------------------------------------- printing
def test_times_and_ratios_printed_to_their_digits(tmp_path):
    """Markdown and LaTeX show times to 2 significant figures and ratios to 2 decimals;
    the CSV keeps every digit."""
    row = dict.fromkeys(peers.COLUMNS, "x") | {
        "ours_min": 0.00212671,
        "ours_median": 0.00267687,
        "peer_min": 1.05265e-3,
        "peer_median": 1.12318e-3,
        "ratio": 2.020341,
        "floor": 12.3456,
        "gradient": np.nan,
        "versus": "peer",
        "versus_ratio": 2.020341,
        "target": 0.5,
    }
    record = provenance.provenance({}) | {"blas": [], "settings": {}}
    peers.write_peers(pd.DataFrame([row]), tmp_path, [], record)
    for suffix in ("md", "tex"):
        text = (tmp_path / f"peers.{suffix}").read_text()
        for shown in ("0.0021", "0.0027", "0.0011", "2.02", "12", "0.50"):
            assert shown in text, (suffix, shown)
        for hidden in ("0.00213", "0.00212671", "2.020", "12.3"):
            assert hidden not in text, (suffix, hidden)
    csv = pd.read_csv(tmp_path / "peers.csv")
    assert csv.loc[0, "ours_min"] == 0.00212671 and csv.loc[0, "ratio"] == 2.020341


# ----------------------------------------------------------------------------- MLP rows
def test_mlp_l2_convention_is_mlpclassifiers():
    """Our objective at a fitted MLPClassifier's weights is its own final loss
    (``loss_``: mean log-loss + alpha ‖W‖² / (2 N), weights only)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = _data(load_iris)
    estimator = MLPClassifier((5, 4), activation="tanh", solver="lbfgs", alpha=0.3, max_iter=5)
    with pytest.warns(ConvergenceWarning):
        estimator.fit(X, y)
    model = MLP(X.shape[1], 3, (5, 4), "tanh", "softmax")
    blocks = [np.vstack([W, b]) for W, b in zip(estimator.coefs_, estimator.intercepts_)]
    loss = Objective(model, X, y, alpha=0.3).loss(model.pack(blocks))
    np.testing.assert_allclose(loss, estimator.loss_, rtol=EXACT_RTOL)


def test_torch_layout_maps_our_gradient_to_autograds():
    """torch autograd's gradient of the same loss through ``torch_mlp`` at our θ is our
    gradient after ``torch_layout``: weights (fan_out, fan_in), then biases, per layer."""
    torch = pytest.importorskip("torch")
    X, y = _data(load_iris)
    model = MLP(X.shape[1], 3, (5, 4), "tanh", "softmax")
    objective = Objective(model, X, y, alpha=0.7)
    theta = model.init_params(3)
    network, params = peers.torch_mlp(model, theta)
    logits = network(torch.from_numpy(X))
    penalty = sum((p**2).sum() for p in params if p.ndim == 2)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)) + 0.35 / len(y) * penalty
    grads = torch.autograd.grad(loss, params)
    expected = np.concatenate([g.numpy().ravel() for g in grads])
    ours_loss, ours_grad = objective.loss_and_grad(theta)
    np.testing.assert_allclose(ours_loss, loss.item(), rtol=EXACT_RTOL)
    np.testing.assert_allclose(
        peers.torch_layout(model, ours_grad), expected, rtol=1e-12, atol=1e-15
    )


@pytest.fixture(scope="module")
def quick_rows():
    rows, _ = peers.comparisons(quick=True)
    return {r.kind: r for r in rows}


VECTOR_KINDS = ["K-FAC update", "Fisher-vector product", "exact NG step"]


@pytest.mark.parametrize("kind", VECTOR_KINDS)
def test_curvlinops_rows_agree_and_refuse_a_perturbed_side(kind, quick_rows):
    """Both sides of each curvlinops row agree to CHECK_RTOL; one entry of either side
    changed by 1e-6 of the largest is refused."""
    pytest.importorskip("curvlinops")
    row = quick_rows[kind]
    ours, peer = row.ours(), row.peer()
    ok, text = row.check(ours, peer)
    assert ok, text
    bumped = peer.copy()
    bumped[np.argmin(np.abs(bumped))] += 1e-6 * np.abs(bumped).max()
    assert not row.check(ours, bumped)[0]
    ours_bumped = ours.copy()
    ours_bumped[-1] *= 1 + 1e-6
    assert row.check(ours_bumped, peer)[1].startswith("FAILED")


def test_mlp_fit_row_reaches_the_target_and_refuses_a_miss(quick_rows):
    """Ours reaches MLPClassifier's final loss; a run that stopped above it, or an
    estimator whose loss_ is not our objective at its weights, is refused."""
    row = quick_rows["MLP fit"]
    result, fitted = row.ours(), row.peer()
    ok, text = row.check(result, fitted)
    assert ok and result.loss <= fitted.loss_, text
    short = SimpleNamespace(loss=fitted.loss_ * (1 + 1e-6), n_iter=result.n_iter)
    assert "did not reach" in row.check(short, fitted)[1]
    fitted.loss_ *= 1 + 1e-6
    assert not row.check(result, fitted)[0]


def test_mlp_fit_label_is_the_call_that_ran():
    """The row's ``ours`` spells out :data:`peers.PEER_KFAC` as a runnable call."""
    build = peers.ours_workloads(quick=True)["MLP fit to MLPClassifier's loss, digits"]
    name = build().name
    args = name[name.index("make_optimizer(") + len("make_optimizer(") : name.index("))")]
    (solver,), keywords = eval(f"(lambda *a, **k: (a, k))({args})")
    assert {"solver": solver, **keywords} == peers.PEER_KFAC


def test_rows_are_the_workloads():
    """The table's rows are ours_workloads, in the same order, with the same work."""
    rows, skipped = peers.comparisons(quick=True)
    workloads = peers.ours_workloads(quick=True)
    assert [r.work for r in rows] == [w for w in workloads if any(r.work == w for r in rows)]
    if not skipped:
        assert [r.work for r in rows] == list(workloads)


# ----------------------------------------------------------------------------- asv
def test_bench_peers_times_every_workload_once(monkeypatch):
    """bench/bench_peers.py has one asv parameter per row of ``ours_workloads`` and each
    sets up and runs at the quick sizes (torch and curvlinops absent)."""
    _without(monkeypatch, "torch", "curvlinops")
    from bench import bench_peers, common

    assert bench_peers.ROWS == tuple(peers.ours_workloads(common.QUICK))
    monkeypatch.setattr(common, "QUICK", True)
    for row in peers.ours_workloads(quick=True):
        benchmark = bench_peers.Peers()
        benchmark.setup(row)
        benchmark.time_ours(row)
    with pytest.raises(NotImplementedError, match="no peers row"):
        bench_peers.Peers().setup("a row of another commit")

"""The committed ``results/`` must be reproducible by the code in this commit.

Re-runs a small part of the quick suite and checks that the deterministic columns
(iterations, oracle counts, losses, statuses) equal the committed rows. When this fails
after an intended numerical change, regenerate the results with the README's command:
``natgrad run --fresh``.

"Deterministic" holds for one numerics fingerprint (BLAS kernel and version, numpy and
scipy versions: :func:`~natgrad_core.benchmarking.provenance.numerics_fingerprint`), read
from each committed run's record. On other numerics the last bits round differently and
iterative solvers drift, so there only what does not depend on rounding is compared: the
configuration, the run's status and its size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from natgrad_core.benchmarking.grid import suite_config
from natgrad_core.benchmarking.provenance import numerics_fingerprint
from natgrad_core.benchmarking.runner import execute
from natgrad_core.benchmarking.store import NOT_APPLICABLE, ResultsStore
from natgrad_core.benchmarking.tuning import reported_grid, select

RESULTS = Path(__file__).resolve().parents[2] / "results"
LOSS_TOL = 1e-10
EXACT_COLUMNS = [
    "iteration",
    "n_loss",
    "n_grad",
    "n_fvp",
    "n_cg_iter",
    "n_factorizations",
    "n_backprop",
    "n_flops",
    "n_rejected",
    "n_cg_capped",
    "n_fallbacks",
    "flags",
    "status",
    "step_status",
    "n_params",
    "n_train",
    "params",
]
FLOAT_COLUMNS = ["loss", "suboptimality", "grad_norm", "test_metric"]
# what cannot depend on rounding: compared on any numerics
CONFIG_COLUMNS = ["config_id", "status", "n_params", "n_train", "params"]
SAMPLE = [
    ("iris-logistic", "kfac", 0),
    ("wine-logistic", "exact", 1),
    ("breast_cancer-logistic", "lbfgs", 2),
    ("wine-mlp", "cg", 0),
    ("iris-mlp", "adam (tuned)", 1),
    ("digits-logistic", "momentum (default)", 0),
    ("iris-mlp", "ekfac", 2),
    ("wine-logistic", "sklearn-newton-cholesky", 2),
    ("iris-logistic", "sklearn-saga", 0),
    ("iris-mlp", "sklearn-mlp-adam (tuned)", 0),
]


@pytest.fixture(scope="module")
def quick():
    """The quick suite's reported grid, with the selections its committed tuning runs give."""
    config = suite_config("quick")
    tuning = ResultsStore(RESULTS / "tuning").load()
    return reported_grid(config, select(config.tune, config.problems, config.solvers, tuning))


@pytest.fixture(scope="module")
def committed():
    frame = ResultsStore(RESULTS).load()
    if frame.empty:
        pytest.fail(f"no committed results under {RESULTS / 'runs'}; run `natgrad run quick`")
    return frame


def test_committed_results_cover_the_quick_suite(committed, quick):
    expected = {(s.problem.name, s.solver.label, s.seed) for s in quick.specs()}
    got = set(committed.groupby(["problem", "solver", "seed"]).size().index)
    assert got == expected
    assert set(committed["status"]) <= {"converged", "target", "max_iter", "stalled", "skipped"}
    # skipped only where a scikit-learn solver cannot fit the model at all
    skipped = committed[committed["status"] == "skipped"]
    assert skipped["message"].str.startswith(NOT_APPLICABLE).all()
    assert skipped["algorithm"].str.startswith("sklearn-").all()
    # every scikit-learn solver ran where it applies: LogisticRegression on the convex
    # problems, the MLPs on the others
    ran = committed[committed["status"] != "skipped"]
    for algorithm, convex in [("sklearn-lbfgs", True), ("sklearn-mlp-lbfgs", False)]:
        assert set(ran.loc[ran["algorithm"] == algorithm, "convex"]) == {convex}


@pytest.mark.parametrize(("problem", "solver", "seed"), SAMPLE)
def test_rerun_reproduces_committed_rows(committed, quick, tmp_path, problem, solver, seed):
    spec = next(
        s
        for s in quick.specs()
        if (s.problem.name, s.solver.label, s.seed) == (problem, solver, seed)
    )
    old = (
        committed[
            (committed.problem == problem) & (committed.solver == solver) & (committed.seed == seed)
        ]
        .sort_values("iteration")
        .reset_index(drop=True)
    )
    new = execute(spec, cache_dir=tmp_path).reset_index(drop=True)
    for col in CONFIG_COLUMNS:
        assert new[col].astype(str).iloc[0] == old[col].astype(str).iloc[0], col
    record = ResultsStore(RESULTS).records()[old["run_key"].iloc[0]]
    if numerics_fingerprint(record) != numerics_fingerprint():
        pytest.skip(
            f"committed on numerics {numerics_fingerprint(record)}, running on "
            f"{numerics_fingerprint()}: rounding differs, only the configuration and status "
            "were compared"
        )
    assert len(new) == len(old), f"{problem}/{solver}/{seed}: iteration count changed"
    for col in EXACT_COLUMNS:
        assert new[col].astype(str).tolist() == old[col].astype(str).tolist(), col
    for col in FLOAT_COLUMNS:
        np.testing.assert_allclose(
            new[col].to_numpy(float),
            old[col].to_numpy(float),
            rtol=LOSS_TOL,
            atol=LOSS_TOL,
            err_msg=col,
        )


def _final_losses(frame, solver):
    runs = frame[frame["solver"] == solver].sort_values("iteration")
    return runs.groupby(["problem", "seed"])["loss"].last()


def test_scikit_learn_and_natgrad_agree_where_they_run_the_same_algorithm(committed):
    """Same objective, same θ₀, same algorithm: scikit-learn's MLP L-BFGS ends where
    natgrad's L-BFGS does (both scipy's L-BFGS-B; 100 iterations of a non-convex problem
    let rounding drift, hence the loose tolerance), and scikit-learn's tuned MLP Adam
    where natgrad's tuned Adam does when the search chose the same rate."""
    mlp = committed[~committed["convex"]]
    ours, theirs = _final_losses(mlp, "lbfgs"), _final_losses(mlp, "sklearn-mlp-lbfgs")
    assert len(ours) == 6 and ours.index.equals(theirs.index)
    np.testing.assert_allclose(theirs, ours, rtol=1e-2)
    ng, sk = "adam (tuned)", "sklearn-mlp-adam (tuned)"
    rates = {}
    for solver, knob in ((ng, "learning_rate"), (sk, "learning_rate_init")):
        rows = mlp[mlp["solver"] == solver].drop_duplicates("problem")
        rates[solver] = {
            p: json.loads(params)[knob] for p, params in zip(rows["problem"], rows["params"])
        }
    same = [p for p, rate in rates[ng].items() if rates[sk][p] == rate]
    assert same, rates
    ours, theirs = _final_losses(mlp, ng), _final_losses(mlp, sk)
    np.testing.assert_allclose(theirs.loc[same], ours.loc[same], rtol=1e-3)

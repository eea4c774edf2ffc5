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

from pathlib import Path

import numpy as np
import pytest

from natgrad_core.benchmarking.grid import suite_config
from natgrad_core.benchmarking.provenance import numerics_fingerprint
from natgrad_core.benchmarking.runner import execute
from natgrad_core.benchmarking.store import ResultsStore
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
    assert set(committed["status"]) <= {"converged", "target", "max_iter", "stalled"}


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

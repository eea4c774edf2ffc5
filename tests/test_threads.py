"""BLAS/OpenMP threads: ``minimize(blas_threads=...)``, the estimator's ``blas_threads``, and
the asv suite's pin. Every thread count is read with threadpoolctl directly (the reference),
never through ``natgrad_core._threads``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asv.util import load_json
from threadpoolctl import threadpool_info, threadpool_limits

from natgrad_core import NaturalGradientClassifier, make_optimizer, minimize

from .optim.problems import binary_data, logistic_problem

ROOT = Path(__file__).resolve().parents[1]
OUTER_THREADS = 2
"""Limit set around a run, so that a run pinned to one thread differs from its caller."""


def _max_threads() -> int:
    return max(pool["num_threads"] for pool in threadpool_info())


@pytest.fixture
def two_threads():
    """Every pool at OUTER_THREADS (or what the machine allows); yields that count."""
    with threadpool_limits(limits=OUTER_THREADS):
        yield _max_threads()


@pytest.mark.parametrize("solver", ["exact", "lbfgs"])  # stepwise loop, scipy loop
def test_minimize_limits_every_pool_during_the_run_and_restores_them(two_threads, solver):
    model, X, y = logistic_problem()
    seen = []
    result = minimize(
        model,
        X,
        y,
        make_optimizer(solver),
        max_iter=3,
        tol=0.0,
        blas_threads=1,
        callback=lambda theta, row: seen.append(_max_threads()),
    )
    assert seen and set(seen) == {1}
    assert result.blas_threads == 1
    assert _max_threads() == two_threads


def test_minimize_without_blas_threads_leaves_pools_as_they_are(two_threads):
    model, X, y = logistic_problem()
    result = minimize(model, X, y, make_optimizer("exact"), max_iter=1)
    assert result.blas_threads == two_threads
    assert _max_threads() == two_threads


def test_estimator_records_the_threads_in_force(two_threads):
    X, y = binary_data()
    clf = NaturalGradientClassifier(blas_threads=1, max_iter=5, tol=1e-3).fit(X, y)
    assert clf.blas_threads_ == 1
    assert clf.get_params()["blas_threads"] == 1
    assert _max_threads() == two_threads


BAD_THREADS = [
    (0, ValueError, "blas_threads must be >= 1, got 0"),
    (-2, ValueError, "blas_threads must be >= 1, got -2"),
    (1.5, TypeError, "blas_threads must be an integer, got float"),
    (True, TypeError, "blas_threads must be an integer, got bool"),
    ("2", TypeError, "blas_threads must be an integer, got str"),
]


@pytest.mark.parametrize(("value", "error", "message"), BAD_THREADS)
def test_bad_blas_threads_is_rejected_before_any_work(value, error, message):
    model, X, y = logistic_problem()
    with pytest.raises(error, match=message):
        minimize(model, X, y, make_optimizer("exact"), blas_threads=value)
    with pytest.raises(error, match=message):
        NaturalGradientClassifier(blas_threads=value).fit(*binary_data())


def test_asv_benchmarks_run_with_one_thread_in_every_pool():
    """Import the asv suite in a fresh interpreter whose pools start with two threads (the
    variables asv.conf.json sets do not reach "-E existing" runs): inside, every pool
    threadpoolctl sees must be at one thread, and track_blas_threads must say so."""
    script = (
        "import json; from threadpoolctl import threadpool_info\n"
        "from bench import bench_time, bench_track\n"
        "bench_track.track_blas_threads.setup()\n"
        "print(json.dumps({'pools': [p['num_threads'] for p in threadpool_info()],\n"
        "                  'tracked': bench_track.track_blas_threads(),\n"
        "                  'unit': bench_track.track_blas_threads.unit}))\n"
    )
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": str(OUTER_THREADS),
        "OMP_NUM_THREADS": str(OUTER_THREADS),
        "MKL_NUM_THREADS": str(OUTER_THREADS),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["pools"]) >= 2  # numpy's and scipy's BLAS at least
    assert set(out["pools"]) == {1}
    assert (out["tracked"], out["unit"]) == (1, "threads")


def test_asv_built_environments_get_the_thread_variables():
    conf = load_json(ROOT / "asv.conf.json", js_comments=True)
    variables = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    assert {k: conf["matrix"]["env_nobuild"].get(k) for k in variables} == dict.fromkeys(
        variables, "1"
    )

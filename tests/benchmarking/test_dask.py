"""The grid on a Dask distributed cluster gives the same results as a serial run.

The cluster is local, loopback only (two single-threaded worker processes, no dashboard).
A SIGALRM guard turns a hung cluster into a test failure instead of a hung test session.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import pandas as pd
import pytest

from natgrad_core.benchmarking.grid import load_config, run_grid
from natgrad_core.benchmarking.store import ResultsStore
from tests.benchmarking.tiny import TINY_TOML

distributed = pytest.importorskip("dask.distributed")

N_RUNS = 8
GUARD_SECONDS = 90
NONDETERMINISTIC = ["time", "grad_time", "n_concurrent", "blas_threads"]


@contextlib.contextmanager
def time_guard(seconds: int, what: str):
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds``."""
    if not hasattr(signal, "SIGALRM"):  # pragma: no cover - POSIX only
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"{what} took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def cluster():
    """A loopback LocalCluster with two worker processes; fails (not skips) if it cannot start."""
    try:
        with time_guard(GUARD_SECONDS, "starting the LocalCluster"):
            local = distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
    except Exception as exc:
        pytest.fail(f"dask LocalCluster could not start here: {type(exc).__name__}: {exc}")
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_TOML)
    return load_config(str(path))


def deterministic(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop(columns=NONDETERMINISTIC)
    return frame.sort_values(["run_key", "iteration"], kind="stable").reset_index(drop=True)


def test_dask_grid_matches_serial(cluster, tiny_config, tmp_path: Path):
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    serial_store = ResultsStore(tmp_path / "serial")
    summary = run_grid(tiny_config, serial_store, cache_dir=tmp_path / "cache", progress=False)
    assert (summary.n_ran, summary.n_errors) == (N_RUNS, 0)

    dask_store = ResultsStore(tmp_path / "dask")
    with time_guard(GUARD_SECONDS, "the grid on the Dask cluster"):
        summary = run_grid(
            tiny_config,
            dask_store,
            dask_address=cluster.scheduler_address,
            cache_dir=tmp_path / "cache",
            progress=False,
        )
    assert (summary.n_total, summary.n_resumed, summary.n_ran, summary.n_errors) == (
        N_RUNS,
        0,
        N_RUNS,
        0,
    )
    assert not summary.interrupted
    on_dask = dask_store.load()
    assert dask_store.done_keys() == serial_store.done_keys()
    # two single-threaded workers on one host: two runs share the machine
    assert (on_dask["n_concurrent"] == 2).all()
    assert (on_dask["blas_threads"] == 1).all()
    pd.testing.assert_frame_equal(deterministic(on_dask), deterministic(serial_store.load()))

    # resuming against the cluster submits nothing
    with time_guard(GUARD_SECONDS, "resuming on the Dask cluster"):
        again = run_grid(
            tiny_config,
            dask_store,
            dask_address=cluster.scheduler_address,
            cache_dir=tmp_path / "cache",
            progress=False,
        )
    assert (again.n_resumed, again.n_ran) == (N_RUNS, 0)

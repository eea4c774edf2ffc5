"""``natgrad run`` and ``run_grid`` within the machine's means: workers capped at the pending
runs (counted, never timed), a warning above the available cores, and an unusable ``--out``
or ``--dask`` refused with exit 2 before the first run (closed ports on 127.0.0.1 only)."""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path
from typing import ClassVar

import joblib
import pytest

from natgrad_core.benchmarking import cli, grid
from natgrad_core.benchmarking.grid import load_config, run_grid
from natgrad_core.benchmarking.store import ResultsStore
from tests.benchmarking.tiny import tiny_toml

ONE_RUN_TOML = """\
[run]
problems = ["iris-logistic"]
seeds = [0]
max_iter = 3
time_limit = 30

[[solver]]
label = "gd-armijo"
solver = "gd"
step = "armijo"
"""


class CountingParallel:
    """Stands in for ``joblib.Parallel``: records ``n_jobs`` and runs the tasks serially."""

    calls: ClassVar[list[int]] = []

    def __init__(self, n_jobs, return_as):
        self.calls.append(n_jobs)

    def __call__(self, tasks):
        return (function(*args, **kwargs) for function, args, kwargs in tasks)


@pytest.fixture
def counted(monkeypatch):
    """Patch joblib and ``execute``: returns (n_jobs per Parallel, n_concurrent per run)."""
    CountingParallel.calls = []
    concurrent = []
    real_execute = grid.execute

    def counting_execute(spec, cache_dir, n_concurrent, blas_threads):
        concurrent.append(n_concurrent)
        return real_execute(spec, cache_dir, n_concurrent, blas_threads)

    monkeypatch.setattr(joblib, "Parallel", CountingParallel)
    monkeypatch.setattr(grid, "execute", counting_execute)
    monkeypatch.setattr(grid, "available_cores", lambda: 2, raising=False)
    return CountingParallel.calls, concurrent


def _config(tmp_path: Path, text: str):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return load_config(str(path))


# (configuration, n_jobs, workers started by joblib, n_concurrent recorded per run, warns)
WORKER_CASES = [
    ("one run, n_jobs=8", ONE_RUN_TOML, 8, [], [1], False),
    ("four runs, n_jobs=999", tiny_toml(seeds=(0,), max_iter=3), 999, [4], [4] * 4, True),
    ("four runs, n_jobs=2", tiny_toml(seeds=(0,), max_iter=3), 2, [2], [2] * 4, False),
]


@pytest.mark.parametrize(
    ("text", "n_jobs", "parallel", "concurrent", "warns"),
    [c[1:] for c in WORKER_CASES],
    ids=[c[0] for c in WORKER_CASES],
)
def test_workers_capped_at_pending_runs(
    counted, tmp_path, recwarn, text, n_jobs, parallel, concurrent, warns
):
    summary = run_grid(
        _config(tmp_path, text), ResultsStore(tmp_path / "out"), n_jobs=n_jobs, progress=False
    )
    assert summary.n_ran == len(concurrent)
    assert counted == (parallel, concurrent)
    messages = [str(w.message) for w in recwarn if w.category is RuntimeWarning]
    assert bool(messages) is warns
    if warns:
        assert "2 available cores" in messages[0] and "4 pending runs" in messages[0]


@pytest.fixture
def no_runs(monkeypatch):
    """Fail the test if the command gets as far as running the grid."""

    def refuse(*args, **kwargs):
        raise AssertionError("run_grid was called: the check came too late")

    monkeypatch.setattr(cli, "run_grid", refuse)


def _run(tmp_path, capsys, *extra) -> tuple[int, str]:
    config = tmp_path / "one.toml"
    config.write_text(ONE_RUN_TOML)
    code = cli.main(["run", str(config), "--quiet", "--no-report", *map(str, extra)])
    return code, capsys.readouterr().err


def test_out_that_is_a_file_exits_2(no_runs, tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    code, err = _run(tmp_path, capsys, "--out", target)
    assert code == 2 and "is a file" in err and str(target) in err
    assert target.read_text() == "mine"


def test_runs_that_is_a_file_exits_2(no_runs, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "runs").write_text("")
    code, err = _run(tmp_path, capsys, "--out", tmp_path / "out")
    assert code == 2 and "runs is a file" in err


def test_unwritable_out_exits_2_before_any_run(no_runs, tmp_path, capsys, monkeypatch):
    """Tests may run as root, whom chmod does not stop: deny the probe file instead."""

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    code, err = _run(tmp_path, capsys, "--out", tmp_path / "out")
    assert code == 2 and "cannot write results" in err and "Permission denied" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MALFORMED = ["tcp://127.0.0.1:notaport", "::::", "http://127.0.0.1:8786", "tcp://:8786"]


@pytest.mark.parametrize("address", MALFORMED)
def test_malformed_dask_address_exits_2(no_runs, tmp_path, capsys, address):
    pytest.importorskip("dask.distributed")
    code, err = _run(tmp_path, capsys, "--out", tmp_path / "out", "--dask", address)
    assert code == 2 and "malformed address" in err and "tcp://" in err


def test_closed_dask_port_exits_2(no_runs, tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    address = f"tcp://127.0.0.1:{_closed_port()}"
    code, err = _run(tmp_path, capsys, "--out", tmp_path / "out", "--dask", address)
    assert code == 2 and f"no scheduler answers at {address} within 5 s" in err


def test_listener_that_is_not_a_scheduler_exits_2(no_runs, tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    server = socket.create_server(("127.0.0.1", 0))

    def answer_garbage():
        with server:
            connection, _ = server.accept()
            with connection:
                connection.sendall(b"HTTP/1.0 200 OK\r\n\r\n" * 64)

    threading.Thread(target=answer_garbage, daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    code, err = _run(
        tmp_path, capsys, "--out", tmp_path / "out", "--dask", address, "--dask-timeout", 2
    )
    assert code == 2 and "no Dask scheduler answered within 2 s" in err


@pytest.mark.parametrize("timeout", [0, -1, "inf", "nan"])
def test_bad_dask_timeout_exits_2(no_runs, tmp_path, capsys, timeout):
    code, err = _run(
        tmp_path, capsys, "--out", tmp_path / "out", "--dask", "x:1", "--dask-timeout", timeout
    )
    assert code == 2 and "--dask-timeout" in err

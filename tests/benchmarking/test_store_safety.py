"""Nothing lost, nothing silently wrong: the results folder under faults (issue 8 §1).

Each test builds the damage a user or the machine can do — a file of the user's own in
the results folder, a truncated run file, a stored error, a corrupt or concurrently
written reference cache, a umask, SIGTERM, Ctrl-C — and checks the guarantee the README
states for it ("What happens when things go wrong").
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking import cli, grid, runner
from natgrad_core.benchmarking.problems import PROBLEMS
from natgrad_core.benchmarking.reference import CacheWarning, reference_solution
from natgrad_core.benchmarking.store import SCHEMA, ResultsStore
from tests.benchmarking.tiny import tiny_toml

REPO_ROOT = Path(__file__).resolve().parents[2]


def small_config(folder: Path, seeds=(0, 1), max_iter: int = 3, name: str = "small") -> Path:
    """The tiny grid's two solvers on iris-logistic only: two runs per seed."""
    path = folder / f"{name}.toml"
    path.write_text(tiny_toml(seeds, max_iter, problems=("iris-logistic",)))
    return path


def run_cli(*argv) -> tuple[int, str, str]:
    """``natgrad *argv`` in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except KeyboardInterrupt:
            pytest.fail("KeyboardInterrupt escaped natgrad (expected a clean exit 130)")
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A results folder holding the two runs of the small grid (no report): (config, out)."""
    folder = tmp_path_factory.mktemp("stored")
    config = small_config(folder)
    out = folder / "results"
    code, _, stderr = run_cli("run", config, "--out", out, "--quiet", "--no-report")
    assert code == 0, stderr
    assert len(list((out / "runs").glob("*.csv"))) == 4
    return config, out


@pytest.fixture
def results(stored, tmp_path):
    """A private copy of the stored results folder: (config, out)."""
    config, out = stored
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    return config, copy


# ================================================================= --fresh and foreign files
def test_fresh_refuses_foreign_files_and_never_deletes_them(results):
    config, out = results
    thesis = out / "figures" / "thesis.png"
    thesis.parent.mkdir()
    thesis.write_bytes(b"\x89PNG my own figure")
    notes = out / "runs" / "notes.csv"
    notes.write_text("my,own\n1,2\n")

    code, _, stderr = run_cli("run", config, "--out", out, "--quiet", "--fresh")
    assert code == 2
    assert "figures/thesis.png" in stderr and "runs/notes.csv" in stderr and "--force" in stderr
    assert len(list((out / "runs").glob("*.json"))) == 4, "a refused run deleted runs"

    code, stdout, stderr = run_cli("run", config, "--out", out, "--quiet", "--fresh", "--force")
    assert code == 0, stderr
    assert "0 already stored, 4 ran" in stdout
    assert (out / "index.html").is_file() and any((out / "figures").glob("*.pdf"))
    assert thesis.read_bytes() == b"\x89PNG my own figure"
    assert notes.read_text() == "my,own\n1,2\n"

    # the report's own files are natgrad's: a second run needs no --force, and a report
    # with fewer figures removes natgrad's stale ones, never the user's
    thesis.unlink()
    notes.unlink()
    stale = out / "figures" / "suboptimality_old-problem.png"
    manifest = ResultsStore(out).report_files()
    assert "figures/performance_profiles.png" in manifest and "index.html" in manifest
    ResultsStore(out).replace_report_files([out / name for name in manifest] + [stale])
    stale.write_bytes(b"a figure natgrad wrote earlier")
    thesis.write_bytes(b"mine")
    code, _, stderr = run_cli("run", config, "--out", out, "--quiet", "--force")
    assert code == 0, stderr
    assert not stale.exists() and thesis.read_bytes() == b"mine"


def test_fresh_deletes_only_the_runs_of_this_configuration(results, tmp_path):
    config, out = results
    other = small_config(tmp_path, seeds=(0,), max_iter=2, name="other")
    assert run_cli("run", other, "--out", out, "--quiet", "--no-report")[0] == 0
    assert len(list((out / "runs").glob("*.csv"))) == 6
    before = {p.name: p.read_bytes() for p in (out / "runs").glob("*")}

    code, stdout, stderr = run_cli("run", other, "--out", out, "--quiet", "--no-report", "--fresh")
    assert code == 0, stderr
    assert "0 already stored, 2 ran" in stdout
    after = {p.name: p.read_bytes() for p in (out / "runs").glob("*")}
    assert set(after) == set(before)
    # the two runs of the first configuration were not touched
    code, stdout, _ = run_cli("run", config, "--out", out, "--quiet", "--no-report")
    assert "4 already stored, 0 ran" in stdout


def test_an_empty_or_missing_out_needs_no_force(tmp_path):
    config = small_config(tmp_path, seeds=(0,), max_iter=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("run", config, "--out", empty, "--quiet", "--no-report")[0] == 0
    assert run_cli("run", config, "--out", tmp_path / "new", "--quiet", "--no-report")[0] == 0


# ========================================================================= damaged run files
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _header_only(path: Path) -> None:
    path.write_text(path.read_text().splitlines()[0] + "\n")


def _edit_a_number(path: Path) -> None:  # parses, right shape: only the checksum tells
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[frame.index[-1], "loss"] = "0.125"
    frame.to_csv(path, index=False)


def _drop_last_row_and_checksum(path: Path) -> None:  # an older store wrote no checksum
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.iloc[:-1].to_csv(path, index=False)
    record = path.with_suffix(".json")
    record.write_text(record.read_text().replace('"sha256"', '"sha256_"'))


def _unknown_status(path: Path) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["status"] = "running"
    frame.to_csv(path, index=False)
    record = path.with_suffix(".json")
    record.write_text(record.read_text().replace('"csv"', '"csv_"'))


DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),
    "header-only": _header_only,
    "truncated": _truncate,
    "garbage": lambda p: p.write_bytes(bytes(range(256)) * 4),
    "edited": _edit_a_number,
    "record-garbage": lambda p: p.with_suffix(".json").write_text("{not json"),
    "rows-missing": _drop_last_row_and_checksum,
    "unknown-status": _unknown_status,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_run_file_is_quarantined_and_run_again(results, damage):
    config, out = results
    victim = sorted((out / "runs").glob("*.csv"))[0]
    DAMAGE[damage](victim)

    # report and compare read it without moving it, name it, and do not crash
    code, _, stderr = run_cli("report", "--out", out)
    assert code == 0 and victim.name in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli("compare", out, out)
    assert code == 0 and victim.name in stderr
    assert victim.is_file()

    code, stdout, stderr = run_cli("run", config, "--out", out, "--quiet", "--no-report")
    assert code == 0, stderr
    assert victim.name in stderr and "quarantine" in stderr
    assert "3 already stored, 1 ran, 0 errors" in stdout
    assert (out / "runs" / "quarantine" / victim.name).is_file()
    rerun = ResultsStore(out).load()
    assert len(set(rerun["run_key"])) == 4 and (rerun["status"] != "error").all()
    assert list(rerun.columns) == list(SCHEMA)


# ============================================================================ stored errors
def test_stored_errors_fail_the_rerun_until_retried(tmp_path, monkeypatch):
    config = small_config(tmp_path, seeds=(0, 1), max_iter=2)
    out = tmp_path / "results"

    def out_of_memory(*args, **kwargs):
        raise MemoryError("transient")

    with monkeypatch.context() as patch:
        patch.setattr(runner, "minimize", out_of_memory)
        code, stdout, _ = run_cli("run", config, "--out", out, "--quiet", "--no-report")
    assert code == 1 and "4 ran, 4 errors" in stdout

    code, stdout, _ = run_cli("run", config, "--out", out, "--quiet", "--no-report")
    assert code == 1
    assert "4 already stored, 0 ran, 0 errors, 4 stored errors" in stdout
    assert "--retry-errors" in stdout

    code, stdout, stderr = run_cli(
        "run", config, "--out", out, "--quiet", "--no-report", "--retry-errors"
    )
    assert code == 0, stderr
    assert "0 already stored, 4 ran, 0 errors" in stdout
    assert "error" not in set(ResultsStore(out).statuses().values())


# ========================================================================== reference cache
@pytest.fixture(scope="module")
def iris():
    data = PROBLEMS["iris-logistic"].load(0)
    return data, reference_solution(data)  # solved once, kept for this process


def _hammer(cache_dir, data, n_writes, failures):
    """One writer: remove the entry and write it again, ``n_writes`` times."""
    path = Path(cache_dir) / f"{data.content_hash()}.npz"
    for _ in range(n_writes):
        path.unlink(missing_ok=True)
        try:
            reference_solution(data, cache_dir)
        except Exception as exc:  # counted: that is the test
            failures.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.skipif(sys.platform == "win32", reason="needs fork")
def test_concurrent_cache_writers_never_collide(iris, tmp_path):
    data, _ = iris
    context = multiprocessing.get_context("fork")  # the workers inherit the solved reference
    failures = context.Queue()
    workers = [
        context.Process(target=_hammer, args=(tmp_path, data, 300, failures)) for _ in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert errors == [], f"{len(errors)} of 900 writes failed, e.g. {errors[:2]}"
    assert [p.name for p in tmp_path.iterdir()] == [f"{data.content_hash()}.npz"]


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


CACHE_DAMAGE = {
    "empty": lambda ref: b"",
    "garbage": lambda ref: b"PK\x03\x04 not a zip at all" * 10,
    "truncated": lambda ref: _npz(loss=ref.loss, theta=ref.theta, grad_norm=ref.grad_norm)[:200],
    "wrong-names": lambda ref: _npz(a=ref.theta),
    "wrong-shape": lambda ref: _npz(loss=ref.loss, theta=ref.theta[:3], grad_norm=0.0),
    "nan-loss": lambda ref: _npz(loss=np.nan, theta=ref.theta, grad_norm=ref.grad_norm),
}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_a_damaged_cache_entry_is_recomputed_with_a_warning(iris, tmp_path, damage):
    data, ref = iris
    path = tmp_path / f"{data.content_hash()}.npz"
    path.write_bytes(CACHE_DAMAGE[damage](ref))
    with pytest.warns(CacheWarning, match=path.name):
        got = reference_solution(data, tmp_path)
    # the optimum: the gradient of the objective vanishes there (finite differences of L)
    objective_grad = _fd_gradient(data, got.theta)
    np.testing.assert_allclose(objective_grad, 0.0, atol=1e-6)
    assert got.loss == pytest.approx(ref.loss, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = reference_solution(data, tmp_path)  # the entry was replaced
    np.testing.assert_array_equal(again.theta, got.theta)


def _fd_gradient(data, theta, h=1e-6):
    from natgrad_core.models.objective import Objective

    objective = Objective(data.model, data.X_train, data.y_train, data.alpha)
    grad = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        up = objective.loss_and_grad(theta + e, count=False)[0]
        down = objective.loss_and_grad(theta - e, count=False)[0]
        grad[i] = (up - down) / (2 * h)
    return grad


# ================================================================================ the umask
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_files_get_the_permissions_the_umask_allows(tmp_path, umask):
    config = small_config(tmp_path, seeds=(0,), max_iter=1)
    out = tmp_path / "results"
    previous = os.umask(umask)
    try:
        assert run_cli("run", config, "--out", out, "--quiet")[0] == 0
    finally:
        os.umask(previous)
    files = [p for p in out.rglob("*") if p.is_file()]
    kinds = {p.relative_to(out).parts[0] for p in files}
    assert {"runs", "cache", "tables", "figures", "index.html"} <= kinds
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in files}
    assert set(modes.values()) == {0o666 & ~umask}, modes


# ======================================================== temporary files, SIGTERM, Ctrl-C
def test_temporary_files_of_dead_writers_are_removed_at_start(results):
    config, out = results
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(dead.stdout)
    orphan = out / "runs" / f".0123456789ab.csv.{dead_pid}.k2j4h5g6.tmp"
    alive = out / "runs" / f".0123456789ab.csv.{os.getpid()}.a1b2c3d4.tmp"
    cache_orphan = out / "cache" / f".{'0' * 64}.npz.{dead_pid}.zzzzzzzz.tmp"
    for path in (orphan, alive, cache_orphan):
        path.write_bytes(b"partial")
    code, _, stderr = run_cli("run", config, "--out", out, "--quiet", "--no-report")
    assert code == 0, stderr
    assert not orphan.exists() and not cache_orphan.exists()
    assert alive.exists(), "the temporary file of a live writer was removed"


def test_ctrl_c_while_references_are_computed_exits_130(tmp_path, monkeypatch):
    config = small_config(tmp_path, seeds=(0,), max_iter=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(grid, "reference_solution", interrupted)
    code, _, stderr = run_cli("run", config, "--out", tmp_path / "results", "--quiet")
    assert code == 130
    assert "interrupted" in stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stores_finished_runs_leaves_no_temporary_files_and_exits_130(tmp_path):
    config = small_config(tmp_path, seeds=list(range(40)), max_iter=50)
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "natgrad_core.benchmarking.cli",
            "run",
            str(config),
            "--out",
            str(out),
            "--quiet",
            "--no-report",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = out / "runs"
    while proc.poll() is None and len(list(runs.glob("*.csv"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert list(out.rglob("*.tmp")) == []
    stored = ResultsStore(out).statuses()
    assert 2 <= len(stored) < 80

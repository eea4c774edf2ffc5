"""Tests of the ``natgrad`` command: list, run (serial, resumed, joblib), compare, report."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets

from natgrad_core.benchmarking import cli
from natgrad_core.benchmarking.grid import DEFAULT_SOLVERS, suite_config
from natgrad_core.benchmarking.problems import PROBLEMS, SUITES
from natgrad_core.benchmarking.store import SCHEMA, ResultsStore
from tests.benchmarking.tiny import (
    TINY_PROBLEMS,
    TINY_SEEDS,
    TINY_SOLVERS,
    TINY_TOML,
    tiny_toml,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

N_PROBLEMS = len(TINY_PROBLEMS)
N_RUNS = N_PROBLEMS * len(TINY_SOLVERS) * len(TINY_SEEDS)
# Columns allowed to differ between two executions of the same runs.
NONDETERMINISTIC = ["time", "grad_time", "n_concurrent", "blas_threads"]


def run_cli(*argv) -> tuple[int, str, str]:
    """``natgrad *argv`` in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def deterministic(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop(columns=NONDETERMINISTIC)
    return frame.sort_values(["run_key", "iteration"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.fixture(scope="module")
def serial(tiny_config, tmp_path_factory):
    """The tiny grid run once, serially, through the CLI: (results folder, stdout)."""
    out = tmp_path_factory.mktemp("serial") / "results"
    code, stdout, stderr = run_cli("run", tiny_config, "--out", out, "--no-report", "--quiet")
    assert code == 0, stderr
    return out, stdout


# ===================================================================================== list
def test_list_all(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for header in ("problems:", "solvers (recommended configurations):", "suites:"):
        assert header in out
    for name in [*PROBLEMS, *SUITES, *(s.label for s in DEFAULT_SOLVERS)]:
        assert name in out


def _section(lines, first, stop):
    """The lines after the header ``first`` up to the next line starting with ``stop``."""
    start = lines.index(first) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(stop)), len(lines))
    return lines[start:end]


def test_list_problems(capsys):
    assert cli.main(["list", "problems"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "problems:" and "solvers" not in out and "suites:" not in out
    problems = _section(lines, "problems:", "dataset plugins")
    assert [line.split()[0] for line in problems] == list(PROBLEMS)
    assert any(line.startswith("dataset plugins ('natgrad.problems'") for line in lines)


def test_list_solvers(capsys):
    assert cli.main(["list", "solvers"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("solvers") and "problems:" not in out
    own = _section(lines, lines[0], "solvers shipped")
    shipped = _section(lines, next(x for x in lines if x.startswith("solvers shipped")), "solver ")
    assert [line.split()[0] for line in own + shipped] == [s.label for s in DEFAULT_SOLVERS]
    assert "damping=0.0001" in out
    sklearn = importlib.metadata.version("scikit-learn")
    assert all(f"[scikit-learn {sklearn}]" in line for line in shipped)
    assert any(line.startswith("solver plugins ('natgrad.solvers'") for line in lines)


def test_list_suites(capsys):
    assert cli.main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "suites:"
    assert [line.split()[0] for line in lines[1:]] == list(SUITES)
    for name, problems in SUITES.items():
        line = next(x for x in lines if x.split()[0] == name)
        assert f"{len(problems)} problems" in line
        assert f"{len(suite_config(name).seeds)} seeds" in line


def test_list_rejects_unknown_topic(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["list", "datasets"])
    assert exc.value.code == 2
    assert "datasets" in capsys.readouterr().err


def test_console_script_is_installed():
    (entry,) = metadata.entry_points(group="console_scripts", name="natgrad")
    assert entry.value == "natgrad_core.benchmarking.cli:main"
    script = Path(sys.executable).with_name("natgrad")
    assert script.is_file(), f"console script not installed next to {Path(sys.executable).name}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [str(script), "list", "suites"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in SUITES:
        assert name in done.stdout


# ===================================================================================== help
def subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize(
    "command", [None, "list", "run", "tune", "study", "report", "compare", "peers", "scaling"]
)
def test_help_exits_0_and_reads_without_markup(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: natgrad{'' if command is None else ' ' + command}")
    assert "``" not in out and ":func:" not in out and ":data:" not in out
    assert "example" in out  # every command shows how it is called


def test_every_command_and_argument_has_help():
    parsers = {"natgrad": cli.build_parser()} | {
        f"natgrad {k}": p for k, p in subcommands().items()
    }
    assert set(parsers) == {
        "natgrad",
        *(
            f"natgrad {c}"
            for c in ("list", "run", "tune", "study", "report", "compare", "peers", "scaling")
        ),
    }
    for name, parser in parsers.items():
        assert parser.description and parser.description.strip(), name
        for action in parser._actions:
            assert action.help and action.help.strip(), (name, action.option_strings or action.dest)
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                assert set(helps) == set(subcommands()), name
                assert all(h and h.strip() for h in helps.values()), helps


# ====================================================================================== run
def test_run_writes_every_run_once(serial):
    out, stdout = serial
    assert f"tiny: {N_RUNS} runs, 0 already stored, {N_RUNS} ran, 0 errors" in stdout
    files = sorted((out / "runs").glob("*.csv"))
    assert len(files) == N_RUNS
    table = ResultsStore(out).load()
    assert list(table.columns) == list(SCHEMA)
    assert {p.stem for p in files} == set(table["run_key"])
    runs = table.groupby("run_key")[["problem", "solver", "seed"]].first()
    assert sorted(map(tuple, runs.to_numpy())) == sorted(
        (p, s, seed) for p in TINY_PROBLEMS for s in TINY_SOLVERS for seed in TINY_SEEDS
    )
    assert (table["n_concurrent"] == 1).all() and (table["blas_threads"] == 1).all()
    assert (table["status"] == "max_iter").all()
    assert table.groupby("run_key")["iteration"].max().eq(8).all()
    # one reference per convex problem and seed: the seed draws the training data
    assert len(list((out / "cache").glob("*.npz"))) == len(TINY_SEEDS)
    assert not (out / "index.html").exists()  # --no-report


def fastest_from_rows(frame: pd.DataFrame, eps_list) -> dict[str, tuple]:
    """Per problem: (tightest ε whose median cost over seeds is finite for some solver,
    solver with the least median time to it, solver with the least median work), computed
    from the stored rows alone. F* of a non-convex problem: the least loss of any run of
    that problem and seed."""
    f = frame.copy()
    best = f.groupby(["problem", "seed"])["loss"].transform("min")
    f["suboptimality"] = f["suboptimality"].where(f["convex"], f["loss"] - best)
    curvature = f["n_backprop"] * f["backprop_flops"] + f["n_flops"]
    f["work"] = f["n_grad"] + f["n_loss"] + 2 * f["n_fvp"] + curvature / f["grad_flops"]
    expected = {}
    for problem, rows in f.groupby("problem"):
        for eps in sorted(eps_list):
            medians = {}
            for solver, runs in rows.groupby("solver"):
                costs = []
                for _, run in runs.groupby("run_key"):
                    hit = run.sort_values("iteration")[run["suboptimality"] <= eps]
                    costs.append(
                        (hit["time"].iloc[0], hit["work"].iloc[0]) if len(hit) else (np.inf,) * 2
                    )
                medians[solver] = np.median(np.array(costs), axis=0)
            finite = {k: v for k, v in medians.items() if np.isfinite(v[0])}
            if finite:
                by_time = min(finite, key=lambda k: finite[k][0])
                by_work = min(finite, key=lambda k: finite[k][1])
                expected[problem] = (eps, by_time, by_work)
                break
    return expected


def test_run_ends_with_the_fastest_solver_per_problem(serial):
    out, stdout = serial
    frame = ResultsStore(out).load()
    expected = fastest_from_rows(frame, (1e-2, 1e-4, 1e-6, 1e-8))
    assert "iris-logistic" in expected  # the convex problem reaches some ε
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("per problem, the tightest"))
    assert f"median of {len(TINY_SEEDS)} seeds" in lines[start]
    assert lines[start + 1].split()[:3] == ["problem", "F*", "ε"]
    rows = {line.split()[0]: line.split() for line in lines[start + 2 : start + 2 + N_PROBLEMS]}
    assert set(rows) == set(TINY_PROBLEMS)
    for problem, row in rows.items():
        reference = ["exact", "optimum"] if PROBLEMS[problem].convex else ["best", "known"]
        assert row[1:3] == reference, row
        if problem not in expected:
            assert " ".join(row[3:]) == "— no solver's median reached 0.01", row
            continue
        eps, by_time, by_work = expected[problem]
        eps_, time_solver, time, work_solver, work = row[3:]
        assert float(eps_) == eps and (time_solver, work_solver) == (by_time, by_work), row
        assert float(time) >= 0 and float(work) > 0


def test_run_beside_unreadable_runs_stores_its_runs_and_says_why_no_summary(tmp_path):
    out = shutil.copytree(REPO_ROOT / "tests" / "data" / "schema2", tmp_path / "results")
    (old,) = (out / "runs").glob("*.csv")
    lines = old.read_text().splitlines(keepends=True)
    old.write_text(lines[0] + "".join("99" + line[1:] for line in lines[1:]))  # schema 99
    config = tmp_path / "one.toml"
    config.write_text(tiny_toml(seeds=[0], max_iter=2, problems=["iris-logistic"]))
    code, stdout, stderr = run_cli("run", config, "--out", out, "--quiet")
    assert code == 1
    assert "2 ran, 0 errors" in stdout and "per problem" not in stdout
    assert "stored, but cannot be summarized" in stderr and "[99]" in stderr
    assert len(list((out / "runs").glob("*.csv"))) == 3


def test_rerun_resumes_and_runs_nothing(serial, tiny_config):
    out, _ = serial
    files = sorted((out / "runs").glob("*.csv"))
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    code, stdout, stderr = run_cli("run", tiny_config, "--out", out, "--no-report", "--quiet")
    assert code == 0, stderr
    assert f"tiny: {N_RUNS} runs, {N_RUNS} already stored, 0 ran, 0 errors" in stdout
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "runs").glob("*.csv")}
    assert after == before


def test_seeds_option_overrides_config(tiny_config, tmp_path):
    out = tmp_path / "results"
    code, stdout, stderr = run_cli(
        "run", tiny_config, "--out", out, "--seeds", "7", "--no-report", "--quiet"
    )
    assert code == 0, stderr
    assert "tiny: 4 runs, 0 already stored, 4 ran, 0 errors" in stdout
    assert set(ResultsStore(out).load()["seed"]) == {7}


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "no-such-suite"], "no-such-suite"),
        (["run", "missing.toml"], "missing.toml"),
        (["run", "quick", "--n-jobs", "0"], "--n-jobs"),
        (["run", "quick", "--seeds", "one,two"], "one"),
        (["run", "quick", "--n-jobs", "2", "--dask", "tcp://127.0.0.1:1"], "--dask"),
    ],
)
def test_run_usage_errors_exit_2(argv, fragment, tmp_path):
    out = tmp_path / "results"
    code, _, stderr = run_cli(*argv, "--out", out, "--no-report", "--quiet")
    assert code == 2
    assert fragment in stderr
    assert not out.exists()


def test_run_with_two_jobs_matches_serial(serial, tiny_config, tmp_path):
    out, _ = serial
    parallel_out = tmp_path / "parallel"
    code, stdout, stderr = run_cli(
        "run", tiny_config, "--out", parallel_out, "--n-jobs", "2", "--no-report", "--quiet"
    )
    assert code == 0, stderr
    assert f"tiny: {N_RUNS} runs, 0 already stored, {N_RUNS} ran, 0 errors" in stdout
    parallel = ResultsStore(parallel_out).load()
    # each worker's run record comes back with its rows and is stored beside them
    records = ResultsStore(parallel_out).records()
    assert set(records) == set(parallel["run_key"])
    assert all({p["num_threads"] for p in r["blas"]} == {1} for r in records.values())
    assert (parallel["n_concurrent"] == 2).all()
    assert (parallel["blas_threads"] == 1).all()
    pd.testing.assert_frame_equal(deterministic(parallel), deterministic(ResultsStore(out).load()))


def verdicts(stdout: str) -> set[str]:
    return {line.split()[-1] for line in stdout.splitlines()[1:]}


def _rewritten(out: Path, to: Path, **changes) -> Path:
    """A copy of the stored runs under ``to`` with some columns changed."""
    frame = ResultsStore(out).load()
    for key, run in frame.assign(**changes).groupby("run_key"):
        ResultsStore(to).write_run(key, run)
    return to


def test_compare_prints_a_table(serial, tmp_path):
    out, _ = serial
    code, stdout, stderr = run_cli("compare", out, out, "--fail-on-regression")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert "problem" in lines[0] and "solver" in lines[0] and "verdict" in lines[0]
    for name in (*TINY_PROBLEMS, *TINY_SOLVERS):
        assert name in stdout
    # a result set compared with itself has changed nowhere
    assert {line.split()[-1] for line in lines[1:]} == {"same"} and stderr == ""


def test_compare_judges_time_only_on_one_machine(serial, tmp_path):
    out, _ = serial
    frame = ResultsStore(out).load()
    # the same runs, three times slower on this machine: every solver that reaches eps
    slow = _rewritten(out, tmp_path / "slow", time=3 * frame["time"])
    code, stdout, stderr = run_cli("compare", out, slow, "--eps", "0.1")
    assert code == 0, stderr
    assert verdicts(stdout) == {"worse", "same"}
    code, stdout, _ = run_cli("compare", out, slow, "--eps", "0.1", "--time-threshold", "4")
    assert code == 0 and verdicts(stdout) == {"same"}
    # ... and on another CPU: same counts, so nothing got worse, with a warning
    other = _rewritten(out, tmp_path / "other", time=3 * frame["time"], machine="elsewhere")
    code, stdout, stderr = run_cli("compare", out, other, "--eps", "0.1", "--fail-on-regression")
    assert code == 0, stderr
    assert verdicts(stdout) == {"same"}
    assert "warning: time not judged" in stderr and "elsewhere" in stderr


def test_compare_fails_on_regression_and_names_the_rows(serial, tmp_path):
    out, _ = serial
    frame = ResultsStore(out).load()
    # one more iteration everywhere for K-FAC (which reaches 0.1) on the logistic problem
    worse = frame["solver"].eq(TINY_SOLVERS[1]) & frame["problem"].eq(TINY_PROBLEMS[0])
    later = _rewritten(out, tmp_path / "later", iteration=frame["iteration"] + worse)
    code, stdout, _ = run_cli("compare", out, later, "--eps", "0.1")
    assert code == 0  # without the flag compare only reports
    code, stdout, stderr = run_cli("compare", out, later, "--eps", "0.1", "--fail-on-regression")
    assert code == 1
    assert "1 of 4 rows got worse" in stderr
    assert f"{TINY_PROBLEMS[0]} / {TINY_SOLVERS[1]}: iterations" in stderr
    assert stdout.splitlines()[1].split()[:2] == [TINY_PROBLEMS[0], TINY_SOLVERS[1]]


def test_compare_without_common_rows_is_an_error(serial, tmp_path):
    out, _ = serial
    frame = ResultsStore(out).load()
    renamed = _rewritten(out, tmp_path / "renamed", solver="other-" + frame["solver"])
    code, stdout, stderr = run_cli("compare", out, renamed)
    assert code == 2 and stdout == ""
    assert "no (problem, solver) in common" in stderr and "other-" in stderr


def test_compare_needs_results(tmp_path):
    code, _, stderr = run_cli("compare", tmp_path / "nothing", tmp_path)
    assert code == 2
    assert "nothing" in stderr


def test_run_writes_report(tiny_config, tmp_path, monkeypatch):
    """The only CLI run with a report."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    config = tmp_path / "one.toml"
    config.write_text(TINY_TOML.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "results"
    code, stdout, stderr = run_cli("run", config, "--out", out, "--quiet")
    assert code == 0, stderr
    index = out / "index.html"
    assert index.is_file() and index.stat().st_size > 0
    assert f"report: {index}" in stdout
    # `natgrad report RESULTS` rebuilds it from the stored runs alone
    index.unlink()
    code, stdout, stderr = run_cli("report", out)
    assert code == 0, stderr
    assert index.is_file() and not stderr
    # the old spelling still works, with a warning naming the new one
    index.unlink()
    code, stdout, stderr = run_cli("report", "--out", out)
    assert code == 0
    assert index.is_file()
    assert "--out is deprecated" in stderr and f"natgrad report {out}" in stderr


def test_report_refuses_two_different_results_folders(tmp_path):
    code, _, stderr = run_cli("report", tmp_path / "a", "--out", tmp_path / "b")
    assert code == 2
    assert "twice" in stderr and "natgrad report RESULTS" in stderr


def test_report_without_results_fails(tmp_path):
    code, _, stderr = run_cli("report", tmp_path)
    assert code == 1
    assert "no stored runs" in stderr


FILE_TOML = """\
[run]
problems = ["iris-file"]
seeds = [0]
max_iter = 3

[[problem]]
name = "iris-file"
dataset = "file"
path = "iris.csv"
format = "csv"

[[solver]]
label = "gd"
solver = "gd"
"""


def test_resume_from_another_working_directory(tmp_path, monkeypatch):
    """The same config, named from two working directories, is the same grid.

    A [[problem]] data path is relative to the config file; how the config's own path was
    spelled on the command line must not change the run keys, or resuming silently
    reruns (and duplicates) every run of a file problem.
    """
    X, y = datasets.load_iris(return_X_y=True)
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    np.savetxt(config_dir / "iris.csv", np.c_[X, y], delimiter=",")
    (config_dir / "file.toml").write_text(FILE_TOML)
    out = tmp_path / "results"
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(
        "run", Path("configs", "file.toml"), "--out", out, "--no-report", "--quiet"
    )
    assert code == 0, stderr
    assert "file: 1 runs, 0 already stored, 1 ran, 0 errors" in stdout
    monkeypatch.chdir(config_dir)
    code, stdout, stderr = run_cli("run", "file.toml", "--out", out, "--no-report", "--quiet")
    assert code == 0, stderr
    assert "file: 1 runs, 1 already stored, 0 ran, 0 errors" in stdout
    assert len(list((out / "runs").glob("*.csv"))) == 1


def test_fresh_regenerates_instead_of_resuming(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "out"
    args = ["run", str(config), "--out", str(out), "--quiet"]
    assert cli.main([*args, "--no-report"]) == 0
    (out / "runs" / "stale.csv").write_text("not a run\n")
    (out / "index.html").write_text("old report")
    capsys.readouterr()
    assert cli.main([*args, "--fresh"]) == 2  # files natgrad did not write
    assert "runs/stale.csv" in capsys.readouterr().err
    assert cli.main([*args, "--fresh", "--force"]) == 0
    assert "0 already stored" in capsys.readouterr().out
    assert (out / "runs" / "stale.csv").read_text() == "not a run\n"  # not natgrad's
    assert (out / "index.html").read_text(encoding="utf-8") != "old report"
    assert (out / "cache").is_dir()  # references are kept


def test_a_reader_that_goes_away_gets_no_traceback():
    # `natgrad run --dry-run | head -1`: the pipe closes while natgrad still prints
    import subprocess
    import sys

    code = "import sys; from natgrad_core.benchmarking.cli import main; sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "run", "quick", "--dry-run", "--out", "no-such-dir"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in stderr

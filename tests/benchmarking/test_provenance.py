"""Per-run provenance, reports that never pool configurations, and results that stay put.

Issue 7 §3: every stored run carries its own record (configuration, budget, machine, BLAS
threads in force during the run, versions, code version, a right dirty flag), the code
version ignores comments and docstrings, and a report never pools runs of different
configurations. §9: regenerating unchanged results rewrites no file, and the volatile
facts (date, host) live in one file.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from natgrad_core.benchmarking import cli, provenance, report
from natgrad_core.benchmarking.problems import get_problem
from natgrad_core.benchmarking.runner import RunSpec, SolverConfig, execute
from natgrad_core.benchmarking.store import ResultsStore
from tests.benchmarking.test_report import frame_of, make_run
from tests.benchmarking.tiny import tiny_toml

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "natgrad_core"
HAS_GIT = shutil.which("git") is not None


def run_cli(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue()


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the package sources that provenance treats as the running package."""
    copy = tmp_path / "natgrad_core"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", copy)
    provenance.code_version.cache_clear()
    yield copy
    provenance.code_version.cache_clear()


# ============================================================================= code version
DRIVER = "optim/driver.py"
# (what is edited, edit of the driver's source, whether the code version must change)
EDITS = [
    ("module docstring", lambda s: s.replace('"""', '"""Edited, with é. ', 1), False),
    ("a function docstring", lambda s: s.replace('    """', '    """Edited. ', 1), False),
    ("a new comment line", lambda s: s + "\n# a comment\n", False),
    ("a trailing comment", lambda s: s.replace("import time", "import time  # clock", 1), False),
    ("blank lines", lambda s: s.replace("\n\n", "\n\n\n\n", 1), False),
    ("a new statement", lambda s: s + "\n_EXTRA = 1\n", True),
    ("an operator", lambda s: s.replace("+= time.perf_counter()", "-= time.perf_counter()"), True),
]


@pytest.mark.parametrize("what, edit, changes", EDITS, ids=[e[0] for e in EDITS])
def test_code_version_ignores_comments_and_docstrings_only(package_copy, what, edit, changes):
    before = provenance.code_version()
    path = package_copy / DRIVER
    source = path.read_text(encoding="utf-8")
    edited = edit(source)
    assert edited != source, f"the edit of {what} did not apply"
    path.write_text(edited, encoding="utf-8")
    provenance.code_version.cache_clear()
    assert (provenance.code_version() != before) is changes, what


def test_source_fingerprint_keeps_the_code_text():
    source = (
        '"""Module doc."""\n'
        "import numpy as np  # why\n"
        "\n"
        "X = 'é'  # non-ASCII before the comment\n"
        '"""Attribute doc."""\n'
        "\n"
        "\n"
        "def f(a):\n"
        '    """Doc, é."""\n'
        '    s = "# not a comment"\n'
        "    return a + 1\n"
    )
    expected = (
        "import numpy as np\nX = 'é'\ndef f(a):\n    s = \"# not a comment\"\n    return a + 1\n"
    )
    assert provenance.source_fingerprint(source) == expected


# ================================================================================ git state
def _git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout holding natgrad_core/ at HEAD, with an ignored folder ``env/``."""
    repo = tmp_path / "repo"
    (repo / "natgrad_core" / "sub").mkdir(parents=True)
    (repo / "natgrad_core" / "__init__.py").write_text("X = 1\n")
    (repo / "natgrad_core" / "sub" / "m.py").write_text("Y = 2\n")
    (repo / ".gitignore").write_text("env/\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "init")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    provenance.git_state.cache_clear()
    yield repo, head
    provenance.git_state.cache_clear()


def _running(monkeypatch, package_dir: Path) -> dict:
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", package_dir)
    provenance.git_state.cache_clear()
    return provenance.git_state()


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_git_dirty_follows_the_running_files_in_an_editable_checkout(checkout, monkeypatch):
    repo, head = checkout
    package = repo / "natgrad_core"
    assert _running(monkeypatch, package) == {"git_commit": head, "git_dirty": False}
    (package / "sub" / "m.py").write_text("Y = 3\n")
    assert _running(monkeypatch, package)["git_dirty"] is True
    (package / "sub" / "m.py").write_text("Y = 2\n")
    (package / "new.py").write_text("Z = 0\n")  # untracked code runs too
    assert _running(monkeypatch, package)["git_dirty"] is True


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_git_dirty_of_a_copy_installed_in_an_ignored_folder(checkout, monkeypatch):
    """``git status`` calls a copy under an ignored folder (.venv, .asv) always clean."""
    repo, head = checkout
    installed = repo / "env" / "site-packages" / "natgrad_core"
    shutil.copytree(repo / "natgrad_core", installed)
    assert _running(monkeypatch, installed) == {"git_commit": head, "git_dirty": False}
    (installed / "__init__.py").write_text("X = 100\n")  # installed from an edited tree
    assert _running(monkeypatch, installed) == {"git_commit": head, "git_dirty": True}


def test_git_state_is_unknown_without_git(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance, "_git", lambda *args: None)
    state = _running(monkeypatch, tmp_path)
    provenance.git_state.cache_clear()
    assert state == {"git_commit": "unknown", "git_dirty": "unknown"}


# =============================================================================== run record
def _spec(max_iter=2, solver=None, seed=0, problem="iris-logistic"):
    solver = solver or SolverConfig.make("gd", "gd", step="armijo")
    return RunSpec(get_problem(problem), solver, seed, max_iter=max_iter, time_limit=30.0)


def test_run_record_is_stored_beside_the_run_with_threads_in_force(tmp_path):
    spec = _spec(max_iter=2)
    with threadpool_limits(limits=2):  # the process default differs from the run's pin
        frame = execute(spec, blas_threads=1)
        outside = {info["num_threads"] for info in threadpool_info()}
    record = frame.attrs["run_record"]
    assert outside == {2}
    assert record["blas"], "no BLAS library recorded"
    assert {pool["num_threads"] for pool in record["blas"]} == {1}
    texts = [json.dumps(pool, sort_keys=True) for pool in record["blas"]]
    assert texts == sorted(texts), "BLAS list not in a stable order"
    assert not any("/" in pool["library"] for pool in record["blas"]), "paths recorded"

    config = record["configuration"]
    budget = {k: config[k] for k in ("max_iter", "time_limit", "tol", "target_suboptimality")}
    assert budget == {
        "max_iter": 2,
        "time_limit": 30.0,
        "tol": 1e-10,
        "target_suboptimality": 1e-10,
    }
    assert config["seed"] == 0 and config["batch_size"] is None
    # every hyperparameter in force, the defaults of GradientDescent and Armijo included
    assert config["solver"] == {
        "label": "gd",
        "solver": "gd",
        "params": {
            "learning_rate": 1.0,
            "step": {
                "name": "armijo",
                "initial": 1.0,
                "c": 1e-4,
                "shrink": 0.5,
                "max_backtracks": 30,
            },
        },
    }
    assert config["problem"]["name"] == "iris-logistic"
    assert record["machine"]["logical_cores"] == os.cpu_count()
    assert record["machine"]["cpu"] and record["machine"]["platform"]
    assert record["python"].count(".") == 2
    assert set(record["dependencies"]) >= {"numpy", "scipy", "scikit-learn"}
    assert record["git_dirty"] in (True, False, "unknown")
    assert "date" not in record and "host" not in record, "volatile facts in the run record"
    assert record["run_key"] == frame["run_key"].iloc[0] == spec.key()
    assert record["config_id"] == frame["config_id"].iloc[0]
    assert record["code_version"] == frame["code_version"].iloc[0]

    store = ResultsStore(tmp_path)
    store.write_run(spec.key(), frame)
    assert (tmp_path / "runs" / f"{spec.key()}.json").is_file()
    assert store.records() == {spec.key(): json.loads(json.dumps(record))}


def test_config_id_ignores_seed_and_problem_only():
    base = _spec()
    same = [_spec(seed=5), _spec(problem="wine-logistic")]
    other = [
        _spec(max_iter=3),
        _spec(solver=SolverConfig.make("gd", "gd", step="armijo", learning_rate=0.5)),
        RunSpec(base.problem, base.solver, 0, max_iter=2, time_limit=31.0),
        RunSpec(base.problem, base.solver, 0, max_iter=2, time_limit=30.0, tol=1e-6),
    ]
    assert {s.config_id() for s in same} == {base.config_id()}
    assert len({base.config_id(), *(s.config_id() for s in other)}) == 1 + len(other)


# ========================================================================== report pooling
def test_summary_never_pools_configurations_or_code_versions():
    runs = [
        make_run("p", "s", 0, [1.0, 0.1], config_id="budget3"),
        make_run("p", "s", 0, [1.0, 0.1, 1e-3], config_id="budget50"),
        make_run("p", "s", 1, [1.0, 0.1, 1e-3], config_id="budget50"),
        make_run("p", "t", 0, [1.0, 0.5], config_id="t", code_version="old"),
        make_run("p", "t", 0, [1.0, 0.25], config_id="t", code_version="new"),
    ]
    for i, run in enumerate(runs):
        run["run_key"] = f"k{i}"
    final = report.summary_tables(frame_of(*runs), (1e-2,))["final_suboptimality"]
    got = {(r.solver, r.config_id): (r.n_runs, r.median) for r in final.itertuples()}
    assert got == {
        ("s [cfg budget3]", "budget3"): (1, 0.1),
        ("s [cfg budget50]", "budget50"): (2, 1e-3),
        ("t [code new]", "t"): (1, 0.25),
        ("t [code old]", "t"): (1, 0.5),
    }


def test_report_provenance_lists_every_machine_and_configuration(tmp_path):
    runs = [make_run("p", "s", seed, [1.0, 0.1], config_id="c1") for seed in (0, 1)]
    frame = frame_of(*runs)
    machines = [{"cpu": "A", "logical_cores": 2}, {"cpu": "B", "logical_cores": 64}]
    records = {
        key: {
            "config_id": "c1",
            "configuration": {"seed": seed, "problem": {"name": "p"}, "max_iter": 7},
            "machine": machine,
            "git_commit": "abc",
            "git_dirty": seed == 1,
        }
        for key, seed, machine in zip(frame["run_key"].unique(), (0, 1), machines)
    }
    report.build_report(frame, tmp_path, eps=(1e-2,), records=records)
    expected_machines = "A, 2 logical cores; B, 64 logical cores"
    for ext in ("md", "tex"):
        text = (tmp_path / "tables" / f"final_suboptimality.{ext}").read_text(encoding="utf-8")
        assert f"machines: {expected_machines}" in text
        assert "complete record: final_suboptimality.json" in text
        assert "git commits: abc, abc (dirty)" in text
        assert "date" not in text and "host" not in text
    # the CSV is plain data: its provenance is in the sidecar
    sidecar = json.loads((tmp_path / "tables" / "final_suboptimality.json").read_text())
    assert sidecar["provenance"]["machines"] == machines
    assert sidecar["provenance"]["configurations"] == {"c1": {"max_iter": 7}}
    assert {"date", "host"}.isdisjoint(sidecar["provenance"])
    volatile = json.loads((tmp_path / "tables" / "provenance.json").read_text())
    assert volatile["results"]["machines"] == machines
    assert {"date", "host"} <= set(volatile)


@pytest.fixture
def two_budgets(tmp_path):
    """iris-logistic x (gd, kfac) x seed 0 run with max_iter=3, then max_iter=50, one --out."""
    out = tmp_path / "results"
    configs = []
    for max_iter in (3, 50):
        path = tmp_path / f"budget{max_iter}.toml"
        path.write_text(
            tiny_toml(seeds=(0,), max_iter=max_iter).replace(
                '"iris-logistic", "iris-mlp"', '"iris-logistic"'
            )
        )
        configs.append(path)
        code, _ = run_cli("run", path, "--out", out, "--quiet")
        assert code == 0
    return out, configs


def _table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"{name}.csv", comment="#")


def test_run_reports_the_configuration_just_run_and_report_separates(two_budgets):
    out, _ = two_budgets
    final = _table(out, "final_suboptimality")
    assert sorted(final["solver"]) == ["gd-armijo", "kfac-quadratic"]
    assert final["n_runs"].tolist() == [1, 1], "the max_iter=3 runs were pooled in"
    record = json.loads((out / "tables" / "provenance.json").read_text())["results"]
    assert {c["max_iter"] for c in record["configurations"].values()} == {50}

    code, stdout = run_cli("report", "--out", out)
    assert code == 0 and "separately" in stdout
    final = _table(out, "final_suboptimality")
    assert len(final) == 4 and final["n_runs"].tolist() == [1, 1, 1, 1]
    assert final["solver"].nunique() == 4 and final["config_id"].nunique() == 4
    record = json.loads((out / "tables" / "provenance.json").read_text())["results"]
    budgets = sorted(c["max_iter"] for c in record["configurations"].values())
    assert budgets == [3, 3, 50, 50]
    assert "summarized separately" in (out / "index.html").read_text(encoding="utf-8")


# ============================================================================ results stay
@pytest.fixture
def fake_clock(monkeypatch):
    """perf_counter ticking 2^-10 s per call: timings repeat exactly from run to run."""
    ticks = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks) * 2.0**-10)


def _snapshot(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and "cache" not in p.relative_to(root).parts
    }


def test_resume_rewrites_nothing_and_fresh_changes_only_provenance(tmp_path, fake_clock):
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_toml(seeds=(0,), max_iter=3))
    out = tmp_path / "results"
    assert run_cli("run", config, "--out", out, "--quiet")[0] == 0
    for path in out.rglob("*"):  # an old mtime, so any rewrite shows
        os.utime(path, ns=(10**9, 10**9))
    first = _snapshot(out)
    assert "tables/provenance.json" in first and "index.html" in first

    assert run_cli("run", config, "--out", out, "--quiet")[0] == 0
    assert _snapshot(out) == first, "a resume with nothing to run rewrote files"
    assert any(name.startswith("runs/") and name.endswith(".json") for name in first)

    time.sleep(1.1)  # the provenance date has a resolution of one second
    assert run_cli("run", config, "--out", out, "--quiet", "--fresh")[0] == 0
    fresh = _snapshot(out)
    assert set(fresh) == set(first)
    changed = sorted(name for name in first if fresh[name][0] != first[name][0])
    assert changed == ["tables/provenance.json"]


@pytest.mark.skipif(not (HAS_GIT and (REPO_ROOT / ".git").exists()), reason="not a git checkout")
@pytest.mark.parametrize(
    "path, ignored",
    [
        ("results/asv/benchmarks.json", True),
        ("results/asv/some-machine/machine.json", True),
        ("results/asv/html/index.html", True),
        ("results/tables/provenance.json", False),
        ("results/runs/0123456789ab.json", False),
    ],
)
def test_asv_results_are_ignored_by_git(path, ignored):
    check = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT)
    assert (check.returncode == 0) is ignored


def test_figures_have_no_date(tmp_path):
    frame = frame_of(make_run("P", "A", 0, [1.0, 1e-3]), make_run("P", "B", 0, [1.0, 0.5]))
    first = {p.name: p.read_bytes() for p in report.make_figures(frame, tmp_path / "a", (1e-2,))}
    time.sleep(1.1)
    second = {p.name: p.read_bytes() for p in report.make_figures(frame, tmp_path / "b", (1e-2,))}
    assert first == second
    assert all(b"CreationDate" not in data for data in first.values())


def test_two_spellings_of_one_configuration_are_one_run():
    # the recommended exact configuration, once implied and once written out in full
    implied = SolverConfig.make("exact", "exact")
    spelled = SolverConfig.make("exact", "exact", damping=1e-4, step="lm")
    other = SolverConfig.make("exact", "exact", damping=1e-3, step="lm")
    problem = get_problem("iris-logistic")
    keys = [RunSpec(problem, s, 0).key() for s in (implied, spelled, other)]
    ids = [RunSpec(problem, s, 0).config_id() for s in (implied, spelled, other)]
    assert keys[0] == keys[1] != keys[2]
    assert ids[0] == ids[1] != ids[2]

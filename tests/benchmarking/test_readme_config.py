"""The README's configuration example runs as written, so it cannot go stale.

The section "Your own grid: the configuration file" holds three code blocks: a Python
script that writes the data file, the TOML configuration, and the shell commands. They
are run here in an empty folder, in that order: the dry run must list every
(problem, solver, seed) of the TOML with the hyperparameters it sets, and the real run
must finish with every run stored, the per-problem summary and the report.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from natgrad_core.benchmarking.store import ResultsStore
from tests.benchmarking.test_cli import run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Your own grid: the configuration file"


def readme_blocks() -> dict[str, str]:
    """The section's code blocks by language (python, toml, bash)."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    assert [lang for lang, _ in blocks] == ["python", "toml", "bash"], blocks
    return dict(blocks)


def commands(bash: str) -> list[list[str]]:
    """The shell block's commands as argument lists, comments dropped."""
    return [shlex.split(line, comments=True) for line in bash.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The README's lines run in a new folder: (folder, TOML as parsed, outputs of the
    natgrad commands in order, each (exit code, stdout, stderr))."""
    folder = tmp_path_factory.mktemp("readme")
    blocks = readme_blocks()
    steps = commands(blocks["bash"])
    script, config = steps[0][-1], steps[1][2]
    assert steps[0][0] == "python" and all(step[0] == "natgrad" for step in steps[1:])
    (folder / script).write_text(blocks["python"])
    (folder / config).write_text(blocks["toml"])
    mp = pytest.MonkeyPatch()
    mp.chdir(folder)
    mp.setenv("MPLBACKEND", "Agg")
    try:
        runpy.run_path(script, run_name="__main__")
        outputs = [run_cli(*step[1:], "--quiet") for step in steps[1:]]
    finally:
        mp.undo()
    return folder, tomllib.loads(blocks["toml"]), outputs


def expected_runs(toml: dict) -> set[tuple]:
    labels = [s.get("label", s["solver"]) for s in toml["solver"]]
    run = toml["run"]
    return {(p, s, seed) for p in run["problems"] for s in labels for seed in run["seeds"]}


def test_dry_run_lists_every_run_with_its_hyperparameters(example):
    _, toml, outputs = example
    code, stdout, stderr = outputs[0]
    assert code == 0, stderr
    expected = expected_runs(toml)
    assert stdout.splitlines()[0].startswith(f"my_grid: {len(expected)} runs, 0 already stored")
    listed = set(re.findall(r"^(\S+)  (\S+)  seed=(\d+)$", stdout, flags=re.M))
    assert {(p, s, int(seed)) for p, s, seed in listed} == expected
    resolved = {}
    for label, solver, params in re.findall(
        r"^(?:\S+)  (\S+)  seed=\d+\n  budget: .*\n  solver: (\S+) (.*)$", stdout, flags=re.M
    ):
        resolved[label] = (solver, json.loads(params))
    for entry in toml["solver"]:
        solver, params = resolved[entry.get("label", entry["solver"])]
        assert solver == entry["solver"]
        for key, value in entry.get("params", {}).items():
            assert params[key] == value, (entry, key)


def test_run_stores_every_run_and_reports(example):
    folder, toml, outputs = example
    code, stdout, stderr = outputs[1]
    assert code == 0, stderr
    results = folder / "my_results"
    frame = ResultsStore(results).load()
    got = set(frame.groupby(["problem", "solver", "seed"]).size().index)
    assert got == expected_runs(toml)
    assert (frame.groupby("run_key")["iteration"].max() <= toml["run"]["max_iter"]).all()
    assert not set(frame["status"]) & {"error", "diverged", "skipped"}
    lines = stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("per problem,")))
    problems = toml["run"]["problems"]
    summary = [line.split()[0] for line in lines[start + 2 : start + 2 + len(problems)]]
    assert sorted(summary) == sorted(problems)
    assert lines[-1] == f"report: {Path('my_results') / 'index.html'}"
    assert (results / "index.html").is_file()

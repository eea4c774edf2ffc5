"""The perf gate's decisions, on hand-made summaries (no timing involved)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("perf_gate", ROOT / "tools" / "perf_gate.py")
perf_gate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(perf_gate)

BASE = {
    "test_gradient[small]": {
        "group": "gradient",
        "control": "test_gradient[small]",
        "min": 1e-4,
        "ratio": 1.0,
        "metrics": {"loss": 0.5},
    },
    "test_one_step[small-kfac]": {
        "group": "step",
        "control": "test_gradient[small]",
        "min": 6e-4,
        "ratio": 6.0,
        "metrics": {"iterations_to_eps": 12, "final_loss": 0.25, "status": "max_iter"},
    },
}


def test_identical_summaries_pass():
    assert perf_gate.compare(BASE, copy.deepcopy(BASE)) == []


def test_noise_within_threshold_passes():
    new = copy.deepcopy(BASE)
    new["test_one_step[small-kfac]"]["ratio"] = 6.0 * 1.9
    assert perf_gate.compare(BASE, new, threshold=2.0) == []


def test_slowdown_beyond_threshold_fails_naming_benchmark_and_values():
    new = copy.deepcopy(BASE)
    new["test_one_step[small-kfac]"]["ratio"] = 13.0
    (msg,) = perf_gate.compare(BASE, new, threshold=2.0)
    assert "test_one_step[small-kfac]" in msg and "6" in msg and "13" in msg


@pytest.mark.parametrize(
    ("key", "value"),
    [("iterations_to_eps", 13), ("final_loss", 0.2500001), ("status", "converged")],
)
def test_changed_convergence_metric_fails(key, value):
    new = copy.deepcopy(BASE)
    new["test_one_step[small-kfac]"]["metrics"][key] = value
    (msg,) = perf_gate.compare(BASE, new)
    assert key in msg and repr(BASE["test_one_step[small-kfac]"]["metrics"][key]) in msg


def test_float_metric_within_rtol_passes():
    new = copy.deepcopy(BASE)
    new["test_one_step[small-kfac]"]["metrics"]["final_loss"] = 0.25 * (1 + 1e-12)
    assert perf_gate.compare(BASE, new) == []


def test_missing_and_new_benchmarks_fail():
    new = copy.deepcopy(BASE)
    new["test_cg_solve[small]"] = new.pop("test_one_step[small-kfac]")
    failures = perf_gate.compare(BASE, new)
    assert len(failures) == 2
    assert any("not measured" in f for f in failures)
    assert any("not in the baseline" in f for f in failures)


def test_committed_baseline_matches_the_benchmark_list():
    baseline = json.loads((ROOT / "tests" / "perf" / "baseline.json").read_text())
    names = set(baseline["benchmarks"])
    assert "test_gradient[small]" in names and "test_gradient[large]" in names
    assert all(b["control"] in names for b in baseline["benchmarks"].values())

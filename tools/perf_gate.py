"""Regression gate for the pytest-benchmark microbenchmarks in ``tests/perf``.

    python tools/perf_gate.py             # run the benchmarks, compare with the baseline
    python tools/perf_gate.py --update    # run them and rewrite the baseline on purpose
    python tools/perf_gate.py --json F    # compare an existing pytest-benchmark JSON file

How it decides (``tests/perf/baseline.json`` holds the reference):

* **Convergence and counts are exact.** Every value in a benchmark's
  ``extra_info["metrics"]`` — iterations to ε, oracle counts, final losses, statuses — is
  deterministic for a seed on a machine. Integers and strings must be equal; floats equal
  to ``FLOAT_RTOL`` relative. Any difference fails: the algorithm changed.
* **Timings are ratios to a control measured in the same run.** Each benchmark names a
  control (one gradient evaluation on the same problem); the gate compares
  ``min(time) / min(control time)`` with the baseline's ratio. The minimum over rounds is
  the least noisy statistic (interference only adds time), and the ratio cancels the
  speed of the machine. A ratio more than ``THRESHOLD`` times the baseline's fails;
  a shared, noisy 2-core machine easily moves single timings by 50%, hence the width
  (on a quiet machine the ratios repeat to within a few percent).
* A benchmark missing from either side fails: adding or removing one is an intended
  change that needs ``--update``.

Update the baseline only for an intended change (a new benchmark, a deliberate
algorithmic change, a real speed-up), in the same commit as the change, so the diff of
``baseline.json`` documents what moved and why.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "tests" / "perf" / "baseline.json"
THRESHOLD = 2.0
FLOAT_RTOL = 1e-9


def run_benchmarks(json_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "tests" / "perf"),
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-enable",
        f"--benchmark-json={json_path}",
        "--benchmark-min-rounds=7",
        "--benchmark-max-time=0.3",
        "--benchmark-warmup=on",
        "--benchmark-disable-gc",
    ]
    print("running:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def summarize(report: dict) -> dict:
    """{fullname: {group, control, ratio, min, metrics}} from a pytest-benchmark JSON."""
    rows = {b["fullname"].split("::", 1)[-1]: b for b in report["benchmarks"]}
    out = {}
    for name, b in rows.items():
        control = b["extra_info"].get("control")
        if control not in rows:
            raise SystemExit(f"benchmark {name}: control {control!r} was not measured")
        out[name] = {
            "group": b["group"],
            "control": control,
            "min": b["stats"]["min"],
            "ratio": b["stats"]["min"] / rows[control]["stats"]["min"],
            "metrics": b["extra_info"].get("metrics", {}),
        }
    return out


def _same(old, new) -> bool:
    if isinstance(old, float) or isinstance(new, float):
        if isinstance(old, str) or isinstance(new, str):
            return False
        old, new = float(old), float(new)
        if math.isnan(old) or math.isnan(new):
            return math.isnan(old) and math.isnan(new)
        return abs(new - old) <= FLOAT_RTOL * max(abs(old), abs(new), 1e-300)
    return old == new


def compare(baseline: dict, current: dict, threshold: float = THRESHOLD) -> list[str]:
    """Failure messages (empty: the gate passes)."""
    failures = []
    for name in sorted(set(baseline) - set(current)):
        failures.append(f"{name}: in the baseline but not measured (removed? run --update)")
    for name in sorted(set(current) - set(baseline)):
        failures.append(f"{name}: measured but not in the baseline (new? run --update)")
    for name in sorted(set(baseline) & set(current)):
        old, new = baseline[name], current[name]
        for key in sorted(set(old["metrics"]) | set(new["metrics"])):
            a, b = old["metrics"].get(key), new["metrics"].get(key)
            if not _same(a, b):
                failures.append(f"{name}: metric {key!r} changed from {a!r} to {b!r}")
        if new["ratio"] > threshold * old["ratio"]:
            failures.append(
                f"{name}: time relative to {new['control']} rose from {old['ratio']:.3g} "
                f"to {new['ratio']:.3g} (x{new['ratio'] / old['ratio']:.2f} > x{threshold:g})"
            )
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the baseline")
    parser.add_argument("--json", type=Path, help="use this pytest-benchmark JSON file")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = Path(tempfile.mkdtemp()) / "benchmarks.json"
        run_benchmarks(args.json)
    current = summarize(json.loads(args.json.read_text()))
    if args.update:
        args.baseline.write_text(
            json.dumps(
                {"threshold": args.threshold, "benchmarks": current}, indent=1, sort_keys=True
            )
            + "\n"
        )
        print(f"wrote {args.baseline} ({len(current)} benchmarks)")
        return 0
    baseline = json.loads(args.baseline.read_text())["benchmarks"]
    failures = compare(baseline, current, args.threshold)
    for name in sorted(set(baseline) & set(current)):
        print(f"  {name:60s} ratio {baseline[name]['ratio']:9.3g} -> {current[name]['ratio']:9.3g}")
    if failures:
        print(f"\nperf gate: {len(failures)} regression(s):", file=sys.stderr)
        for f in failures:
            print(f"  FAIL {f}", file=sys.stderr)
        return 1
    print(
        f"perf gate: {len(current)} benchmarks within x{args.threshold:g} of the baseline, "
        "metrics unchanged"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

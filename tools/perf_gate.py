"""Regression gate for the pytest-benchmark microbenchmarks in ``tests/perf``.

    python tools/perf_gate.py             # run the benchmarks, compare with the baseline
    python tools/perf_gate.py --update    # run them and rewrite the baseline on purpose
    python tools/perf_gate.py --json F    # compare an existing pytest-benchmark JSON file
    python tools/perf_gate.py --add-numerics   # record this machine's exact metrics too

How it decides (``tests/perf/baseline.json`` holds the reference):

* **Convergence and counts are exact on known numerics.** Every value in a benchmark's
  ``extra_info["metrics"]`` — iterations to ε, oracle counts, final losses, statuses — is
  deterministic for a seed *and a numerics fingerprint*
  (:func:`natgrad_core.benchmarking.provenance.numerics_fingerprint`: BLAS library, version
  and kernel, numpy and scipy versions). The baseline holds the metrics of every
  fingerprint recorded (``"numerics"``). On a recorded fingerprint, integers and strings
  must be equal and floats equal to ``FLOAT_RTOL`` relative: any difference means the
  algorithm changed. On a fingerprint the baseline does not know, the last bits round
  differently and CG/L-BFGS runs drift (1801 vs 1893 CG iterations in one 100-step run
  between OpenBLAS's Haswell and SkylakeX kernels): strings must still be equal, numbers
  agree to ``CROSS_NUMERICS_RTOL``, and the gate says so; ``--add-numerics`` records the
  exact metrics of this fingerprint and its timing ratios.
* **Timings are ratios to a control measured in the same run.** Each benchmark names a
  control (one gradient evaluation on the same problem); the gate compares
  ``min(time) / min(control time)`` with the baseline's ratio. The minimum over rounds is
  the least noisy statistic (interference only adds time), and the ratio cancels the
  speed of the machine. A ratio more than ``THRESHOLD`` times the baseline's fails;
  a shared, noisy 2-core machine easily moves single timings by 50%, hence the width
  (on a quiet machine the ratios repeat to within a few percent). The ratios depend on
  the numerics too (measured at one commit: the small exact step cost 19 gradients on the
  host that recorded the baseline, 36–39 on one whose numpy dispatches AVX-512 loops), so
  a fingerprint recorded with ``--add-numerics`` is judged against its own ratios. When
  only timings fail, the benchmarks are measured again (``--retries``, default 2) and
  each minimum is taken over every measurement: a neighbour's burst does not fail the
  gate, a real slowdown fails every time.
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
CROSS_NUMERICS_RTOL = 0.1
RETRIES = 2
TIMING_FAILURE = "time relative to"


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


def summarize(*reports: dict) -> dict:
    """{fullname: {group, control, ratio, min, metrics}} from pytest-benchmark JSONs.

    With several reports (the same benchmarks measured again) each ``min`` is the minimum
    over all of them: interference only adds time, so the least disturbed round counts.
    Metrics come from the first report."""
    rows = {b["fullname"].split("::", 1)[-1]: b for b in reports[0]["benchmarks"]}
    fastest = {name: b["stats"]["min"] for name, b in rows.items()}
    for report in reports[1:]:
        for b in report["benchmarks"]:
            name = b["fullname"].split("::", 1)[-1]
            fastest[name] = min(fastest.get(name, math.inf), b["stats"]["min"])
    out = {}
    for name, b in rows.items():
        control = b["extra_info"].get("control")
        if control not in rows:
            raise SystemExit(f"benchmark {name}: control {control!r} was not measured")
        out[name] = {
            "group": b["group"],
            "control": control,
            "min": fastest[name],
            "ratio": fastest[name] / fastest[control],
            "metrics": b["extra_info"].get("metrics", {}),
        }
    return out


def _same(old, new, rtol: float | None = None) -> bool:
    """Equal: strings and (with ``rtol`` None) integers exactly, floats to ``FLOAT_RTOL``;
    with ``rtol`` every number to that relative tolerance."""
    numbers = (int, float)
    is_num = [isinstance(v, numbers) and not isinstance(v, bool) for v in (old, new)]
    if all(is_num) and (rtol is not None or isinstance(old, float) or isinstance(new, float)):
        old, new = float(old), float(new)
        if math.isnan(old) or math.isnan(new):
            return math.isnan(old) and math.isnan(new)
        tol = FLOAT_RTOL if rtol is None else rtol
        return abs(new - old) <= tol * max(abs(old), abs(new), 1e-300)
    return old == new


def compare(
    baseline: dict, current: dict, threshold: float = THRESHOLD, metrics_rtol: float | None = None
) -> list[str]:
    """Failure messages (empty: the gate passes). ``metrics_rtol``: None compares metrics
    exactly (a known numerics fingerprint), a number compares them to that tolerance."""
    failures = []
    for name in sorted(set(baseline) - set(current)):
        failures.append(f"{name}: in the baseline but not measured (removed? run --update)")
    for name in sorted(set(current) - set(baseline)):
        failures.append(f"{name}: measured but not in the baseline (new? run --update)")
    for name in sorted(set(baseline) & set(current)):
        old, new = baseline[name], current[name]
        for key in sorted(set(old["metrics"]) | set(new["metrics"])):
            a, b = old["metrics"].get(key), new["metrics"].get(key)
            if not _same(a, b, metrics_rtol):
                failures.append(f"{name}: metric {key!r} changed from {a!r} to {b!r}")
        if new["ratio"] > threshold * old["ratio"]:
            failures.append(
                f"{name}: time relative to {new['control']} rose from {old['ratio']:.3g} "
                f"to {new['ratio']:.3g} (x{new['ratio'] / old['ratio']:.2f} > x{threshold:g})"
            )
    return failures


def split_metrics(current: dict) -> tuple[dict, dict]:
    """(timings without metrics, {benchmark: metrics}) of a :func:`summarize` result."""
    timings = {k: {f: v for f, v in b.items() if f != "metrics"} for k, b in current.items()}
    return timings, {k: b["metrics"] for k, b in current.items()}


def with_metrics(timings: dict, metrics: dict) -> dict:
    """The inverse of :func:`split_metrics` (benchmarks without metrics get none)."""
    return {k: {**b, "metrics": metrics.get(k, {})} for k, b in timings.items()}


def _write(path: Path, baseline: dict) -> None:
    path.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")


def main(argv=None) -> int:
    from natgrad_core.benchmarking.provenance import blas_libraries, numerics_fingerprint

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--update", action="store_true", help="rewrite the baseline")
    mode.add_argument(
        "--add-numerics",
        action="store_true",
        help="record this numerics fingerprint's exact metrics and timing ratios",
    )
    parser.add_argument("--json", type=Path, help="use this pytest-benchmark JSON file")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument(
        "--retries",
        type=int,
        default=RETRIES,
        help="when only timings fail, measure again this many times (minimum over all)",
    )
    args = parser.parse_args(argv)
    reports = []
    if args.json is None:
        args.json = Path(tempfile.mkdtemp()) / "benchmarks.json"
        run_benchmarks(args.json)
    else:
        args.retries = 0  # a given JSON file cannot be measured again
    reports.append(json.loads(args.json.read_text()))
    timings, metrics = split_metrics(summarize(*reports))
    fingerprint = numerics_fingerprint()
    kernels = sorted(f"{p['library']} {p['version']} {p['architecture']}" for p in blas_libraries())
    entry = {"blas": kernels, "metrics": metrics}
    if args.update:
        numerics = {fingerprint: entry}
        _write(
            args.baseline,
            {"threshold": args.threshold, "benchmarks": timings, "numerics": numerics},
        )
        print(f"wrote {args.baseline} ({len(timings)} benchmarks, numerics {fingerprint})")
        return 0
    stored = json.loads(args.baseline.read_text())
    if args.add_numerics:
        ratios = {name: b["ratio"] for name, b in timings.items()}
        stored["numerics"][fingerprint] = {**entry, "ratios": ratios}
        _write(args.baseline, stored)
        print(f"added numerics {fingerprint} ({', '.join(kernels)}) to {args.baseline}")
        return 0
    known = stored["numerics"].get(fingerprint)
    rtol = None
    if known is None:
        other, known = next(iter(sorted(stored["numerics"].items())))
        rtol = CROSS_NUMERICS_RTOL
        print(
            f"perf gate: numerics {fingerprint} ({', '.join(kernels)}) are not in the baseline; "
            f"metrics compared with those of {other} ({', '.join(known['blas'])}) to "
            f"{rtol:g} relative (record them with --add-numerics)",
            file=sys.stderr,
        )
    reference = stored["benchmarks"]
    if rtol is None and "ratios" in known:  # this numerics' own relative costs
        reference = {
            name: {**b, "ratio": known["ratios"].get(name, b["ratio"])}
            for name, b in reference.items()
        }
    baseline = with_metrics(reference, known["metrics"])
    current = with_metrics(timings, metrics)
    failures = compare(baseline, current, args.threshold, rtol)
    for attempt in range(args.retries):
        if not failures or not all(TIMING_FAILURE in f for f in failures):
            break
        print(f"perf gate: only timings failed; measuring again ({attempt + 1}/{args.retries})")
        again = args.json.with_name(f"benchmarks-{attempt + 1}.json")
        run_benchmarks(again)
        reports.append(json.loads(again.read_text()))
        current = with_metrics(*split_metrics(summarize(*reports)))
        failures = compare(baseline, current, args.threshold, rtol)
    for name in sorted(set(baseline) & set(current)):
        print(f"  {name:60s} ratio {baseline[name]['ratio']:9.3g} -> {current[name]['ratio']:9.3g}")
    if failures:
        print(f"\nperf gate: {len(failures)} regression(s):", file=sys.stderr)
        for f in failures:
            print(f"  FAIL {f}", file=sys.stderr)
        return 1
    same = "unchanged" if rtol is None else f"within {rtol:g}"
    print(
        f"perf gate: {len(current)} benchmarks within x{args.threshold:g} of the baseline, "
        f"metrics {same}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

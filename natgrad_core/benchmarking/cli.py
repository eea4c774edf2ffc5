"""The ``natgrad`` command.

    natgrad list [problems|solvers|suites]
    natgrad run [SUITE | CONFIG.toml] [--out results] [--n-jobs N | --dask ADDRESS]
                [--dry-run]
    natgrad report [--out results]
    natgrad compare A B [--eps 1e-6] [--time-threshold 1.5] [--fail-on-regression]

``natgrad run`` with no argument runs the quick suite (every solver on every bundled
problem, 3 seeds) and writes ``results/``: per-run files, tables, figures and
``index.html``. Running the same command again resumes: finished runs are skipped, and
files whose content did not change are not rewritten. Its report covers the runs of the
configuration just run; ``natgrad report`` covers every stored run, and summarizes runs of
different configurations separately.
``--dry-run`` prints every run the command would do — problem, solver label, seed, every
resolved hyperparameter and the budget — and runs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import warnings
from pathlib import Path

from .compare import SAME_TOLERANCE, TIME_THRESHOLD, compare
from .grid import DEFAULT_SOLVERS, SUITE_BUDGETS, load_config, run_grid, with_seeds
from .problems import PROBLEMS, SUITES
from .store import ResultsStore, remove_stale_temp_files

__all__ = ["main"]


def _cmd_list(args) -> int:
    what = args.what
    if what in ("problems", "all"):
        print("problems:")
        for p in PROBLEMS.values():
            arch = "-".join(map(str, p.hidden)) if p.hidden else "-"
            print(
                f"  {p.name:28s} {p.dataset:14s} {p.model:12s} hidden={arch:10s} alpha={p.alpha:g}"
            )
    if what in ("solvers", "all"):
        print("solvers (recommended configurations):")
        for s in DEFAULT_SOLVERS:
            params = ", ".join(f"{k}={v}" for k, v in s.params)
            print(f"  {s.label:10s} {params}")
    if what in ("suites", "all"):
        print("suites:")
        for name, problems in SUITES.items():
            b = SUITE_BUDGETS[name]
            print(
                f"  {name:8s} {len(problems)} problems x {len(DEFAULT_SOLVERS)} solvers x "
                f"{len(b['seeds'])} seeds, max_iter={b['max_iter']}, "
                f"time_limit={b['time_limit']:g}s: {', '.join(problems)}"
            )
    return 0


def _report(out: Path, config=None, refresh: bool = False) -> Path | None:
    """Report on the runs of ``config`` (a GridConfig), or on every stored run if None."""
    from .report import build_report, separate_configurations

    store = ResultsStore(out)
    frame = store.load()
    if config is not None:
        frame = frame[frame["run_key"].isin({spec.key() for spec in config.specs()})]
    if frame.empty:
        print(f"no stored runs under {out / 'runs'}", file=sys.stderr)
        return None
    index = build_report(
        frame,
        out,
        None if config is None else config.to_dict(),
        records=store.records(),
        refresh=refresh,
    )
    labels = set(frame["solver"])
    separated = sorted(set(separate_configurations(frame)["solver"]) - labels)
    if separated:
        print(
            "report: solver labels shared by several configurations or code versions are "
            f"summarized separately as {', '.join(separated)}"
        )
    print(f"report: {index}")
    return index


def _cmd_run(args) -> int:
    try:
        config = load_config(args.config)
        if args.seeds:
            config = with_seeds(config, [int(s) for s in args.seeds.split(",")])
    except ValueError as exc:
        print(f"natgrad run: {exc}", file=sys.stderr)
        return 2
    if args.n_jobs < 1 or args.blas_threads < 1:
        print(
            f"natgrad run: --n-jobs and --blas-threads must be >= 1, got {args.n_jobs} "
            f"and {args.blas_threads}",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    if args.dry_run:  # writes nothing, so the folder needs no checks
        return _dry_run(config, ResultsStore(out))
    problem = _check_run_resources(args)
    if problem is not None:
        print(f"natgrad run: {problem}", file=sys.stderr)
        return 2
    store = ResultsStore(out)
    foreign = [] if args.force else store.foreign_files()
    if foreign:
        shown = ", ".join(str(p.relative_to(out)) for p in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        print(
            f"natgrad run: {out} holds files natgrad did not write: {shown}{more}; choose "
            "another --out, or pass --force to use it anyway (natgrad deletes none of them, "
            "but overwrites one named like a report file, e.g. index.html)",
            file=sys.stderr,
        )
        return 2
    remove_stale_temp_files(out)
    if args.fresh:
        store.remove_runs(spec.key() for spec in config.specs())
    summary = run_grid(
        config,
        store,
        n_jobs=args.n_jobs,
        dask_address=args.dask,
        cache_dir=out / "cache",
        progress=not args.quiet,
        blas_threads=args.blas_threads,
        retry_errors=args.retry_errors,
    )
    stored_errors = ""
    if summary.n_stored_errors:
        stored_errors = (
            f", {summary.n_stored_errors} stored errors (--retry-errors runs them again)"
        )
    print(
        f"{config.name}: {summary.n_total} runs, {summary.n_resumed} already stored, "
        f"{summary.n_ran} ran, {summary.n_errors} errors{stored_errors}"
    )
    if summary.interrupted:
        print(
            "interrupted: finished runs are stored; run the same command to resume.",
            file=sys.stderr,
        )
        return 130
    if not args.no_report:
        _report(out, config, refresh=summary.n_ran > 0)
    return 1 if summary.n_errors or summary.n_stored_errors else 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (``kill``, a batch scheduler's time limit) acts like Ctrl-C: a grid stores
    its finished runs, temporary files are removed, and natgrad exits 130."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # signals need it
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_run_resources(args) -> str | None:
    """What stops ``natgrad run`` before its first run, or None: an ``--out`` that is a
    file or cannot be written (found up front, not after computing a run), a malformed
    or unreachable ``--dask`` address (tried with ``--dask-timeout``)."""
    out = Path(args.out)
    for folder in (out, out / "runs"):
        if folder.exists() and not folder.is_dir():
            return f"--out: {folder} is a file; expected a results folder (or a new path)"
    if args.dry_run:
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
        for folder in (out, out / "runs"):
            if folder.is_dir():
                fd, probe = tempfile.mkstemp(dir=folder, prefix=".natgrad-write-probe-")
                os.close(fd)
                os.unlink(probe)
    except OSError as exc:
        return (
            f"--out: cannot write results under {out} ({exc.strerror or exc}); "
            "choose a writable folder"
        )
    if args.dask is not None:
        if not 0 < args.dask_timeout < float("inf"):
            return f"--dask-timeout must be a positive number of seconds, got {args.dask_timeout}"
        return _check_dask_address(args.dask, args.dask_timeout)
    return None


def _check_dask_address(address: str, timeout: float) -> str | None:
    """None if a Dask scheduler answers at ``address`` within ``timeout`` seconds, else what
    is wrong with it. A raw TCP connection first: a closed port is refused at once, where
    ``Client`` would retry for its whole timeout."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
    except ImportError:
        return "--dask needs dask.distributed: pip install 'natgrad[dask]'"
    expected = "expected [tcp://|tls://]HOST[:PORT], e.g. tcp://127.0.0.1:8786"
    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location, default_port=8786)
    except ValueError as exc:
        return f"--dask: malformed address {address!r} ({exc}); {expected}"
    if scheme not in ("tcp", "tls") or not host or not 0 < port < 65536:
        return f"--dask: malformed address {address!r}; {expected}"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return (
            f"--dask: no scheduler answers at {address} within {timeout:g} s "
            f"({exc.strerror or exc}); start one with `dask scheduler` or check the address"
        )
    from distributed import Client

    try:  # something listens there: is it a scheduler?
        Client(address, timeout=timeout).close()
    except Exception as exc:
        return (
            f"--dask: {address} accepts connections but no Dask scheduler answered within "
            f"{timeout:g} s ({type(exc).__name__}: {exc}); check the address and port"
        )
    return None


def _dry_run(config, store: ResultsStore) -> int:
    """Print the expanded grid, one block per run, with every resolved hyperparameter
    (JSON) and the budget; mark runs already stored under ``--out`` (a run would skip them)."""
    specs = config.specs()
    done = store.done_keys(quarantine=False)
    n_stored = sum(spec.key() in done for spec in specs)
    print(f"{config.name}: {len(specs)} runs, {n_stored} already stored (dry run: nothing was run)")
    for spec in specs:
        stored = "  [stored]" if spec.key() in done else ""
        print(f"{spec.problem.name}  {spec.solver.label}  seed={spec.seed}{stored}")
        print(
            f"  budget: max_iter={spec.max_iter} time_limit={spec.time_limit:g} "
            f"tol={spec.tol:g} target_suboptimality={spec.target_suboptimality:g} "
            f"batch_size={spec.batch_size or 'full'}"
        )
        resolved = json.dumps(spec.solver.resolved(spec.seed))
        print(f"  solver: {spec.solver.solver} {resolved}")
    return 0


def _cmd_report(args) -> int:
    try:
        index = _report(Path(args.out))
    except ValueError as exc:  # run files of another schema version
        print(f"natgrad report: {exc}", file=sys.stderr)
        return 2
    return 0 if index is not None else 1


def _cmd_compare(args) -> int:
    import pandas as pd

    for path in (args.a, args.b):
        if not ResultsStore(path).runs_dir.is_dir():
            print(f"natgrad compare: no results under {path!r}", file=sys.stderr)
            return 2
    try:
        frames = [ResultsStore(path).load() for path in (args.a, args.b)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            table = compare(
                frames[0],
                frames[1],
                eps=args.eps,
                tolerance=args.tolerance,
                time_threshold=args.time_threshold,
            )
    except ValueError as exc:
        print(f"natgrad compare: {exc}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"natgrad compare: warning: {warning.message}", file=sys.stderr)
    with pd.option_context(
        "display.width", 250, "display.max_columns", 40, "display.max_rows", 500
    ):
        print(table.drop(columns=table.filter(like="_ratio").columns).to_string(index=False))
    worse = table[table["verdict"] == "worse"]
    if args.fail_on_regression and not worse.empty:
        print(f"natgrad compare: {len(worse)} of {len(table)} rows got worse:", file=sys.stderr)
        for r in worse.itertuples(index=False):
            changes = ", ".join(
                f"{m} {getattr(r, f'{m}_a'):.4g} -> {getattr(r, f'{m}_b'):.4g}"
                for m in r.worse.split(", ")
            )
            print(f"  {r.problem} / {r.solver}: {changes}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="natgrad", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list problems, solvers and suites")
    p.add_argument(
        "what", nargs="?", default="all", choices=["all", "problems", "solvers", "suites"]
    )
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("run", help="run a suite or a TOML configuration")
    p.add_argument("config", nargs="?", default="quick", help="suite name or .toml path")
    p.add_argument("--out", default="results", help="results folder (default: results)")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel runs with joblib")
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask distributed scheduler")
    p.add_argument(
        "--dask-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up on an unreachable --dask scheduler after this long (default 5)",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads per run (default 1; recorded in the results)",
    )
    p.add_argument("--seeds", help="comma-separated seeds overriding the configuration")
    p.add_argument("--no-report", action="store_true", help="skip tables/figures/HTML")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="delete the stored runs of this configuration first (regenerate, not resume)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="use an --out that holds files natgrad did not write (none is deleted)",
    )
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="run again the runs stored with status error",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print every run with its resolved hyperparameters and budget; run nothing",
    )
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("report", help="tables, figures and HTML from stored results")
    p.add_argument("--out", default="results")
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser(
        "compare",
        help="compare two result folders (A = before, B = after); can gate CI",
    )
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--eps", type=float, default=1e-6, help="suboptimality target (1e-6)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=SAME_TOLERANCE,
        help=f"relative change of iterations, work, final suboptimality and failed "
        f"runs still called same (default {SAME_TOLERANCE:g})",
    )
    p.add_argument(
        "--time-threshold",
        type=float,
        default=TIME_THRESHOLD,
        help=f"time ratio judged worse/better, only when both sides ran on one machine "
        f"(default {TIME_THRESHOLD:g})",
    )
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 and list the rows when any row got worse",
    )
    p.set_defaults(func=_cmd_compare)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings (a damaged run file, a recomputed cache entry) as one line on stderr."""
    print(f"natgrad: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "dask", None) and args.n_jobs != 1:
        print("natgrad run: use either --n-jobs or --dask, not both", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(), _sigterm_as_interrupt():
            warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM outside the grid (which handles its own)
        print(f"natgrad {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `natgrad run --dry-run | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

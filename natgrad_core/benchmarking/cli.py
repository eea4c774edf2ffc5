"""The ``natgrad`` command line: ``list``, ``run``, ``report``, ``compare``, ``peers`` and
``scaling``.

What each command does, its arguments, defaults and examples are written once, in the
help texts of :func:`build_parser` (``natgrad COMMAND --help``); the TOML format of a
configuration file is in the README.
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

from .. import plugins
from ..optim import SOLVERS
from ..optim.registry import SHIPPED_SOLVERS, solver_identity
from .compare import SAME_TOLERANCE, TIME_THRESHOLD, compare
from .grid import NATGRAD_SOLVERS, load_config, run_grid, suite_config, with_seeds
from .peers import MIN_REPEATS
from .problems import PROBLEMS, SUITES, dataset_plugins
from .scaling import ITERATIONS, REPEATS, sweeps
from .store import ResultsStore, remove_stale_temp_files, write_if_changed

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
        for s in NATGRAD_SOLVERS:
            params = ", ".join(f"{k}={v}" for k, v in s.params)
            print(f"  {s.label:24s} {params}")
        print("solvers shipped as plugins (scikit-learn's defaults, curves of restarted fits):")
        for name in SHIPPED_SOLVERS:
            identity = solver_identity(name)
            needs = ", ".join(f"{d} {v}" for d, v in identity["requires"].items())
            print(f"  {name:24s} {identity['import']}  [{needs}]")
    if what in ("solvers", "plugins", "all"):
        found = plugins.available(plugins.SOLVER_GROUP, (*SOLVERS, *SHIPPED_SOLVERS))
        _list_plugins(f"solver plugins ({plugins.SOLVER_GROUP!r} entry points)", found)
    if what in ("problems", "plugins", "all"):
        _list_plugins(
            f"dataset plugins ({plugins.DATASET_GROUP!r} entry points)", dataset_plugins()
        )
    if what in ("suites", "all"):
        print("suites:")
        for name, problems in SUITES.items():
            c = suite_config(name)
            budget = f"max_iter={c.max_iter}" if c.epochs is None else f"epochs={c.epochs}"
            if c.batch_size:
                budget += f", batch_size={c.batch_size}"
            tuned = f", tuned: {', '.join(c.tune.labels)}" if c.tune is not None else ""
            print(
                f"  {name:16s} {len(problems)} problems x {len(c.solvers)} solvers x "
                f"{len(c.seeds)} seeds, {budget}, "
                f"time_limit={c.time_limit:g}s{tuned}: {', '.join(problems)}"
            )
    return 0


def _list_plugins(title: str, found: list) -> None:
    """Installed entry points (:func:`natgrad_core.plugins.available`) with their package
    and version."""
    print(f"{title} of installed packages: {len(found) or 'none'}")
    for p in found:
        where = f"{p['package']} {p['version']}" if p["package"] else "no package"
        note = f"  ({p['note']})" if p["note"] else ""
        print(f"  {p['name']:24s} {p['import']}  [plugin from {where}]{note}")


def _stored_runs(store: ResultsStore, config=None):
    """Every trusted run stored in ``store``, or only the runs of ``config`` (a GridConfig)."""
    frame = store.load()
    if config is not None:
        frame = frame[frame["run_key"].isin({spec.key() for spec in config.specs()})]
    return frame


def _report(
    store: ResultsStore, frame, config=None, refresh: bool = False, tuning=None, target_gap=None
) -> Path | None:
    """The report on ``frame`` (runs stored in ``store``) of ``config``, or of every stored
    run if None, with the ``tuning`` table (default: the one stored under
    ``tuning/``, if any); prints its path."""
    from .report import build_report, separate_configurations

    if frame.empty:
        print(f"no stored runs under {store.runs_dir}", file=sys.stderr)
        return None
    if tuning is None:
        tuning = _stored_tuning(store)
    index = build_report(
        frame,
        store.root,
        None if config is None else config.to_dict(),
        records=store.records(),
        refresh=refresh,
        tuning=tuning,
        target_gap=target_gap if target_gap is not None else _target_gaps(config),
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


OWN_FOLDER_SUITES = ("stochastic", "stochastic-quick")
"""Suites whose default results folder is ``results/<suite>``, beside the quick suite's."""
TUNING_FOLDER = "tuning"
"""Folder of a results folder holding the tuning phase's runs (a results store)."""
SELECTION_FILE = "selection.json"
"""The tuning table (:func:`tuning.tuning_table`) under the tuning folder."""


def _target_gaps(config) -> dict | None:
    """The configuration's training-loss targets per problem, or None."""
    gaps = {} if config is None else config.target_gaps()
    return gaps or None


def _stored_tuning(store: ResultsStore):
    """The tuning table stored under ``store``'s tuning folder, or None."""
    import pandas as pd

    path = store.root / TUNING_FOLDER / SELECTION_FILE
    if not path.is_file():
        return None
    try:
        return pd.read_json(path, orient="records")
    except ValueError as exc:
        print(f"report: cannot read {path} ({exc}); no tuning table", file=sys.stderr)
        return None


def _findings_text(frame, gaps) -> str:
    """The findings of a grid with training-loss targets, one statement per line."""
    from .report.metrics import findings, to_target

    return "\n".join(
        ["findings:", *(f"  {f['statement']}" for f in findings(to_target(frame, gaps)))]
    )


def _fastest(frame) -> str:
    """Per problem: the tightest ε of ``DEFAULT_EPS`` that some solver reaches in the
    median over seeds, and the solvers with the smallest median time and work to it (work
    in gradient evaluations, curvature included: see ``report.metrics``)."""
    import numpy as np

    from .report.metrics import DEFAULT_EPS, run_metrics

    _, crossing = run_metrics(frame, DEFAULT_EPS)
    medians = (
        crossing.groupby(["problem", "reference", "solver", "eps"], sort=True)[
            ["time_to_eps", "work_to_eps"]
        ]
        .median()
        .reset_index()
    )
    rows = [["problem", "F*", "ε", "first in time (s)", "first in work (gradient evaluations)"]]
    for (problem, reference), group in medians.groupby(["problem", "reference"], sort=False):
        row = [problem, reference]  # "exact optimum" / "best known", as metrics names F*
        reached = group[np.isfinite(group["time_to_eps"])]
        if reached.empty:
            rows.append([*row, "—", f"no solver's median reached {max(DEFAULT_EPS):g}"])
            continue
        at = reached[reached["eps"] == reached["eps"].min()]
        by_time = at.loc[at["time_to_eps"].idxmin()]
        row += [f"{by_time['eps']:g}", f"{by_time['solver']} {_digits(by_time['time_to_eps'], 2)}"]
        if at["work_to_eps"].notna().any():
            by_work = at.loc[at["work_to_eps"].idxmin()]
            row.append(f"{by_work['solver']} {_digits(by_work['work_to_eps'], 3)}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    n_seeds = int(frame.groupby(["problem", "solver"])["seed"].nunique().max())
    lines = [
        f"per problem, the tightest ε reached and the solver first to it (median of {n_seeds} "
        f"{'seeds' if n_seeds > 1 else 'seed'}):",
        *("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows),
    ]
    return "\n".join(lines)


def _digits(value: float, significant: int) -> str:
    """``value`` to ``significant`` figures, without an exponent for large numbers
    (5318 → "5320", not "5.32e+03")."""
    text = f"{value:.{significant}g}"
    return f"{float(text):.0f}" if "e+" in text else text


def _resolve_suite(args) -> str | None:
    """Apply ``--quick`` (a suite's reduced variant, ``<suite>-quick``) and the default
    ``--out`` (``results``; a suite of its own folder: ``results/<suite>``) to ``args``;
    an error message, or None."""
    if args.quick:
        quick = f"{args.config}-quick"
        if quick not in SUITES:
            variants = sorted(n.removesuffix("-quick") for n in SUITES if n.endswith("-quick"))
            return (
                f"--quick: {args.config!r} has no quick variant; expected one of {variants} "
                "(the quick suite itself is `natgrad run quick`)"
            )
        args.config = quick
    if args.out is None:
        own = args.config in OWN_FOLDER_SUITES
        args.out = str(Path("results", args.config)) if own else "results"
    return None


def _cmd_run(args) -> int:
    """``natgrad run`` and ``natgrad tune`` (which requires a ``[tune]`` table and stops
    after the tuning phase)."""
    problem = _resolve_suite(args)
    if problem is not None:
        print(f"natgrad {args.command}: {problem}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        if args.seeds:
            config = with_seeds(config, [int(s) for s in args.seeds.split(",")])
    except ValueError as exc:
        print(f"natgrad {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "tune" and config.tune is None:
        print(
            f"natgrad tune: {args.config} declares no tuning; expected a [tune] table "
            '(see the README, "Tuning")',
            file=sys.stderr,
        )
        return 2
    if args.n_jobs < 1 or args.blas_threads < 1:
        print(
            f"natgrad {args.command}: --n-jobs and --blas-threads must be >= 1, got "
            f"{args.n_jobs} and {args.blas_threads}",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    if args.dry_run:  # writes nothing, so the folder needs no checks
        return _dry_run(config, ResultsStore(out))
    return _run_checked(args, config, out)


def _run_checked(args, config, out: Path) -> int:
    """``natgrad run`` once the configuration is valid: the tuning phase first when the
    grid declares one (``natgrad tune`` stops after it), then the reported runs."""
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
    tuning = None
    if config.tune is not None:
        tuned = _tune(args, config, out)
        if isinstance(tuned, int):
            return tuned
        config, tuning = tuned
        if args.command == "tune":
            print(_selection_text(tuning))
            return 0
    summary = _run_phase(args, config, store, out)
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
    failed = 1 if summary.n_errors or summary.n_stored_errors else 0
    try:
        frame = _stored_runs(store, config)
    except ValueError as exc:  # run files of a schema version this natgrad cannot read
        print(f"natgrad run: the runs are stored, but cannot be summarized: {exc}", file=sys.stderr)
        return 1
    if not frame.empty:
        from .report.metrics import displayed

        gaps = _target_gaps(config)
        shown = displayed(frame)
        print(_fastest(shown) if gaps is None else _findings_text(shown, gaps))
    if not args.no_report:
        _report(store, frame, config, refresh=summary.n_ran > 0, tuning=tuning)
    return failed


def _run_phase(args, grid, store: ResultsStore, out: Path):
    """Run ``grid`` into ``store`` as ``args`` say (``--fresh`` first deletes its stored
    runs); the reference cache is ``out/cache``, shared by both phases of a tuned grid."""
    if args.fresh:
        store.remove_runs(spec.key() for spec in grid.specs())
    return run_grid(
        grid,
        store,
        n_jobs=args.n_jobs,
        dask_address=args.dask,
        cache_dir=out / "cache",
        progress=not args.quiet,
        blas_threads=args.blas_threads,
        retry_errors=args.retry_errors,
    )


def _tune(args, config, out: Path):
    """The tuning phase of ``config`` (see :mod:`.tuning`), stored under ``out/tuning``:
    (the reported grid, the tuning table), or an exit code."""
    from .tuning import reported_grid, select, tuning_grid, tuning_table

    store = ResultsStore(out / TUNING_FOLDER)
    remove_stale_temp_files(store.root)
    grid = tuning_grid(config)
    summary = _run_phase(args, grid, store, out)
    print(
        f"{grid.name}: {summary.n_total} runs, {summary.n_resumed} already stored, "
        f"{summary.n_ran} ran, {summary.n_errors} errors"
    )
    if summary.interrupted:
        print(
            "interrupted: finished runs are stored; run the same command to resume.",
            file=sys.stderr,
        )
        return 130
    try:
        selections = select(config.tune, config.problems, config.solvers, _stored_runs(store, grid))
    except ValueError as exc:
        print(f"natgrad {args.command}: {exc}", file=sys.stderr)
        return 1
    table = tuning_table(config.tune, selections)
    text = table.to_json(orient="records", indent=1, double_precision=15) + "\n"
    write_if_changed(store.root / SELECTION_FILE, text.encode("utf-8"))
    return reported_grid(config, selections), table


def _selection_text(table) -> str:
    """The tuning table as lines: problem, tuned label, selected point, score, cost."""
    lines = ["selected (rule, score; cost of the search: candidates, runs, optimizer seconds):"]
    for row in table.itertuples():
        lines.append(
            f"  {row.problem:26s} {row.solver:22s} {row.selected}  {row.rule} "
            f"{row.score:.6g}  ({row.candidates} candidates, {row.runs} runs, "
            f"{row.seconds:.1f} s)"
        )
    return "\n".join(lines)


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
    (JSON) and the budget; mark runs already stored under ``--out`` (a run would skip them).
    A grid with a tuning phase prints that phase's runs and what follows it."""
    if config.tune is not None:
        from .tuning import tuning_grid

        _dry_run(tuning_grid(config), ResultsStore(store.root / TUNING_FOLDER))
        labels = ", ".join(config.tune.labels)
        print(
            f"{config.name}: then, on seeds {list(config.seeds)}, the configuration the rule "
            f"{config.tune.rule!r} selects for each of {labels} (labelled '(tuned)') beside "
            "its starting one ('(default)'), and the other solvers: known after the tuning "
            "phase (natgrad tune)"
        )
        return 0
    specs = config.specs()
    done = store.done_keys(quarantine=False)
    n_stored = sum(spec.key() in done for spec in specs)
    print(f"{config.name}: {len(specs)} runs, {n_stored} already stored (dry run: nothing was run)")
    for spec in specs:
        stored = "  [stored]" if spec.key() in done else ""
        print(f"{spec.problem.name}  {spec.solver.label}  seed={spec.seed}{stored}")
        steps = f"max_iter={spec.max_iter}" if spec.epochs is None else f"epochs={spec.epochs}"
        print(
            f"  budget: {steps} time_limit={spec.time_limit:g} "
            f"tol={spec.tol:g} target_suboptimality={spec.target_suboptimality:g} "
            f"batch_size={spec.batch_size or 'full'}"
        )
        resolved = json.dumps(spec.solver.resolved(spec.seed))
        print(f"  solver: {spec.solver.solver} {resolved}")
        identity = spec.solver.identity()
        if identity is not None:
            package = identity["package"] or "not installed"
            version = f" {identity['version']}" if identity["version"] else ""
            source = (identity["source_sha256"] or "unknown")[:12]
            print(f"  plugin: {identity['import']} ({package}{version}, source {source})")
    return 0


def _cmd_tune(args) -> int:
    return _cmd_run(args)  # one path: _cmd_run checks the [tune] table when args.command says


def _cmd_report(args) -> int:
    if args.out is not None:
        if args.results is not None and args.results != args.out:
            print(
                f"natgrad report: got the results folder twice, {args.results!r} and "
                f"--out {args.out!r}; expected it once: natgrad report RESULTS",
                file=sys.stderr,
            )
            return 2
        print(
            "natgrad report: warning: --out is deprecated (it names the folder the runs are "
            f"read from); use: natgrad report {args.out}",
            file=sys.stderr,
        )
    store = ResultsStore(args.results or args.out or "results")
    try:
        index = _report(store, _stored_runs(store), target_gap=args.target_gap)
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


def _out_folder(command: str, out: str) -> Path | None:
    """``--out`` of a measuring command as a Path, or None (said on stderr) if it is a file."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        print(f"natgrad {command}: --out: {path} is a file; expected a folder", file=sys.stderr)
        return None
    return path


def _cmd_peers(args) -> int:
    import pandas as pd

    from .peers import run_peers, write_peers

    if (
        args.repeats < MIN_REPEATS
        or (args.min_time is not None and not args.min_time > 0)
        or (args.min_total is not None and not args.min_total >= 0)
    ):
        print(
            f"natgrad peers: expected --repeats >= {MIN_REPEATS}, --min-time > 0 and "
            f"--min-total >= 0, got {args.repeats}, {args.min_time} and {args.min_total}",
            file=sys.stderr,
        )
        return 2
    out = _out_folder("peers", args.out)
    if out is None:
        return 2
    table, skipped, record = run_peers(
        quick=args.quick,
        repeats=args.repeats,
        min_time=args.min_time,
        min_total=args.min_total,
        progress=None if args.quiet else lambda work: print(f"  {work}", file=sys.stderr),
    )
    for message in skipped:
        print(f"natgrad peers: skipped {message}", file=sys.stderr)
    paths = write_peers(table, out, skipped, record)
    shown = table[["work", "sizes", "ours_min", "peer_min", "ratio", "target", "met", "check"]]
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(shown.to_string(index=False))
    written = ", ".join(str(p) for p in paths if p.suffix in (".md", ".png"))
    print(f"peers: {len(table)} rows, {int(table['met'].eq('yes').sum())} targets met; {written}")
    return 0


def _cmd_scaling(args) -> int:
    import pandas as pd

    from .scaling import exponents, run_scaling, write_scaling

    solvers = args.solvers.split(",") if args.solvers else list(SOLVERS)
    unknown = [s for s in solvers if s not in SOLVERS]
    if unknown or args.repeats < REPEATS or (args.iterations is not None and args.iterations < 1):
        print(
            f"natgrad scaling: expected --solvers among {','.join(SOLVERS)}, --repeats >= "
            f"{REPEATS} and --iterations >= 1, got {args.solvers}, {args.repeats} and "
            f"{args.iterations}",
            file=sys.stderr,
        )
        return 2
    out = _out_folder("scaling", args.out)
    if out is None:
        return 2
    table, record = run_scaling(
        quick=args.quick,
        solvers=solvers,
        iterations=args.iterations,
        repeats=args.repeats,
        on_sweep=lambda partial, record: write_scaling(partial, out, record, figure=False),
        progress=None if args.quiet else lambda point: print(f"  {point}", file=sys.stderr),
    )
    paths = write_scaling(table, out, record)
    fitted = exponents(table)[["sweep", "solver", "exponent", "theory", "points"]]
    with pd.option_context("display.width", 250, "display.precision", 2):
        print(fitted.to_string(index=False))
    skipped = int(table["status"].str.startswith("skipped").sum())
    written = ", ".join(str(p) for p in paths if p.suffix in (".md", ".png"))
    print(f"scaling: {len(table)} points, {skipped} skipped; {written}")
    return 0


def _cmd_study(args) -> int:
    from .studies import STUDIES, _load_all, run_study, write_study

    _load_all()
    if args.list or args.name is None:
        print("studies:")
        for study in STUDIES.values():
            print(f"  {study.name:18s} {study.title} ({study.source})")
        return 0
    if args.name not in STUDIES:
        print(
            f"natgrad study: unknown study {args.name!r}; expected one of {list(STUDIES)}",
            file=sys.stderr,
        )
        return 2
    if args.seed < 0 or args.blas_threads < 1:
        print(
            f"natgrad study: expected --seed >= 0 and --blas-threads >= 1, got {args.seed} "
            f"and {args.blas_threads}",
            file=sys.stderr,
        )
        return 2
    out = _out_folder("study", args.out or str(Path("results", "studies", args.name)))
    if out is None:
        return 2
    result, record = run_study(args.name, args.quick, args.seed, args.blas_threads)
    paths = write_study(args.name, result, record, out)
    for finding in result.findings:
        print(f"  [{'held' if finding.held else 'did not hold'}] {finding.statement}")
    written = ", ".join(str(p) for p in paths if p.suffix in (".md", ".png"))
    print(f"study {args.name}: {len(result.findings)} findings; {written}")
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their line breaks (the examples are laid out)."""


_DESCRIPTION = """\
Benchmark natural-gradient optimizers and report the results.

natgrad runs a grid of (problem, solver configuration, seed) runs, stores one file per
run in a results folder, and writes tables, figures and a self-contained index.html
from them. Start with `natgrad run` (the quick suite, into ./results) and open
results/index.html. `natgrad COMMAND --help` explains each command."""

_EPILOG = """\
examples:
  natgrad list solvers                  the solvers and their recommended hyperparameters
  natgrad run                           the quick suite into ./results (resumes if present)
  natgrad run my_grid.toml --dry-run    every run of a configuration file; runs nothing
  natgrad report results                rebuild tables, figures and index.html
  natgrad compare old_results results   which problem/solver got better or worse
  natgrad peers --quick                 natgrad's speed against scikit-learn and PyTorch
  natgrad scaling --quick               time per iteration of every solver as n and d grow

The configuration file format is documented, with a complete example, in the README
(section "Your own grid: the configuration file")."""

_RUN_DESCRIPTION = """\
Run a suite or a TOML configuration and report on it.

Runs every (problem, solver configuration, seed) of CONFIG, storing each run in
OUT/runs as it finishes, then writes OUT/tables, OUT/figures and OUT/index.html for
these runs and prints, per problem, which solver reached the tightest target first.
Running the same command again resumes: stored runs are skipped, and files whose
content did not change are not rewritten. Exit codes: 0 every run finished, 1 a run
ended with status error, 2 nothing ran (the message says why), 130 interrupted
(finished runs are stored)."""

_RUN_EPILOG = """\
examples:
  natgrad run                             the quick suite into ./results
  natgrad run full --n-jobs 2             the full suite, two runs at a time
  natgrad run stochastic --n-jobs 2       the mini-batch suite into results/stochastic
  natgrad run stochastic --quick          its reduced variant (about 30 seconds)
  natgrad run my_grid.toml --out my_results --seeds 0,1
  natgrad run my_grid.toml --dry-run      print the runs and their hyperparameters
  natgrad run --fresh                     regenerate ./results instead of resuming"""

_STUDY_DESCRIPTION = """\
Reproduce a claim about natural gradient: a registered study.

Runs the study NAME with the library and writes to OUT (default results/studies/NAME) its
figure (PNG and PDF), its table (CSV with a JSON sidecar, Markdown, LaTeX), findings.json
(each finding: the statement, the measured numbers, whether it held) and
provenance.json. --quick runs the reduced size its test runs."""

_STUDY_EPILOG = """\
examples:
  natgrad study --list                    the registered studies
  natgrad study empirical-fisher --quick  seconds, into results/studies/empirical-fisher"""

_TUNE_DESCRIPTION = """\
Run the tuning phase of a suite or TOML configuration that declares one ([tune]).

Runs every candidate of every declared search space on the tuning seeds, storing the
runs in OUT/tuning/runs (resumable like any grid), applies the declared selection rule
and prints, per problem and tuned solver, the selected hyperparameters, their score and
the cost of the search (also written to OUT/tuning/selection.json). `natgrad run` does
the same first, then runs the selected and the default configurations on the reported
seeds. Exit codes as for `natgrad run`."""

_TUNE_EPILOG = """\
examples:
  natgrad tune stochastic --quick         the quick stochastic suite's search
  natgrad tune my_grid.toml --out my_results --n-jobs 2"""

_REPORT_DESCRIPTION = """\
Write tables, figures and index.html from every run stored in a results folder.

Reads RESULTS/runs and writes RESULTS/tables, RESULTS/figures and RESULTS/index.html
(replacing the previous report's files, and no other file). Runs of different solver
configurations or code versions that share a label are summarized separately."""

_REPORT_EPILOG = """\
examples:
  natgrad report                  the report of ./results
  natgrad report my_results       the report of my_results (open my_results/index.html)"""

_COMPARE_DESCRIPTION = """\
Compare two results folders, BEFORE and AFTER, per (problem, solver label).

Prints one row per (problem, solver) present in both, with a verdict (better, worse,
same) on deterministic measures: median iterations and work to EPS, median final
suboptimality, number of failed runs. Time to EPS is judged only when every run of a
row ran on one machine on both sides."""

_COMPARE_EPILOG = """\
examples:
  natgrad compare old_results results
  natgrad run quick --out new_results --no-report --quiet
  natgrad compare results new_results --fail-on-regression --time-threshold inf"""


_PEERS_DESCRIPTION = """\
Time natgrad side by side with what users would pick instead.

Each row computes one piece of work twice in this process, ours and a peer's
(scikit-learn; PyTorch and curvlinops rows when installed: pip install -e '.[peers]'), on
the same float64 data and objective (alpha = 1/C), with every BLAS and OpenMP pool
at one thread: a warm-up call of each side, a check that both agree (fits: the same
objective to 1e-8 relative) and only then the minimum and median of REPEATS
repeats. Writes OUT/peers.csv, .json (provenance), .md, .tex and peers.png (per row,
ours over what its target compares against: the peer, the dense floor or our own
gradient). A row whose check fails gets no times."""

_PEERS_EPILOG = """\
examples:
  natgrad peers --quick --out quick_peers   tiny sizes, a few seconds (CI)
  natgrad peers                             the issue's sizes into results/peers
  natgrad peers --repeats 7 --min-time 0.5  more and longer repeats"""


_SCALING_DESCRIPTION = f"""\
Time one iteration of every solver as the data grow.

Synthetic logistic problems (seeded), one sweep per line:
{chr(10).join("  " + s.describe() for s in sweeps())}
every solver in its recommended configuration, full batch, one BLAS thread. A
point is the minimum and median over REPEATS runs of ITERATIONS steps of the
optimizer's own clock per step. Points whose predicted work or curvature memory is
above the budget are recorded as skipped. Fits the exponent b of t = a s^b on log-log
(s = n or d) next to the theory's. Writes OUT/scaling.csv and OUT/exponents.csv (each
with a .json sidecar holding the provenance, .md and .tex) and scaling.png/.pdf;
the tables are rewritten after every sweep, so a stopped run keeps its finished ones."""

_SCALING_EPILOG = """\
examples:
  natgrad scaling --quick --out quick_scaling   tiny sizes, seconds (CI)
  natgrad scaling                               the full sweep into results/scaling
  natgrad scaling --solvers exact,cg,lbfgs      some solvers only"""


def _add_quick_and_out(p, folder: str, what: str) -> None:
    """``--quick`` and ``--out`` (default ``results/<folder>``) of a measuring command."""
    p.add_argument("--quick", action="store_true", help="tiny sizes that run in seconds (CI)")
    p.add_argument(
        "--out",
        default=str(Path("results", folder)),
        help=f"folder to write {what} in (default: results/{folder})",
    )


def _add_command(sub, func, summary: str, description: str, epilog: str):
    """The parser of the command named after ``func`` (``_cmd_<name>``), which it runs."""
    parser = sub.add_parser(
        func.__name__.removeprefix("_cmd_"),
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=_HelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def _run_arguments(p) -> None:
    """The arguments of ``natgrad run`` (and ``natgrad tune``)."""
    p.add_argument(
        "config",
        nargs="?",
        default="quick",
        metavar="CONFIG",
        help=f"a suite name ({', '.join(SUITES)}; see `natgrad list suites`) or the path "
        "of a .toml configuration file (default: quick)",
    )
    p.add_argument(
        "--out",
        help="results folder to store the runs and write the report in (default: results; "
        "for the stochastic suites results/stochastic and results/stochastic-quick)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the suite's reduced variant (stochastic: stochastic-quick, about 30 seconds), "
        "as CI runs it",
    )
    p.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        metavar="N",
        help="runs at a time, in N joblib worker processes (default: 1); at most the "
        "number of cores, or times are inflated",
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on the Dask distributed scheduler at ADDRESS, e.g. tcp://127.0.0.1:8786 "
        "(needs pip install 'natgrad[dask]')",
    )
    p.add_argument(
        "--dask-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up on an unreachable --dask scheduler after this long (default: 5)",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        metavar="N",
        help="BLAS threads per run (default: 1; recorded with every run)",
    )
    p.add_argument(
        "--seeds",
        metavar="LIST",
        help="comma-separated seeds replacing the configuration's, e.g. 0,1,2",
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="store the runs but write no tables, figures or index.html",
    )
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
    p.add_argument("--quiet", action="store_true", help="show no progress bar")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print every run with its resolved hyperparameters and budget; run nothing",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="natgrad",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="one of the commands below (natgrad COMMAND --help explains it)",
    )
    p = _add_command(
        sub,
        _cmd_list,
        "list the bundled problems, the solvers' recommended configurations, the suites "
        "and the installed plugins",
        "List the bundled problems, the solvers with their recommended "
        "hyperparameters, the solvers shipped as plugins (scikit-learn's), the suites "
        "(problems, seeds and budget of each), and the plugins installed packages declare "
        "(entry points natgrad.solvers and natgrad.problems) with package and version.",
        "example:\n  natgrad list suites",
    )
    p.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "problems", "solvers", "suites", "plugins"],
        help="what to list (default: all)",
    )
    for func, summary, description, epilog in (
        (
            _cmd_run,
            "run a suite or a TOML configuration, store the runs and report on them",
            _RUN_DESCRIPTION,
            _RUN_EPILOG,
        ),
        (
            _cmd_tune,
            "run only the tuning phase of a suite or configuration and show what it selects",
            _TUNE_DESCRIPTION,
            _TUNE_EPILOG,
        ),
    ):
        _run_arguments(_add_command(sub, func, summary, description, epilog))
    p = _add_command(
        sub,
        _cmd_study,
        "run a registered study of a natural-gradient claim, or list them",
        _STUDY_DESCRIPTION,
        _STUDY_EPILOG,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="the study to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered studies")
    p.add_argument("--quick", action="store_true", help="the reduced size its test runs (seconds)")
    p.add_argument("--out", help="folder to write the study in (default: results/studies/NAME)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (0)")
    p.add_argument(
        "--blas-threads", type=int, default=1, metavar="N", help="BLAS threads (default: 1)"
    )
    p = _add_command(
        sub,
        _cmd_report,
        "write tables, figures and index.html from the runs stored in a results folder",
        _REPORT_DESCRIPTION,
        _REPORT_EPILOG,
    )
    p.add_argument(
        "results",
        nargs="?",
        metavar="RESULTS",
        help="results folder written by natgrad run (default: results)",
    )
    p.add_argument(
        "--out",
        help="deprecated: the results folder, now given as RESULTS (natgrad report RESULTS)",
    )
    p.add_argument(
        "--target-gap",
        type=float,
        metavar="RHO",
        help="add the training-loss target table and the findings: a run reaches the target "
        "when loss - F* <= RHO (L0 - F*), 0 < RHO < 1 (natgrad run takes it from the "
        "configuration's [run].target_gap)",
    )
    p = _add_command(
        sub,
        _cmd_compare,
        "compare two results folders (before, after) per problem and solver; can gate CI",
        _COMPARE_DESCRIPTION,
        _COMPARE_EPILOG,
    )
    p.add_argument("a", metavar="BEFORE", help="results folder of the baseline")
    p.add_argument("b", metavar="AFTER", help="results folder of the change to judge")
    p.add_argument(
        "--eps",
        type=float,
        default=1e-6,
        help="absolute suboptimality target of the to-EPS measures (default: 1e-6)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=SAME_TOLERANCE,
        help=f"relative change of iterations, work, final suboptimality and failed "
        f"runs still called same (default: {SAME_TOLERANCE:g})",
    )
    p.add_argument(
        "--time-threshold",
        type=float,
        default=TIME_THRESHOLD,
        help=f"time ratio judged worse or better, only when both sides ran on one machine "
        f"(default: {TIME_THRESHOLD:g}; inf leaves time out)",
    )
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 and list the rows when any row got worse",
    )
    p = _add_command(
        sub,
        _cmd_peers,
        "time natgrad against scikit-learn and PyTorch on the same work; check, then time",
        _PEERS_DESCRIPTION,
        _PEERS_EPILOG,
    )
    _add_quick_and_out(p, "peers", "the table and figure")
    p.add_argument(
        "--repeats",
        type=int,
        default=MIN_REPEATS,
        metavar="N",
        help=f"timing repeats per side, at least {MIN_REPEATS} (default: {MIN_REPEATS})",
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="least duration of one repeat; fast calls are looped (default: 0.01 with "
        "--quick, else 0.2)",
    )
    p.add_argument(
        "--min-total",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep adding interleaved rounds (beyond --repeats, at most 200) until every "
        "side has run this long (default: 0 with --quick, else 3)",
    )
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p = _add_command(
        sub,
        _cmd_scaling,
        "time per iteration of every solver as n and d grow, with fitted exponents",
        _SCALING_DESCRIPTION,
        _SCALING_EPILOG,
    )
    _add_quick_and_out(p, "scaling", "the tables and figure")
    p.add_argument(
        "--solvers",
        metavar="LIST",
        help=f"comma-separated solvers (default: all of {','.join(SOLVERS)})",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        metavar="N",
        help=f"timed runs per point, at least {REPEATS} (default: {REPEATS})",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        metavar="N",
        help=f"optimizer steps per timed run (default: 2 with --quick, else {ITERATIONS})",
    )
    p.add_argument("--quiet", action="store_true", help="print no progress")
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

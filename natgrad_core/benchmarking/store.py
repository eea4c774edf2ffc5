"""The results store: a tidy long-format table, one row per recorded iteration.

Layout under the results folder::

    runs/<run_key>.csv      one file per finished run, written atomically
                            (temporary file + ``os.replace``), so an interrupted grid —
                            Ctrl-C, SIGTERM, a killed worker, a power cut — loses no finished
                            run and leaves no partial file; a rerun skips every key present.
    runs/<run_key>.json     the run's record, written atomically before the CSV: the
                            resolved configuration and budget, code version, git commit
                            and dirty flag, machine, BLAS threads in force during the run,
                            Python and dependency versions (see ``RunSpec.record``), and
                            under ``"csv"`` the SHA-256 and row count of the CSV's bytes.
    runs/quarantine/        damaged run files, moved aside (see below) to be re-run.
    natgrad-manifest.json   the report files natgrad wrote (tables, figures, HTML).

``run_key`` hashes the run's configuration (problem, solver and every hyperparameter,
seed, budget) and the code version (a hash of the package's source), not the order of the
grid. Columns and their meaning are :data:`SCHEMA`; ``schema_version`` is stored in every
row and checked on load. Files of an older layout that :data:`UPGRADES` knows are read
through it (schema 2 named the algorithm column ``solver_name``; schema 3 calls it
``algorithm``), so results committed by an older natgrad still load; any other version is
refused. A file whose bytes would not change is not rewritten
(:func:`write_if_changed`), so regenerating unchanged results leaves git clean. Files are
created with the permissions the umask allows, like any file the user writes.

Nothing is trusted unread: a run file counts as stored only when it parses, has every
column of :data:`SCHEMA`, at least one row, one run key (its file name) and one terminal
status, and matches the checksum and row count of its record. :meth:`ResultsStore.done_keys`
moves a damaged run to ``runs/quarantine/`` with a :class:`DamagedRunWarning` naming it
(the grid then runs it again); :meth:`ResultsStore.load` (and a dry run) skips it with the
same warning and moves nothing.

natgrad deletes only files it recognizes as its own (:meth:`ResultsStore.foreign_files`
lists the others): run files by name (``runs/<12 hex digits>.csv|json``), reference-cache
entries by name (``cache/<64 hex digits>.npz``), temporary files by name
(``.<name>.<pid>.<random>.tmp``, removed once their writer is gone) and report files by
the manifest. ``asv/`` belongs to asv (``asv.conf.json`` keeps its results there).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..optim import STATUSES

__all__ = [
    "MANIFEST",
    "SCHEMA",
    "SCHEMA_VERSION",
    "UPGRADES",
    "DamagedRunWarning",
    "ResultsStore",
    "remove_stale_temp_files",
    "write_if_changed",
]

SCHEMA_VERSION = 5

SCHEMA: dict[str, tuple[str, str]] = {
    "schema_version": ("int64", "version of this table layout"),
    "run_key": ("str", "hash of configuration + code version; one run = one key"),
    "config_id": (
        "str",
        "hash of the resolved configuration and budget without problem and seed; "
        "only runs sharing it are summarized together",
    ),
    "code_version": ("str", "hash of the numerical natgrad_core sources behind the row"),
    "problem": ("str", "problem name"),
    "convex": ("bool", "whether a true optimum was computed (logistic regression)"),
    "n_params": ("int64", "number of parameters"),
    "n_train": ("int64", "training samples"),
    "solver": ("str", "solver configuration label (what tables and figures group by)"),
    "algorithm": (
        "str",
        "the algorithm the label configures: exact|diag|kfac|ekfac|cg|gd|momentum|adam|lbfgs",
    ),
    "params": ("str", "every hyperparameter of the solver, as sorted JSON"),
    "seed": (
        "int64",
        "seed of the run: train/test split, initialization, batches, Monte-Carlo labels "
        "(re-running a seed repeats the same computation: a timing repeat, not a sample)",
    ),
    "batch_size": ("int64", "mini-batch size; 0 = full batch"),
    "iteration": ("int64", "iteration (0 = start)"),
    "time": ("float64", "seconds inside optimizer steps so far (evaluation excluded)"),
    "loss": ("float64", "full training objective"),
    "suboptimality": ("float64", "loss - F* (exact reference; NaN when non-convex)"),
    "rel_suboptimality": ("float64", "(loss - F*) / |F*|"),
    "reference_loss": (
        "float64",
        "loss of the reference the runner measured the run against: the exact optimum F* "
        "(convex), a long reference run's lowest loss (non-convex, when the grid has a "
        "[reference]); NaN when there is none",
    ),
    "dist_to_opt": ("float64", "||theta - w*||_2 (NaN when non-convex)"),
    "grad_norm": ("float64", "max-norm of the full gradient"),
    "test_metric": ("float64", "test accuracy (classifiers) or test MSE (autoencoder)"),
    "n_loss": (
        "float64",
        "loss-only evaluations so far (this and the other counts: NaN when the solver's "
        "calls cannot be observed, a curve of restarted fits)",
    ),
    "n_grad": ("float64", "gradient evaluations so far"),
    "n_fvp": ("float64", "Fisher-vector products so far"),
    "n_cg_iter": ("float64", "conjugate-gradient iterations so far"),
    "n_factorizations": ("float64", "dense factorizations so far"),
    "n_backprop": (
        "float64",
        "output columns pulled back through the network to build curvature, so far",
    ),
    "n_flops": ("float64", "flops of the curvature's dense linear algebra so far"),
    "grad_flops": (
        "int64",
        "flops of one gradient evaluation on one batch of this run (MLP.pass_flops): "
        "the unit of work_to_eps",
    ),
    "backprop_flops": (
        "int64",
        "flops of one n_backprop (propagation through the hidden layers; 0 for logistic)",
    ),
    "grad_time": (
        "float64",
        "seconds of one gradient evaluation on one batch of this run (the full data "
        "when full batch; median of 5, same process and threads): the unit of cost per step",
    ),
    "fidelity": (
        "float64",
        "cosine(step, exact natural-gradient direction at the step's damping); NaN if too big",
    ),
    "step_status": ("str", "per-step status (ok, jitter, pinv, max_cg_iter, rejected, ...)"),
    "status": (
        "str",
        "run status: converged, target, max_iter, time_limit, diverged, skipped, error",
    ),
    "message": ("str", "why the run ended"),
    "n_concurrent": ("int64", "runs sharing the machine while this one ran"),
    "blas_threads": ("int64", "BLAS threads the run was pinned to"),
    "machine": (
        "str",
        "machine id (hash of CPU model, logical cores, platform, host): times compare "
        "only between runs with the same id",
    ),
    "curve": (
        "str",
        "how the curve was made: run (one run, recorded as it went) or restarts (one fit "
        "from the start per iteration budget; a row's time is that fit's seconds)",
    ),
    "n_rejected": (
        "int64",
        "steps of the run not taken (step size 0: rejected, failed line search, no descent)",
    ),
    "n_cg_capped": ("int64", "steps whose CG solve stopped at its iteration cap"),
    "n_fallbacks": ("int64", "steps whose solve fell back to jitter or pseudo-inverse"),
    "flags": (
        "str",
        "what went wrong in a run that did not fail outright, ';'-separated: "
        "loss_increased (final loss above the start), mostly_rejected (> half the "
        "steps rejected); empty if nothing",
    ),
}


UPGRADES: dict[int, dict[str, str]] = {2: {"solver_name": "algorithm"}, 3: {}, 4: {}}
"""Older schema versions this natgrad reads, each with the column renames that bring a
table of that version to :data:`SCHEMA_VERSION` (applied on load; files are not rewritten);
columns added since (:data:`ADDED`) are filled with their value for "not recorded"."""
ADDED: dict[str, object] = {"reference_loss": float("nan"), "curve": "run"}
"""Columns added after schema 3 -> the value older tables get (they did not record it;
every curve before schema 5 was one run). Schema 5 also made the oracle counts floats, so
that a solver whose calls cannot be observed records NaN, not 0."""

_STRING_DTYPES = {col: str for col, (dtype, _) in SCHEMA.items() if dtype == "str"} | {
    old: str
    for renames in UPGRADES.values()
    for old, new in renames.items()
    if SCHEMA[new][0] == "str"
}


def _upgrade(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` in the layout of :data:`SCHEMA_VERSION` when all its rows are of one
    version that :data:`UPGRADES` knows; otherwise unchanged."""
    version = frame.get("schema_version")
    if version is None or not pd.api.types.is_integer_dtype(version):
        return frame
    versions = set(version)
    old = versions.pop() if len(versions) == 1 else None
    if old not in UPGRADES:
        return frame
    missing = {col: value for col, value in ADDED.items() if col not in frame.columns}
    return frame.rename(columns=UPGRADES[old]).assign(schema_version=SCHEMA_VERSION, **missing)


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Order and type the columns as in :data:`SCHEMA`; raise if any is missing."""
    missing = [c for c in SCHEMA if c not in frame.columns]
    if missing:
        raise ValueError(f"results table is missing columns {missing}.")
    out = frame[list(SCHEMA)].copy()
    for col, (dtype, _) in SCHEMA.items():
        out[col] = out[col].astype("object" if dtype == "str" else dtype)
        if dtype == "str":
            out[col] = out[col].fillna("").astype(str)
    return out


NOT_APPLICABLE = "not applicable: "
"""Start of the message of a skipped run whose solver cannot fit the problem's model at
all (a BudgetedSolver's ``skip_reason``, e.g. LogisticRegression on an MLP): stored, so a
resume does not retry it, but left out of the report's tables, where it would read as a
solver that ran and failed."""


def not_applicable(frame: pd.DataFrame) -> pd.Series:
    """Which rows of ``frame`` belong to runs skipped as not applicable
    (:data:`NOT_APPLICABLE`)."""
    return (frame["status"] == "skipped") & frame["message"].astype(str).str.startswith(
        NOT_APPLICABLE
    )


RUN_STATUSES = (*STATUSES, "target", "skipped", "error")
"""Terminal statuses of a stored run: the driver's, and the runner's own."""

MANIFEST = "natgrad-manifest.json"
"""File under the results folder listing the report files natgrad wrote."""

_RUN_FILE = re.compile(r"[0-9a-f]{12}\.(csv|json)")
_CACHE_FILE = re.compile(r"[0-9a-f]{64}\.npz")
_TEMP_FILE = re.compile(r"\..+\.(\d+)\.[^.]+\.tmp")
_FOLDERS = ("runs", "cache", "tables", "figures")  # natgrad's folders under the results folder
# folders other tools (and `natgrad peers`, `natgrad scaling`, the stochastic suite's own
# results folder) keep there
_OTHER_TOOLS = ("asv", "peers", "scaling", "stochastic", "stochastic-quick", "studies")
TUNING = "tuning"
"""The folder of a tuned grid's tuning phase: a results store of its own, plus its
``selection.json``."""


class DamagedRunWarning(UserWarning):
    """A stored run file that cannot be trusted (truncated, garbage, wrong checksum)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old or the new file.

    A temporary ``.<name>.<pid>.<random>.tmp`` in the same folder (unique per writer, so
    concurrent writers never share one), flushed to disk, given the permissions the umask
    allows (``mkstemp`` creates 0600), then ``os.replace``. On any exception, Ctrl-C
    included, the temporary file is removed; one left by a killed writer is removed by
    :func:`remove_stale_temp_files`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_if_changed(path: str | os.PathLike, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`) unless the file
    already holds exactly it. Returns whether the file was written (its modification time
    changes only then)."""
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def remove_stale_temp_files(root: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` under ``root`` whose writing
    process is gone (killed by SIGKILL or a power cut); returns them. A temporary file of
    a live process — another natgrad writing to the same folder — is left alone."""
    root = Path(root)
    removed = []
    folders = [root, *(root / name for name in _FOLDERS)]
    for path in (p for folder in folders if folder.is_dir() for p in folder.glob(".*.tmp")):
        match = _TEMP_FILE.fullmatch(path.name)
        if match and path.is_file() and not _running(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_rows(data: bytes) -> pd.DataFrame:
    # string columns must stay strings: a hex key like "14e597284008" would otherwise
    # parse as the float 14·10^597284008 = inf
    return pd.read_csv(
        io.BytesIO(data), keep_default_na=False, na_values=["", "NaN", "nan"], dtype=_STRING_DTYPES
    )


class ResultsStore:
    """Per-run CSV files and run records under ``<root>/runs`` (see module doc)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.quarantine_dir = self.runs_dir / "quarantine"

    # ------------------------------------------------------------------ writing
    def write_run(self, key: str, frame: pd.DataFrame) -> Path:
        """Write one run atomically; returns the CSV's path.

        The run's record (``frame.attrs["run_record"]`` when present; the runner sets it)
        with the SHA-256 and row count of the CSV's bytes under ``"csv"`` goes to
        ``<key>.json`` first, then the rows to ``<key>.csv``: a run whose CSV exists and
        matches its record is complete.
        """
        data = conform(frame).to_csv(index=False, float_format="%.17g").encode()
        record = dict(frame.attrs.get("run_record") or {})
        record["csv"] = {"sha256": _sha256(data), "rows": len(frame)}
        text = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
        write_if_changed(self.runs_dir / f"{key}.json", text.encode("utf-8"))
        final = self.runs_dir / f"{key}.csv"
        write_if_changed(final, data)
        return final

    def remove_runs(self, keys: Iterable[str]) -> int:
        """Delete the run files (CSV and record) of ``keys``; returns how many runs had any."""
        n_removed = 0
        for key in keys:
            paths = [self.runs_dir / f"{key}{ext}" for ext in (".csv", ".json")]
            n_removed += any(p.is_file() for p in paths)
            for path in paths:
                path.unlink(missing_ok=True)
        return n_removed

    # ------------------------------------------------------------------ reading
    def _run_files(self) -> list[Path]:
        """The run CSVs, recognized by name: a user's ``runs/notes.csv`` is not one."""
        return [p for p in sorted(self.runs_dir.glob("*.csv")) if _RUN_FILE.fullmatch(p.name)]

    def _check(self, path: Path) -> tuple[pd.DataFrame | None, str]:
        """The rows of the run file ``path``, or None and why it cannot be trusted."""
        key = path.stem
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # moved by another process meanwhile
            return None, ""
        sidecar = path.with_suffix(".json")
        expected = None
        if sidecar.is_file():
            try:
                record = json.loads(sidecar.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                return None, f"its record {sidecar.name} is not JSON ({exc})"
            if not isinstance(record, dict):
                return None, f"its record {sidecar.name} is not a JSON object"
            expected = record.get("csv")
        try:
            frame = _read_rows(data)
        except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors included
            return None, f"not a CSV table ({type(exc).__name__}: {str(exc).strip()})"
        frame = _upgrade(frame)
        version = frame.get("schema_version")
        if version is not None and pd.api.types.is_integer_dtype(version):
            if set(version) != {SCHEMA_VERSION}:  # another layout, not damage: see load()
                return frame, ""
        if expected is not None and expected.get("sha256") != _sha256(data):
            return None, f"its bytes do not match the checksum in {sidecar.name} (truncated?)"
        missing = [c for c in SCHEMA if c not in frame.columns]
        if missing:
            return None, f"columns {missing[:5]} missing"
        if frame.empty:
            return None, "no rows"
        if expected is not None and expected.get("rows") != len(frame):
            return None, f"{len(frame)} rows, its record says {expected.get('rows')}"
        if set(frame["run_key"]) != {key}:
            return None, f"run keys {sorted(set(frame['run_key']))[:3]}, expected only {key!r}"
        statuses = set(frame["status"])
        if len(statuses) != 1 or not statuses <= set(RUN_STATUSES):
            return None, f"statuses {sorted(statuses)}, expected one of {list(RUN_STATUSES)}"
        return frame, ""

    def _scan(self, quarantine: bool) -> dict[str, pd.DataFrame]:
        """Every trusted run by key; a damaged one is warned about and, if
        ``quarantine``, moved to ``runs/quarantine/``."""
        runs = {}
        if not self.runs_dir.is_dir():
            return runs
        for path in self._run_files():
            frame, reason = self._check(path)
            if frame is not None:
                runs[path.stem] = frame
                continue
            if not reason:
                continue
            action = "not counted as stored"
            if quarantine:
                action = f"moved to {self.quarantine_dir} and run again"
                self.quarantine_dir.mkdir(parents=True, exist_ok=True)
                for part in (path, path.with_suffix(".json")):
                    try:
                        os.replace(part, self.quarantine_dir / part.name)
                    except FileNotFoundError:  # no record, or another process moved it
                        pass
            warnings.warn(
                f"damaged run file {path}: {reason}; {action}", DamagedRunWarning, stacklevel=3
            )
        return runs

    def statuses(self, quarantine: bool = True) -> dict[str, str]:
        """The final status of every trusted stored run, by run key; damaged run files
        are quarantined unless ``quarantine`` is false (see module doc)."""
        runs = self._scan(quarantine)
        return {key: str(frame.get("status", [""])[0]) for key, frame in runs.items()}

    def done_keys(self, quarantine: bool = True) -> set[str]:
        """The keys of every trusted stored run (see :meth:`statuses`)."""
        return set(self.statuses(quarantine))

    def records(self) -> dict[str, dict]:
        """The record of every stored run that has one, by run key (without the CSV's
        checksum, which belongs to the store)."""
        records = {}
        if not self.runs_dir.is_dir():
            return records
        for path in self._run_files():
            sidecar = path.with_suffix(".json")
            try:
                record = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                record.pop("csv", None)
                if record:
                    records[path.stem] = record
        return records

    def load(self) -> pd.DataFrame:
        """All trusted stored rows, schema-checked; damaged run files are skipped with a
        :class:`DamagedRunWarning` naming them (nothing is moved)."""
        runs = self._scan(False)
        if not runs:
            return conform(pd.DataFrame({c: [] for c in SCHEMA}))
        stale = {
            f"{key}.csv": sorted(set(frame["schema_version"]))
            for key, frame in runs.items()
            if set(frame["schema_version"]) != {SCHEMA_VERSION}
        }
        if stale:
            versions = sorted({int(v) for found in stale.values() for v in found})
            names = sorted(stale)
            raise ValueError(
                f"run files in {self.runs_dir} have schema versions {versions} "
                f"({', '.join(names[:3])}{' ...' if len(names) > 3 else ''}); this natgrad "
                f"reads versions {sorted({*UPGRADES, SCHEMA_VERSION})} (run them again, "
                "e.g. with --fresh)."
            )
        return conform(pd.concat(list(runs.values()), ignore_index=True))

    # ------------------------------------------------------------------ ownership
    def report_files(self) -> set[str]:
        """The report files natgrad wrote, as paths relative to the root (the manifest)."""
        try:
            files = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return set()
        return {f for f in files if isinstance(f, str)}

    def replace_report_files(self, paths: Iterable[str | os.PathLike]) -> list[Path]:
        """Record ``paths`` (files just written under the root) as the report; remove the
        files of the previous report that are not among them. Returns the removed files.
        Only files the manifest lists are ever removed: a user's ``figures/thesis.png``
        stays."""
        new = {Path(p).resolve().relative_to(self.root.resolve()).as_posix() for p in paths}
        removed = []
        for name in sorted(self.report_files() - new):
            path = self.root / name
            if path.is_file():
                path.unlink()
                removed.append(path)
        text = json.dumps({"files": sorted(new)}, indent=2) + "\n"
        write_if_changed(self.root / MANIFEST, text.encode("utf-8"))
        return removed

    def foreign_files(self) -> list[Path]:
        """Files under the root that natgrad did not write (see module doc), sorted."""
        if not self.root.is_dir():
            return []
        report = self.report_files() | {MANIFEST}
        foreign = []
        for child in sorted(self.root.iterdir()):
            if child.name in _OTHER_TOOLS and child.is_dir():
                continue
            if child.name == TUNING and child.is_dir():
                nested = ResultsStore(child).foreign_files()
                foreign += [p for p in nested if p != child / "selection.json"]
                continue
            for path in [child] if child.is_file() else sorted(child.rglob("*")):
                if path.is_file() and not self._owned(path, report):
                    foreign.append(path)
        return foreign

    def _owned(self, path: Path, report: set[str]) -> bool:
        parts = path.relative_to(self.root).parts
        return bool(
            "/".join(parts) in report
            or _TEMP_FILE.fullmatch(path.name)
            or (len(parts) == 2 and parts[0] == "runs" and _RUN_FILE.fullmatch(parts[1]))
            or (len(parts) == 3 and parts[:2] == ("runs", "quarantine"))
            or (len(parts) == 2 and parts[0] == "cache" and _CACHE_FILE.fullmatch(parts[1]))
        )

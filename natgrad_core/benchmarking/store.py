"""The results store: a tidy long-format table, one row per recorded iteration.

Layout under the results folder::

    runs/<run_key>.csv      one file per finished run, written atomically
                            (temporary file + ``os.replace``), so an interrupted grid —
                            Ctrl-C, a killed worker, a power cut — loses no finished run and
                            leaves no partial file; a rerun skips every key present.
    runs/<run_key>.json     the run's record, written atomically before the CSV: the
                            resolved configuration and budget, code version, git commit
                            and dirty flag, machine, BLAS threads in force during the run,
                            Python and dependency versions (see ``RunSpec.record``).

``run_key`` hashes the run's configuration (problem, solver and every hyperparameter,
seed, budget) and the code version (a hash of the package's source), not the order of the
grid. Columns and their meaning are :data:`SCHEMA`; ``schema_version`` is stored in every
row and checked on load. A file whose bytes would not change is not rewritten
(:func:`write_if_changed`), so regenerating unchanged results leaves git clean.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

__all__ = ["SCHEMA", "SCHEMA_VERSION", "ResultsStore", "write_if_changed"]

SCHEMA_VERSION = 2

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
    "solver": ("str", "solver configuration label"),
    "solver_name": ("str", "exact|diag|kfac|ekfac|cg|gd|momentum|adam|lbfgs"),
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
    "dist_to_opt": ("float64", "||theta - w*||_2 (NaN when non-convex)"),
    "grad_norm": ("float64", "max-norm of the full gradient"),
    "test_metric": ("float64", "test accuracy (classifiers) or test MSE (autoencoder)"),
    "n_loss": ("int64", "loss-only evaluations so far"),
    "n_grad": ("int64", "gradient evaluations so far"),
    "n_fvp": ("int64", "Fisher-vector products so far"),
    "n_cg_iter": ("int64", "conjugate-gradient iterations so far"),
    "n_factorizations": ("int64", "dense factorizations so far"),
    "n_backprop": (
        "int64",
        "output columns pulled back through the network to build curvature, so far",
    ),
    "n_flops": ("int64", "flops of the curvature's dense linear algebra so far"),
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
        "seconds of one full gradient evaluation in this run (median "
        "of 5, same process and threads): the unit of cost per step",
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


_STRING_DTYPES = {col: str for col, (dtype, _) in SCHEMA.items() if dtype == "str"}


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


def write_if_changed(path: str | os.PathLike, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly it.

    Atomic: a temporary file in the same folder, flushed to disk, then ``os.replace``,
    so readers see the old or the new file, never a partial one. Returns whether the file
    was written (its modification time changes only then).
    """
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


class ResultsStore:
    """Per-run CSV files and run records under ``<root>/runs``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    def done_keys(self) -> set[str]:
        if not self.runs_dir.is_dir():
            return set()
        return {p.stem for p in self.runs_dir.glob("*.csv")}

    def write_run(self, key: str, frame: pd.DataFrame) -> Path:
        """Write one run atomically; returns the CSV's path.

        The run's record, ``frame.attrs["run_record"]`` when present (the runner sets it),
        goes to ``<key>.json`` first, then the rows to ``<key>.csv``: a run whose CSV
        exists is complete.
        """
        record = frame.attrs.get("run_record")
        if record is not None:
            text = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
            write_if_changed(self.runs_dir / f"{key}.json", text.encode("utf-8"))
        final = self.runs_dir / f"{key}.csv"
        write_if_changed(final, conform(frame).to_csv(index=False, float_format="%.17g").encode())
        return final

    def records(self) -> dict[str, dict]:
        """The record of every stored run that has one, by run key."""
        records = {}
        for key in sorted(self.done_keys()):
            path = self.runs_dir / f"{key}.json"
            if path.is_file():
                records[key] = json.loads(path.read_text(encoding="utf-8"))
        return records

    def load(self) -> pd.DataFrame:
        """All stored rows, schema-checked."""
        paths = sorted(self.runs_dir.glob("*.csv")) if self.runs_dir.is_dir() else []
        if not paths:
            return conform(pd.DataFrame({c: [] for c in SCHEMA}))
        frame = pd.concat(
            [
                # string columns must stay strings: a hex key like "14e597284008" would
                # otherwise parse as the float 14·10^597284008 = inf
                pd.read_csv(
                    p, keep_default_na=False, na_values=["", "NaN", "nan"], dtype=_STRING_DTYPES
                )
                for p in paths
            ],
            ignore_index=True,
        )
        versions = {int(v) for v in frame["schema_version"].unique()}
        if versions != {SCHEMA_VERSION}:
            raise ValueError(
                f"results in {self.runs_dir} have schema versions {sorted(versions)}; "
                f"this natgrad reads version {SCHEMA_VERSION}."
            )
        return conform(frame)

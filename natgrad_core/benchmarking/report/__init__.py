"""Tables, figures and a self-contained HTML report from the results table.

A package by job: :mod:`.metrics` (pure functions from the long-format results table to
per-run and per-configuration numbers; what asv imports), :mod:`.tables` (CSV, Markdown,
LaTeX), :mod:`.figures` (matplotlib), :mod:`.html` (the page), and :func:`build_report`
here, which runs them all. Comparing two result sets is :mod:`natgrad_core.benchmarking.compare`.
Definitions of every measure are in :mod:`.metrics`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..provenance import UNKNOWN, provenance
from ..store import ResultsStore, write_if_changed
from .figures import make_figures
from .html import write_html
from .metrics import (
    DEFAULT_EPS,
    FVP_COST,
    HEADLINE_EPS,
    MEASURES,
    add_best_known,
    displayed,
    drop_not_applicable,
    findings,
    headline,
    hyperparameters,
    label_restarts,
    performance_profile,
    run_metrics,
    separate_configurations,
    step_diagnostics,
    summary_tables,
    to_target,
)
from .tables import render_html, write_findings, write_tables

__all__ = [
    "DEFAULT_EPS",
    "FVP_COST",
    "HEADLINE_EPS",
    "MEASURES",
    "add_best_known",
    "build_report",
    "displayed",
    "drop_not_applicable",
    "findings",
    "headline",
    "hyperparameters",
    "label_restarts",
    "make_figures",
    "performance_profile",
    "render_html",
    "run_metrics",
    "separate_configurations",
    "step_diagnostics",
    "summary_tables",
    "to_target",
    "write_findings",
    "write_html",
    "write_tables",
]


# ----------------------------------------------------------------------------- 7. all of it
def _results_record(frame: pd.DataFrame, records: Mapping[str, Mapping]) -> dict:
    """What a report summarizes: its runs and every distinct passport among them.

    From the rows: number of runs and rows, problems, solver labels, code versions. From
    the runs' records (``records``: run key -> :meth:`runner.RunSpec.record`): every
    configuration by ``config_id`` (configuration and budget without problem and seed),
    and the distinct machines, BLAS libraries and threads, Python and dependency versions
    and git states. Runs without a record count in ``runs_without_record``, and their
    configurations are :data:`provenance.UNKNOWN`. No date or host: the record is stable.
    """
    keys = sorted(map(str, frame["run_key"].unique()))
    found = [records[k] for k in keys if k in records]

    def distinct(values) -> list:
        texts = {json.dumps(v, sort_keys=True, default=str) for v in values}
        return [json.loads(t) for t in sorted(texts)]

    configurations = dict.fromkeys(sorted(map(str, frame["config_id"].unique())), UNKNOWN)
    for record in found:
        configurations[record["config_id"]] = {
            k: v for k, v in record["configuration"].items() if k not in ("problem", "seed")
        }
    return {
        "n_runs": len(keys),
        "n_rows": len(frame),
        "problems": sorted(map(str, frame["problem"].unique())),
        "solvers": sorted(map(str, frame["solver"].unique())),
        "code_versions": sorted(map(str, frame["code_version"].unique())),
        "configurations": configurations,
        "machines": distinct(r.get("machine", UNKNOWN) for r in found),
        "git": distinct(
            {"commit": r.get("git_commit", UNKNOWN), "dirty": r.get("git_dirty", UNKNOWN)}
            for r in found
        ),
        "blas": distinct(r.get("blas", UNKNOWN) for r in found),
        "python": distinct(r.get("python", UNKNOWN) for r in found),
        "dependencies": distinct(r.get("dependencies", UNKNOWN) for r in found),
        "runs_without_record": len(keys) - len(found),
    }


def _studies(out_dir: Path) -> list[dict]:
    """The findings of the studies written under ``out_dir/studies`` (``natgrad study``),
    by name; one that cannot be read is left out."""
    found = []
    for path in sorted(Path(out_dir).glob("studies/*/findings.json")):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return found


def build_report(
    frame: pd.DataFrame,
    out_dir: str | Path,
    config=None,
    eps: Sequence[float] = DEFAULT_EPS,
    records: Mapping[str, Mapping] | None = None,
    refresh: bool = False,
    headline_eps: float = HEADLINE_EPS,
    tuning: pd.DataFrame | None = None,
    target_gap: float | None = None,
) -> Path:
    """Tables, figures and ``index.html`` for a results table.

    Steps: :func:`separate_configurations`, :func:`add_best_known`; the tables, in this
    order: ``headline_time`` and ``headline_work`` (:func:`headline` at ``headline_eps``),
    ``to_target`` (:func:`to_target` at ``target_gap``, if given), ``hyperparameters``
    (:func:`hyperparameters` from ``records``), ``tuning`` (``tuning``, if given),
    ``step_diagnostics`` and the long tables of :func:`summary_tables`;
    :func:`write_tables` into ``out_dir/tables``, with ``target_gap`` also
    :func:`findings` into ``out_dir/tables/findings.json`` and ``findings.md``
    (:func:`write_findings`), :func:`make_figures` into
    ``out_dir/figures``, :func:`write_html` into ``out_dir``. Tables, figures and HTML
    carry the record of what they summarize (:func:`_results_record`: runs, code
    versions, configurations, machines, BLAS, versions, git states, and the
    ``separated_labels`` given to runs of one label with several configurations), which
    changes only when the runs do, and each file is rewritten only when its bytes change.
    The files of an earlier report that this one does not write are removed, and only
    those: the report's files are listed in the results folder's manifest
    (:meth:`store.ResultsStore.replace_report_files`), so a user's own file there stays.

    The volatile facts go to one file, ``out_dir/tables/provenance.json``: the
    :func:`provenance.provenance` of this process (date, host, ``config_hash`` of
    ``config``) with the record under ``results``. It is rewritten when ``refresh`` is
    true (runs were just executed), when it is missing, or when the record changed.

    Parameters
    ----------
    frame : DataFrame
        Results table following :data:`store.SCHEMA`.
    out_dir : path
        Report folder, created if missing.
    config : JSON-serializable, optional
        Benchmark configuration; its hash is recorded.
    eps : sequence of float
        Absolute suboptimality targets of the long tables and the figures.
    headline_eps : float
        The single ε of the headline tables.
    records : mapping of str to mapping, optional
        Run records by run key (``ResultsStore.records()``).
    refresh : bool
        Rewrite ``provenance.json`` even if the record is unchanged.
    tuning : DataFrame, optional
        :func:`tuning.tuning_table` of the search behind the "(tuned)" labels: written as
        the ``tuning`` table and shown in the page's "Tuning" section.
    target_gap : float, optional
        Fraction of the initial training-loss gap left at the target of
        :func:`to_target`; adds its table (in the headline section) and the findings.
        Without ``tuning`` and ``target_gap`` the report is the one of the ε targets alone.

    Returns
    -------
    Path
        The ``index.html``.
    """
    out_dir = Path(out_dir)
    shown = displayed(frame)
    separated = separate_configurations(shown)
    record = _results_record(separated, records or {})
    relabelled = sorted(set(separated["solver"]) - set(shown["solver"]))
    if relabelled:
        record["separated_labels"] = relabelled
    frame = add_best_known(separated)
    long = summary_tables(frame, eps)
    tables = {
        "headline_time": headline(frame, headline_eps, "time"),
        "headline_work": headline(frame, headline_eps, "work"),
    }
    if target_gap is not None:
        tables["to_target"] = to_target(frame, target_gap)
    tables["hyperparameters"] = hyperparameters(frame, records or {})
    if tuning is not None:
        tables["tuning"] = tuning
    tables |= {"step_diagnostics": long.pop("step_diagnostics"), **long}
    table_files = write_tables(tables, out_dir / "tables", record)
    if target_gap is not None:
        found = findings(tables["to_target"])
        table_files += write_findings(found, out_dir / "tables", record)
    figures = make_figures(frame, out_dir / "figures", eps, provenance_dict=record)
    index = write_html(out_dir, tables, figures, record, _studies(out_dir))
    volatile = out_dir / "tables" / "provenance.json"
    stored = json.loads(volatile.read_text(encoding="utf-8")) if volatile.is_file() else {}
    if refresh or stored.get("results") != json.loads(json.dumps(record, default=str)):
        prov = {**provenance(config), "results": record}
        text = json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n"
        write_if_changed(volatile, text.encode("utf-8"))
    ResultsStore(out_dir).replace_report_files([*table_files, *figures, index, volatile])
    return index

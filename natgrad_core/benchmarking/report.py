"""Tables, figures and a self-contained HTML report from the results table.

The input everywhere is the long-format table of :data:`store.SCHEMA` (one row per
recorded iteration per run, e.g. ``ResultsStore(root).load()``). A *run* is one
``run_key``; statistics "over seeds" are over the runs of one (problem, solver,
config_id): runs whose configuration or budget differ are never pooled, and a solver
label shared by several configurations or code versions is told apart in tables and
figures (:func:`separate_configurations`).

Definitions used throughout
---------------------------
suboptimality
    ``loss - F*``. For convex problems ``F*`` is the exact optimum computed by the
    runner (column ``reference`` = ``"exact"``); for non-convex problems
    :func:`add_best_known` sets ``F*`` to the lowest finite loss recorded by *any* run of
    that problem in the table (``reference`` = ``"best known"``), so those numbers are
    relative to the table they were computed from.
ε-targets
    Absolute suboptimality thresholds (not relative ones): a run reaches ε at its first
    recorded iteration with ``suboptimality <= ε``. A run that never does (including
    skipped and failed runs) has cost ``+inf`` to reach ε.
first-order calls
    ``n_grad + n_loss + 2 * n_fvp``: a Fisher-vector product costs about two gradient
    passes (a forward and a backward pass through the linearized model). Loss-only and
    gradient evaluations count one each, as the optimizers count them. Curvature
    construction is *excluded*: a dense or K-FAC step looks almost free in this unit.
work
    First-order calls plus the curvature's construction, in gradient evaluations::

        work = n_grad + n_loss + 2 n_fvp + (n_backprop · backprop_flops + n_flops) / grad_flops

    ``n_backprop`` counts output columns pulled back through the network (the K columns
    of √Λ per exact build, per K-FAC or diagonal statistic, per preconditioner),
    ``backprop_flops`` is the cost of one (its propagation through the hidden layers),
    ``n_flops`` the dense linear algebra (Gram builds, Cholesky n³/3, eigendecompositions
    9n³, solves), and ``grad_flops`` the flops of one gradient evaluation on the run's
    batch (forward ≈ 2·N·P + backward ≈ 4·N·P, :meth:`MLP.pass_flops`). Deterministic,
    unlike time; NaN for rows stored without ``grad_flops``.
cost per step
    ``(final time / final iteration) / grad_time``: the mean optimizer time of one step
    in units of one full-gradient evaluation measured in the same run.
median and IQR
    Over the runs of one (problem, solver): the 50 % quantile and the 25 % / 75 %
    quantiles (columns ``q25`` / ``q75``) with linear interpolation, ignoring NaN and
    keeping ``+inf`` (an interpolation that touches ``+inf`` is ``+inf``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .provenance import UNKNOWN, provenance
from .store import ResultsStore, write_if_changed

__all__ = [
    "DEFAULT_EPS",
    "FVP_COST",
    "MEASURES",
    "SAME_TOLERANCE",
    "TIME_THRESHOLD",
    "VERDICT_MEASURES",
    "add_best_known",
    "build_report",
    "compare",
    "make_figures",
    "performance_profile",
    "run_metrics",
    "separate_configurations",
    "step_diagnostics",
    "summary_tables",
    "write_html",
    "write_tables",
]

DEFAULT_EPS: tuple[float, ...] = (1e-2, 1e-4, 1e-6, 1e-8)
"""Absolute suboptimality targets of the summary tables and profiles."""
FVP_COST = 2
"""Cost of one Fisher-vector product in gradient evaluations (first-order calls and work)."""
MEASURES: dict[str, str] = {
    "time": "time_to_eps",
    "work": "work_to_eps",
    "first_order_calls": "first_order_calls_to_eps",
    "iterations": "iterations_to_eps",
}
"""Cost measures for :func:`performance_profile` and the to-ε tables -> per-run column."""
VERDICT_MEASURES: dict[str, tuple[str, str]] = {
    "iterations": ("iterations_to_eps", "median"),
    "work": ("work_to_eps", "median"),
    "final_suboptimality": ("final_suboptimality", "median"),
    "failed_runs": ("failed", "sum"),
}
"""The deterministic measures :func:`compare` judges (name -> (per-run column at ε,
aggregation over seeds); lower is better): they depend on the code and the seeds, not on
the machine or its load. Adding a measure is one line here."""
SAME_TOLERANCE = 1e-9
""":func:`compare` calls a deterministic measure "same" when ``|B - A| <= 1e-9 * A``
(rounding: deterministic measures reproduce to the last bits on one machine)."""
TIME_THRESHOLD = 1.5
""":func:`compare` judges time-to-ε (same machine only) "worse" above B/A = 1.5 and
"better" below A/B = 1.5: smaller changes are noise on a shared 2-core machine."""
FAILED_STATUSES = ("diverged", "error")
"""Run statuses that count as failed in :func:`compare` (as do runs with any flag)."""

STATUS_ORDER = ("converged", "target", "max_iter", "time_limit", "diverged", "skipped", "error")
PLOT_FLOOR = 1e-16
"""Suboptimalities below this (exact zeros, rounding) are drawn at this value on log axes."""

_KEYS = ["problem", "solver"]
_GROUP = [*_KEYS, "config_id"]
"""A summary row: one problem, one solver label, one configuration (runs differ by seed)."""
_SPREAD = ["median", "q25", "q75"]


# ----------------------------------------------------------------------------- statistics
def _quantile(values, q: float, axis: int = -1) -> np.ndarray | float:
    """Linear-interpolation quantile that ignores NaN and keeps +inf without warnings.

    ``numpy.quantile`` interpolates ``inf - inf`` to NaN (with a warning); here two equal
    neighbours give their value and a finite/inf pair gives inf.
    """
    a = np.moveaxis(np.sort(np.asarray(values, dtype=np.float64), axis=axis), axis, -1)
    if a.shape[-1] == 0:
        return np.full(a.shape[:-1], np.nan)[()]
    n = np.sum(~np.isnan(a), axis=-1)
    h = np.maximum(n - 1, 0) * q
    lo = np.floor(h).astype(np.intp)
    hi = np.ceil(h).astype(np.intp)
    lo_v = np.take_along_axis(a, lo[..., None], axis=-1)[..., 0]
    hi_v = np.take_along_axis(a, hi[..., None], axis=-1)[..., 0]
    with np.errstate(invalid="ignore"):
        out = np.where(lo_v == hi_v, lo_v, lo_v + (h - lo) * (hi_v - lo_v))
    return np.where(n == 0, np.nan, out)[()]


def _spread(groups) -> pd.DataFrame:
    """median, q25, q75 of a SeriesGroupBy (see :func:`_quantile`)."""
    return groups.agg(
        median=lambda s: _quantile(s.to_numpy(), 0.5),
        q25=lambda s: _quantile(s.to_numpy(), 0.25),
        q75=lambda s: _quantile(s.to_numpy(), 0.75),
    )


def _ratio(a, b) -> np.ndarray:
    """b / a with 1 where equal (0/0, inf/inf), inf where a == 0 < b, NaN if either is NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(a == b, 1.0, b / a)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, out)


# ----------------------------------------------------------------------------- 1. reference
def add_best_known(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill suboptimality of non-convex problems from the best loss any run recorded.

    For rows with ``convex == False``::

        F*_best(problem, seed) = min over all rows of that problem and seed with a finite loss
        suboptimality      = loss - F*_best
        rel_suboptimality  = (loss - F*_best) / |F*_best|   (NaN if F*_best == 0)

    The reference is per seed because the run seed draws the train/test split: runs of
    two seeds minimize two different training objectives, and one seed's best loss says
    nothing about the other's. Convex rows keep the exact values written by the runner
    (also per seed). A column ``reference`` is added (or replaced): ``"exact"`` for convex
    problems, ``"best known"`` otherwise. The best-known reference depends on the runs in
    ``frame``: adding a better run changes the suboptimality of every other run of that
    problem and seed.

    Parameters
    ----------
    frame : DataFrame
        Results table following :data:`store.SCHEMA`.

    Returns
    -------
    DataFrame
        A copy with the columns filled.
    """
    out = frame.copy()
    convex = out["convex"].astype(bool)
    loss = out["loss"].astype(np.float64)
    best = loss.where(np.isfinite(loss)).groupby([out["problem"], out["seed"]]).transform("min")
    sub = loss - best
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = sub / best.abs().where(best != 0)
    out["suboptimality"] = out["suboptimality"].where(convex, sub)
    out["rel_suboptimality"] = out["rel_suboptimality"].where(convex, rel)
    out["reference"] = np.where(convex, "exact", "best known")
    return out


def _with_reference(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if "reference" in frame.columns else add_best_known(frame)


def separate_configurations(frame: pd.DataFrame) -> pd.DataFrame:
    """Give every (configuration, code version) of a solver label a label of its own.

    A label used by runs of one ``config_id`` and one ``code_version`` is kept. A label
    used by several gets a suffix naming what differs::

        "kfac [cfg 3f2a1b0c9d8e]"                    several configurations
        "kfac [code 9c8d7e6f5a4b]"                   one configuration, several code versions
        "kfac [cfg 3f2a1b0c9d8e, code 9c8d7e6f5a4b]" both

    so that no table, profile or figure pools them. The suffix is the same on every
    problem, so a label still names one configuration across problems. Idempotent.
    """
    runs = frame.drop_duplicates("run_key")
    spans = runs.groupby("solver")[["config_id", "code_version"]].nunique()
    mixed = spans[(spans > 1).any(axis=1)]
    if mixed.empty:
        return frame
    out = frame.copy()
    for label, (n_configs, n_codes) in mixed.iterrows():
        rows = out["solver"] == label
        parts = []
        if n_configs > 1:
            parts.append("cfg " + out.loc[rows, "config_id"].astype(str))
        if n_codes > 1:
            parts.append("code " + out.loc[rows, "code_version"].astype(str))
        suffix = parts[0] if len(parts) == 1 else parts[0] + ", " + parts[1]
        out.loc[rows, "solver"] = label + " [" + suffix + "]"
    return out


# ----------------------------------------------------------------------------- per-run metrics
def run_metrics(frame: pd.DataFrame, eps: Sequence[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-run numbers every table, profile and asv track_ benchmark is built from.

    Returns ``(runs, crossing)``. ``runs`` (index run_key): problem, solver, seed,
    config_id, code_version, reference, status, final_suboptimality, final_test_metric,
    cost_per_step (optimizer time per step / time of one gradient evaluation) and
    mean_fidelity. ``crossing`` (one row per run and ε): time_to_eps, work_to_eps (gradient
    evaluations including the curvature's construction, see the module doc),
    first_order_calls_to_eps (n_grad + n_loss + 2·n_fvp, curvature excluded) and
    iterations_to_eps at the first iteration with suboptimality ≤ ε, +inf if never, with
    problem, solver, config_id and reference.
    Non-convex problems get the "best known" reference of :func:`add_best_known` first.
    """
    f = _with_reference(frame).sort_values(["run_key", "iteration"], kind="stable")
    calls = f["n_grad"] + f["n_loss"] + FVP_COST * f["n_fvp"]
    curvature = f["n_backprop"] * f["backprop_flops"].astype(np.float64) + f["n_flops"]
    with np.errstate(divide="ignore", invalid="ignore"):
        in_gradients = np.where(
            f["grad_flops"] > 0, curvature / f["grad_flops"], np.where(curvature == 0, 0.0, np.nan)
        )
    f = f.assign(first_order_calls=calls, work=calls + in_gradients)
    by_run = f.groupby("run_key", sort=True)
    last = by_run.tail(1).set_index("run_key").sort_index()
    steps = last["iteration"].where(last["iteration"] > 0).astype(np.float64)
    grad_time = last["grad_time"].where(last["grad_time"] > 0)
    runs = pd.DataFrame(
        {
            "problem": last["problem"],
            "solver": last["solver"],
            "seed": last["seed"],
            "config_id": last["config_id"],
            "code_version": last["code_version"],
            "reference": last["reference"],
            "status": last["status"],
            "final_suboptimality": last["suboptimality"].astype(np.float64),
            "final_test_metric": last["test_metric"].astype(np.float64),
            "cost_per_step": last["time"] / steps / grad_time,
            "mean_fidelity": by_run["fidelity"].mean(),
        }
    )
    pieces = []
    for e in eps:
        hit = f[f["suboptimality"] <= e].groupby("run_key", sort=False).head(1)
        hit = hit.set_index("run_key")
        costs = pd.DataFrame(
            {
                "time_to_eps": hit["time"].astype(np.float64),
                "work_to_eps": hit["work"].astype(np.float64),
                "first_order_calls_to_eps": hit["first_order_calls"].astype(np.float64),
                "iterations_to_eps": hit["iteration"].astype(np.float64),
            }
        ).reindex(runs.index, fill_value=np.inf)  # never reached: +inf; unknown stays NaN
        pieces.append(costs.assign(eps=float(e)))
    crossing = pd.concat(pieces).rename_axis("run_key").reset_index()
    crossing = crossing.merge(runs[[*_GROUP, "reference"]], left_on="run_key", right_index=True)
    return runs, crossing


def _to_eps_table(crossing: pd.DataFrame, column: str) -> pd.DataFrame:
    keys = [*_GROUP, "eps"]
    g = crossing.groupby(keys, sort=True)
    table = _spread(g[column])
    table["reached"] = g[column].agg(lambda s: int(np.isfinite(s.to_numpy()).sum()))
    table["n_runs"] = g.size()
    table["reference"] = g["reference"].first()
    table = table.reset_index()[[*_GROUP, "reference", "eps", *_SPREAD, "reached", "n_runs"]]
    table = table.sort_values(
        ["problem", "eps", "median", "solver"], ascending=[True, False, True, True]
    )
    return table.reset_index(drop=True)


def _final_table(runs: pd.DataFrame, column: str, reference: bool = False) -> pd.DataFrame:
    g = runs.groupby(_GROUP, sort=True)
    table = _spread(g[column])
    table["n_runs"] = g.size()
    cols = [*_GROUP, *_SPREAD, "n_runs"]
    if reference:
        table["reference"] = g["reference"].first()
        cols.insert(len(_GROUP), "reference")
    return table.reset_index()[cols]


def summary_tables(
    frame: pd.DataFrame, eps: Sequence[float] = DEFAULT_EPS
) -> dict[str, pd.DataFrame]:
    """Per (problem, solver, config_id) statistics over seeds.

    Runs are pooled only when they share problem, solver label and ``config_id`` (the
    resolved configuration and budget); labels that several configurations or code
    versions share are told apart first by :func:`separate_configurations`.

    Targets ε are on the *absolute* suboptimality ``loss - F*`` (exact or best known, see
    :func:`add_best_known`, applied here if ``frame`` has no ``reference`` column).
    For each run:

    * time-to-ε: ``time`` at the first recorded iteration with suboptimality ≤ ε
      (seconds inside optimizer steps), ``+inf`` if never reached;
    * work-to-ε: gradient evaluations including the curvature's construction at that
      same iteration (module doc), ``+inf`` if never reached;
    * first-order-calls-to-ε: ``n_grad + n_loss + 2 n_fvp`` at that same iteration (an
      FVP costs about two gradient passes; curvature construction excluded);
    * iterations-to-ε: ``iteration`` at that same row, ``+inf`` if never reached;
    * final suboptimality: at the run's last row;
    * cost per step: ``(final time / final iteration) / grad_time``, in units of one
      full-gradient evaluation (NaN when the run made no step or has no grad_time);
    * fidelity: mean over the run's recorded iterations (NaN if none recorded);
    * test metric: at the run's last row (accuracy, or MSE for the autoencoder).

    These are summarized over the runs of a (problem, solver) by the median and the
    interquartile range ``q25``/``q75`` (linear interpolation, NaN ignored; ``+inf`` kept,
    so the median is ``+inf`` when more than half the runs never reach ε).

    Parameters
    ----------
    frame : DataFrame
        Results table following :data:`store.SCHEMA`.
    eps : sequence of float
        Absolute suboptimality targets.

    Returns
    -------
    dict of str to DataFrame
        ``time_to_eps``, ``work_to_eps``, ``first_order_calls_to_eps``,
        ``iterations_to_eps`` (columns problem, solver, config_id, reference, eps, median,
        q25, q75, reached = runs that reached ε, n_runs); ``final_suboptimality`` (with
        reference), ``cost_per_step``, ``fidelity``, ``test_metric`` (columns problem,
        solver, config_id, median, q25, q75, n_runs); and ``status`` (problem, solver,
        config_id, n_runs and the number of runs per status).
    """
    frame = separate_configurations(frame)
    runs, crossing = run_metrics(frame, eps)
    tables = {name: _to_eps_table(crossing, name) for name in MEASURES.values()}
    tables["final_suboptimality"] = _final_table(runs, "final_suboptimality", reference=True)
    tables["cost_per_step"] = _final_table(runs, "cost_per_step")
    tables["fidelity"] = _final_table(runs, "mean_fidelity")
    tables["test_metric"] = _final_table(runs, "final_test_metric")
    counts = runs.groupby([*_GROUP, "status"]).size().unstack("status", fill_value=0)
    order = [s for s in STATUS_ORDER if s in counts.columns]
    order += sorted(c for c in counts.columns if c not in STATUS_ORDER)
    counts = counts[order].astype(np.int64)
    counts.columns.name = None
    counts.insert(0, "n_runs", counts.sum(axis=1))
    diagnostics = step_diagnostics(frame)
    tables["status"] = counts.reset_index().merge(diagnostics[[*_KEYS, "flagged"]], on=_KEYS)
    tables["step_diagnostics"] = diagnostics
    return tables


def _last_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The last recorded row of every run, indexed by run_key."""
    f = frame.sort_values(["run_key", "iteration"], kind="stable")
    return f.groupby("run_key", sort=True).tail(1).set_index("run_key")


def step_diagnostics(frame: pd.DataFrame) -> pd.DataFrame:
    """What the steps of each (problem, solver) went through, summed over its runs.

    From the runner's per-run counts of the per-step ``step_status``::

        steps      = sum over runs of the final iteration (steps attempted)
        rejected   = sum of n_rejected   (steps not taken: rejected, no descent, ...)
        cg_capped  = sum of n_cg_capped  (CG solves stopped at their iteration cap)
        fallbacks  = sum of n_fallbacks  (solves that fell back to jitter or pinv)
        flagged    = runs with any flag  (loss ended above its start, mostly rejected)
        flags      = each flag with its number of runs, e.g. "loss_increased x2"

    Returns
    -------
    DataFrame
        Columns problem, solver, n_runs, steps, rejected, cg_capped, fallbacks, flagged,
        flags; one row per (problem, solver).
    """
    last = _last_rows(frame)
    g = last.groupby(_KEYS, sort=True)
    table = g.agg(
        n_runs=("iteration", "size"),
        steps=("iteration", "sum"),
        rejected=("n_rejected", "sum"),
        cg_capped=("n_cg_capped", "sum"),
        fallbacks=("n_fallbacks", "sum"),
        flagged=("flags", lambda s: int((s != "").sum())),
        flags=("flags", _count_flags),
    )
    return table.reset_index()


def _count_flags(flags: pd.Series) -> str:
    counts = flags[flags != ""].str.split(";").explode().value_counts()
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))


# ----------------------------------------------------------------------------- 3. profiles
def _median_cost(frame: pd.DataFrame, eps: float, measure: str) -> pd.DataFrame:
    """problem x solver matrix of the median (over seeds) cost to reach ε (+inf if not)."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {list(MEASURES)}, got {measure!r}.")
    _, crossing = run_metrics(frame, (eps,))
    med = _spread(crossing.groupby(_KEYS)[MEASURES[measure]])["median"]
    solvers = sorted(frame["solver"].unique())
    return med.unstack("solver").reindex(columns=solvers).fillna(np.inf)


def performance_profile(
    frame: pd.DataFrame, eps: float, measure: str = "time", n_tau: int = 100
) -> pd.DataFrame:
    """Dolan–Moré performance profiles of the solvers across the problems.

    For problem p and solver s let ``c[p, s]`` be the median over seeds of the cost to
    reach absolute suboptimality ε (``+inf`` if the median run never reaches it, or if s
    has no run on p). The performance ratio is::

        r[p, s] = c[p, s] / min_s' c[p, s']     (= 1 if c[p, s] equals that minimum,
                                                 +inf if c[p, s] = +inf)

    and the profile is ``rho_s(tau) = |{p : r[p, s] <= tau}| / |P|`` over all problems P
    in ``frame``. rho_s(1) is the fraction of problems on which s is (jointly) fastest;
    rho_s(tau) for large tau the fraction s solves at all.

    Parameters
    ----------
    frame : DataFrame
        Results table following :data:`store.SCHEMA`.
    eps : float
        Absolute suboptimality target.
    measure : {"time", "work", "first_order_calls", "iterations"}
        Cost measure (see :func:`summary_tables`).
    n_tau : int
        Number of log-spaced tau values from 1 to the largest finite ratio; every finite
        ratio is added to the grid, so the step function is exact at its jumps.

    Returns
    -------
    DataFrame
        Tidy columns ``solver``, ``tau``, ``fraction``, sorted by solver and tau.
        ``attrs`` holds ``eps``, ``measure`` and ``n_problems``.
    """
    cost = _median_cost(_with_reference(separate_configurations(frame)), eps, measure)
    c = cost.to_numpy(dtype=np.float64)
    if c.size == 0:
        out = pd.DataFrame({"solver": [], "tau": [], "fraction": []})
        out.attrs.update(eps=float(eps), measure=measure, n_problems=len(cost))
        return out
    best = c.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(c == best, 1.0, c / best)
    r = np.where(np.isinf(c), np.inf, r)
    finite = r[np.isfinite(r)]
    tau_max = max(float(finite.max()), 1.0) if finite.size else 1.0
    grid = np.unique(np.concatenate([np.geomspace(1.0, tau_max, max(n_tau, 1)), finite]))
    fraction = (r[:, :, None] <= grid[None, None, :]).mean(axis=0)
    out = pd.DataFrame(
        {
            "solver": np.repeat(cost.columns.to_numpy(dtype=object), grid.size),
            "tau": np.tile(grid, c.shape[1]),
            "fraction": fraction.ravel(),
        }
    )
    out.attrs.update(eps=float(eps), measure=measure, n_problems=len(cost))
    return out


# ----------------------------------------------------------------------------- 4. tables
def _fmt_number(value, inf: str, nan: str) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return nan
        if np.isinf(value):
            return inf if value > 0 else f"-{inf}"
        return f"{value:.4g}"
    return str(value)


def _cells(table: pd.DataFrame, inf: str, nan: str, escape=lambda s: s) -> pd.DataFrame:
    """The table as strings: numbers with 4 significant digits, ±inf / NaN symbolic."""
    out = {}
    for col in table.columns:
        if pd.api.types.is_numeric_dtype(table[col]) and not pd.api.types.is_bool_dtype(table[col]):
            out[col] = table[col].map(lambda v: _fmt_number(v, inf, nan))
        else:
            out[col] = table[col].map(lambda v: escape(_fmt_number(v, inf, nan)))
    return pd.DataFrame(out, index=table.index, columns=table.columns)


def _prov_items(prov: Mapping) -> list[tuple[str, str]]:
    """(key, value) pairs with nested values as compact JSON, one line each."""
    items = []
    for key, value in prov.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        items.append((str(key), " ".join(str(text).splitlines())))
    return items


def _numeric_columns(table: pd.DataFrame) -> list[bool]:
    return [
        pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
        for c in table.columns
    ]


def _markdown(table: pd.DataFrame, prov: Mapping, title: str) -> str:
    """GitHub-flavoured Markdown table; +inf as ∞, NaN as –; provenance in an HTML comment."""

    def esc(s: str) -> str:
        return s.replace("|", r"\|")

    cells = _cells(table, "∞", "–", esc)
    numeric = _numeric_columns(table)
    lines = ["<!--", "provenance:"]
    lines += [f"  {k}: {v}".replace("--", "- -") for k, v in _prov_items(prov)]
    lines += ["-->", "", f"**{title}**", ""]
    lines.append("| " + " | ".join(esc(str(c)) for c in table.columns) + " |")
    lines.append("|" + "|".join("---:" if n else ":---" for n in numeric) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False, name=None)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex(table: pd.DataFrame, prov: Mapping, title: str) -> str:
    r"""booktabs tabular; +inf as $\infty$, NaN as --; provenance in % comments."""
    cells = _cells(table, r"$\infty$", "--", _latex_escape)
    align = "".join("r" if n else "l" for n in _numeric_columns(table))
    lines = [f"% {title}", "% requires \\usepackage{booktabs}", "% provenance:"]
    lines += [f"% {k}: {v}" for k, v in _prov_items(prov)]
    lines += [f"\\begin{{tabular}}{{{align}}}", r"\toprule"]
    lines.append(" & ".join(_latex_escape(str(c)) for c in table.columns) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(row) + r" \\" for row in cells.itertuples(index=False, name=None)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_tables(
    tables: Mapping[str, pd.DataFrame], out_dir: str | Path, provenance_dict: Mapping
) -> list[Path]:
    """Write every table as CSV, Markdown and LaTeX (booktabs).

    Each file starts with the provenance record: ``# key: value`` lines in the CSV (read
    it back with ``pandas.read_csv(path, comment="#")``), an HTML comment in the Markdown,
    ``% key: value`` lines in the LaTeX. Nested values are written as compact JSON.
    Markdown shows +inf as ``∞`` and NaN as ``–``; LaTeX as ``$\\infty$`` and ``--``; the
    CSV keeps full precision (``inf``, empty for NaN). Files are UTF-8. A file whose bytes
    would not change is left alone; tables of an earlier report are removed by
    :func:`build_report`.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        As returned by :func:`summary_tables`; the keys become file names.
    out_dir : path
        Created if missing.
    provenance_dict : mapping
        JSON-serializable record of what the tables summarize (no date: a record that
        changes on every call would rewrite every file).

    Returns
    -------
    list of Path
        The files of the tables, written or already up to date.
    """
    out_dir = Path(out_dir)
    items = _prov_items(provenance_dict)
    files = {}
    for name, table in tables.items():
        title = _TABLE_TITLES.get(name, name)
        header = f"# {title}\n" + "".join(f"# {k}: {v}\n" for k, v in items)
        files[f"{name}.csv"] = header + table.to_csv(index=False)
        files[f"{name}.md"] = _markdown(table, provenance_dict, title)
        files[f"{name}.tex"] = _latex(table, provenance_dict, title)
    return _write_folder(out_dir, {k: v.encode("utf-8") for k, v in files.items()})


def _write_folder(out_dir: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` (name -> bytes) with :func:`store.write_if_changed`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        write_if_changed(out_dir / name, data)
        paths.append(out_dir / name)
    return paths


_TABLE_TITLES = {
    "time_to_eps": "Time to reach suboptimality <= eps (seconds in optimizer steps)",
    "work_to_eps": (
        "Work to reach suboptimality <= eps, in gradient evaluations "
        "(first-order calls + curvature construction)"
    ),
    "first_order_calls_to_eps": (
        "First-order calls to reach suboptimality <= eps (n_grad + n_loss + 2 n_fvp; "
        "curvature construction excluded)"
    ),
    "iterations_to_eps": "Iterations to reach suboptimality <= eps",
    "final_suboptimality": "Suboptimality at the last recorded iteration",
    "cost_per_step": "Cost per step in full-gradient evaluations ((time / iterations) / grad_time)",
    "fidelity": "Mean fidelity over the run: cosine(step, exact natural-gradient direction)",
    "test_metric": "Final test metric (accuracy; MSE for the autoencoder)",
    "status": "Number of runs per final status (flagged: runs with any flag)",
    "step_diagnostics": "Steps not taken, CG solves at their cap, solve fallbacks; flagged runs",
}


# ----------------------------------------------------------------------------- 5. figures
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "unnamed"


def _iteration_curves(group: pd.DataFrame, column: str, carry: bool):
    """Iteration grid and the (n_iter, n_runs) values; carried forward after a run ends."""
    g = group.drop_duplicates(["run_key", "iteration"], keep="last")
    wide = g.pivot(index="iteration", columns="run_key", values=column)
    wide = wide.reindex(np.arange(int(wide.index.max()) + 1))
    if carry:
        wide = wide.ffill()
    return wide.index.to_numpy(), wide.to_numpy(dtype=np.float64)


def _time_curves(group: pd.DataFrame, column: str, n_grid: int = 200):
    """Log-spaced time grid and (n_grid, n_runs) step-interpolated (previous-value) values."""
    t = group["time"].to_numpy(dtype=np.float64)
    positive = t[np.isfinite(t) & (t > 0)]
    if positive.size == 0:
        return None, None
    lo, hi = positive.min(), positive.max()
    grid = np.geomspace(lo, hi, n_grid) if hi > lo else np.array([lo])
    columns = []
    for _, run in group.sort_values(["run_key", "iteration"]).groupby("run_key", sort=True):
        times = run["time"].to_numpy(dtype=np.float64)
        vals = run[column].to_numpy(dtype=np.float64)
        idx = np.searchsorted(times, grid, side="right") - 1
        columns.append(np.where(idx >= 0, vals[np.maximum(idx, 0)], np.nan))
    return grid, np.column_stack(columns)


def _band(ax, x, values, color, label, floor=None):
    med, q25, q75 = (_quantile(values, q, axis=1) for q in (0.5, 0.25, 0.75))
    if floor is not None:
        med, q25, q75 = (np.maximum(v, floor) for v in (med, q25, q75))
    ax.plot(x, med, drawstyle="steps-post", color=color, label=label, lw=1.4)
    ax.fill_between(x, q25, q75, step="post", color=color, alpha=0.18, lw=0)
    return np.any(np.isfinite(med) & (med > 0))


def make_figures(
    frame: pd.DataFrame,
    out_dir: str | Path,
    eps: Sequence[float] = DEFAULT_EPS,
    provenance_dict: Mapping | None = None,
    dpi: int = 110,
) -> list[Path]:
    """Convergence, performance-profile and fidelity figures, each as PNG and PDF.

    * ``suboptimality_<problem>``: suboptimality (exact or best known, log scale) against
      iteration (left) and optimizer time (right, log scale). Per solver: the median over
      seeds (line) and the interquartile band. Curves are put on a common grid first: every
      iteration from 0 to the solver's last one, values carried forward after a run ends
      (e.g. on reaching the target); on a log-spaced time grid each run takes the value of
      its last record at or before that time (step interpolation). Values below
      :data:`PLOT_FLOOR` are drawn at it.
    * ``performance_profiles``: :func:`performance_profile` for time and work
      (rows) at each ε (columns), as step plots.
    * ``fidelity``: median and IQR over seeds of the per-iteration fidelity, one panel per
      problem that recorded any (no carrying forward).

    One color per solver throughout. Uses matplotlib's Agg backend; figures are closed.
    The files carry no creation date, and a file whose bytes would not change is not
    rewritten; figures of an earlier report are removed by :func:`build_report`.

    Parameters
    ----------
    frame : DataFrame
        Results table following :data:`store.SCHEMA`.
    out_dir : path
        Created if missing.
    eps : sequence of float
        Targets of the performance profiles.
    provenance_dict : mapping, optional
        Stored in the PNG "Description" and PDF "Subject" metadata when given.
    dpi : int
        Resolution of the PNGs.

    Returns
    -------
    list of Path
        The figure files, PNG then PDF for each figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    f = _with_reference(separate_configurations(frame))
    f = f.sort_values(["run_key", "iteration"], kind="stable")
    solvers = sorted(f["solver"].unique())
    palette = sns.color_palette("tab10" if len(solvers) <= 10 else "husl", len(solvers))
    colors = dict(zip(solvers, palette))
    stamp = (
        json.dumps(dict(provenance_dict), sort_keys=True, default=str) if provenance_dict else ""
    )
    files: dict[str, bytes] = {}

    def save(fig, stem):
        # no creation date in the PDF, so an unchanged figure has unchanged bytes
        for ext, key, meta in (
            ("png", "Description", {}),
            ("pdf", "Subject", {"CreationDate": None}),
        ):
            if stamp:
                meta[key] = stamp
            buffer = io.BytesIO()
            fig.savefig(buffer, format=ext, dpi=dpi, bbox_inches="tight", metadata=meta)
            files[f"{stem}.{ext}"] = buffer.getvalue()
        plt.close(fig)

    style = {"axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8}
    with sns.axes_style("whitegrid"), plt.rc_context(style):
        for problem, pf in f.groupby("problem", sort=True):
            fig, (ax_it, ax_t) = plt.subplots(1, 2, figsize=(10, 3.8))
            positive = False
            for solver, sf in pf.groupby("solver", sort=True):
                x, v = _iteration_curves(sf, "suboptimality", carry=True)
                positive |= _band(ax_it, x, v, colors[solver], solver, PLOT_FLOOR)
                grid, v = _time_curves(sf, "suboptimality")
                if grid is not None:
                    _band(ax_t, grid, v, colors[solver], solver, PLOT_FLOOR)
            reference = pf["reference"].iloc[0]
            for ax, xlabel in ((ax_it, "iteration"), (ax_t, "time in optimizer steps [s]")):
                ax.set_xlabel(xlabel)
                if positive:
                    ax.set_yscale("log")
            if ax_t.has_data():
                ax_t.set_xscale("log")
            ax_it.set_ylabel(f"suboptimality ({reference})")
            ax_it.legend(loc="best", frameon=True)
            fig.suptitle(f"{problem} — median over seeds, band = IQR", fontsize=10)
            save(fig, f"suboptimality_{_slug(problem)}")

        measures = ("time", "work")
        fig, axes = plt.subplots(
            len(measures), len(eps), figsize=(3.2 * len(eps), 5.6), squeeze=False
        )
        for i, measure in enumerate(measures):
            for j, e in enumerate(eps):
                ax = axes[i, j]
                prof = performance_profile(f, e, measure)
                # carry each profile a little past the largest ratio so its last jump shows
                tau_end = 1.25 * float(prof["tau"].max()) if len(prof) else 1.25
                for solver, sp in prof.groupby("solver", sort=True):
                    ax.step(
                        np.append(sp["tau"].to_numpy(), tau_end),
                        np.append(sp["fraction"].to_numpy(), sp["fraction"].iloc[-1]),
                        where="post",
                        color=colors[solver],
                        label=solver,
                        lw=1.4,
                    )
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_ylim(-0.03, 1.03)
                ax.set_title(f"{measure.replace('_', ' ')}, ε = {e:g}")
                ax.set_xlabel("τ (ratio to best solver)")
                if j == 0:
                    ax.set_ylabel("fraction of problems")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", frameon=False)
        fig.tight_layout(rect=(0, 0, 0.88, 1))
        save(fig, "performance_profiles")

        with_fid = [p for p, pf in f.groupby("problem", sort=True) if pf["fidelity"].notna().any()]
        if with_fid:
            ncol = min(3, len(with_fid))
            nrow = -(-len(with_fid) // ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
            for ax, problem in zip(axes.ravel(), with_fid):
                pf = f[f["problem"] == problem]
                for solver, sf in pf.groupby("solver", sort=True):
                    if sf["fidelity"].notna().any():
                        x, v = _iteration_curves(sf, "fidelity", carry=False)
                        _band(ax, x, v, colors[solver], solver)
                ax.set_title(problem)
                ax.set_xlabel("iteration")
                ax.set_ylabel("fidelity (cosine)")
                ax.set_ylim(top=1.05)
                ax.legend(loc="best", frameon=True)
            for ax in axes.ravel()[len(with_fid) :]:
                ax.set_visible(False)
            fig.tight_layout()
            save(fig, "fidelity")
    return _write_folder(Path(out_dir), files)


# ----------------------------------------------------------------------------- 6. HTML
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1150px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0 1.4em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #e3e3e3; text-align: right; }
th { background: #f3f3f3; } td:first-child, td:nth-child(2) { text-align: left; }
table.provenance td { text-align: left; font-family: monospace; word-break: break-all; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.note { background: #f7f7f2; border-left: 4px solid #bbb; padding: 0.6em 1em; }
code { font-size: 0.95em; }
"""

_HOW_TO_READ = """
<p><b>Suboptimality</b> is <code>loss &minus; F*</code> on the full training objective. For
convex problems (logistic regression) <code>F*</code> is the exact optimum (reference
&ldquo;exact&rdquo;); for non-convex problems it is the lowest loss recorded by any run of that
problem in these results (reference &ldquo;best known&rdquo;), so those numbers can change when
runs are added.</p>
<p><b>&epsilon;</b> is a target on the <em>absolute</em> suboptimality. A run reaches &epsilon;
at its first recorded iteration with suboptimality &le; &epsilon;; <b>time-to-&epsilon;</b> is
the optimizer time (seconds inside steps, evaluation excluded) at that iteration and is
&infin; when the run never gets there (failed and skipped runs included).</p>
<p><b>Work</b> is counted in gradient evaluations and includes building the curvature:
<code>n_grad + n_loss + 2&middot;n_fvp + (n_backprop&middot;backprop_flops + n_flops) /
grad_flops</code> &mdash; output columns pulled back through the network and the flops of
Gram builds, factorizations and solves, divided by the flops of one gradient.
<b>First-order calls</b> are <code>n_grad + n_loss + 2&middot;n_fvp</code> alone: they leave
curvature construction out, so a dense or K-FAC step looks almost free in them.
<b>Cost per step</b> is the mean time of one step divided by the time of one full gradient
evaluation in the same run, i.e. in units of gradient evaluations.</p>
<p>Tables give the <b>median</b> over seeds and the interquartile range <b>q25&ndash;q75</b>;
a median of &infin; means more than half of the seeds never reached &epsilon;.
<b>Performance profiles</b> (Dolan&ndash;Mor&eacute;): for each problem the median cost of a
solver is divided by the best solver's; the curve at &tau; is the fraction of problems on which
the solver is within a factor &tau; of the best. Its value at &tau;&nbsp;=&nbsp;1 is how often
the solver is fastest, its right end how often it reaches &epsilon; at all; higher is better.
<b>Fidelity</b> is the cosine between the step taken and the exact natural-gradient direction
(recorded only for small problems).</p>
<p><b>Seeds</b> draw the train/test split, so the spread over seeds is statistical spread.
<b>Step diagnostics</b> sum over runs the steps not taken, the CG solves stopped at their cap
and the jitter / pseudo-inverse fallbacks; a run is <b>flagged</b> when its loss ended above
its start or more than half of its steps were not taken, which its final status alone (e.g.
max_iter) would hide.</p>
"""

_FIGURE_CAPTIONS = {
    "suboptimality": (
        "Suboptimality of {name} against iterations (left) and optimizer time (right), log "
        "scale. Line: median over seeds; band: interquartile range. Runs that stopped early "
        "keep their last value; on the time axis each run takes its last value recorded at "
        "or before that time."
    ),
    "performance_profiles": (
        "Dolan–Moré performance profiles across problems: fraction of problems on which a "
        "solver's median cost to reach ε is within a factor τ of the best solver's. Top: "
        "time; bottom: work (gradient evaluations including curvature construction). Higher and "
        "further left is better."
    ),
    "fidelity": (
        "Fidelity (cosine between the step and the exact natural-gradient direction) per "
        "iteration: median over seeds and interquartile band; only problems where it was "
        "recorded."
    ),
}


def _caption(stem: str) -> str:
    if stem.startswith("suboptimality_"):
        return _FIGURE_CAPTIONS["suboptimality"].format(name=stem[len("suboptimality_") :])
    return _FIGURE_CAPTIONS.get(stem, stem)


def write_html(
    out_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    figure_paths: Iterable[str | Path],
    provenance_dict: Mapping,
) -> Path:
    """Write a self-contained ``index.html`` into ``out_dir``.

    Everything is inline: the CSS, and every PNG among ``figure_paths`` as a base64
    ``data:image/png;base64,...`` URI (PDFs are only named in the captions). There is no
    JavaScript and no external URL, so the file opens offline and can be moved alone.
    Sections: title, provenance, "how to read this", tables (+inf shown as ∞), figures.
    When the results hold several configurations, a note says that they are summarized
    separately. The file is rewritten only when its bytes change.

    Parameters
    ----------
    out_dir : path
        Created if missing.
    tables : mapping of str to DataFrame
        As returned by :func:`summary_tables`.
    figure_paths : iterable of path
        As returned by :func:`make_figures`.
    provenance_dict : mapping
        What the results summarize (:func:`build_report`'s record); shown as a key/value
        table.

    Returns
    -------
    Path
        ``out_dir / "index.html"``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_paths = [Path(p) for p in figure_paths]
    pdfs = {p.stem: p.name for p in figure_paths if p.suffix.lower() == ".pdf"}
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>natgrad benchmark report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>natgrad benchmark report</h1>",
        "<h2>Provenance</h2>",
        '<table class="provenance">',
    ]
    parts += [
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _prov_items(provenance_dict)
    ]
    parts.append("</table>")
    parts.append(
        '<p class="note">Every run stores its own record in <code>runs/&lt;run_key&gt;.json'
        "</code>; the date and host of this report are in <code>tables/provenance.json"
        "</code>.</p>"
    )
    separated = provenance_dict.get("separated_labels", [])
    if separated:
        parts.append(
            '<p class="note">Some solver labels were used by several configurations or code '
            f"versions; their runs are summarized separately, as <code>"
            f"{esc(', '.join(separated))}</code>. Runs of different configurations are "
            "never pooled: every table row is one (problem, solver, config_id), and the "
            "configurations are listed above by config_id.</p>"
        )
    parts += ["<h2>How to read this</h2>", f'<div class="note">{_HOW_TO_READ}</div>']
    parts.append("<h2>Tables</h2>")
    for name, table in tables.items():
        parts.append(f"<h3>{esc(_TABLE_TITLES.get(name, name))}</h3>")
        parts.append(
            _cells(table, "∞", "–").to_html(index=False, border=0, escape=True, classes="data")
        )
    parts.append("<h2>Figures</h2>")
    for path in figure_paths:
        if path.suffix.lower() != ".png":
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = esc(_caption(path.stem))
        if path.stem in pdfs:
            caption += f" (PDF: <code>{esc(pdfs[path.stem])}</code>)"
        parts.append(
            f'<figure><img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    parts.append("</body></html>")
    index = out_dir / "index.html"
    write_if_changed(index, ("\n".join(parts) + "\n").encode("utf-8"))
    return index


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


def build_report(
    frame: pd.DataFrame,
    out_dir: str | Path,
    config=None,
    eps: Sequence[float] = DEFAULT_EPS,
    records: Mapping[str, Mapping] | None = None,
    refresh: bool = False,
) -> Path:
    """Tables, figures and ``index.html`` for a results table.

    Steps: :func:`separate_configurations`, :func:`add_best_known`, :func:`summary_tables`,
    :func:`write_tables` into ``out_dir/tables``, :func:`make_figures` into
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
        Absolute suboptimality targets.
    records : mapping of str to mapping, optional
        Run records by run key (``ResultsStore.records()``).
    refresh : bool
        Rewrite ``provenance.json`` even if the record is unchanged.

    Returns
    -------
    Path
        The ``index.html``.
    """
    out_dir = Path(out_dir)
    separated = separate_configurations(frame)
    record = _results_record(separated, records or {})
    relabelled = sorted(set(separated["solver"]) - set(frame["solver"]))
    if relabelled:
        record["separated_labels"] = relabelled
    frame = add_best_known(separated)
    tables = summary_tables(frame, eps)
    table_files = write_tables(tables, out_dir / "tables", record)
    figures = make_figures(frame, out_dir / "figures", eps, provenance_dict=record)
    index = write_html(out_dir, tables, figures, record)
    volatile = out_dir / "tables" / "provenance.json"
    stored = json.loads(volatile.read_text(encoding="utf-8")) if volatile.is_file() else {}
    if refresh or stored.get("results") != json.loads(json.dumps(record, default=str)):
        prov = {**provenance(config), "results": record}
        text = json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n"
        write_if_changed(volatile, text.encode("utf-8"))
    ResultsStore(out_dir).replace_report_files([*table_files, *figures, index, volatile])
    return index


# ----------------------------------------------------------------------------- 8. compare
def compare(
    frame_a: pd.DataFrame,
    frame_b: pd.DataFrame,
    eps: float = 1e-6,
    tolerance: float = SAME_TOLERANCE,
    time_threshold: float = TIME_THRESHOLD,
) -> pd.DataFrame:
    """Compare two result sets (A = before, B = after) per (problem, solver) in both.

    Non-convex problems get a common best-known reference: :func:`add_best_known` is
    applied to A and B together, so both are measured against the same ``F*``.
    For each (problem, solver) present in both, per side, over its seeds:

    * the deterministic measures of :data:`VERDICT_MEASURES`: median iterations-to-ε,
      median work-to-ε (curvature included), median final suboptimality (floored at ε: below the
      target every value is "reached", and rounding differences there are no change),
      and the number of failed runs (status in :data:`FAILED_STATUSES`, or flagged);
    * median time-to-ε (seconds inside optimizer steps).

    Each measure gets the ratio B/A (1 when equal, including inf/inf and 0/0; inf when
    A = 0 < B) and a judgement, lower being better::

        deterministic measure:  "worse" if B/A > 1 + tolerance, "better" if B/A < 1 - tolerance
        time:                   "worse" if B/A > time_threshold, "better" if A/B > time_threshold,
                                judged only when every run of the row on both sides ran on
                                one and the same machine (column ``machine``)

    The row's verdict is "worse" if any measure got worse, else "better" if any got
    better, else "unknown" if no ratio is defined (e.g. every run failed on both sides),
    else "same". Problems and solvers are matched by their labels (``problem``,
    ``solver``), not by hyperparameters: relabel configurations whose ``params`` changed.

    Warns (``UserWarning``) when time could not be judged for some rows because they ran
    on different machines.

    Parameters
    ----------
    frame_a, frame_b : DataFrame
        Results tables following :data:`store.SCHEMA`.
    eps : float
        Absolute suboptimality target.
    tolerance : float
        Relative change of a deterministic measure still called "same" (default 1e-9).
    time_threshold : float
        Ratio of times (> 1) beyond which time counts as changed (default 1.5).

    Returns
    -------
    DataFrame
        Columns problem, solver, then ``<m>_a``, ``<m>_b``, ``<m>_ratio`` for every
        measure m of :data:`VERDICT_MEASURES` and ``time``; ``time_judged`` (same
        machine); ``worse`` and ``better`` (the measures that changed, comma-separated);
        ``verdict``. Sorted worse, better, unknown, same, then by problem and solver.

    Raises
    ------
    ValueError
        If ``eps`` is not > 0, ``tolerance`` not >= 0, ``time_threshold`` not > 1, or no
        (problem, solver) appears in both A and B.
    """
    if not (eps > 0 and tolerance >= 0 and time_threshold > 1):
        raise ValueError(
            "compare needs eps > 0, tolerance >= 0 and time_threshold > 1; got "
            f"eps={eps!r}, tolerance={tolerance!r}, time_threshold={time_threshold!r}."
        )
    pairs = [set(zip(f["problem"], f["solver"])) for f in (frame_a, frame_b)]
    if not pairs[0] & pairs[1]:

        def some(pairs):
            names = [f"{p}/{s}" for p, s in sorted(pairs)]
            return f"{len(names)} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"

        raise ValueError(
            "the two result sets have no (problem, solver) in common: "
            f"A has {some(pairs[0])}, B has {some(pairs[1])}."
        )
    both = pd.concat(
        [frame_a.assign(_side="a"), frame_b.assign(_side="b")], ignore_index=True
    ).drop(columns=["reference"], errors="ignore")
    both = add_best_known(both)
    sides = {side: _compare_side(part, eps) for side, part in both.groupby("_side")}
    a, b = sides["a"].align(sides["b"], join="inner", axis=0)
    out = pd.DataFrame(index=a.index)
    judged = {}
    for name in [*VERDICT_MEASURES, "time"]:
        out[f"{name}_a"], out[f"{name}_b"] = a[name], b[name]
        ratio = _ratio(a[name], b[name])
        out[f"{name}_ratio"] = ratio
        limit = time_threshold if name == "time" else 1 + tolerance
        low = 1 / time_threshold if name == "time" else 1 - tolerance
        judged[name] = np.select(
            [ratio > limit, ratio < low, np.isnan(ratio)], ["worse", "better", "unknown"], "same"
        )
    out["time_judged"] = (a["machine"] == b["machine"]) & (a["machine"] != _MIXED)
    judged["time"] = np.where(out["time_judged"], judged["time"], "unknown")
    states = pd.DataFrame(judged, index=out.index)
    for state in ("worse", "better"):
        out[state] = states.apply(lambda r, s=state: ", ".join(r.index[r == s]), axis=1)
    out["verdict"] = np.select(
        [out["worse"] != "", out["better"] != "", (states == "unknown").all(axis=1)],
        ["worse", "better", "unknown"],
        "same",
    )
    untimed = int((~out["time_judged"]).sum())
    if untimed:
        warnings.warn(
            f"time not judged for {untimed} of {len(out)} rows: they ran on different "
            f"machines (A: {_machines(frame_a)}, B: {_machines(frame_b)}); the verdict "
            "rests on the deterministic measures only.",
            UserWarning,
            stacklevel=2,
        )
    order = {"worse": 0, "better": 1, "unknown": 2, "same": 3}
    out = out.reset_index().sort_values(
        ["verdict", "problem", "solver"], key=lambda c: c.map(order) if c.name == "verdict" else c
    )
    return out.reset_index(drop=True)


_MIXED = "(several)"


def _machines(frame: pd.DataFrame) -> str:
    return ", ".join(sorted(frame["machine"].unique()))


def _compare_side(frame: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Per (problem, solver): the aggregated measures of :func:`compare` and the machine
    every run ran on (``_MIXED`` if several)."""
    frame = separate_configurations(frame.drop(columns="_side"))
    runs, crossing = run_metrics(frame, (eps,))
    last = _last_rows(frame)
    per_run = runs.join(crossing.set_index("run_key").drop(columns=[*_GROUP, "reference"]))
    per_run["final_suboptimality"] = per_run["final_suboptimality"].clip(lower=eps)
    failed = per_run["status"].isin(FAILED_STATUSES) | (last["flags"] != "")
    per_run["failed"] = failed.astype(np.float64)
    per_run["machine"] = last["machine"]
    g = per_run.groupby(_KEYS, sort=True)
    out = {
        name: g[column].agg(lambda s: _quantile(s.to_numpy(), 0.5))
        if how == "median"
        else g[column].sum()
        for name, (column, how) in {**VERDICT_MEASURES, "time": ("time_to_eps", "median")}.items()
    }
    out["machine"] = g["machine"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else _MIXED)
    return pd.DataFrame(out)

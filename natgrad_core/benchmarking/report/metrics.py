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
    runner (column ``reference`` = ``"exact optimum"``); for non-convex problems
    :func:`add_best_known` sets ``F*`` to the lowest finite loss recorded by *any* run of
    that problem in the table (``reference`` = ``"best known"``), so those numbers are
    relative to the table they were computed from. Written tables call the column
    ``F*`` (:mod:`.tables`): "exact" alone would be read as the solver label "exact".
ε-targets
    Absolute suboptimality thresholds (not relative ones): a run reaches ε at its first
    recorded iteration with ``suboptimality <= ε``. A run that never does (including
    skipped and failed runs) has cost ``+inf`` to reach ε.
training-loss target
    The headline of mini-batch runs (:func:`to_target`): a run reaches it at its first
    recorded row with ``loss - F* <= target_gap * (L0 - F*)``, ``L0`` its loss at
    iteration 0; relative to the run's own start, unlike ε. :func:`findings` turns the
    table into sentences comparing natural gradient with the best tuned baseline.
tuned labels
    The tuning protocol (:mod:`..tuning`) reports ``"<label> (tuned)"`` with a
    configuration selected per problem and ``"<label> (default)"``, its start; a label
    with one configuration per problem is one label (:func:`separate_configurations`).
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

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ...optim import PRECONDITIONERS, SOLVERS
from ...optim.base import budget_grid
from ..store import not_applicable
from ..tuning import DEFAULT_SUFFIX, TUNED_SUFFIX

DEFAULT_EPS: tuple[float, ...] = (1e-2, 1e-4, 1e-6, 1e-8)
"""Absolute suboptimality targets of the summary tables and profiles."""
HEADLINE_EPS = 1e-6
"""ε of the headline tables (:func:`headline`). On the committed quick suite, the median
run of 23 of the 36 (convex problem, solver) cells reaches 1e-6, the same cells as at
1e-4 (22 at 1e-8): the tighter target costs no cell and separates the solvers by how fast
they get precise. On the non-convex problems (F* = best known) 3 of 18 cells reach 1e-6
against 7 of 18 at 1e-4; the table shows the others as "—" with how many seeds did."""
EXACT_OPTIMUM = "exact optimum"
"""Value of the ``reference`` column for problems whose F* is the computed exact optimum."""
BEST_KNOWN = "best known"
"""Value of the ``reference`` column for problems whose F* is the lowest loss recorded."""
LONG_RUN = "long reference run"
"""Value of the ``reference`` column for non-convex problems whose F* is the lowest loss of
a long reference run (``reference.ReferenceSpec``) that no run of the table beat."""
REFERENCE_CLASSES: dict[str, tuple[str, str]] = {
    EXACT_OPTIMUM: ("convex", "F* = exact optimum"),
    LONG_RUN: ("non-convex", "F* = long reference run"),
    BEST_KNOWN: ("non-convex", "F* = best known"),
}
"""``reference`` value -> (problem class, how F* is named in text), in reading order."""
FVP_COST = 2
"""Cost of one Fisher-vector product in gradient evaluations (first-order calls and work)."""
MEASURES: dict[str, str] = {
    "time": "time_to_eps",
    "work": "work_to_eps",
    "first_order_calls": "first_order_calls_to_eps",
    "iterations": "iterations_to_eps",
}
"""Cost measures for :func:`performance_profile` and the to-ε tables -> per-run column."""
RESTART_SUFFIX = " (restarts)"
"""Added to the label of a curve of restarted fits wherever it is shown."""
RESTARTS = "restarts"
"""``curve`` of runs made by restarted fits (:class:`optim.base.BudgetedSolver`): their
oracle calls are not observable, so their work and first-order calls are NaN and they are
left out of the profiles of those measures."""
_COUNTED = ("work_to_eps", "first_order_calls_to_eps")
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

        F*_best(problem, seed) = min over all rows of that problem and seed with a finite
                                 loss, and the loss of the long reference run if there is one
        suboptimality      = loss - F*_best
        rel_suboptimality  = (loss - F*_best) / |F*_best|   (NaN if F*_best == 0)

    A long reference run (``reference.ReferenceSpec``) shows in the rows the runner
    measured against it: their ``reference_loss`` is its loss. Its problems get
    ``reference`` = ``"long reference run"`` (:data:`LONG_RUN`) when no run went below it
    and ``"best known"`` when one did.

    The reference is per seed because the run seed draws the train/test split: runs of
    two seeds minimize two different training objectives, and one seed's best loss says
    nothing about the other's. Convex rows keep the exact values written by the runner
    (also per seed). A column ``reference`` is added (or replaced): ``"exact optimum"``
    (:data:`EXACT_OPTIMUM`) for convex problems, ``"best known"`` (:data:`BEST_KNOWN`)
    otherwise. The best-known reference depends on the runs in
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
    keys = [out["problem"], out["seed"]]
    best = loss.where(np.isfinite(loss)).groupby(keys).transform("min")
    measured = out["reference_loss"].astype(np.float64)
    long_run = measured.where(~convex & np.isfinite(measured)).groupby(keys).transform("min")
    ref = np.fmin(best, long_run)
    sub = loss - ref
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = sub / ref.abs().where(ref != 0)
    out["suboptimality"] = out["suboptimality"].where(convex, sub)
    out["rel_suboptimality"] = out["rel_suboptimality"].where(convex, rel)
    unbeaten = np.isfinite(long_run) & ~(best < long_run)
    out["reference"] = np.where(convex, EXACT_OPTIMUM, np.where(unbeaten, LONG_RUN, BEST_KNOWN))
    return out


def _with_reference(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if "reference" in frame.columns else add_best_known(frame)


def separate_configurations(frame: pd.DataFrame) -> pd.DataFrame:
    """Give every (configuration, code version) of a solver label on a problem a label of
    its own.

    Statistics pool the runs of one (problem, solver label); a label whose runs on every
    problem share one ``config_id`` and one ``code_version`` is kept, even when the
    configuration differs from problem to problem (a label tuned per problem,
    ``"adam (tuned)"`` of :mod:`..tuning`, runs the configuration selected for each
    problem; :func:`hyperparameters` lists each with its problems). A label used on
    some problem by several gets a suffix naming what differs there::

        "kfac [cfg 3f2a1b0c9d8e]"                    several configurations
        "kfac [code 9c8d7e6f5a4b]"                   one configuration, several code versions
        "kfac [cfg 3f2a1b0c9d8e, code 9c8d7e6f5a4b]" both

    so that no table, profile or figure pools them. The suffix goes on the label's rows
    of every problem, so a suffixed label names one configuration across problems.
    Idempotent.
    """
    runs = frame.drop_duplicates("run_key")
    per_problem = runs.groupby(["solver", "problem"])[["config_id", "code_version"]].nunique()
    spans = per_problem.groupby(level="solver").max()
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
    uncounted = (last["curve"] == RESTARTS).to_numpy()
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
        # a library's fit hides its oracle calls: its work is unknown, reached or not
        costs.loc[uncounted, list(_COUNTED)] = np.nan
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
        solver, config_id, median, q25, q75, n_runs); ``step_diagnostics``
        (:func:`step_diagnostics`, with the final status counts).
    """
    frame = separate_configurations(frame)
    runs, crossing = run_metrics(frame, eps)
    tables = {name: _to_eps_table(crossing, name) for name in MEASURES.values()}
    tables["final_suboptimality"] = _final_table(runs, "final_suboptimality", reference=True)
    tables["cost_per_step"] = _final_table(runs, "cost_per_step")
    tables["fidelity"] = _final_table(runs, "mean_fidelity")
    tables["test_metric"] = _final_table(runs, "final_test_metric")
    tables["step_diagnostics"] = step_diagnostics(frame)
    return tables


def headline(frame: pd.DataFrame, eps: float = HEADLINE_EPS, measure: str = "time") -> pd.DataFrame:
    """Cost to reach one ε per (problem, solver): the numbers of a headline table.

    The to-ε statistics of :func:`summary_tables` (median, q25, q75 over seeds of the
    time or work at the first iteration with ``loss - F* <= eps``, ``+inf`` if never) at a
    single ε, one row per (problem, solver) after :func:`separate_configurations`.

    Parameters
    ----------
    frame : DataFrame
        Results table following :data:`store.SCHEMA`.
    eps : float
        Absolute suboptimality target, > 0.
    measure : {"time", "work"}
        Seconds inside optimizer steps, or gradient evaluations including curvature
        construction (module doc).

    Returns
    -------
    DataFrame
        Long: columns problem, solver, reference, median, q25, q75, reached, n_runs,
        sorted by problem and solver; ``attrs`` holds ``eps`` and ``measure``.
    """
    if measure not in ("time", "work"):
        raise ValueError(f"measure must be 'time' or 'work', got {measure!r}.")
    if not (isinstance(eps, (int, float, np.floating)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}.")
    _, crossing = run_metrics(separate_configurations(frame), (float(eps),))
    table = _to_eps_table(crossing, MEASURES[measure])
    table = table.sort_values(_KEYS, kind="stable").reset_index(drop=True)
    table = table[[*_KEYS, "reference", *_SPREAD, "reached", "n_runs"]]
    table.attrs.update(eps=float(eps), measure=measure)
    return table


BUDGET = ("max_iter", "time_limit", "tol", "target_suboptimality", "batch_size", "fidelity")
"""Budget fields of a run's configuration (:class:`runner.RunSpec`), in table order."""
UNKNOWN_CONFIG = "unknown"
"""Cell value of :func:`hyperparameters` for configurations whose runs have no record."""
NONE = "none"
"""Cell value of :func:`hyperparameters` for a parameter set to None (e.g. full batch)."""


def _flatten(params: Mapping, prefix: str = "") -> dict:
    """Nested hyperparameters as one level: ``{"step": {"name": "lm", "decay": 0.5}}`` ->
    ``{"step": "lm", "step.decay": 0.5}`` (a sub-table's ``name`` names the column itself)."""
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if "name" in value:
                out[name] = value["name"]
            out.update(_flatten({k: v for k, v in value.items() if k != "name"}, name + "."))
        else:
            out[name] = value
    return out


def _none(value):
    return NONE if value is None else value


TUNED = "tuned per problem (see the tuning table)"
"""Cell ``tuning`` of :func:`hyperparameters` for a label ending in :data:`tuning.TUNED_SUFFIX`."""
DEFAULT = "default (untuned)"
"""Cell ``tuning`` for a label ending in :data:`tuning.DEFAULT_SUFFIX`: a tuned label's start."""
NOT_TUNED = "not tuned"
"""Cell ``tuning`` for every other label."""


def tuning_status(label: str) -> str:
    """How a solver label's configuration was chosen: :data:`TUNED`, :data:`DEFAULT` or
    :data:`NOT_TUNED`, from the suffixes the tuning protocol gives its labels."""
    label = label.removesuffix(RESTART_SUFFIX)
    if label.endswith(TUNED_SUFFIX):
        return TUNED
    if label.endswith(DEFAULT_SUFFIX):
        return DEFAULT
    return NOT_TUNED


def hyperparameters(frame: pd.DataFrame, records: Mapping[str, Mapping]) -> pd.DataFrame:
    """Every solver configuration of ``frame`` with its resolved hyperparameters and budget.

    One row per (solver label after :func:`separate_configurations`, config_id): a label
    tuned per problem has a row per selected configuration. ``tuning`` says how the
    configuration was chosen (:func:`tuning_status`) and ``problems`` which problems it
    ran on (comma-separated, sorted). The hyperparameters are those of the runs' records
    (``records``: run key -> :meth:`runner.RunSpec.record`, whose ``configuration`` holds
    every constructor parameter, defaults included); nested ones are flattened
    (``step``: the step rule's name, ``step.decay``: its parameter). The budget is
    :data:`BUDGET` from the same record and ``seeds``, the seeds of the runs in ``frame``.

    ``curve`` says how the curve was made (:func:`curve_text`). A plugin's hyperparameters
    are named ``"<name> [<library>]"`` and one whose name is one of the table's own columns
    ``"<name> (hyperparameter)"`` (:func:`_param_names`).

    Returns
    -------
    DataFrame
        Columns solver, config_id, algorithm, tuning, curve, problems, the hyperparameters
        (sorted by name), :data:`BUDGET`, seeds. Object cells: a hyperparameter the
        configuration's algorithm does not have is ``""``, one set to None is
        :data:`NONE`; a value the record does not hold (every one for a configuration
        none of whose runs has a record) is :data:`UNKNOWN_CONFIG`; the algorithm then
        comes from the rows.
    """
    runs = separate_configurations(frame).drop_duplicates("run_key")
    rows = []
    for (label, config_id), group in runs.groupby(["solver", "config_id"], sort=True):
        record = next((records[k] for k in group["run_key"] if k in records), None)
        configuration = {} if record is None else record.get("configuration", {})
        solver = configuration.get("solver", {})
        row = {
            "solver": label,
            "config_id": config_id,
            "algorithm": solver.get("solver", str(group["algorithm"].iloc[0])),
            "tuning": tuning_status(str(label)),
            "curve": curve_text(group["curve"].iloc[0], configuration),
            "problems": ", ".join(sorted(map(str, group["problem"].unique()))),
            "params": _param_names(solver) if "params" in solver else None,
            **{k: _none(configuration.get(k, UNKNOWN_CONFIG)) for k in BUDGET},
            "seeds": ", ".join(str(s) for s in sorted(group["seed"].unique())),
        }
        rows.append(row)
    names = sorted({name for row in rows if row["params"] for name in row["params"]})
    columns = [
        "solver",
        "config_id",
        "algorithm",
        "tuning",
        "curve",
        "problems",
        *names,
        *BUDGET,
        "seeds",
    ]
    table = []
    for row in rows:
        params = row.pop("params")
        if params is None:
            row.update(dict.fromkeys(names, UNKNOWN_CONFIG))
        else:
            row.update({name: _none(params.get(name, "")) for name in names})
        table.append(row)
    return pd.DataFrame(table, columns=columns, dtype=object)


_TABLE_COLUMNS = ("solver", "config_id", "algorithm", "tuning", "curve", "problems", "seeds")


def _param_names(solver: Mapping) -> dict:
    """The flattened hyperparameters of a record's solver, named for the table: a plugin's
    as ``"<name> [<library>]"`` (the library it wraps, else its package), so that a plugin's
    ``learning_rate`` (scikit-learn's: a schedule) never shares a row with natgrad's (a step
    size); a name that is one of the table's own columns as ``"<name> (hyperparameter)"``."""
    params = _flatten(solver["params"])
    plugin = solver.get("plugin")
    if plugin:
        tag = next(iter(plugin.get("requires") or {}), None) or plugin.get("package")
        tag = tag or plugin.get("import", "plugin")
        return {f"{k} [{tag}]": v for k, v in params.items()}
    return {
        (f"{k} (hyperparameter)" if k in _TABLE_COLUMNS or k in BUDGET else k): v
        for k, v in params.items()
    }


def curve_text(curve: str, configuration: Mapping) -> str:
    """How a configuration's curve was made, for the hyperparameter table: "one run", or
    the restart budgets (from the record's max_iter and ``budget_growth``)."""
    if curve != RESTARTS:
        return "one run"
    params = configuration.get("solver", {}).get("params", {})
    max_iter, growth = configuration.get("max_iter"), params.get("budget_growth")
    if not isinstance(max_iter, int) or not isinstance(growth, (int, float)):
        return "restarted fits"
    budgets = budget_grid(max_iter, growth)
    shown = ", ".join(map(str, budgets[:4])) + (f", …, {budgets[-1]}" if len(budgets) > 4 else "")
    return f"restarted fits, one per budget {shown} ({len(budgets)} fits)"


def drop_not_applicable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the runs skipped as not applicable (:data:`store.NOT_APPLICABLE`:
    the solver cannot fit that model at all): a table shows them blank, "did not run"."""
    skipped = not_applicable(frame)
    return frame[~skipped] if skipped.any() else frame


def label_restarts(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the label of every run made by restarted fits marked
    " (restarts)", so a table never shows such a curve as if it were one run."""
    rows = frame["curve"] == RESTARTS
    if not rows.any():
        return frame
    out = frame.copy()
    out.loc[rows, "solver"] = out.loc[rows, "solver"].astype(str) + RESTART_SUFFIX
    return out


def displayed(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs a report shows, labelled as it shows them: :func:`drop_not_applicable`,
    then :func:`label_restarts`."""
    return label_restarts(drop_not_applicable(frame))


def _last_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The last recorded row of every run, indexed by run_key."""
    f = frame.sort_values(["run_key", "iteration"], kind="stable")
    return f.groupby("run_key", sort=True).tail(1).set_index("run_key")


def step_diagnostics(frame: pd.DataFrame) -> pd.DataFrame:
    """What the steps of each (problem, solver) went through, summed over its runs.

    From the runner's per-run counts of the per-step ``step_status`` and the runs'
    final status::

        <status>   = runs that ended with that status (converged, target, max_iter,
                     time_limit, diverged, skipped, error: the ones that occur)
        steps      = sum over runs of the final iteration (steps attempted)
        rejected   = sum of n_rejected   (steps not taken: rejected, no descent, ...)
        cg_capped  = sum of n_cg_capped  (CG solves stopped at their iteration cap)
        fallbacks  = sum of n_fallbacks  (solves that fell back to jitter or pinv)
        flagged    = runs with any flag  (loss ended above its start, mostly rejected)
        flags      = each flag with its number of runs, e.g. "loss_increased x2"

    Returns
    -------
    DataFrame
        Columns problem, solver, n_runs, the status counts (in :data:`STATUS_ORDER`,
        then any other status alphabetically), steps, rejected, cg_capped, fallbacks,
        flagged, flags; one row per (problem, solver).
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
    counts = last.groupby([*_KEYS, "status"]).size().unstack("status", fill_value=0)
    order = [s for s in STATUS_ORDER if s in counts.columns]
    order += sorted(c for c in counts.columns if c not in STATUS_ORDER)
    counts = counts[order].astype(np.int64)
    counts.columns.name = None
    table = pd.concat([table[["n_runs"]], counts, table.drop(columns="n_runs")], axis=1)
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
    if MEASURES[measure] in _COUNTED:  # no count, no place in a profile of counts
        uncounted = set(frame.loc[frame["curve"] == RESTARTS, "solver"])
        solvers = [s for s in solvers if s not in uncounted]
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
    best = c.min(axis=1, keepdims=True) if c.size else c
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(c == best, 1.0, c / best)
    r = np.where(np.isinf(c), np.inf, r)
    return _step_profile(cost, r, "tau", 1.0, n_tau, eps, measure)


def _step_profile(
    cost: pd.DataFrame, values: np.ndarray, name: str, start: float, n: int, eps, measure
) -> pd.DataFrame:
    """Fraction of problems (rows of ``values``) with value <= x, per solver (columns).

    The grid x: ``n`` log-spaced values from ``start`` to the largest finite value (at
    least ``start``) plus every finite value, so the step function is exact at its jumps.
    Tidy columns ``solver``, ``name``, ``fraction``; ``attrs`` eps, measure, n_problems.
    """
    finite = values[np.isfinite(values)]
    stop = max(float(finite.max()), start) if finite.size else start
    grid = np.unique(np.concatenate([np.geomspace(start, stop, max(n, 1)), finite]))
    if values.size == 0:
        grid = grid[:0]
    fraction = (values[:, :, None] <= grid[None, None, :]).mean(axis=0)
    out = pd.DataFrame(
        {
            "solver": np.repeat(cost.columns.to_numpy(dtype=object), grid.size),
            name: np.tile(grid, values.shape[1]),
            "fraction": fraction.ravel(),
        }
    )
    out.attrs.update(eps=float(eps), measure=measure, n_problems=len(cost))
    return out


def data_profile(
    frame: pd.DataFrame, eps: float, measure: str = "work", n_kappa: int = 100
) -> pd.DataFrame:
    """Moré–Wild data profiles: the fraction of problems solved within a budget.

    With ``c[p, s]`` the median over seeds of the cost to reach absolute suboptimality ε
    (as in :func:`performance_profile`; ``+inf`` if not reached), the data profile of
    solver s is (Moré & Wild 2009, "Benchmarking derivative-free optimization
    algorithms", SIAM J. Optim. 20(1))::

        d_s(kappa) = |{p : c[p, s] <= kappa}| / |P|

    Moré & Wild count function evaluations divided by ``n_p + 1`` (the cost of one
    simplex gradient); with ``measure="work"`` the cost is already in gradient
    evaluations (curvature construction included), so ``kappa`` is a budget of gradient
    evaluations. Unlike the performance profile, it compares each solver with the budget,
    not with the best solver.

    Parameters and result as in :func:`performance_profile` (``measure`` defaults to
    ``"work"``), with ``n_kappa`` log-spaced budgets from the smallest to the largest
    finite cost (just 1 if none is finite), every finite cost added, and a column
    ``kappa`` in place of ``tau``.
    """
    cost = _median_cost(_with_reference(separate_configurations(frame)), eps, measure)
    c = cost.to_numpy(dtype=np.float64)
    finite = c[np.isfinite(c)]
    start = float(finite.min()) if finite.size else 1.0
    return _step_profile(cost, c, "kappa", start, n_kappa, eps, measure)


# ----------------------------------------------------------------------------- 4. loss target
NATURAL_GRADIENT = PRECONDITIONERS
"""Algorithms that are natural-gradient methods (the rest of :data:`optim.SOLVERS` are
first-order baselines)."""
BASELINES = tuple(s for s in SOLVERS if s not in PRECONDITIONERS)
"""First-order baselines: the algorithms natural gradient is compared with."""
_TARGET_STATS = ("updates", "epochs", "time")


def _gaps(frame: pd.DataFrame, target_gap) -> pd.Series:
    """The target gap of every row: ``target_gap`` (a number, or a mapping problem ->
    number: problems it does not name get NaN, i.e. no target), each in (0, 1)."""
    values = target_gap.values() if isinstance(target_gap, Mapping) else [target_gap]
    for value in values:
        if not (isinstance(value, (int, float, np.floating)) and 0 < value < 1):
            raise ValueError(f"target_gap must be a number in (0, 1), got {value!r}.")
    if isinstance(target_gap, Mapping):
        return frame["problem"].map(lambda p: float(target_gap.get(p, np.nan)))
    return pd.Series(float(target_gap), index=frame.index)


def to_target(frame: pd.DataFrame, target_gap) -> pd.DataFrame:
    """Updates, epochs and seconds until the training loss closes all but ``target_gap``
    of its initial gap to F*: the headline measure of mini-batch runs.

    With ``L0`` a run's loss at its first recorded row (iteration 0) and ``F* = loss -
    suboptimality`` (:func:`add_best_known`; per problem and seed), a run reaches the
    target at its first recorded row with::

        loss - F* <= target_gap * (L0 - F*)

    At that row: ``updates`` = iteration (updates so far), ``epochs`` = updates ×
    batch_size / n_train (batch_size 0 is the full batch: one epoch per update) and
    ``time`` (optimizer seconds). A run that never reaches it costs ``+inf``; a run
    without a reference (suboptimality NaN at its first row) costs NaN.

    Parameters
    ----------
    frame : DataFrame
        Results table following :data:`store.SCHEMA`.
    target_gap : float or mapping of str to float
        Fraction of the initial gap left at the target, in (0, 1); or one per problem
        (problems it does not name have no target: NaN costs).

    Returns
    -------
    DataFrame
        One row per (problem, solver, config_id) after :func:`separate_configurations`:
        algorithm, reference, n_runs, n_skipped and skip_reason (runs not attempted, e.g.
        an exact Fisher above the grid's dense_flop_limit, and the first one's reason),
        n_reached, ``{updates,epochs,time}_{median,q25,q75}``
        (over the runs, :func:`_quantile`: +inf kept), final_loss_median and
        test_metric_median (at the runs' last rows), target_gap; sorted by problem and
        solver. ``attrs`` holds ``target_gap`` when it is one number for every problem.
    """
    _gaps(frame.head(0), target_gap)  # validated before any work
    f = _with_reference(separate_configurations(frame))
    f = f.sort_values(["run_key", "iteration"], kind="stable")
    sub = f["suboptimality"].astype(np.float64)
    first = sub.groupby(f["run_key"], sort=True).head(1)  # L0 - F*, NaN kept (no reference)
    first.index = f.loc[first.index, "run_key"]
    start = f["run_key"].map(first)
    gap = _gaps(f, target_gap)
    first = first.where(gap.groupby(f["run_key"], sort=True).first().notna())  # no target
    hit = f[sub <= gap * start].groupby("run_key", sort=False).head(1).set_index("run_key")
    batch = hit["batch_size"].astype(np.float64)
    full = batch.where(batch > 0, hit["n_train"].astype(np.float64))
    costs = pd.DataFrame(
        {
            "updates": hit["iteration"].astype(np.float64),
            "epochs": hit["iteration"] * full / hit["n_train"].astype(np.float64),
            "time": hit["time"].astype(np.float64),
        }
    )
    last = _last_rows(f)
    costs = costs.reindex(last.index, fill_value=np.inf)
    costs.loc[~np.isfinite(first.reindex(last.index)).to_numpy()] = np.nan
    runs = pd.concat(
        [
            last[[*_GROUP, "algorithm", "reference"]],
            costs,
            last[["loss", "test_metric"]].astype(np.float64),
            (last["status"] == "skipped").rename("skipped"),
            last["message"].where(last["status"] == "skipped", "").rename("skip_reason"),
        ],
        axis=1,
    )
    g = runs.groupby(_GROUP, sort=True)
    table = g[["algorithm", "reference"]].first()
    table["n_runs"] = g.size()
    table["n_skipped"] = g["skipped"].sum().astype(int)
    table["skip_reason"] = g["skip_reason"].agg(lambda s: next((m for m in s if m), ""))
    table["n_reached"] = g["updates"].agg(lambda s: int(np.isfinite(s.to_numpy()).sum()))
    for stat in _TARGET_STATS:
        spread = _spread(g[stat])
        for q in _SPREAD:
            table[f"{stat}_{q}"] = spread[q]
    table["final_loss_median"] = g["loss"].agg(lambda s: _quantile(s.to_numpy(), 0.5))
    table["test_metric_median"] = g["test_metric"].agg(lambda s: _quantile(s.to_numpy(), 0.5))
    table = table.reset_index()
    table["target_gap"] = _gaps(table, target_gap).to_numpy()
    if not isinstance(target_gap, Mapping):
        table.attrs["target_gap"] = float(target_gap)
    return table


def _plain(x: float, digits: int) -> str:
    """``x`` to ``digits`` significant figures, without an exponent: 123 -> "120"."""
    return np.format_float_positional(float(f"{x:.{digits}g}"), trim="-")


def _count(x: float) -> str:
    """A median count of updates: whole, or to one decimal (a median of two runs)."""
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _factor(x: float) -> str:
    return f"{x:.1f}×" if x < 10 else f"{x:.0f}×"


def _comparison(ng: float, baseline: float, fewer: str, more: str, same: str) -> str:
    """ "3.1× fewer updates" (``ng`` lower), "2.0× more updates" (higher), or ``same``."""
    if ng == baseline:
        return same
    if ng < baseline:
        return f"{_factor(baseline / ng) if ng > 0 else '∞×'} {fewer}"
    return f"{_factor(ng / baseline) if baseline > 0 else '∞×'} {more}"


def _display_name(label: str, tuned: bool) -> str:
    """A baseline label as a statement names it: "adam (tuned)" -> "tuned adam"."""
    for suffix in (TUNED_SUFFIX, DEFAULT_SUFFIX):
        label = label.removesuffix(suffix)
    return f"{'tuned' if tuned else 'untuned'} {label}"


def _best_row(rows: pd.DataFrame) -> pd.Series:
    """The row with the fewest median updates to the target, ties by median time, then
    by label."""
    order = rows.sort_values(
        ["updates_median", "time_median", "solver"], kind="stable", na_position="last"
    )
    return order.iloc[0]


def _finding(problem: str, ng: pd.Series, bl: pd.Series, tuned: bool, gap: str) -> dict:
    ng_name, bl_name = str(ng["solver"]), _display_name(str(bl["solver"]), tuned)
    upd = (float(ng["updates_median"]), float(bl["updates_median"]))
    sec = (float(ng["time_median"]), float(bl["time_median"]))
    test = (float(ng["test_metric_median"]), float(bl["test_metric_median"]))
    reached = (np.isfinite(upd[0]), np.isfinite(upd[1]))
    seeds = sorted({int(ng["n_runs"]), int(bl["n_runs"])})
    over = f"median over {' and '.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}"
    target = f"the training-loss target (gap ≤ {gap})"
    if np.isnan(upd).any():
        text = f"On {problem}, {target} is undefined: the results hold no reference F*"
    elif all(reached):
        updates = _comparison(*upd, "fewer updates", "more updates", "as many updates")
        seconds = _comparison(*sec, "less time", "more time", "the same time")
        connector = "as" if sec[0] == sec[1] else "than"
        text = (
            f"On {problem}, {ng_name} reaches {target} in {updates} and {seconds} "
            f"{connector} {bl_name} ({over}: {_count(upd[0])} vs {_count(upd[1])} updates, "
            f"{_plain(sec[0], 2)} s vs {_plain(sec[1], 2)} s)"
        )
    elif reached[0]:
        text = (
            f"On {problem}, {ng_name} reaches {target} in {_count(upd[0])} updates and "
            f"{_plain(sec[0], 2)} s; {bl_name} does not reach it ({over})"
        )
    elif reached[1]:
        text = (
            f"On {problem}, {ng_name} does not reach {target}; {bl_name} does, in "
            f"{_count(upd[1])} updates and {_plain(sec[1], 2)} s ({over})"
        )
    else:
        text = f"On {problem}, neither {ng_name} nor {bl_name} reaches {target} ({over})"
    if not np.isnan(test).any():
        metric = "MSE" if "autoencoder" in problem else "accuracy"
        text += f"; test {metric} at the budget {_plain(test[0], 3)} vs {_plain(test[1], 3)}"
    neither = not any(reached)
    return {
        "problem": problem,
        "natural_gradient": ng_name,
        "baseline": str(bl["solver"]),
        "baseline_tuned": tuned,
        "updates": {"natural_gradient": upd[0], "baseline": upd[1]},
        "seconds": {"natural_gradient": sec[0], "baseline": sec[1]},
        "updates_ratio": np.nan if neither else float(_ratio(upd[0], upd[1])),
        "time_ratio": np.nan if neither else float(_ratio(sec[0], sec[1])),
        "ng_fewer_updates": bool(upd[0] < upd[1]),
        "ng_less_time": bool(sec[0] < sec[1]),
        "test_metric": {"natural_gradient": test[0], "baseline": test[1]},
        "statement": text + ".",
    }


def findings(table: pd.DataFrame, target_gap=None) -> list[dict]:
    """What the training-loss target table says about natural gradient against the
    baselines, as sentences computed from its numbers.

    Per problem: the best natural-gradient row (algorithm in :data:`NATURAL_GRADIENT`;
    fewest median updates to the target, ties by median time; when some are tuned, their
    ``" (default)"`` starting configurations are left out, so tuned meets tuned) against
    the best tuned
    baseline row (algorithm in :data:`BASELINES`, label ending ``" (tuned)"``), or the
    best baseline row when none is tuned (then named "untuned"). Problems without a row
    of either side are left out.

    Parameters
    ----------
    table : DataFrame
        :func:`to_target`'s table.
    target_gap : float, optional
        Its target gap (named in the statements); default: each problem's own, the
        table's column ``target_gap``.

    Returns
    -------
    list of dict
        Per problem: problem, natural_gradient and baseline (labels), baseline_tuned,
        updates and seconds (``{"natural_gradient": median, "baseline": median}``, +inf
        when the median run never reached the target), updates_ratio and time_ratio
        (baseline / natural gradient: > 1 when natural gradient needs fewer; +inf when
        only it reaches the target, 0 when only the baseline does, NaN when neither),
        ng_fewer_updates, ng_less_time, test_metric (medians at the budget: accuracy, or
        MSE on autoencoder problems) and ``statement``. Last, a summary with problem
        ``"all"``: n_problems, ng_fewer_updates and ng_less_time (numbers of problems),
        untuned_baselines (problems compared with an untuned baseline) and
        ``statement``.
    """
    out = []
    gaps = set()
    for problem, rows in table.groupby("problem", sort=True):
        own = target_gap if target_gap is not None else rows["target_gap"].iloc[0]
        gap = f"{own:g}"
        gaps.add(gap)
        ng = rows[rows["algorithm"].isin(NATURAL_GRADIENT)]
        if ng["solver"].str.endswith(TUNED_SUFFIX).any():  # tuned against tuned
            ng = ng[~ng["solver"].str.endswith(DEFAULT_SUFFIX)]
        bl = rows[rows["algorithm"].isin(BASELINES)]
        tuned = bl[bl["solver"].str.endswith(TUNED_SUFFIX)]
        if ng.empty or bl.empty:
            continue
        best = _best_row(tuned if len(tuned) else bl)
        out.append(_finding(str(problem), _best_row(ng), best, len(tuned) > 0, gap))
    n = len(out)
    fewer = sum(f["ng_fewer_updates"] for f in out)
    less = sum(f["ng_less_time"] for f in out)
    untuned = sum(not f["baseline_tuned"] for f in out)
    gap = gaps.pop() if len(gaps) == 1 else "each problem's own"
    text = (
        f"The best natural-gradient solver reaches the training-loss target (gap ≤ {gap}) "
        f"in fewer median updates than the best tuned baseline on {fewer} of {n} problems "
        f"and in less median time on {less} of {n}"
    )
    if untuned:
        text += f" (on {untuned}, no baseline was tuned: the untuned one is compared)"
    summary = {
        "problem": "all",
        "n_problems": n,
        "ng_fewer_updates": fewer,
        "ng_less_time": less,
        "untuned_baselines": untuned,
        "statement": text + ".",
    }
    return [*out, summary]

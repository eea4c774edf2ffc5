"""Compare two result sets: what got better or worse between two commits or configurations."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .report.metrics import (
    _GROUP,
    _KEYS,
    _last_rows,
    _quantile,
    _ratio,
    add_best_known,
    run_metrics,
    separate_configurations,
)

__all__ = ["FAILED_STATUSES", "SAME_TOLERANCE", "TIME_THRESHOLD", "VERDICT_MEASURES", "compare"]

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

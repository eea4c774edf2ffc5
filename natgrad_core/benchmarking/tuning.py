"""The tuning protocol: declared search spaces, a selection rule fixed in advance, tuning
seeds apart from the reported ones, and the cost of the search reported beside the result.

As DeepOBS and AlgoPerf do, a baseline is compared at its best, and what the search cost
is said. A grid with a :class:`TuneSpec` (the ``[tune]`` table of a TOML configuration, or
a suite's own) runs in two phases:

1. ``tune``    every candidate — each point of the declared search space of a solver
               label (a product of lists, e.g. ``learning_rate`` on a log grid,
               ``batch_size`` where it is a knob), the label's other hyperparameters
               kept — on every problem with the *tuning* seeds, under the grid's budget.
               The runs are ordinary runs, stored under ``<out>/tuning/`` (resumable like
               any grid, never pooled with the reported runs).
2. ``select``  per (problem, solver label) the candidate the rule prefers:
               ``final_loss`` — the lowest median over the tuning seeds of the final
               full-data training loss (a run that diverged, failed or ended with a
               non-finite loss counts as +inf); ties go to the candidate declared first.
               The rule is declared with the grid, before any run is looked at.

The reported grid then runs, on the *reported* seeds (disjoint from the tuning seeds), the
selected configuration of every tuned label as ``"<label> (tuned)"`` beside its starting
configuration as ``"<label> (default)"``; solvers without a search space keep their label
(their configuration is the recommended one, or the one the grid gives). :func:`tuning_table`
says, per problem and tuned label, what was searched, what was selected with its score,
and the cost: candidates, runs and their optimizer seconds (AlgoPerf counts tuning time
the same way).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .runner import SolverConfig
from .store import not_applicable

__all__ = [
    "DEFAULT_SUFFIX",
    "RULES",
    "TUNED_SUFFIX",
    "Selection",
    "TuneSpec",
    "candidates",
    "select",
    "tune_from_table",
    "tuning_table",
]

RULES = {
    "final_loss": (
        "lowest median (over the tuning seeds) final full-data training loss; a diverged, "
        "failed or non-finite run counts as +inf; ties: the candidate declared first"
    ),
}
"""Selection rules -> what they select."""
FINAL_ONLY = 2**31 - 1
"""``record_every`` of the tuning runs: the driver records the start and the last step."""
TUNED_SUFFIX = " (tuned)"
DEFAULT_SUFFIX = " (default)"
_SPACE_KEYS = {"batch_size"}
"""Knobs of a search space that are not hyperparameters of the optimizer."""


@dataclass(frozen=True)
class TuneSpec:
    """A declared search: ``seeds`` (tuning seeds), ``rule`` (a key of :data:`RULES`) and
    ``spaces``: ``((label, ((knob, (value, ...)), ...)), ...)`` — per solver label of the
    grid, its knobs (hyperparameters of ``make_optimizer``, and ``batch_size``) with the
    values to try, in declared order."""

    seeds: tuple
    spaces: tuple
    rule: str = "final_loss"

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"[tune].rule must be one of {sorted(RULES)}, got {self.rule!r}.")
        if not self.spaces:
            raise ValueError("[tune] declares no search space; expected [tune.space.<label>].")
        for label, knobs in self.spaces:
            if not knobs:
                raise ValueError(f"[tune.space.{label}] is empty; expected knob = [values].")
            for knob, values in knobs:
                if not values:
                    raise ValueError(
                        f"[tune.space.{label}].{knob} lists no values; expected at least one."
                    )
                if len(set(map(repr, values))) != len(values):
                    raise ValueError(
                        f"[tune.space.{label}].{knob} lists a value twice: {list(values)}."
                    )

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.spaces)

    def space(self, label: str) -> dict:
        return {knob: list(values) for knob, values in dict(self.spaces)[label]}

    def to_dict(self) -> dict:
        return {
            "seeds": list(self.seeds),
            "rule": self.rule,
            "space": {label: self.space(label) for label in self.labels},
        }


def tune_from_table(table, solver_labels: Sequence[str]) -> TuneSpec:
    """The ``[tune]`` table of a configuration: ``seeds``, ``rule`` and
    ``[tune.space.<solver label>]`` tables of ``knob = [values]``."""
    if not isinstance(table, dict):
        raise ValueError(f"expected one table [tune], got tune = {table!r}.")
    unknown = set(table) - {"seeds", "rule", "space"}
    if unknown:
        raise ValueError(f"unknown keys in [tune]: {sorted(unknown)}; expected seeds, rule, space.")
    if "seeds" not in table:
        raise ValueError("[tune] needs seeds (the tuning seeds, apart from [run].seeds).")
    space = table.get("space", {})
    if not isinstance(space, dict):
        raise ValueError(f"expected [tune.space.<label>] tables, got space = {space!r}.")
    spaces = []
    for label, knobs in space.items():
        if label not in solver_labels:
            raise ValueError(
                f"[tune.space.{label}]: no solver is labelled {label!r}; expected one of "
                f"{list(solver_labels)}."
            )
        if not isinstance(knobs, dict):
            raise ValueError(f"expected a table [tune.space.{label}], got {knobs!r}.")
        entries = []
        for knob, values in knobs.items():
            if not isinstance(values, list):
                raise ValueError(
                    f"[tune.space.{label}].{knob} must be a list of values, got {values!r}."
                )
            entries.append((knob, tuple(values)))
        spaces.append((label, tuple(entries)))
    rule = table.get("rule", "final_loss")
    if not isinstance(rule, str):
        raise ValueError(f"[tune].rule must be a string, got {rule!r}.")
    return TuneSpec(tuple(table["seeds"]), tuple(spaces), rule)


def _value_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def points(spec: TuneSpec, label: str) -> list[dict]:
    """The points of ``label``'s search space in declared order: the product of the
    lists, the first knob varying slowest."""
    space = spec.space(label)
    return [dict(zip(space, values)) for values in itertools.product(*space.values())]


def candidates(spec: TuneSpec, solver: SolverConfig) -> list[SolverConfig]:
    """Every point of ``solver``'s search space (:func:`points`) as a labelled
    configuration ``"<label> [knob=value, ...]"``, validated like a configuration the user
    wrote."""
    out = []
    for point in points(spec, solver.label):
        point = dict(point)
        text = ", ".join(f"{k}={_value_text(v)}" for k, v in point.items())
        batch = point.pop("batch_size", solver.batch_size)
        try:
            config = SolverConfig.make(
                f"{solver.label} [{text}]", solver.solver, batch, **{**solver.kwargs, **point}
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"[tune.space.{solver.label}]: {exc}") from None
        out.append(config)
    return out


@dataclass(frozen=True)
class Selection:
    """What the search chose for one (problem, solver label)."""

    problem: str
    label: str
    chosen: SolverConfig
    point: dict
    score: float
    n_candidates: int
    n_runs: int
    seconds: float
    n_failed: int
    edges: tuple = ()
    """Numeric knobs whose selected value is the first or last of their list: the best
    value may lie outside the space searched (widen it)."""

    def tuned(self, base: SolverConfig) -> SolverConfig:
        """The chosen configuration labelled ``"<label> (tuned)"``."""
        return replace(self.chosen, label=base.label + TUNED_SUFFIX)


def _final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    last = frame.sort_values("iteration").groupby("run_key", sort=False).tail(1)
    loss = last["loss"].astype(np.float64)
    failed = last["status"].isin(["diverged", "error", "skipped"]) | ~np.isfinite(loss)
    return last.assign(score=loss.where(~failed, np.inf), failed=failed)


def select(
    spec: TuneSpec, problems: Sequence, solvers: Sequence[SolverConfig], frame: pd.DataFrame
) -> list[Selection]:
    """Apply the rule to the stored tuning runs ``frame`` (rows of :data:`store.SCHEMA`).

    Every candidate must have a stored run on every tuning seed of every problem (the
    tuning phase stores them all, errors included); a missing one raises ValueError, so a
    selection is never made on part of the evidence. A label whose every tuning run on a
    problem was skipped as not applicable (:data:`store.NOT_APPLICABLE`: the solver cannot
    fit that model) has no selection there.
    """
    last = _final_rows(frame) if not frame.empty else frame
    out = []
    for problem in problems:
        for solver in solvers:
            if solver.label not in spec.labels:
                continue
            cands = candidates(spec, solver)
            if _not_applicable(last, problem.name, {c.label for c in cands}):
                continue
            scores, n_runs, seconds, n_failed = [], 0, 0.0, 0
            for cand in cands:
                rows = last[(last["problem"] == problem.name) & (last["solver"] == cand.label)]
                seeds = set(rows["seed"].astype(int))
                missing = sorted(set(spec.seeds) - seeds)
                if missing:
                    raise ValueError(
                        f"tuning of {solver.label!r} on {problem.name!r}: candidate "
                        f"{cand.label!r} has no stored run for tuning seeds {missing}; run "
                        "the tuning phase first."
                    )
                rows = rows[rows["seed"].isin(spec.seeds)]
                scores.append(float(np.median(rows["score"].to_numpy())))
                n_runs += len(rows)
                seconds += float(rows["time"].astype(np.float64).fillna(0.0).sum())
                n_failed += int(rows["failed"].sum())
            best = int(np.argmin(scores))  # the first of equal scores
            point = points(spec, solver.label)[best]
            out.append(
                Selection(
                    problem.name,
                    solver.label,
                    cands[best],
                    point,
                    scores[best],
                    len(cands),
                    n_runs,
                    seconds,
                    n_failed,
                    _edges(spec.space(solver.label), point),
                )
            )
    return out


def _not_applicable(last: pd.DataFrame, problem: str, labels: set) -> bool:
    if last.empty:
        return False
    rows = last[(last["problem"] == problem) & last["solver"].isin(labels)]
    return len(rows) > 0 and bool(not_applicable(rows).all())


def _edges(space: dict, point: dict) -> tuple:
    """The numeric knobs (more than one value) whose selected value is an end of the range
    searched."""
    out = []
    for knob, values in space.items():
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numeric) > 1 and len(numeric) == len(values):
            if point[knob] in (min(numeric), max(numeric)):
                out.append(knob)
    return tuple(out)


def tuning_grid(config):
    """The tuning phase of ``config`` (a GridConfig with ``tune``): every candidate of
    every tuned label, on the tuning seeds, under the grid's budget, recording only the
    start and the end (:data:`FINAL_ONLY`)."""
    spec = config.tune
    solvers = tuple(
        cand for s in config.solvers if s.label in spec.labels for cand in candidates(spec, s)
    )
    # the rule reads only the final loss: no curve is recorded (one full-data evaluation
    # at the start and one at the end), no fidelity, and no long reference run
    return replace(
        config,
        name=f"{config.name}-tuning",
        solvers=solvers,
        seeds=spec.seeds,
        tune=None,
        record_every=FINAL_ONLY,
        records_per_epoch=None,
        by_problem=tuple(
            (name, tuple((k, v) for k, v in items if k != "records_per_epoch"))
            for name, items in config.by_problem
        ),
        fidelity=False,
        reference=None,
        reference_by_problem=(),
    )


def reported_grid(config, selections: Sequence[Selection]):
    """The reported phase of ``config``: per problem, :func:`tuned_solvers` on the
    reported seeds."""
    per_problem = tuple(
        (p.name, tuned_solvers(config.tune, config.solvers, selections, p)) for p in config.problems
    )
    return replace(config, solvers_by_problem=per_problem)


def tuned_solvers(
    spec: TuneSpec, solvers: Sequence[SolverConfig], selections: Sequence[Selection], problem
) -> tuple[SolverConfig, ...]:
    """The reported solvers of ``problem``: each tuned label as its selected
    ``"(tuned)"`` configuration followed by its starting ``"(default)"`` one; the other
    labels, and a tuned label without a selection there (not applicable), unchanged."""
    chosen = {s.label: s for s in selections if s.problem == problem.name}
    out = []
    for solver in solvers:
        if solver.label in chosen:
            out.append(chosen[solver.label].tuned(solver))
            out.append(replace(solver, label=solver.label + DEFAULT_SUFFIX))
        else:
            out.append(solver)
    return tuple(out)


def tuning_table(spec: TuneSpec, selections: Sequence[Selection]) -> pd.DataFrame:
    """One row per (problem, tuned label): the search space, the rule, the selected
    point and its score, and the cost (candidates, runs, optimizer seconds, failed runs).

    Columns problem, solver (the reported ``"(tuned)"`` label), algorithm, space (JSON),
    selected (JSON), rule, score, tuning_seeds, candidates, runs, seconds, failed_runs,
    edge_of_space (the knobs selected at an end of their range, comma-separated).
    """
    rows = [
        {
            "problem": s.problem,
            "solver": s.label + TUNED_SUFFIX,
            "algorithm": s.chosen.solver,
            "space": json.dumps(spec.space(s.label), sort_keys=True),
            "selected": json.dumps(s.point, sort_keys=True),
            "rule": spec.rule,
            "score": s.score,
            "tuning_seeds": ", ".join(map(str, spec.seeds)),
            "candidates": s.n_candidates,
            "runs": s.n_runs,
            "seconds": s.seconds,
            "failed_runs": s.n_failed,
            "edge_of_space": ", ".join(s.edges),
        }
        for s in selections
    ]
    columns = [
        "problem",
        "solver",
        "algorithm",
        "space",
        "selected",
        "rule",
        "score",
        "tuning_seeds",
        "candidates",
        "runs",
        "seconds",
        "failed_runs",
        "edge_of_space",
    ]
    return pd.DataFrame(rows, columns=columns)

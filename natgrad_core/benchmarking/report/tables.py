"""Writing the report's tables: CSV with a JSON sidecar, Markdown, LaTeX and HTML.

Every table (a DataFrame from :mod:`.metrics`) is written four ways by :func:`write_tables`:

``<name>.csv``
    The data, long format as computed, at full precision: no comment lines, so
    ``pandas.read_csv(path)`` reads it back (``inf`` for never reached, empty for NaN or
    for a hyperparameter an algorithm does not have). The column ``reference`` of the
    frames is written as ``F*`` with values "exact optimum" / "best known".
``<name>.json``
    The title, a description and unit of every CSV column, and the provenance record.
``<name>.md`` / ``<name>.tex``
    The table for reading: Markdown, and LaTeX with booktabs (no ``table`` float, so it
    can be ``\\input`` into one; the packages needed are named in its first lines).

Layouts for reading (:func:`render_html` gives the same as an HTML ``<table>``):

* headline tables (``headline_time``, ``headline_work``; :func:`.metrics.headline`):
  problems as rows, solver labels as columns, cells "median [q25, q75]"; the best median
  of each row in bold (ties all bold); "—" where the median run never reached ε, with
  "(k/n)" when k of the n seeds did; the n of seeds once in the caption (per row or per
  cell only where it differs); a dagger on problems whose F* is best known.
* ``hyperparameters``: transposed, configurations as columns, hyperparameters as rows;
  rows equal for every configuration (typically the budget) stated once in a note.
* ``to_target`` (:func:`.metrics.to_target`): a row per (problem, solver), "k/n" runs
  that reached the training-loss target, cells "median [q25, q75]" of updates, epochs
  (left out when they equal the updates: full batch) and seconds, "—" where the median
  run never reached it; then the final loss and test metric.
* ``tuning`` (:func:`..tuning.tuning_table`): a long table whose JSON cells (search
  space, selected point) read as ``learning_rate = 0.001, 0.01``.
* the long tables: the ``reference`` column becomes the dagger on the problem name,
  ``config_id`` is left out (a label names one configuration; the hyperparameter table
  maps it), and a column holding a single value is stated once in a note.

Significant figures (Markdown, LaTeX, HTML; never the CSV): a median is shown to at most
:data:`TIME_DIGITS` significant figures in tables of seconds (one shared, noisy machine)
and :data:`COUNT_DIGITS` in tables of counts, and never to a finer decimal place than the
leading digit of its interquartile range ``q75 - q25``: digits below the spread over
seeds are noise. Its quartiles are rounded to the same place, but keep at least one
significant figure. Best cells are judged on the medians as printed, so cells that
print equal tie (a difference below the spread is not a win).

A table made outside the report (``natgrad peers``) names itself in its ``attrs``:
``title``, ``columns`` (column -> (description, unit)) and ``key_columns`` (the columns
that identify a row, like ``problem`` and ``solver`` of the report's tables). Its columns
in ``"seconds"`` are shown to :data:`TIME_DIGITS` significant figures and its columns in
``"ratio"`` to :data:`RATIO_DECIMALS` decimals (at least one significant figure).

The findings of :func:`.metrics.findings` are written by :func:`write_findings` as
``findings.json`` (the statements and their numbers, with the provenance record) and
``findings.md`` (the statements as a list).

LaTeX: more than :data:`MAX_LATEX_COLUMNS` value columns are split into several
tabulars of at most that many, as even as possible (key columns repeated), so that a
headline table fits a 6.5 in text width (letter paper, 1 in margins, 10 pt; measured:
six columns of cells like "0.0095 [0.0094, 0.0103]" overflow it by 13 pt); more than
:data:`LONGTABLE_ROWS` body rows use ``longtable``.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import write_if_changed
from .metrics import BEST_KNOWN, BUDGET, EXACT_OPTIMUM, LONG_RUN

TIME_DIGITS = 2
"""Significant figures of times (seconds from one shared machine; medians over few seeds)."""
COUNT_DIGITS = 3
"""Significant figures of counts (work, calls, iterations: deterministic up to the seeds)."""
RATIO_DECIMALS = 2
"""Decimals of ratios (unit "ratio") in tables made outside the report."""
MAX_LATEX_COLUMNS = 5
"""Value columns per LaTeX tabular; more are split into several tabulars."""
LONGTABLE_ROWS = 40
"""LaTeX tables with more body rows use ``longtable`` (page breaks, repeated header)."""
COLUMN_LABELS = {"reference": "F*"}
"""Frame column -> column name in the written files."""

TABLE_TITLES = {
    "headline_time": "Time to ε: seconds inside optimizer steps until suboptimality ≤ ε",
    "headline_work": (
        "Work to ε: gradient evaluations (first-order calls + curvature construction) "
        "until suboptimality ≤ ε"
    ),
    "hyperparameters": "Solver configurations: resolved hyperparameters and budget",
    "step_diagnostics": (
        "Step diagnostics: final status of the runs, steps not taken, CG solves at their "
        "cap, solve fallbacks, flagged runs"
    ),
    "time_to_eps": "Time to reach suboptimality ≤ ε (seconds in optimizer steps)",
    "work_to_eps": (
        "Work to reach suboptimality ≤ ε, in gradient evaluations "
        "(first-order calls + curvature construction)"
    ),
    "first_order_calls_to_eps": (
        "First-order calls to reach suboptimality ≤ ε (n_grad + n_loss + 2 n_fvp; "
        "curvature construction excluded)"
    ),
    "iterations_to_eps": "Iterations to reach suboptimality ≤ ε",
    "final_suboptimality": "Suboptimality at the last recorded iteration",
    "cost_per_step": "Cost per step in full-gradient evaluations ((time / iterations) / grad_time)",
    "fidelity": (
        "Mean fidelity over the run: cosine(step, direction of the dense natural gradient "
        "with the true Fisher)"
    ),
    "test_metric": "Final test metric (accuracy; MSE for the autoencoder)",
    "to_target": (
        "Training-loss target: updates, epochs and seconds until loss − F* ≤ gap · (L0 − F*)"
    ),
    "tuning": "Tuning: search space, selection rule, selected configuration and cost of the search",
}
"""Table name -> title."""

_LABEL_NOTE = 'Solver label "exact": the dense exact-Fisher natural gradient.'
_BEST_KNOWN_NOTE = (
    "†: F* = best known, the lowest loss any run of this (non-convex) problem reached on "
    "the same seed in these results; other problems: F* = exact optimum."
)
_LONG_RUN_NOTE = (
    "†: non-convex problem; F* = the lower of a long reference run's loss (the grid's "
    "[reference]: a strong solver, a much larger budget, the runs' initialization) and the "
    "lowest loss any run of it reached on the same seed; other problems: F* = exact optimum."
)
TABLE_NOTES = dict.fromkeys(TABLE_TITLES, "") | {
    "headline_time": (
        "Time is measured on one shared machine: two significant figures at most, and none "
        "below the interquartile range."
    ),
    "headline_work": (
        "Work = n_grad + n_loss + 2 n_fvp + curvature flops / flops of one gradient; "
        "deterministic up to the seed: three significant figures at most."
    ),
    "hyperparameters": (
        "Every hyperparameter as resolved for the runs (defaults included); blank: the "
        "algorithm has no such parameter; unknown: no run of that configuration has a record."
    ),
    "step_diagnostics": (
        "Status columns count runs by final status; steps, rejected, cg_capped and "
        "fallbacks are summed over the runs; flagged: runs whose loss ended above its start "
        "or whose steps were mostly not taken."
    ),
    "to_target": (
        "L0: a run's training loss at iteration 0; F*: as for suboptimality. A run reaches "
        "the target at its first recorded iteration within it; updates: iterations so far; "
        "epochs: updates × batch size / training samples (full batch: one per update); "
        "seconds: inside optimizer steps. Final loss and test metric (accuracy; MSE for "
        "autoencoders) at the run's last recorded iteration."
    ),
    "tuning": (
        'Each tuned label is reported as "<label> (tuned)" with the selected configuration of '
        'its problem, beside its start "<label> (default)"; candidates ran on the tuning '
        "seeds only, apart from the reported seeds. Score: the rule's value of the selected "
        "candidate; runs, seconds (optimizer time, summed) and failed runs: the whole search."
    ),
}
"""Table name (every one of :data:`TABLE_TITLES`) -> footnote that holds for every
instance of that table, "" if none; the renderers add the notes that depend on the data
(ε, n of seeds, which marks occur)."""

_SECONDS = ("headline_time", "time_to_eps", "cost_per_step")
_UNITS = {
    "headline_time": "seconds",
    "time_to_eps": "seconds",
    "headline_work": "gradient evaluations",
    "work_to_eps": "gradient evaluations",
    "first_order_calls_to_eps": "gradient evaluations",
    "iterations_to_eps": "iterations",
    "final_suboptimality": "loss units",
    "cost_per_step": "gradient evaluations per step",
    "fidelity": "cosine",
    "test_metric": "accuracy or MSE",
}
_COLUMNS = {
    "problem": ("benchmark problem (dataset and model)", ""),
    "solver": (
        'solver label: one configuration of an algorithm ("exact": the dense exact-Fisher '
        "natural gradient)",
        "",
    ),
    "config_id": ("hash of the resolved configuration and budget (hyperparameter table)", ""),
    "algorithm": ("optimizer the configuration runs", ""),
    "reference": (
        'what F* in suboptimality = loss - F* is: "exact optimum" (convex problems) or '
        '"best known" (lowest loss of any run of the problem and seed in these results)',
        "",
    ),
    "eps": ("absolute suboptimality target ε", "loss units"),
    "median": ("median over the runs (seeds)", None),
    "q25": ("25 % quantile over the runs (linear interpolation)", None),
    "q75": ("75 % quantile over the runs (linear interpolation)", None),
    "reached": ("runs that reached ε", "runs"),
    "n_runs": ("runs summarized (one per seed)", "runs"),
    "steps": ("steps attempted, summed over the runs", "steps"),
    "rejected": ("steps not taken (rejected, no descent), summed over the runs", "steps"),
    "cg_capped": ("CG solves stopped at their iteration cap, summed over the runs", "solves"),
    "fallbacks": (
        "linear solves that fell back to jitter or pseudo-inverse, summed over the runs",
        "solves",
    ),
    "flagged": ("runs whose loss ended above its start or mostly rejected steps", "runs"),
    "flags": ("each flag with its number of runs", ""),
    "max_iter": ("iteration budget per run", "iterations"),
    "time_limit": ("optimizer time budget per run", "seconds"),
    "tol": ("gradient-norm stopping tolerance", "gradient norm"),
    "target_suboptimality": ("a run stops when loss - F* falls below this", "loss units"),
    "batch_size": ("mini-batch size (none: full batch)", "samples"),
    "fidelity": ("whether fidelity to the dense natural gradient was recorded", ""),
    "seeds": ("seeds of the runs", ""),
    "tuning": (
        "how the configuration was chosen: tuned per problem (tuning table), default "
        "(untuned) start of a tuned label, or not tuned",
        "",
    ),
    "problems": ("problems the configuration ran on", ""),
    "n_reached": ("runs that reached the training-loss target", "runs"),
    "n_skipped": (
        "runs not attempted (an exact Fisher above the grid's dense_flop_limit, say)",
        "runs",
    ),
    "skip_reason": ("why the first skipped run was not attempted; empty if none", ""),
    **{
        f"{stat}_{q}": (f"{what} to the training-loss target, {how} over the runs", unit)
        for stat, what, unit in (
            ("updates", "updates (iterations)", "updates"),
            ("epochs", "epochs (updates × batch size / training samples)", "epochs"),
            ("time", "optimizer time", "seconds"),
        )
        for q, how in (
            ("median", "median"),
            ("q25", "25 % quantile"),
            ("q75", "75 % quantile"),
        )
    },
    "final_loss_median": ("training loss at the last recorded iteration, median", "loss units"),
    "test_metric_median": (
        "test metric at the last recorded iteration, median (accuracy; MSE for autoencoders)",
        "accuracy or MSE",
    ),
    "target_gap": ("fraction of the initial gap L0 - F* left at the target", "ratio"),
    "space": ("search space: knob -> values tried (JSON)", "as configured"),
    "selected": ("the selected point of the search space (JSON)", "as configured"),
    "rule": ("selection rule, declared before any run", ""),
    "score": ("the selected candidate's value of the rule (median final loss)", "loss units"),
    "tuning_seeds": ("seeds of the tuning runs (apart from the reported seeds)", ""),
    "candidates": ("points of the search space tried", "configurations"),
    "runs": ("tuning runs: candidates × tuning seeds", "runs"),
    "seconds": ("optimizer time of the tuning runs, summed", "seconds"),
    "failed_runs": ("tuning runs that diverged, failed or ended non-finite", "runs"),
    "edge_of_space": (
        "knobs whose selected value is an end of the range searched (the best may lie "
        "outside it); empty if none",
        "",
    ),
}
_PARAMS = {
    "fisher": ("Fisher type", '"exact": the true Fisher (labels drawn from the model).'),
    "kfac_damping": (
        "K-FAC damping mode",
        '"exact": (A ⊗ G + γI)⁻¹ by eigendecomposition, not factored Tikhonov.',
    ),
    "curvature": ("curvature representation", '"exact": the dense Fisher matrix.'),
}
"""Hyperparameters whose values include "exact": row label and the note saying which."""


# ----------------------------------------------------------------------------- numbers
def _digits(name: str) -> int:
    return TIME_DIGITS if name in _SECONDS else COUNT_DIGITS


def _exponent(x: float) -> int:
    return math.floor(math.log10(abs(x)))


def spread_place(median: float, q25: float, q75: float, digits: int) -> float | None:
    """Decimal place (a power of ten) of the last digit shown for a median and its IQR.

    ``10**(e - digits + 1)`` for a median of exponent e, coarsened to the leading digit
    of ``q75 - q25`` when that is finite and larger, and never coarser than the median's
    own leading digit. None when the median is not a finite non-zero number.
    """
    if not (np.isfinite(median) and median != 0):
        return None
    place = 10.0 ** (_exponent(median) - digits + 1)
    iqr = q75 - q25
    if np.isfinite(iqr) and iqr > 0:
        place = max(place, 10.0 ** _exponent(iqr))
    return min(place, 10.0 ** _exponent(median))


def _unit_place(table: pd.DataFrame, column: str, x) -> float | None:
    """Place of the last digit shown of ``x`` in a ``column`` whose unit a table made
    outside the report names (module doc), or the report's own column documentation
    names (``seconds`` of the tuning table); None (6 significant figures) otherwise."""
    unit = table.attrs.get("columns", {}).get(column, _COLUMNS.get(column, ("", "")))[1]
    if unit == "seconds":
        return spread_place(x, np.nan, np.nan, TIME_DIGITS)
    if unit == "ratio":
        return 10.0**-RATIO_DECIMALS
    return None


@dataclass(frozen=True)
class _Style:
    """How one output format writes the pieces of a cell."""

    escape: Callable[[str], str]
    inf: str
    nan: str
    never: str
    dagger: str
    bold: Callable[[str], str]
    power: Callable[[str, int], str]
    spread: Callable[[str, str, str], str]


def _number(x, style: _Style, place: float | None = None) -> str:
    """``x`` rounded at ``place`` (at least one significant figure), or to 6 significant
    figures when ``place`` is None; plain decimals from 1e-4 to 1e6, else a power of ten."""
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if np.isnan(x):
        return style.nan
    if np.isinf(x):
        return style.inf if x > 0 else "-" + style.inf
    if x == 0:
        return "0"
    if place is None:
        text = f"{x:.6g}"
        if "e" not in text:
            return text
        mantissa, exp = text.split("e")
        return style.power(mantissa, int(exp))
    place = min(place, 10.0 ** _exponent(x))
    decimals = -round(math.log10(place))
    if 1e-4 <= abs(x) < 1e6:
        return f"{round(x, decimals):.{max(decimals, 0)}f}"
    sig = _exponent(x) - round(math.log10(place))
    mantissa, exp = f"{x:.{max(sig, 0)}e}".split("e")
    return style.power(mantissa, int(exp))


def _printed(x: float, place: float | None) -> float:
    """The value :func:`_number` prints for a finite ``x`` at ``place``."""
    if x == 0 or place is None:
        return float(x)
    place = min(place, 10.0 ** _exponent(x))
    return round(float(x), -round(math.log10(place)))


def _value(v, style: _Style) -> str:
    """A hyperparameter or text cell: numbers to 6 significant figures, None as "none"."""
    if v is None:
        return "none"
    if isinstance(v, str):
        return style.escape(v)
    if isinstance(v, (list, tuple)):
        return style.escape(", ".join(str(e) for e in v))
    return _number(v, style)


def _md_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\|*`" else ch for ch in text)


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
    "ε": r"$\varepsilon$",
    "≤": r"$\le$",
    "⊗": r"$\otimes$",
    "γ": r"$\gamma$",
    "⁻¹": r"$^{-1}$",
    "†": r"$^\dagger$",
    "∞": r"$\infty$",
    "—": "---",
    "–": "--",
}


def _latex_escape(text: str) -> str:
    out = str(text)
    out = out.replace("⁻¹", "\x00")
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in out)
    return out.replace("\x00", _LATEX_SPECIAL["⁻¹"])


def _md_power(mantissa: str, exp: int) -> str:
    return f"{mantissa}e{exp}"


_MARKDOWN = _Style(
    escape=_md_escape,
    inf="∞",
    nan="–",
    never="—",
    dagger="†",
    bold=lambda s: f"**{s}**",
    power=_md_power,
    spread=lambda m, a, b: f"{m} [{a}, {b}]",
)
_PLAIN = _Style(
    escape=str,
    inf="∞",
    nan="–",
    never="—",
    dagger="†",
    bold=str,
    power=_md_power,
    spread=lambda m, a, b: f"{m} [{a}, {b}]",
)
"""For notes and captions: every renderer escapes them for its format."""
_LATEX = _Style(
    escape=_latex_escape,
    inf=r"$\infty$",
    nan="--",
    never="---",
    dagger=r"$^\dagger$",
    bold=lambda s: rf"\textbf{{{s}}}",
    power=lambda m, e: f"${m}\\times 10^{{{e}}}$" if m != "1" else f"$10^{{{e}}}$",
    spread=lambda m, a, b: (
        rf"\begin{{tabular}}{{@{{}}r@{{}}}}{m}\\ {{\scriptsize[{a}, {b}]}}\end{{tabular}}"
    ),
)
_HTML = _Style(
    escape=html.escape,
    inf="∞",
    nan="–",
    never="—",
    dagger="<sup>†</sup>",
    bold=lambda s: f"<b>{s}</b>",
    power=lambda m, e: f"{m}×10<sup>{e}</sup>" if m != "1" else f"10<sup>{e}</sup>",
    spread=lambda m, a, b: f'{m}<br><span class="iqr">[{a}, {b}]</span>',
)


# ----------------------------------------------------------------------------- layouts
@dataclass
class _Grid:
    """A table for reading: header and rows of formatted cells, the first ``n_keys``
    columns identify a row, ``numeric`` flags right-aligned columns."""

    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    n_keys: int
    caption: str = ""
    notes: list[str] = field(default_factory=list)


def _problem_label(problem: str, reference: str, style: _Style) -> str:
    mark = style.dagger if reference in (BEST_KNOWN, LONG_RUN) else ""
    return style.escape(str(problem)) + mark


def _reference_note(references) -> str:
    kinds = set(references)
    if LONG_RUN in kinds:
        return _LONG_RUN_NOTE
    if BEST_KNOWN in kinds:
        return _BEST_KNOWN_NOTE
    return "F* = exact optimum for every problem." if EXACT_OPTIMUM in kinds else ""


def _headline_grid(name: str, table: pd.DataFrame, style: _Style) -> _Grid:
    digits = _digits(name)
    eps, measure = table.attrs.get("eps"), table.attrs.get("measure", name.split("_")[-1])
    solvers = sorted(table["solver"].unique())
    n_common = int(table["n_runs"].mode().min()) if len(table) else 0
    rows, used = [], set()
    for problem, group in table.groupby("problem", sort=True):
        cells = group.set_index("solver")
        n_row = set(cells["n_runs"])
        row_n = n_row.pop() if len(n_row) == 1 else None
        label = _problem_label(problem, cells["reference"].iloc[0], style)
        if row_n is not None and row_n != n_common:
            label += f" (n = {row_n})"
        rounded = {  # the medians as printed, so cells that print equal tie
            s: _printed(r["median"], spread_place(r["median"], r["q25"], r["q75"], digits))
            for s, r in cells.iterrows()
            if np.isfinite(r["median"])
        }
        best = min(rounded.values(), default=None)
        row = [label]
        for solver in solvers:
            if solver not in cells.index:
                row.append("")
                used.add("blank")
                continue
            r = cells.loc[solver]
            n, reached = int(r["n_runs"]), int(r["reached"])
            if np.isfinite(r["median"]):
                place = spread_place(r["median"], r["q25"], r["q75"], digits)
                m, a, b = (_number(r[k], style, place) for k in ("median", "q25", "q75"))
                if rounded[solver] == best:
                    m = style.bold(m)
                used.update("inf" for v in (r["q25"], r["q75"]) if np.isinf(v))
                cell = style.spread(m, a, b)
            elif np.isnan(r["median"]):
                cell = style.nan
                used.add("nan")
            else:
                cell = style.never + (f" ({reached}/{n})" if reached else "")
                used.add("never")
            if row_n is None and n != n_common:
                cell += f" (n = {n})"
            row.append(cell)
        rows.append(row)
    what = "time" if measure == "time" else "work"
    eps_text = "ε" if eps is None else f"ε = {_number(eps, _PLAIN)}"
    caption = (
        f"Median [q25, q75] over n = {n_common} seeds of the {what} to reach "
        f"suboptimality ≤ {eps_text}; bold: the lowest median of the row (ties all bold)."
    )
    notes = [TABLE_NOTES[name]] if TABLE_NOTES.get(name) else []
    if "never" in used:
        notes.append("—: the median run did not reach ε within its budget; (k/n): k of n did.")
    if "inf" in used:
        notes.append("∞ in brackets: the runs at that quartile did not reach ε.")
    if "nan" in used:
        notes.append(
            "–: not measured (a curve of restarted fits, whose oracle calls the library does "
            "not expose; or no gradient-flop count stored)."
        )
    if "blank" in used:
        notes.append("Blank: the solver did not run on the problem.")
    notes.append(_reference_note(table["reference"]))
    if "exact" in solvers:
        notes.append(_LABEL_NOTE)
    header = ["problem", *(style.escape(s) for s in solvers)]
    return _Grid(header, rows, [False] + [True] * len(solvers), 1, caption, [n for n in notes if n])


def _hyperparameter_grid(name: str, table: pd.DataFrame, style: _Style) -> _Grid:
    fields = [c for c in table.columns if c != "solver"]
    same, rows, params = [], [], set()
    for column in fields:
        values = [_value(v, style) for v in table[column]]
        if len(table) > 1 and len(set(values)) == 1 and column not in ("algorithm", "config_id"):
            same.append(f"{column} = {_value(table[column].iloc[0], _PLAIN) or 'blank'}")
            continue
        if column in _PARAMS and any(v == "exact" for v in table[column]):
            params.add(column)
        rows.append([style.escape(column), *values])
    notes = [TABLE_NOTES[name]]
    if same:
        notes.append("Same for every configuration: " + "; ".join(same) + ".")
    if "exact" in set(table["solver"]):
        notes.append(_LABEL_NOTE)
    notes += [f"{p} ({_PARAMS[p][0]}) {_PARAMS[p][1]}" for p in sorted(params)]
    labels = table["solver"].astype(str)
    repeated = labels.duplicated(keep=False)
    if "problems" in table.columns:  # a label tuned per problem: a column per problem
        labels = labels.where(~repeated, labels + ": " + table["problems"].astype(str))
    header = ["", *(style.escape(s) for s in labels)]
    caption = f"{len(table)} solver configurations (columns: solver labels)."
    return _Grid(header, rows, [False] * (len(table) + 1), 1, caption, notes)


def _long_grid(name: str, table: pd.DataFrame, style: _Style) -> _Grid:
    columns = [c for c in table.columns if c not in ("config_id", "reference")]
    notes, keep = [], []
    for c in columns:
        values = table[c].drop_duplicates()
        if c not in ("problem", "solver") and len(table) > 1 and len(values) == 1:
            value = _value(values.iloc[0], _PLAIN)
            notes.append(f"{c} = {value} in every row." if value else f"{c}: empty in every row.")
        else:
            keep.append(c)
    digits = _digits(name)
    spread = {"median", "q25", "q75"} <= set(keep)
    rows = []
    for _, r in table.iterrows():
        place = spread_place(r["median"], r["q25"], r["q75"], digits) if spread else None
        row = []
        for c in keep:
            if c == "problem":
                row.append(_problem_label(r[c], r.get("reference", ""), style))
            elif spread and c in ("median", "q25", "q75"):
                row.append(_number(r[c], style, place))
            elif isinstance(r[c], str):
                row.append(style.escape(r[c]))
            else:
                row.append(_number(r[c], style, _unit_place(table, c, r[c])))
        rows.append(row)
    numeric = [
        pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
        for c in keep
    ]
    if "reference" in table.columns:
        notes.append(_reference_note(table["reference"]))
    if "exact" in set(table.get("solver", ())):
        notes.append(_LABEL_NOTE)
    if TABLE_NOTES.get(name):
        notes.insert(0, TABLE_NOTES[name])
    notes.extend(table.attrs.get("notes", ()))  # a table made outside the report
    keys = ("problem", "solver", *table.attrs.get("key_columns", ()))
    n_keys = sum(c in keys for c in keep)
    header = [style.escape(COLUMN_LABELS.get(c, c)) for c in keep]
    return _Grid(header, rows, numeric, n_keys, "", [n for n in notes if n])


_TARGET_CELLS = (("updates", COUNT_DIGITS), ("epochs", COUNT_DIGITS), ("time", TIME_DIGITS))
"""Statistics of the training-loss target table shown as "median [q25, q75]" cells."""
_QUANTILES = ("median", "q25", "q75")


def _target_grid(name: str, table: pd.DataFrame, style: _Style) -> _Grid:
    """The training-loss target table: a row per (problem, solver), "k/n" runs that
    reached it, then median [q25, q75] of updates, epochs (left out when equal to the
    updates in every row: full batch) and seconds, then the final loss and test metric."""
    full_batch = all(table[f"epochs_{q}"].equals(table[f"updates_{q}"]) for q in _QUANTILES)
    cells = [(s, d) for s, d in _TARGET_CELLS if not (s == "epochs" and full_batch)]
    rows, used = [], set()
    per_problem = len(set(table["target_gap"])) > 1
    reasons = {}
    for _, r in table.iterrows():
        skipped = int(r.get("n_skipped", 0)) == int(r["n_runs"]) > 0
        if skipped:
            reasons.setdefault(str(r["solver"]), []).append(
                (str(r["problem"]), str(r["skip_reason"]))
            )
        label = _problem_label(r["problem"], r["reference"], style)
        if per_problem:  # each problem's own target, named with it
            label += style.escape(f" (ρ = {_number(r['target_gap'], _PLAIN)})")
        row = [
            label,
            style.escape(str(r["solver"])),
            f"{int(r['n_reached'])}/{int(r['n_runs'])}",
        ]
        for stat, digits in cells:
            m, a, b = (r[f"{stat}_{q}"] for q in _QUANTILES)
            if np.isfinite(m):
                place = spread_place(m, a, b, digits)
                row.append(style.spread(*(_number(v, style, place) for v in (m, a, b))))
                used.update("inf" for v in (a, b) if np.isinf(v))
            elif skipped:
                row.append("skipped")
            else:
                row.append(style.nan if np.isnan(m) else style.never)
                used.add("nan" if np.isnan(m) else "never")
        row += [_number(r[c], style) for c in ("final_loss_median", "test_metric_median")]
        rows.append(row)
    gaps = set(table["target_gap"]) if len(table) else set()
    gap = table.attrs.get("target_gap", gaps.pop() if len(gaps) == 1 else None)
    gap_text = "ρ (column target_gap)" if gap is None else _number(gap, _PLAIN)
    caption = (
        f"Median [q25, q75] over the runs until loss − F* ≤ {gap_text} · (L0 − F*); "
        "reached: runs that reached it / runs."
    )
    notes = [TABLE_NOTES[name]]
    if full_batch and len(table):
        notes.append("Epochs = updates in every row (full batch): not shown.")
    if "never" in used:
        notes.append("—: the median run did not reach the target within its budget.")
    for solver, where in reasons.items():
        notes.append(
            f"skipped: every run of {solver} on "
            + "; ".join(f"{problem} ({reason})" for problem, reason in where)
            + "."
        )
    if "inf" in used:
        notes.append("∞ in brackets: the runs at that quartile did not reach the target.")
    if "nan" in used:
        notes.append("–: no reference F* for these runs.")
    notes.append(_reference_note(table["reference"]))
    if "exact" in set(table["solver"]):
        notes.append(_LABEL_NOTE)
    header = ["problem", "solver", "reached", *(s if s != "time" else "seconds" for s, _ in cells)]
    header += ["final loss", "test metric"]
    numeric = [False, False] + [True] * (len(header) - 2)
    return _Grid(header, rows, numeric, 2, caption, [n for n in notes if n])


def _json_text(text) -> str:
    """A JSON object of knobs as text for reading: ``{"lr": [0.1, 1]}`` -> "lr = 0.1, 1"
    (also from the mapping itself); any other cell as it is."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        value = text
    if not isinstance(value, Mapping):
        return str(text)

    def text_of(v) -> str:
        return ", ".join(_value(e, _PLAIN) for e in v) if isinstance(v, list) else _value(v, _PLAIN)

    return "; ".join(f"{k} = {text_of(v)}" for k, v in value.items())


def _grid(name: str, table: pd.DataFrame, style: _Style) -> _Grid:
    if name.startswith("headline_"):
        return _headline_grid(name, table, style)
    if name == "hyperparameters":
        return _hyperparameter_grid(name, table, style)
    if name == "to_target":
        return _target_grid(name, table, style)
    if name == "tuning":
        readable = {c: table[c].map(_json_text) for c in ("space", "selected") if c in table}
        return _long_grid(name, table.assign(**readable), style)
    return _long_grid(name, table, style)


# ----------------------------------------------------------------------------- formats
def _prov_items(prov: Mapping) -> list[tuple[str, str]]:
    """The passport of a table in a few lines: what ran, on which code, where.

    Runs, problems, solver labels, code versions, git commits, machines, BLAS (library,
    version, kernel, threads) and the versions of Python, numpy and scipy, each distinct
    value once; any other top-level fact that is a plain value, as it is. The
    configurations (every resolved hyperparameter) are in the hyperparameter table; the
    complete record is in the table's JSON sidecar.
    """

    def join(values, sep: str = ", ") -> str:
        return sep.join(str(v) for v in values) or "none"

    def each(key):  # a list of records, or one record
        values = prov.get(key, [])
        values = [values] if isinstance(values, Mapping) else values
        return [v for v in values if isinstance(v, Mapping)]

    items = [
        (key, join(prov[key]) if isinstance(prov[key], list) else str(prov[key]))
        for key in ("n_runs", "problems", "solvers", "code_versions")
        if key in prov
    ]
    if "git" in prov:
        commits = [
            f"{g.get('commit', '?')[:12]}{' (dirty)' if g.get('dirty') is True else ''}"
            for g in each("git")
        ]
        items.append(("git commits", join(commits)))
    if "machines" in prov:
        machines = [
            f"{m.get('cpu', '?')}, {m.get('logical_cores', '?')} logical cores"
            for m in each("machines")
        ]
        items.append(("machines", join(machines, "; ")))
    if "blas" in prov:
        pools = {
            " ".join(
                str(part)
                for part in (b.get("internal_api"), b.get("version"), b.get("architecture"))
                if part
            )
            + f" x{b.get('num_threads', '?')}"
            for libs in prov["blas"]
            if isinstance(libs, list)
            for b in libs
            if isinstance(b, Mapping)
        }
        items.append(("BLAS/OpenMP (threads)", join(sorted(pools))))
    versions = sorted(
        {f"Python {v}" for v in prov.get("python", [])}
        | {
            f"{lib} {d[lib]}"
            for d in each("dependencies")
            for lib in ("numpy", "scipy")
            if lib in d
        }
    )
    if versions:
        items.append(("versions", join(versions)))
    if prov.get("runs_without_record"):
        items.append(("runs without record", str(prov["runs_without_record"])))
    summarized = {"n_runs", "problems", "solvers", "code_versions", "git", "machines", "blas"}
    summarized |= {"python", "dependencies", "runs_without_record", "configurations"}
    items += [  # any other plain fact of the record, as it is
        (str(key), " ".join(str(value).splitlines()))
        for key, value in prov.items()
        if key not in summarized and isinstance(value, (str, int, float, bool))
    ]
    return items


def _markdown(name: str, table: pd.DataFrame, prov: Mapping) -> str:
    """GitHub-flavoured Markdown; provenance in an HTML comment, notes below the table."""
    grid = _grid(name, table, _MARKDOWN)
    lines = ["<!--", f"provenance (complete record: {name}.json):"]
    lines += [f"  {k}: {v}".replace("--", "- -") for k, v in _prov_items(prov)]
    lines += ["-->", "", f"**{_md_escape(_title(name, table))}**", ""]
    if grid.caption:
        lines += [grid.caption, ""]
    lines.append("| " + " | ".join(grid.header) + " |")
    lines.append("|" + "|".join("---:" if n else ":---" for n in grid.numeric) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in grid.rows]
    if grid.notes:
        lines += ["", *(f"{note}  " for note in grid.notes)]
    return "\n".join(lines) + "\n"


def _chunks(n_values: int) -> list[range]:
    """Value-column ranges of at most MAX_LATEX_COLUMNS, as even as possible."""
    n_parts = max(1, math.ceil(n_values / MAX_LATEX_COLUMNS))
    bounds = np.linspace(0, n_values, n_parts + 1).round().astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _latex(name: str, table: pd.DataFrame, prov: Mapping) -> str:
    r"""booktabs tabulars (longtable when long); provenance and caption in % comments."""
    grid = _grid(name, table, _LATEX)
    env = "longtable" if len(grid.rows) > LONGTABLE_ROWS else "tabular"
    packages = r"\usepackage{booktabs}" + (r", \usepackage{longtable}" if env != "tabular" else "")
    lines = [f"% {_title(name, table)}", f"% requires {packages}"]
    lines += [f"% provenance (complete record: {name}.json):"]
    lines += [f"% {k}: {v}" for k, v in _prov_items(prov)]
    k = grid.n_keys
    parts = _chunks(len(grid.header) - k)
    for i, part in enumerate(parts):
        cols = [*range(k), *(k + j for j in part)]
        align = "".join("r" if grid.numeric[c] else "l" for c in cols)
        head = " & ".join(grid.header[c] for c in cols) + r" \\"
        if i:
            lines.append(r"\par\medskip")
        lines += [f"\\begin{{{env}}}{{{align}}}", r"\toprule", head, r"\midrule"]
        if env == "longtable":
            lines += [r"\endhead", r"\bottomrule", r"\endfoot"]
        lines += [" & ".join(row[c] for c in cols) + r" \\" for row in grid.rows]
        if env == "tabular":
            lines.append(r"\bottomrule")
        lines.append(f"\\end{{{env}}}")
    notes = " ".join(_latex_escape(n) for n in [grid.caption, *grid.notes] if n)
    if notes:
        lines += [r"\par\smallskip", f"{{\\footnotesize {notes}\\par}}"]
    return "\n".join(lines) + "\n"


def render_html(name: str, table: pd.DataFrame) -> str:
    """The table as an HTML ``<table>`` fragment: the reading layout of ``name`` (module
    doc), the data-dependent caption as ``<caption>``, the notes in ``<tfoot>``."""
    grid = _grid(name, table, _HTML)
    parts = [f'<table class="data {html.escape(name)}">']
    if grid.caption:
        parts.append(f"<caption>{html.escape(grid.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{h}</th>" for h in grid.header) + "</tr></thead>")
    parts.append("<tbody>")
    for row in grid.rows:
        cells = [f"<th>{c}</th>" if i < grid.n_keys else f"<td>{c}</td>" for i, c in enumerate(row)]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody>")
    if grid.notes:
        notes = "<br>".join(html.escape(n) for n in grid.notes)
        parts.append(f'<tfoot><tr><td colspan="{len(grid.header)}">{notes}</td></tr></tfoot>')
    parts.append("</table>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- files
def _title(name: str, table: pd.DataFrame) -> str:
    """The table's title: its ``attrs["title"]``, else that of :data:`TABLE_TITLES`."""
    return table.attrs.get("title", TABLE_TITLES.get(name, name))


def _column_doc(name: str, column: str, table: pd.DataFrame) -> dict[str, str]:
    """Description and unit of a CSV column of table ``name``: from the table's
    ``attrs["columns"]`` (column -> (description, unit)) when it has them."""
    if column in table.attrs.get("columns", {}):
        description, unit = table.attrs["columns"][column]
        return {"description": description, "unit": unit}
    fixed = ("solver", "config_id", "algorithm", "tuning", "problems", *BUDGET, "seeds")
    if name == "hyperparameters" and column not in fixed:
        what = _PARAMS.get(column, (column,))[0]
        return {
            "description": f"hyperparameter {what} as resolved for the runs (blank: the "
            "algorithm has none; unknown: no run record)",
            "unit": "as configured",
        }
    if column in _COLUMNS:
        description, unit = _COLUMNS[column]
        if name == "hyperparameters" and column in BUDGET:
            description += " (budget)"
        return {"description": description, "unit": _UNITS.get(name, "") if unit is None else unit}
    if name == "step_diagnostics":
        return {"description": f"runs whose final status is {column}", "unit": "runs"}
    return {"description": column, "unit": ""}


def _sidecar(name: str, table: pd.DataFrame, prov: Mapping) -> str:
    doc = {
        "title": _title(name, table),
        "note": TABLE_NOTES.get(name, ""),
        "columns": {COLUMN_LABELS.get(c, c): _column_doc(name, c, table) for c in table.columns},
        "attrs": {k: v for k, v in table.attrs.items() if k not in ("title", "columns")},
        "provenance": prov,
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def write_tables(
    tables: Mapping[str, pd.DataFrame], out_dir: str | Path, provenance_dict: Mapping
) -> list[Path]:
    """Write every table as CSV + JSON sidecar, Markdown and LaTeX (module doc).

    The CSV is plain (``pandas.read_csv(path)`` reads it back; full precision, ``inf``
    for never reached, empty for NaN and for blank cells). The JSON sidecar holds the
    title, each column's description and unit, the frame's ``attrs`` (ε and measure of a
    headline table) and ``provenance_dict``; the Markdown (in an HTML comment) and the LaTeX
    (in ``%`` lines) carry its summary (:func:`_prov_items`) and name the sidecar. Files
    are UTF-8; a file whose bytes would not change is left alone; tables of an earlier
    report are removed by :func:`build_report`.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Table name (the file stem; it selects the reading layout) -> table.
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
    files = {}
    for name, table in tables.items():
        files[f"{name}.csv"] = table.rename(columns=COLUMN_LABELS).to_csv(index=False)
        files[f"{name}.json"] = _sidecar(name, table, provenance_dict)
        files[f"{name}.md"] = _markdown(name, table, provenance_dict)
        files[f"{name}.tex"] = _latex(name, table, provenance_dict)
    return _write_folder(out_dir, {k: v.encode("utf-8") for k, v in files.items()})


def _write_folder(out_dir: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` (name -> bytes) with :func:`store.write_if_changed`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        write_if_changed(out_dir / name, data)
        paths.append(out_dir / name)
    return paths


def json_safe(value):
    """``value`` with non-finite floats as text ("inf", "-inf", "nan"): strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return str(float(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_findings(
    findings: Sequence[Mapping], out_dir: str | Path, provenance_dict: Mapping
) -> list[Path]:
    """Write :func:`.metrics.findings` as ``findings.json`` and ``findings.md``.

    ``findings.json``: ``{"title", "findings": [...], "provenance"}``, strict JSON (a
    median that never reached the target is the text ``"inf"``). ``findings.md``: the
    statements as a list (the summary last), with the provenance summary in an HTML
    comment like the tables. Files are rewritten only when their bytes change.

    Returns
    -------
    list of Path
        ``[findings.json, findings.md]``.
    """
    title = "Findings: natural gradient against the best tuned baseline, per problem"
    doc = {"title": title, "findings": json_safe(list(findings)), "provenance": provenance_dict}
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    lines = ["<!--", "provenance (complete record: findings.json):"]
    lines += [f"  {k}: {v}".replace("--", "- -") for k, v in _prov_items(provenance_dict)]
    lines += ["-->", "", f"**{_md_escape(title)}**", ""]
    lines += [f"- {_md_escape(f['statement'])}" for f in findings]
    files = {"findings.json": text, "findings.md": "\n".join(lines) + "\n"}
    return _write_folder(Path(out_dir), {k: v.encode("utf-8") for k, v in files.items()})

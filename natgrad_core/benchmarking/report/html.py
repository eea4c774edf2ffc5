"""The self-contained HTML report page.

The page, top to bottom (every section and sub-section is listed in the table of
contents, which links to it by element id):

1. title, and one line saying what the page summarizes (runs, problems, solvers, code);
2. **contents**;
3. **findings** (with a ``to_target`` table): the statements of :func:`.metrics.findings`,
   natural gradient against the best tuned baseline per problem, computed from that table;
4. **headline**: :func:`headline_reading` (two sentences generated from the headline
   tables: who won where, by what factor, and where natural gradient beat the
   baselines), the headline tables (time and work to ε), the training-loss target table
   (``to_target``, if any), and the performance and data profiles;
5. **how to read this**: the definitions, including the four meanings of "exact";
6. **solver configurations**: the hyperparameter and budget table; then **tuning** (with
   a ``tuning`` table): the search behind the "(tuned)" labels and what it cost;
7. **problems**: per problem, its convergence figure beside its time- and work-to-ε
   tables (collapsed);
8. **step diagnostics**, then **all other tables**, each collapsed in
   ``<details>`` (the fidelity figure beside the fidelity table);
9. **provenance**: the record of what the results summarize as nested key/value tables.

Self-contained and offline: inline CSS, PNGs as base64 ``data:`` URIs, no JavaScript, no
external URL. The print style opens every ``<details>``; wide tables scroll inside their
own wrapper, never the page.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ...optim.natural_gradient import PRECONDITIONERS
from ..store import write_if_changed
from . import figures as _figures
from .figures import caption
from .metrics import REFERENCE_CLASSES, findings
from .tables import TABLE_TITLES, render_html

HEADLINE_TABLES = ("headline_time", "headline_work")
"""Tables shown open in the headline section, in this order."""
PER_PROBLEM_TABLES = ("time_to_eps", "work_to_eps")
"""Long tables shown per problem, beside that problem's convergence figure."""
HEADLINE_FIGURES = ("performance_profiles", "data_profiles")
"""Figures of the headline section: they summarize all problems."""
_PROBLEM_FIGURE = "suboptimality_"
_FIGURE_BESIDE_TABLE = {"fidelity": "fidelity"}
"""Figure stem -> the long table it illustrates (shown together)."""
TARGET_TABLE = "to_target"
"""The training-loss target table: in the headline section, and the source of the findings."""
_OWN_SECTION = (
    *HEADLINE_TABLES,
    TARGET_TABLE,
    "hyperparameters",
    "tuning",
    "step_diagnostics",
    *PER_PROBLEM_TABLES,
)
_MEASURE_WORDS = {
    "time": "time",
    "work": "work (gradient evaluations including curvature construction)",
}

_CSS = """
:root { --muted: #555; --rule: #d8d8d8; --tint: #f5f5f0; }
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1200px; margin: 0 auto; padding: 0.6em 1.2em 3em; color: #222;
       line-height: 1.4; font-size: 15px; }
h1 { font-size: 1.45em; margin: 0.3em 0 0.1em; }
h2 { font-size: 1.25em; margin: 1.8em 0 0.5em; border-bottom: 1px solid var(--rule); }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
.scope { color: var(--muted); margin: 0 0 0.6em; font-size: 0.92em; }
nav#contents { background: var(--tint); padding: 0.35em 0.9em; font-size: 0.9em;
               border-left: 4px solid #bbb; }
nav#contents h2 { font-size: 1em; margin: 0.2em 0; border: 0; }
nav#contents ol { margin: 0.1em 0; padding-left: 1.4em; }
nav#contents ol.sub { display: inline; padding: 0; }
nav#contents ol.sub li { display: inline; }
nav#contents ol.sub li + li::before { content: " · "; color: var(--muted); }
nav#contents ol.sub::before { content: ": "; }
#headline h2 { margin-top: 0.9em; }
ul.findings li { margin: 0.25em 0; }
p.reading { font-size: 1.02em; background: #eef4fb; border-left: 4px solid #6a9fd4;
            padding: 0.45em 0.9em; margin: 0.4em 0 0.6em; }
.table-wrap { max-width: 100%; overflow-x: auto; }
.table-wrap table:not(.kv) :is(th, td) { white-space: nowrap; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.3em 0 0.9em; }
th, td { padding: 0.18em 0.55em; border-bottom: 1px solid #e3e3e3; text-align: right;
         vertical-align: top; }
th { background: #f1f1f1; }
td:first-child, td:nth-child(2) { text-align: left; }
table.kv th { text-align: left; font-weight: 600; white-space: nowrap; }
table.kv td { text-align: left; font-family: ui-monospace, monospace; font-size: 0.95em;
              overflow-wrap: anywhere; }
table.kv table { margin: 0; font-size: 1em; }
figure { margin: 0.8em 0 1.4em; break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #444; }
details { margin: 0.3em 0 0.8em; }
summary { cursor: pointer; }
summary h3 { display: inline; font-size: 1em; }
summary .rows { color: var(--muted); font-size: 0.9em; }
.note { background: var(--tint); border-left: 4px solid #bbb; padding: 0.5em 1em; }
code { font-size: 0.95em; }
@media (max-width: 700px) { body { font-size: 14px; padding: 0.4em 0.6em; } }
@media print {
  body { max-width: none; font-size: 11pt; }
  details::details-content { content-visibility: visible; display: block; }
  summary { list-style: none; }
  .table-wrap { overflow: visible; }
  nav#contents, p.reading { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
}
"""

_HOW_TO_READ = """
<p><b>Suboptimality</b> is <code>loss &minus; F*</code> on the full training objective. For
convex problems (logistic regression) <code>F*</code> is the exact optimum, computed by a
damped Newton method to a gradient norm of 1e-12 (tables: &ldquo;F* = exact optimum&rdquo;,
column <code>reference</code> = exact); for non-convex problems it is the lowest loss recorded
by any run of that problem and seed in these results (&ldquo;F* = best known&rdquo;), so those
numbers can change when runs are added.</p>
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
<b>Fidelity</b> is the cosine between the step taken and the natural-gradient direction of the
dense true Fisher at the same damping (recorded only for small problems).</p>
<p><b>Seeds</b> draw the train/test split, so the spread over seeds is statistical spread.
<b>Step diagnostics</b> sum over runs the steps not taken, the CG solves stopped at their cap
and the jitter / pseudo-inverse fallbacks; a run is <b>flagged</b> when its loss ended above
its start or more than half of its steps were not taken, which its final status alone (e.g.
max_iter) would hide.</p>
<p><b>Four meanings of &ldquo;exact&rdquo;.</b> (1) The <em>solver</em> <code>exact</code>:
natural gradient with the dense Fisher matrix, its linear system solved directly
(<code>cg</code> solves the same system by truncated conjugate gradients; <code>kfac</code>,
<code>ekfac</code> and <code>diag</code> approximate the matrix). (2) <em>F* = exact
optimum</em>: the reference of the suboptimality on convex problems, above. (3) The
<em>true Fisher</em>, hyperparameter <code>fisher</code> = exact: the expectation over the
model's own predictive distribution, as opposed to a Monte-Carlo estimate (<code>mc</code>) or
the empirical Fisher of the observed labels (<code>empirical</code>). (4) The <em>K-FAC
damping mode</em> <code>kfac_damping</code> = exact: the damping is added to the Kronecker
product itself, (A&otimes;G + &lambda;I)<sup>&minus;1</sup>, instead of to each factor
(<code>tikhonov</code>, <code>per_factor</code>).</p>
"""

_SOLVERS_NOTE = """
<p class="note">One row per solver configuration: its label as used in every table, the
algorithm it runs (natural gradient: <code>exact</code>, <code>cg</code>, <code>kfac</code>,
<code>ekfac</code>, <code>diag</code>; first-order baselines: <code>gd</code>,
<code>momentum</code>, <code>adam</code>, <code>lbfgs</code>), its resolved hyperparameters and
its budget. In these columns <code>fisher</code> = exact means the true Fisher and
<code>kfac_damping</code> = exact the K-FAC damping mode
(A&otimes;G + &lambda;I)<sup>&minus;1</sup>; see <a href="#how-to-read">how to read this</a>.</p>
"""


# ----------------------------------------------------------------------------- the reading
def _fmt_factor(x: float) -> str:
    return f"×{x:.3g}"


def _code(label: str) -> str:
    return f"<code>{html.escape(str(label))}</code>"


def _names(items: list[str], limit: int = 2, sep: str = ", ") -> str:
    shown = sep.join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _best_per_problem(frame: pd.DataFrame, solvers: Iterable[str] | None = None) -> pd.DataFrame:
    """Per problem: the solver with the lowest finite median, and its lead.

    Columns problem, reference, winner (None if no solver reached ε), best (its median,
    +inf if none), factor = runner-up's median / winner's (+inf when only the winner
    reached ε or the winner's median is 0 < runner-up's; 1 for a tie). Ties go to the
    solver name first in sort order. ``solvers`` restricts the candidates.
    """
    f = frame if solvers is None else frame[frame["solver"].isin(list(solvers))]
    rows = []
    for problem, g in frame.groupby("problem", sort=True):
        reached = f[(f["problem"] == problem) & np.isfinite(f["median"])]
        reached = reached.sort_values(["median", "solver"], kind="stable")
        medians = reached["median"].to_numpy(dtype=np.float64)
        factor = np.inf
        if len(medians) > 1:
            first, second = medians[0], medians[1]
            factor = 1.0 if first == second else (second / first if first > 0 else np.inf)
        rows.append(
            {
                "problem": problem,
                "reference": g["reference"].iloc[0],
                "winner": reached["solver"].iloc[0] if len(reached) else None,
                "best": medians[0] if len(medians) else np.inf,
                "factor": factor,
            }
        )
    return pd.DataFrame(rows, columns=["problem", "reference", "winner", "best", "factor"])


def _lead_text(factors: np.ndarray) -> str:
    """The lead of one solver over the runner-up on the problems it won."""
    finite = factors[np.isfinite(factors)]
    parts = []
    if finite.size:
        parts.append(
            ("lead " if finite.size == 1 else "median lead ") + _fmt_factor(np.median(finite))
        )
    sole = factors.size - finite.size
    if sole:
        parts.append("the only solver to reach ε" + (f" on {sole}" if factors.size > 1 else ""))
    return "; ".join(parts)


def _winners_sentence(frame: pd.DataFrame) -> str:
    measure = frame.attrs.get("measure", "time")
    eps = frame.attrs.get("eps")
    target = f"ε = {eps:g}" if eps is not None else "ε"
    best = _best_per_problem(frame)
    clauses = []
    order = {ref: i for i, ref in enumerate(REFERENCE_CLASSES)}
    for reference, group in sorted(
        best.groupby("reference"), key=lambda item: (order.get(item[0], len(order)), item[0])
    ):
        kind, how = REFERENCE_CLASSES.get(reference, ("other", f"F* = {reference}"))
        n = len(group)
        cls = html.escape(f"{kind} problem{'s' if n != 1 else ''} ({how})")
        parts = []
        counts = group["winner"].value_counts()
        for solver in sorted(counts.index, key=lambda s: (-counts[s], s)):
            factors = group.loc[group["winner"] == solver, "factor"].to_numpy()
            parts.append(f"{_code(solver)} on {counts[solver]} ({_lead_text(factors)})")
        missed = int(group["winner"].isna().sum())
        if missed:
            parts.append(f"no solver on {missed}")
        clauses.append(f"on the {n} {cls}: " + ", ".join(parts))
    return (
        f"Lowest median {html.escape(_MEASURE_WORDS.get(measure, measure))} to reach {target} "
        "(lead = runner-up's median / winner's), " + "; ".join(clauses) + "."
    )


def _baseline_lead(problem: str, ng: pd.DataFrame, bl: pd.DataFrame) -> str:
    winner, ng_best, bl_best = (
        bl.at[problem, "winner"],
        ng.at[problem, "best"],
        bl.at[problem, "best"],
    )
    if math.isinf(ng_best):
        how = f"only the baseline {_code(winner)} reached ε"
    else:
        with np.errstate(divide="ignore"):
            how = f"{_code(winner)} led {_fmt_factor(np.divide(ng_best, bl_best))}"
    return f"{html.escape(problem)}: {how}"


def _natural_vs_baselines(frames: Mapping[str, pd.DataFrame], algorithms: Mapping[str, str]) -> str:
    labels = sorted(set().union(*(f["solver"] for f in frames.values())))
    natural = [s for s in labels if algorithms.get(s, s) in PRECONDITIONERS]
    baseline = [s for s in labels if s not in natural]
    if not natural or not baseline:
        ran = "natural-gradient solvers" if natural else "baselines"
        return f"Only {ran} ran, so natural gradient is not compared with the baselines."
    outcome = {}
    parts = []
    for measure, frame in frames.items():
        ng = _best_per_problem(frame, natural).set_index("problem")
        bl = _best_per_problem(frame, baseline).set_index("problem")
        contested = ng.index[np.isfinite(ng["best"]) | np.isfinite(bl["best"])]
        won = [p for p in contested if ng.at[p, "best"] < bl.at[p, "best"]]
        lost = [p for p in contested if bl.at[p, "best"] < ng.at[p, "best"]]
        outcome[measure] = (won, lost)
        text = f"on {len(won)} of {len(contested)} problems in {measure}"
        if lost:
            leads = [_baseline_lead(p, ng, bl) for p in lost]
            text += " (lost on " + _names(leads, sep="; ") + ")"
        parts.append(text)
    sentence = "The best natural-gradient solver beat the best baseline " + " and ".join(parts)
    if "time" in outcome and "work" in outcome:
        overhead = [p for p in outcome["work"][0] if p in outcome["time"][1]]
        if overhead:
            sentence += (
                f"; on {html.escape(_names(overhead))} it needed less work but more time, "
                "so there its steps cost more seconds per gradient evaluation than the "
                "baselines' did"
            )
    return sentence + "."


def headline_reading(
    headline: Mapping[str, pd.DataFrame], algorithms: Mapping[str, str] | None = None
) -> str:
    """Two sentences on the headline tables: who won where, by what factor, and whether
    natural gradient beat the baselines. Generated from the numbers, so it stays true when
    they change.

    1. For the first table (time, else work): per problem class (convex, F* = exact
       optimum; non-convex, F* = best known) which solver had the lowest median cost to
       reach ε on how many problems, with its median lead = runner-up's median / its own.
    2. Per measure: on how many problems where any solver reached ε the best
       natural-gradient solver (algorithm in ``exact, diag, kfac, ekfac, cg``) had a lower
       median than the best baseline, and the problems where it did not, with the winning
       baseline and the factor; where natural gradient won in work but lost in time, that
       its steps cost more seconds per gradient evaluation.

    Parameters
    ----------
    headline : mapping of str to DataFrame
        Headline tables by name (``headline_time``, ``headline_work``): long frames with
        columns problem, solver, reference, median (+inf when not reached), and ``attrs``
        ``eps`` and ``measure``.
    algorithms : mapping of str to str, optional
        Solver label -> algorithm; a label missing here is taken as its own algorithm.

    Returns
    -------
    str
        HTML text (escaped; solver labels in ``<code>``), empty without headline tables.
    """
    frames = {f.attrs.get("measure", name): f for name, f in headline.items() if len(f)}
    if not frames:
        return ""
    first = next(iter(frames.values()))
    return _winners_sentence(first) + " " + _natural_vs_baselines(frames, algorithms or {})


def _studies_html(studies: Iterable[Mapping]) -> str:
    """The registered studies' findings: per study its title (linking its folder), its
    source, and each finding's statement marked held or not held."""
    parts = [
        '<p class="note">Claims about natural gradient, reproduced by <code>natgrad study '
        "NAME</code>; each folder under <code>studies/</code> holds the figure, the table "
        "and findings.json with the numbers.</p><ul>"
    ]
    for study in studies:
        name = html.escape(str(study.get("study", "")))
        items = "".join(
            f"<li><strong>{'held' if f.get('held') else 'did not hold'}:</strong> "
            f"{html.escape(str(f.get('statement', '')))}</li>"
            for f in study.get("findings", [])
        )
        parts.append(
            f'<li><a href="studies/{name}/{name}.md">{html.escape(str(study.get("title")))}'
            f"</a> ({html.escape(str(study.get('source', '')))})<ul>{items}</ul></li>"
        )
    return "".join(parts) + "</ul>"


def _findings_html(table: pd.DataFrame) -> str:
    """The findings of the training-loss target table: the summary as a reading, then
    one item per problem."""
    if not len(table):
        return ""
    *per_problem, summary = findings(table)
    if not per_problem:
        return (
            '<p class="note">No problem has both a natural-gradient and a baseline run, so '
            "natural gradient is not compared with the baselines.</p>"
        )
    items = "".join(f"<li>{html.escape(f['statement'])}</li>" for f in per_problem)
    return (
        f'<p class="reading">{html.escape(summary["statement"])}</p>'
        f'<ul class="findings">{items}</ul>'
        '<p class="note">Computed from the training-loss target table (headline section); '
        "also in <code>tables/findings.json</code> and <code>tables/findings.md</code>.</p>"
    )


def _tuning_cost(table: pd.DataFrame) -> str:
    """One sentence on what the search cost, summed over the tuning table."""
    if table.empty:
        return '<p class="note">The tuning table is empty: no solver label was tuned.</p>'
    seeds = set(", ".join(map(str, table["tuning_seeds"])).split(", "))
    seeds = sorted(seeds, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    return (
        f'<p class="note">The search behind the {len(table)} tuned (problem, solver) pairs '
        f"cost {int(table['runs'].sum())} runs of {int(table['candidates'].sum())} "
        f"candidates on tuning seed{'s' if len(seeds) != 1 else ''} "
        f"{html.escape(', '.join(seeds))} (apart from the reported seeds), "
        f"{float(table['seconds'].sum()):.3g} optimizer seconds in all; "
        f"{int(table['failed_runs'].sum())} of the runs failed. Selection rule: "
        f"{html.escape(', '.join(sorted(set(map(str, table['rule'])))))}, declared before "
        f"any run.{_edge_note(table)}</p>"
    )


def _edge_note(table: pd.DataFrame) -> str:
    """The selections at an end of the range searched, said (the best may lie beyond)."""
    if "edge_of_space" not in table.columns:
        return ""
    edge = table["edge_of_space"].fillna("").astype(str).str.len() > 0
    if not edge.any():
        return " Every selected value lies inside the range searched."
    return (
        f" {int(edge.sum())} of the {len(table)} selections lie at an end of the range "
        "searched (column edge_of_space): a better value may lie beyond it."
    )


# ----------------------------------------------------------------------------- page pieces
def _scalar(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unwrap(value):
    while isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return value


def _value_html(value) -> str:
    """A JSON-like value as HTML: mappings as key/value tables, lists of mappings as one
    table (a row per item), other lists as lists; one-element lists as their element."""
    esc = html.escape
    value = _unwrap(value)
    if isinstance(value, Mapping):
        if not value:
            return "<em>empty</em>"
        rows = "".join(
            f'<tr><th scope="row">{esc(str(k))}</th><td>{_value_html(v)}</td></tr>'
            for k, v in value.items()
        )
        return f'<table class="kv">{rows}</table>'
    if isinstance(value, (list, tuple)):
        if not value:
            return "<em>none</em>"
        if all(isinstance(v, Mapping) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{esc(str(k))}</th>" for k in keys)
            body = "".join(
                "<tr>" + "".join(f"<td>{_value_html(v.get(k, ''))}</td>" for k in keys) + "</tr>"
                for v in value
            )
            return f'<table class="kv records"><tr>{head}</tr>{body}</table>'
        if not any(isinstance(v, (Mapping, list, tuple)) for v in value):
            return esc(", ".join(_scalar(v) for v in value))
        return "<ul>" + "".join(f"<li>{_value_html(v)}</li>" for v in value) + "</ul>"
    return esc(_scalar(value))


def _provenance_html(record: Mapping) -> str:
    """The record as a key/value table; values nested two levels deep are collapsed."""
    rows = []
    for key, value in record.items():
        inner = _value_html(value)
        value = _unwrap(value)
        if isinstance(value, Mapping) and any(isinstance(v, Mapping) for v in value.values()):
            inner = f"<details><summary>{len(value)} entries</summary>{inner}</details>"
        rows.append(f'<tr><th scope="row">{html.escape(str(key))}</th><td>{inner}</td></tr>')
    return f'<div class="table-wrap"><table class="kv provenance">{"".join(rows)}</table></div>'


def _short(name: str) -> str:
    """A table's name as a contents entry: ``headline_time`` -> "Time to ε"."""
    text = name.removeprefix("headline_")
    text = text + " to ε" if text != name else text.replace("_to_eps", " to ε")
    return text.replace("_", " ").capitalize()


def _title(name: str) -> str:
    return TABLE_TITLES.get(name) or _short(name)


class _Page:
    """The page's parts, its table of contents (level, id, title) and its unique ids."""

    def __init__(self):
        self.parts: list[str] = []
        self.toc: list[tuple[int, str, str]] = []
        self._ids: set[str] = set()

    def new_id(self, text: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
        anchor, n = base, 1
        while anchor in self._ids:
            n += 1
            anchor = f"{base}-{n}"
        self._ids.add(anchor)
        return anchor

    def entry(self, level: int, title: str, key: str | None = None, short: str = "") -> str:
        """Register a (sub-)section in the contents (as ``short`` if given); returns its id."""
        anchor = self.new_id(key or title)
        self.toc.append((level, anchor, short or title))
        return anchor

    def heading(self, level: int, title: str, key: str | None = None, short: str = "") -> str:
        anchor = self.entry(level, title, key, short)
        self.parts.append(f'<h{level} id="{anchor}">{html.escape(title)}</h{level}>')
        return anchor

    def table(self, name: str, table: pd.DataFrame) -> None:
        self.parts.append(f'<div class="table-wrap">{render_html(name, table)}</div>')

    def details(self, name: str, table: pd.DataFrame, listed: bool = False) -> None:
        """``table`` collapsed in ``<details>``; ``listed``: with an id and a contents entry."""
        title = _title(name)
        summary = html.escape(title)
        opening = "<details>"
        if listed:
            anchor = self.entry(3, title, key=f"table-{name}", short=_short(name))
            opening, summary = f'<details id="{anchor}">', f"<h3>{summary}</h3>"
        self.parts.append(
            f'{opening}<summary>{summary} <span class="rows">({len(table)} rows; all in '
            f"<code>tables/{html.escape(name)}.csv</code>)</span></summary>"
        )
        self.table(name, table)
        self.parts.append("</details>")

    def contents(self) -> str:
        items, open_sub = [], False
        for level, anchor, title in self.toc:
            link = f'<a href="#{anchor}">{html.escape(title)}</a>'
            if level == 2:
                if open_sub:
                    items.append("</ol>")
                    open_sub = False
                items.append(("</li>" if items else "") + f"<li>{link}")
            else:
                if not open_sub:
                    items.append('<ol class="sub">')
                    open_sub = True
                items.append(f"<li>{link}</li>")
        items.append(("</ol>" if open_sub else "") + "</li>")
        return (
            '<nav id="contents" aria-label="Contents"><h2>Contents</h2><ol>'
            + "".join(items)
            + "</ol></nav>"
        )


def _figure_html(anchor: str, path: Path, pdfs: Mapping[str, str]) -> str:
    esc = html.escape
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    try:
        text = esc(caption(path.stem))
    except ValueError:  # a figure the report does not make (a user's own): its name
        text = esc(path.stem)
    if path.stem in pdfs:
        text += f" (PDF: <code>figures/{esc(pdfs[path.stem])}</code>)"
    return (
        f'<figure id="{anchor}"><img alt="{esc(path.stem)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{text}</figcaption></figure>'
    )


def _scope_line(record: Mapping) -> str:
    counts = [
        (record.get("n_runs"), "runs"),
        (len(record.get("problems", [])) or None, "problems"),
        (len(record.get("solvers", [])) or None, "solver labels"),
    ]
    parts = [f"{n} {what}" for n, what in counts if n is not None]
    versions = record.get("code_versions", [])
    if versions:
        parts.append("code version " + ", ".join(map(str, versions)))
    return f'<p class="scope">{html.escape(" · ".join(parts))}</p>' if parts else ""


# ----------------------------------------------------------------------------- the page
def write_html(
    out_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    figure_paths: Iterable[str | Path],
    provenance_dict: Mapping,
    studies: Iterable[Mapping] = (),
) -> Path:
    """Write a self-contained ``index.html`` into ``out_dir`` (layout: module docstring).

    Everything is inline: the CSS, and every PNG among ``figure_paths`` as a base64
    ``data:image/png;base64,...`` URI (PDFs are only named in the captions). There is no
    JavaScript and no external URL, so the file opens offline and can be moved alone.
    Tables and figures not named in the layout still appear: tables under "all other
    tables", figures under "other figures". When the results hold several configurations
    of one label, a note says that they are summarized separately. The file is rewritten
    only when its bytes change.

    Parameters
    ----------
    out_dir : path
        Created if missing.
    tables : mapping of str to DataFrame
        By name, as :func:`build_report` makes them: ``headline_time``,
        ``headline_work`` (long: problem, solver, reference, median, q25, q75, reached,
        n_runs; ``attrs`` eps and measure), ``to_target`` (optional,
        :func:`.metrics.to_target`; the findings are computed from it), ``tuning``
        (optional, :func:`tuning.tuning_table`), ``hyperparameters`` (a row per solver
        configuration: solver, config_id, algorithm, ...), ``step_diagnostics`` and the
        long tables of :func:`summary_tables` (with a ``problem`` column). Each is
        rendered by ``tables.render_html(name, table)``.
    figure_paths : iterable of path
        As returned by :func:`make_figures`; ``suboptimality_<problem>`` figures go to
        their problem's section.
    provenance_dict : mapping
        What the results summarize (:func:`build_report`'s record), shown as nested
        key/value tables.
    studies : iterable of mapping
        The ``findings.json`` of the registered studies found under ``out_dir/studies``
        (:mod:`..studies`): a "Studies" section lists each with its findings and whether
        they held, linking its folder.

    Returns
    -------
    Path
        ``out_dir / "index.html"``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_paths = [Path(p) for p in figure_paths]
    pdfs = {p.stem: p.name for p in figure_paths if p.suffix.lower() == ".pdf"}
    pngs = {p.stem: p for p in figure_paths if p.suffix.lower() == ".png"}
    shown: set[str] = set()

    def figure(stem: str) -> None:
        if stem in pngs:
            page.parts.append(_figure_html(page.new_id(f"figure-{stem}"), pngs[stem], pdfs))
            shown.add(stem)

    page = _Page()
    page.new_id("contents")

    if TARGET_TABLE in tables:
        page.heading(2, "Findings", key="findings")
        page.parts.append(_findings_html(tables[TARGET_TABLE]))

    # headline
    page.heading(2, "Headline", key="headline")
    headline = {name: tables[name] for name in HEADLINE_TABLES if name in tables}
    hyper = tables.get("hyperparameters")
    algorithms = (
        dict(zip(hyper["solver"], hyper["algorithm"]))
        if hyper is not None and {"solver", "algorithm"} <= set(hyper.columns)
        else {}
    )
    reading = headline_reading(headline, algorithms)
    if reading:
        page.parts.append(f'<p class="reading">{reading}</p>')
    for name, table in headline.items():
        page.heading(3, _title(name), key=name, short=_short(name))
        page.table(name, table)
    if TARGET_TABLE in tables:
        page.heading(3, _title(TARGET_TABLE), key=TARGET_TABLE, short="Training-loss target")
        page.table(TARGET_TABLE, tables[TARGET_TABLE])
    profiles = [stem for stem in HEADLINE_FIGURES if stem in pngs]
    if profiles:
        page.heading(3, "Performance and data profiles", key="profiles")
        for stem in profiles:
            figure(stem)

    page.heading(2, "How to read this", key="how-to-read")
    page.parts.append(f'<div class="note">{_HOW_TO_READ}</div>')

    if hyper is not None:
        page.heading(2, "Solver configurations and budget", key="solvers")
        page.parts.append(_SOLVERS_NOTE)
        page.table("hyperparameters", hyper)
    if "tuning" in tables:
        page.heading(2, "Tuning", key="tuning")
        page.parts.append(_tuning_cost(tables["tuning"]))
        page.table("tuning", tables["tuning"])
    separated = provenance_dict.get("separated_labels", [])
    if separated:
        page.parts.append(
            '<p class="note">Some solver labels were used by several configurations or code '
            "versions; their runs are summarized separately, as <code>"
            f"{html.escape(', '.join(separated))}</code>. Runs of different configurations "
            "are never pooled: every table row is one (problem, solver, config_id).</p>"
        )

    per_problem = {name: tables[name] for name in PER_PROBLEM_TABLES if name in tables}
    problems = sorted(set().union(*(set(t["problem"]) for t in per_problem.values())))
    problems += sorted(
        {s[len(_PROBLEM_FIGURE) :] for s in pngs if s.startswith(_PROBLEM_FIGURE)}
        - {_figures._slug(p) for p in problems}
    )
    if problems:
        page.heading(2, "Problems", key="problems")
        for problem in problems:
            page.heading(3, problem, key=f"problem-{problem}")
            figure(_PROBLEM_FIGURE + _figures._slug(problem))
            for name, table in per_problem.items():
                rows = table[table["problem"] == problem]
                if len(rows):
                    page.details(name, rows)

    studies = list(studies)
    if studies:
        page.heading(2, "Studies", key="studies")
        page.parts.append(_studies_html(studies))

    if "step_diagnostics" in tables:
        page.heading(2, "Step diagnostics", key="diagnostics")
        page.details("step_diagnostics", tables["step_diagnostics"])

    others = [name for name in tables if name not in _OWN_SECTION]
    if others:
        page.heading(2, "All other tables", key="tables")
        page.parts.append(
            '<p class="note">The long tables, one row per (problem, solver) and ε where it '
            "applies, collapsed; each is also in <code>tables/</code> as CSV, Markdown and "
            "LaTeX. Time and work to ε are in each problem's section.</p>"
        )
        beside = {table: stem for stem, table in _FIGURE_BESIDE_TABLE.items()}
        for name in others:
            page.details(name, tables[name], listed=True)
            if name in beside:
                figure(beside[name])

    rest = [stem for stem in pngs if stem not in shown]
    if rest:
        page.heading(2, "Other figures", key="figures")
        for stem in rest:
            figure(stem)

    page.heading(2, "Provenance", key="provenance")
    page.parts.append(
        '<p class="note">What these results summarize. Every run stores its own record in '
        "<code>runs/&lt;run_key&gt;.json</code>; the date and host of this report are in "
        "<code>tables/provenance.json</code>.</p>"
    )
    page.parts.append(_provenance_html(provenance_dict))

    document = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>natgrad benchmark report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header><h1>natgrad benchmark report</h1>",
        _scope_line(provenance_dict),
        "</header>",
        page.contents(),
        "<main>",
        *page.parts,
        "</main></body></html>",
    ]
    index = out_dir / "index.html"
    write_if_changed(index, ("\n".join(document) + "\n").encode("utf-8"))
    return index

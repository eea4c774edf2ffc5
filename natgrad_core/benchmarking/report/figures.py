"""Convergence, profile and fidelity figures (matplotlib, Agg), with their captions.

:func:`make_figures` draws every figure and writes it as a PNG (200 dpi by default) and a
vector PDF; :data:`FIGURE_CAPTIONS` and :func:`caption` say what each one shows.

Styles
    One style per solver label in every figure (:func:`solver_styles`). A label's
    algorithm (column ``algorithm``) puts it in a group: natural-gradient methods (the algorithms of
    :data:`optim.natural_gradient.PRECONDITIONERS`) are drawn with solid lines in warm
    colors, natgrad's baselines with dashed lines in cool colors, solvers from other
    libraries (plugins, e.g. scikit-learn's) with dotted lines. Within a group every
    label has its own color and marker. Lines that coincide (cg on exact) stay apart:
    markers sit at sparse points that start at a different offset for every label, and a
    label drawn earlier has a wider line, so a later one drawn on top leaves it visible
    on both sides.
Axes
    Suboptimality is on a log axis, drawn at :data:`metrics.PLOT_FLOOR` when below it.
    Time is on a log axis with one origin for all solvers of a problem: every run starts
    at time 0 at its initial value, and since 0 lies at -inf on a log axis, the axis
    starts at half the earliest first-step time of any run of the problem; each run is
    drawn from that left edge with the last value it recorded at or before each time, so
    no curve starts at its own first-step time. The performance-profile ratio τ is on a
    log₂ axis (ticks at powers of 2), the data-profile budget κ on a log₁₀ axis. Tick
    positions come from matplotlib's locators, which size the number of ticks to the
    axis length; minor ticks are never labelled where major ones are dense, so labels
    cannot run together.
Layout
    Constrained layout; legends outside the axes, right of the figure.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...optim.natural_gradient import PRECONDITIONERS
from ...optim.registry import SOLVERS
from .metrics import (
    DEFAULT_EPS,
    PLOT_FLOOR,
    REFERENCE_CLASSES,
    _quantile,
    _with_reference,
    data_profile,
    performance_profile,
    separate_configurations,
)
from .tables import _write_folder

NATURAL_GRADIENT = "natural gradient"
BASELINE = "baseline"
OTHER = "other library"
TRIVIAL_FIDELITY_TOL = 1e-9
"""A solver whose fidelity is within this of 1 at every recorded iteration is not drawn in
the fidelity figure: its step is the exact direction (the solver "exact" by construction,
up to rounding; truncated cg differs from it by about 1e-7 on the bundled problems)."""

_WARM = ("#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#e6ab02", "#7f0000")
_COOL = ("#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#393b79", "#006d2c")
_MUTED = ("#1b9e77", "#7570b3", "#a6761d", "#666666", "#e7298a", "#66a61e", "#252525")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")
_GROUP_LOOK = {
    NATURAL_GRADIENT: (_WARM, "-", "natural gradient (solid)"),
    BASELINE: (_COOL, "--", "first-order baselines (dashed)"),
    OTHER: (_MUTED, ":", "other libraries, e.g. scikit-learn (dotted)"),
}
"""Group -> (palette, line style, legend header)."""
_MARK_EVERY = 0.12
"""Marker spacing, as a fraction of the axes diagonal."""

FIGURE_CAPTIONS: dict[str, str] = {
    "suboptimality": (
        "{problem}: suboptimality loss − F* (log scale) against iterations (left) and "
        "optimizer time in seconds (right, log scale). F* = exact optimum on convex problems "
        "and F* = best known (the lowest loss any run of the problem recorded, per seed) on "
        "non-convex ones; the axis label says which. Line: median over seeds; band: "
        "interquartile range. Solid warm lines: natural-gradient solvers (the solver "
        '"exact" is the dense true-Fisher natural gradient); dashed cool lines: first-order '
        "baselines. Markers at sparse points tell coinciding lines apart (cg often lies on "
        "exact). A run that stops early keeps its last value. Every run starts at time 0 at "
        "its initial value: the time axis starts at half the earliest first-step time of "
        "any run, every curve is drawn from that common left edge, and at time t a run "
        "takes the last value it recorded at or before t. Values below 1e-16 are drawn at "
        "1e-16."
    ),
    "performance_profiles": (
        "Dolan–Moré performance profiles (Dolan & Moré 2002). For each problem, a solver's "
        "median over seeds of the cost to reach suboptimality ε is divided by the smallest "
        "such median; the curve at τ (log₂ axis) is the fraction of problems on which that "
        "ratio is at most τ. Columns: the targets ε. Rows: cost = optimizer time and cost = "
        "work (gradient evaluations including the curvature's construction), each for convex "
        "problems (F* = exact optimum) and non-convex problems (F* = best known) separately, "
        "since their suboptimalities are measured against different references. The value "
        "at τ = 1 is how often a solver is fastest, the right end how often it reaches ε at "
        "all; higher is better."
    ),
    "data_profiles": (
        "Moré–Wild data profiles (Moré & Wild 2009): the fraction of problems a solver "
        "solves, i.e. whose median run over seeds reaches suboptimality ε, within a budget "
        "of κ gradient evaluations (log axis; cost = work, gradient evaluations including "
        "the curvature's construction, so Moré & Wild's division by n + 1 is already "
        "done). Columns: the targets ε; rows: convex problems (F* = exact optimum) and "
        "non-convex problems (F* = best known). Unlike the performance profile it compares "
        "each solver with the budget, not with the best solver; higher and further left is "
        "better."
    ),
    "fidelity": (
        "Fidelity: the cosine between each step and the exact natural-gradient direction "
        "(true Fisher, at the step's damping) at that iterate, recorded on small problems "
        "only. One panel per problem, one row per solver: dots = the mean fidelity of each "
        "run (one dot per seed) over its recorded iterations; bar = median of those means; "
        "thin line = 10–90 % range of the fidelity of all recorded steps of all runs. "
        f"Solvers whose fidelity is within {TRIVIAL_FIDELITY_TOL:g} of 1 at every recorded "
        'iteration are not drawn and are named above the panels: the solver "exact" takes '
        "that direction by construction."
    ),
}
"""What each figure shows, by stem; ``suboptimality`` stands for every
``suboptimality_<problem>`` and has a ``{problem}`` field (see :func:`caption`)."""


def caption(stem: str) -> str:
    """The caption of the figure file ``<stem>.png`` / ``<stem>.pdf`` of :func:`make_figures`."""
    prefix = "suboptimality_"
    if stem.startswith(prefix):
        return FIGURE_CAPTIONS["suboptimality"].format(problem=stem[len(prefix) :])
    if stem in FIGURE_CAPTIONS and stem != "suboptimality":
        return FIGURE_CAPTIONS[stem]
    known = [s for s in FIGURE_CAPTIONS if s != "suboptimality"]
    raise ValueError(f"stem: expected one of {known} or 'suboptimality_<problem>', got {stem!r}.")


# ----------------------------------------------------------------------------- styles
@dataclass(frozen=True)
class SolverStyle:
    """How one solver label is drawn in every figure."""

    group: str
    """:data:`NATURAL_GRADIENT` or :data:`BASELINE`."""
    color: str
    linestyle: str
    marker: str
    linewidth: float
    zorder: float
    mark_start: float
    """Offset of the first marker, as a fraction of the axes diagonal."""

    def line(self) -> dict:
        """Keyword arguments of ``Axes.plot`` for this label's lines."""
        return {
            "color": self.color,
            "linestyle": self.linestyle,
            "marker": self.marker,
            "markersize": 4.5,
            "markevery": (self.mark_start, _MARK_EVERY),
            "linewidth": self.linewidth,
            "zorder": self.zorder,
        }


def _algorithms(frame: pd.DataFrame) -> pd.Series:
    """Solver label -> algorithm (store column ``algorithm``)."""
    if "algorithm" not in frame.columns:
        raise ValueError(
            "frame: expected a column 'algorithm' naming each label's algorithm, "
            f"got columns {sorted(frame.columns)}."
        )
    return frame.drop_duplicates("solver").set_index("solver")["algorithm"].astype(str)


def solver_styles(frame: pd.DataFrame) -> dict[str, SolverStyle]:
    """One :class:`SolverStyle` per solver label of ``frame``, in legend order.

    Natural-gradient labels first, then baselines, then other libraries' solvers (an
    algorithm that is not natgrad's: a plugin); within a group by the algorithm's
    place in :data:`optim.registry.SOLVERS` (algorithms not listed there last), then by
    label. The k-th label of a group gets the group's k-th color (cycled), width
    ``max(2.6 - 0.3 k, 1.1)`` points and a z-order that grows with k; the n-th label
    overall gets the n-th marker, first drawn at ``n / n_labels`` of the marker spacing.
    """
    algorithms = _algorithms(frame)
    groups = {
        label: NATURAL_GRADIENT
        if algorithm in PRECONDITIONERS
        else BASELINE
        if algorithm in SOLVERS
        else OTHER
        for label, algorithm in algorithms.items()
    }
    rank = {name: i for i, name in enumerate(SOLVERS)}
    order = list(_GROUP_LOOK)
    labels = sorted(
        algorithms.index,
        key=lambda s: (order.index(groups[s]), rank.get(algorithms[s], len(rank)), s),
    )
    styles = {}
    position = dict.fromkeys(order, 0)
    for n, label in enumerate(labels):
        group = groups[label]
        k = position[group]
        position[group] += 1
        colors, linestyle, _ = _GROUP_LOOK[group]
        styles[label] = SolverStyle(
            group=group,
            color=colors[k % len(colors)],
            linestyle=linestyle,
            marker=_MARKERS[n % len(_MARKERS)],
            linewidth=max(2.6 - 0.3 * k, 1.1),
            zorder=2.0 + 0.01 * n,
            mark_start=_MARK_EVERY * n / len(labels),
        )
    return styles


def _legend(fig, styles: Mapping[str, SolverStyle], labels) -> None:
    """A legend right of the axes, with the labels grouped under their group's name."""
    from matplotlib.lines import Line2D

    handles, texts, headers = [], [], []
    for group, (_, _, header) in _GROUP_LOOK.items():
        members = [s for s in styles if s in labels and styles[s].group == group]
        if not members:
            continue
        headers.append(len(texts))
        handles.append(Line2D([], [], linestyle="none"))
        texts.append(header)
        for label in members:
            style = styles[label].line()
            del style["markevery"], style["zorder"]
            handles.append(Line2D([], [], **style))
            texts.append(label)
    legend = fig.legend(handles, texts, loc="outside right center", frameon=False)
    for i in headers:
        legend.get_texts()[i].set_fontweight("bold")


# ----------------------------------------------------------------------------- curves
def _iteration_curves(group: pd.DataFrame, column: str, carry: bool):
    """Iteration grid and the (n_iter, n_runs) values; carried forward after a run ends."""
    g = group.drop_duplicates(["run_key", "iteration"], keep="last")
    wide = g.pivot(index="iteration", columns="run_key", values=column)
    wide = wide.reindex(np.arange(int(wide.index.max()) + 1))
    if carry:
        wide = wide.ffill()
    return wide.index.to_numpy(), wide.to_numpy(dtype=np.float64)


def _time_grid(problem: pd.DataFrame, n_grid: int = 200) -> np.ndarray | None:
    """Log-spaced times from half the earliest positive time of the problem to its last."""
    t = problem["time"].to_numpy(dtype=np.float64)
    positive = t[np.isfinite(t) & (t > 0)]
    if positive.size == 0:
        return None
    return np.geomspace(positive.min() / 2, positive.max(), n_grid)


def _time_curves(group: pd.DataFrame, column: str, grid: np.ndarray) -> np.ndarray:
    """(n_grid, n_runs) values: each run's last record at or before each grid time."""
    columns = []
    for _, run in group.sort_values(["run_key", "iteration"]).groupby("run_key", sort=True):
        run = run[np.isfinite(run["time"].to_numpy(dtype=np.float64))]
        times = run["time"].to_numpy(dtype=np.float64)
        vals = run[column].to_numpy(dtype=np.float64)
        if times.size == 0:  # a skipped or failed run: nothing recorded in time
            columns.append(np.full(grid.shape, np.nan))
            continue
        idx = np.searchsorted(times, grid, side="right") - 1
        columns.append(np.where(idx >= 0, vals[np.maximum(idx, 0)], np.nan))
    return np.column_stack(columns)


def _band(ax, x, values, style: SolverStyle, label, floor=None) -> bool:
    """Median line and interquartile band over the runs (columns); True if any median > 0."""
    med, q25, q75 = (_quantile(values, q, axis=1) for q in (0.5, 0.25, 0.75))
    if floor is not None:
        med, q25, q75 = (np.maximum(v, floor) for v in (med, q25, q75))
    _step(ax, x, med, style, label)
    ax.fill_between(x, q25, q75, step="post", color=style.color, alpha=0.15, lw=0, zorder=1)
    return bool(np.any(np.isfinite(med) & (med > 0)))


def _step(ax, x, y, style: SolverStyle, label) -> None:
    """A step line of ``label`` (a run that recorded nothing draws no line)."""
    kw = style.line()
    if not np.isfinite(y).any():
        del kw["markevery"]  # matplotlib cannot space markers along an empty path
    ax.plot(x, y, drawstyle="steps-post", label=label, **kw)


def _power_of_two(value, _position) -> str:
    return f"{value:g}"


# ----------------------------------------------------------------------------- figures
def _suboptimality(f, styles, plt) -> Iterator[tuple[str, object]]:
    for problem, pf in f.groupby("problem", sort=True):
        stem = f"suboptimality_{_slug(problem)}"
        fig, (ax_it, ax_t) = plt.subplots(
            1, 2, figsize=(9.0, 3.6), sharey=True, layout="constrained"
        )
        grid = _time_grid(pf)
        positive = False
        for solver in (s for s in styles if s in set(pf["solver"])):
            sf = pf[pf["solver"] == solver]
            x, v = _iteration_curves(sf, "suboptimality", carry=True)
            positive |= _band(ax_it, x, v, styles[solver], solver, PLOT_FLOOR)
            if grid is not None:
                v = _time_curves(sf, "suboptimality", grid)
                _band(ax_t, grid, v, styles[solver], solver, PLOT_FLOOR)
        for ax, xlabel in ((ax_it, "iteration"), (ax_t, "time in optimizer steps [s]")):
            ax.set_xlabel(xlabel)
            if positive:
                ax.set_yscale("log")
        if grid is not None:
            ax_t.set_xscale("log")
            ax_t.set_xlim(grid[0], grid[-1])
        _, reference = REFERENCE_CLASSES[pf["reference"].iloc[0]]
        ax_it.set_ylabel(f"loss − F*  ({reference})")
        fig.suptitle(f"{problem}: median over seeds, band = interquartile range", fontsize=10)
        _legend(fig, styles, set(pf["solver"]))
        yield stem, fig


def _profile_panels(f, eps, rows, draw, plt, figsize_row):
    """A grid of profile panels: one row per (measure, reference class), one column per ε."""
    classes = [r for r in REFERENCE_CLASSES if r in set(f["reference"])]
    panels = [(measure, ref) for measure in rows for ref in classes]
    if not panels:
        return None
    fig, axes = plt.subplots(
        len(panels),
        len(eps),
        figsize=(2.9 * len(eps) + 1.6, figsize_row * len(panels)),
        squeeze=False,
        layout="constrained",
    )
    for (measure, ref), row in zip(panels, axes):
        subset = f[f["reference"] == ref]
        n_problems = subset["problem"].nunique()
        for e, ax in zip(eps, row):
            draw(ax, subset, e, measure)
            ax.set_ylim(-0.03, 1.03)
            kind, reference = REFERENCE_CLASSES[ref]
            kind = f"{kind} problems"
            ax.set_title(f"{measure}, ε = {e:g}\n{kind} ({n_problems}), {reference}", fontsize=8.5)
        row[0].set_ylabel("fraction of problems")
    return fig


def _profiles(f, eps, styles, plt) -> Iterator[tuple[str, object]]:
    from matplotlib.ticker import FuncFormatter, LogLocator

    def performance(ax, subset, e, measure):
        prof = performance_profile(subset, e, measure)
        # carry each profile past the largest ratio so its last jump shows; at least to 2
        tau_end = max(1.25 * float(prof["tau"].max()), 2.0) if len(prof) else 2.0
        for solver in (s for s in styles if s in set(prof["solver"])):
            sp = prof[prof["solver"] == solver]
            x = np.append(sp["tau"].to_numpy(), tau_end)
            y = np.append(sp["fraction"].to_numpy(), sp["fraction"].iloc[-1])
            _step(ax, x, y, styles[solver], solver)
        ax.set_xscale("log", base=2)
        ax.set_xlim(1.0, tau_end)
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(_power_of_two))
        ax.set_xlabel("τ (ratio to the best median cost)")

    def data(ax, subset, e, measure):
        prof = data_profile(subset, e, measure)
        lo = float(prof["kappa"].min()) / 1.5 if len(prof) else 1.0
        hi = 1.25 * float(prof["kappa"].max()) if len(prof) else 10.0
        for solver in (s for s in styles if s in set(prof["solver"])):
            sp = prof[prof["solver"] == solver]
            x = np.concatenate([[lo], sp["kappa"].to_numpy(), [hi]])
            y = np.concatenate([[0.0], sp["fraction"].to_numpy(), [sp["fraction"].iloc[-1]]])
            _step(ax, x, y, styles[solver], solver)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_xlabel("κ (budget in gradient evaluations)")

    for stem, rows, draw, height in (
        ("performance_profiles", ("time", "work"), performance, 2.5),
        ("data_profiles", ("work",), data, 2.6),
    ):
        fig = _profile_panels(f, eps, rows, draw, plt, height)
        if fig is None:
            return
        _legend(fig, styles, set(f["solver"]))
        yield stem, fig


def _fidelity(f, styles, plt) -> Iterator[tuple[str, object]]:
    recorded = f[f["fidelity"].notna()]
    if recorded.empty:
        return
    trivial = recorded.groupby("solver")["fidelity"].agg(
        lambda s: bool(np.all(np.abs(s.to_numpy() - 1.0) <= TRIVIAL_FIDELITY_TOL))
    )
    drawn = [s for s in styles if s in trivial.index and not trivial[s]]
    omitted = [s for s in styles if s in trivial.index and trivial[s]]
    problems = sorted(recorded["problem"].unique())
    ncol = min(3, len(problems))
    nrow = -(-len(problems) // ncol)
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(3.4 * ncol + 1.6, 0.3 * max(len(drawn), 2) * nrow + 1.2 * nrow + 0.4),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    for ax, problem in zip(axes.ravel(), problems):
        pf = recorded[recorded["problem"] == problem]
        for y, solver in enumerate(drawn):
            sf = pf[pf["solver"] == solver]
            if sf.empty:
                continue
            style = styles[solver]
            means = sf.groupby("run_key", sort=True)["fidelity"].mean().to_numpy()
            steps = sf["fidelity"].to_numpy(dtype=np.float64)
            lo, hi = (_quantile(steps, q) for q in (0.1, 0.9))
            ax.plot([lo, hi], [y, y], color=style.color, lw=1.0, zorder=2)
            median = _quantile(means, 0.5)
            ax.plot([median, median], [y - 0.3, y + 0.3], color=style.color, lw=2.4, zorder=3)
            offsets = np.linspace(-0.15, 0.15, means.size) if means.size > 1 else np.zeros(1)
            dots = {"marker": style.marker, "markersize": 6, "markeredgewidth": 0}
            ax.plot(means, y + offsets, linestyle="none", color=style.color, zorder=4, **dots)
        ax.axvline(1.0, color="0.6", lw=0.8, ls=":", zorder=1)
        ax.set_title(problem)
    for ax in axes.ravel():
        ax.set_yticks(range(len(drawn)), drawn)
        ax.set_ylim(len(drawn) - 0.5, -0.5)
    for ax in axes[-1]:
        ax.set_xlabel("fidelity (cosine)")
    for ax in axes.ravel()[len(problems) :]:
        ax.set_visible(False)
    title = "Fidelity per solver: dots = run means, bar = median, line = 10–90 % of steps"
    if omitted:
        title += (
            f"\nnot drawn (fidelity within {TRIVIAL_FIDELITY_TOL:g} of 1 at every recorded "
            f"step): {', '.join(omitted)}"
        )
    fig.suptitle(title, fontsize=9)
    _legend(fig, styles, set(drawn))
    yield "fidelity", fig


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "unnamed"


def make_figures(
    frame: pd.DataFrame,
    out_dir: str | Path,
    eps: Sequence[float] = DEFAULT_EPS,
    provenance_dict: Mapping | None = None,
    dpi: int = 200,
) -> list[Path]:
    """Convergence, profile and fidelity figures, each as a PNG and a vector PDF.

    Stems (captions in :data:`FIGURE_CAPTIONS`; styles and axes in the module doc):

    * ``suboptimality_<problem>``: suboptimality against iteration (left) and optimizer
      time (right). Per solver: the median over seeds (line) and the interquartile band.
      Curves are put on a common grid first: every iteration from 0 to the solver's last
      one, values carried forward after a run ends (e.g. on reaching the target); on
      the problem's time grid (:func:`_time_grid`, shared by all its solvers) each run
      takes the value of its last record at or before that time.
    * ``performance_profiles``: :func:`metrics.performance_profile` of time and of work
      (rows) at each ε (columns), for convex problems (F* = exact optimum) and
      non-convex ones (F* = best known) in separate rows.
    * ``data_profiles``: :func:`metrics.data_profile` of work at each ε, rows as above.
    * ``fidelity`` (only if any was recorded): per problem and solver, the mean
      fidelity of each run, their median and the 10–90 % range of all recorded steps;
      solvers within :data:`TRIVIAL_FIDELITY_TOL` of 1 everywhere are named, not drawn.

    Uses matplotlib's Agg backend; every figure is labelled with its stem and closed.
    The files carry no creation date, and a file whose bytes would not change is not
    rewritten; figures of an earlier report are removed by :func:`build_report`.

    Parameters
    ----------
    frame : DataFrame
        Results table following :data:`store.SCHEMA`.
    out_dir : path
        Created if missing.
    eps : sequence of float
        Targets of the performance and data profiles.
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

    f = _with_reference(separate_configurations(frame))
    f = f.sort_values(["run_key", "iteration"], kind="stable")
    styles = solver_styles(f)
    stamp = (
        json.dumps(dict(provenance_dict), sort_keys=True, default=str) if provenance_dict else ""
    )
    files: dict[str, bytes] = {}
    rc = {"axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8}
    rc |= {"xtick.labelsize": 8, "ytick.labelsize": 8}
    with sns.axes_style("whitegrid"), plt.rc_context(rc):
        drawn = (_suboptimality(f, styles, plt), _profiles(f, eps, styles, plt))
        for stem, fig in itertools.chain(*drawn, _fidelity(f, styles, plt)):
            fig.set_label(stem)
            # lay out and crop once for both files (each layout or crop is a full draw)
            fig.draw_without_rendering()
            fig.set_layout_engine("none")
            crop = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)
            # no creation date in the PDF, so an unchanged figure has unchanged bytes
            for ext, key, meta in (
                ("png", "Description", {}),
                ("pdf", "Subject", {"CreationDate": None}),
            ):
                if stamp:
                    meta[key] = stamp
                buffer = io.BytesIO()
                fig.savefig(buffer, format=ext, dpi=dpi, bbox_inches=crop, metadata=meta)
                files[f"{stem}.{ext}"] = buffer.getvalue()
            plt.close(fig)
    return _write_folder(Path(out_dir), files)

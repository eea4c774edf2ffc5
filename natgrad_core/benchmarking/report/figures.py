"""Convergence, performance-profile and fidelity figures (matplotlib, Agg)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import (
    DEFAULT_EPS,
    PLOT_FLOOR,
    _quantile,
    _with_reference,
    performance_profile,
    separate_configurations,
)
from .tables import _write_folder


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

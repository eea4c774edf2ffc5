"""The self-contained HTML report page."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from ..store import write_if_changed
from .figures import caption
from .tables import _TABLE_TITLES, _cells, _prov_items

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
        text = esc(caption(path.stem))
        if path.stem in pdfs:
            text += f" (PDF: <code>{esc(pdfs[path.stem])}</code>)"
        parts.append(
            f'<figure><img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    parts.append("</body></html>")
    index = out_dir / "index.html"
    write_if_changed(index, ("\n".join(parts) + "\n").encode("utf-8"))
    return index

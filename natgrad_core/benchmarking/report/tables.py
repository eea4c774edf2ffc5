"""Formatting the summary tables: CSV, Markdown and LaTeX (booktabs)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import write_if_changed


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

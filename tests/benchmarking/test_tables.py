"""The report's tables as a reader gets them: headline layout, significant figures,
hyperparameters from run records, plain CSV with sidecars, LaTeX that compiles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking import report
from natgrad_core.benchmarking.report import metrics, tables
from tests.benchmarking.test_report import PROV, frame_of, make_run

HOSTILE = "a_b&c%#$"
"""A solver label with every character LaTeX treats specially in a table."""


def reach(problem, solver, times, **columns):
    """Runs of ``solver`` that reach 1e-7 after one step, taking ``times[seed]`` seconds
    (None: the run stays at suboptimality 1e-3, never reaching 1e-6)."""
    return [
        make_run(
            problem,
            solver,
            seed,
            [1.0, 1e-3 if t is None else 1e-7],
            [0.0, 1.0 if t is None else t],
            **columns,
        )
        for seed, t in enumerate(times)
    ]


def non_convex(problem, solver, finals):
    """Runs of a non-convex problem ending at loss ``1 + finals[seed]``; F* (best known)
    is 1 when some run of each seed ends at 0."""
    return [
        make_run(
            problem,
            solver,
            seed,
            [np.nan] * 2,
            [0.0, 2.2 + seed],
            convex=False,
            loss=[2.0, 1.0 + f],
        )
        for seed, f in enumerate(finals)
    ]


@pytest.fixture
def headline_frame():
    # P1 (convex): A reaches ε = 1e-6 at 0.0121, 0.0134, 0.0172 s; B at 0.0400, 0.0412,
    # 0.0430 s; C only on seed 0. P2 (non-convex, two seeds): A ends at F* (reaches at
    # 2.2 and 3.2 s), B 1e-3 above it (never); C did not run.
    return frame_of(
        *reach("P1", "A", [0.0121, 0.0134, 0.0172]),
        *reach("P1", "B", [0.0400, 0.0412, 0.0430]),
        *reach("P1", "C", [0.05, None, None]),
        *non_convex("P2", "A", [0.0, 0.0]),
        *non_convex("P2", "B", [1e-3, 1e-3]),
    )


# ----------------------------------------------------------------------------- item 1
def test_headline_statistics_match_numpy(headline_frame):
    table = metrics.headline(headline_frame, 1e-6, "time")
    assert list(table.columns) == [
        "problem",
        "solver",
        "reference",
        "median",
        "q25",
        "q75",
        "reached",
        "n_runs",
    ]
    assert table.attrs == {"eps": 1e-6, "measure": "time"}
    for (problem, solver), times in {
        ("P1", "A"): [0.0121, 0.0134, 0.0172],
        ("P1", "B"): [0.0400, 0.0412, 0.0430],
        ("P2", "A"): [2.2, 3.2],
    }.items():
        r = table[(table["problem"] == problem) & (table["solver"] == solver)].iloc[0]
        expected = np.quantile(times, [0.5, 0.25, 0.75])  # linear interpolation
        np.testing.assert_allclose([r["median"], r["q25"], r["q75"]], expected, rtol=1e-12)
        assert (r["reached"], r["n_runs"]) == (len(times), len(times))
    c = table[(table["problem"] == "P1") & (table["solver"] == "C")].iloc[0]
    assert (c["median"], c["reached"], c["n_runs"]) == (np.inf, 1, 3)
    assert dict(zip(table["problem"], table["reference"])) == {
        "P1": "exact optimum",
        "P2": "best known",
    }


def test_headline_markdown_is_wide_with_bold_best_dash_and_dagger(headline_frame):
    md = tables._markdown("headline_time", metrics.headline(headline_frame), {})
    assert "| problem | A | B | C |" in md
    # A: median 0.0134, IQR 0.01275..0.0153 (0.00255): 2 significant figures, 1e-3 place
    assert "| P1 | **0.013** [0.013, 0.015] | 0.041 [0.041, 0.042] | — (1/3) |" in md
    # P2 has 2 seeds (the caption says 3): stated on the row; C never ran there: blank
    assert "| P2† (n = 2) | **2.7** [2.5, 3.0] | — |  |" in md
    assert "over n = 3 seeds" in md and "ε = 1e-6" in md
    assert "†: F* = best known" in md and "—: the median run did not reach ε" in md
    assert "Blank: the solver did not run" in md


def test_headline_ties_on_the_printed_median_are_all_bold():
    # 0.0201 and 0.0204 both print as 0.020 (2 significant figures): both best
    frame = frame_of(
        *reach("P", "A", [0.0201] * 3), *reach("P", "B", [0.0204] * 3), *reach("P", "C", [0.03] * 3)
    )
    md = tables._markdown("headline_time", metrics.headline(frame), {})
    assert (
        "| P | **0.020** [0.020, 0.020] | **0.020** [0.020, 0.020] | 0.030 [0.030, 0.030] |" in md
    )


def test_headline_ties_where_the_spread_makes_medians_print_equal():
    # A: median 0.0098 with IQR 0.0094..0.0109 prints at the 1e-3 place as 0.010; B's
    # 0.0104 prints as 0.010 too: a difference below the spread is no win, both are bold
    frame = frame_of(
        *reach("P", "A", [0.0090, 0.0098, 0.0120]), *reach("P", "B", [0.0103, 0.0104, 0.0105])
    )
    md = tables._markdown("headline_time", metrics.headline(frame), {})
    assert "| P | **0.010** [0.009, 0.011] | **0.010** [0.010, 0.010] |" in md


def test_headline_work_keeps_three_significant_figures():
    n = np.arange(2)
    runs = [make_run("P", "A", s, [1.0, 1e-7], n_grad=n * 1234, n_loss=0) for s in range(3)]
    md = tables._markdown("headline_work", metrics.headline(frame_of(*runs), measure="work"), {})
    assert "| P | **1230** [1230, 1230] |" in md


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"measure": "iterations"}, "measure must be 'time' or 'work', got 'iterations'"),
        ({"eps": 0.0}, "eps must be a positive finite number, got 0.0"),
        ({"eps": float("nan")}, "eps must be a positive finite number"),
    ],
)
def test_headline_rejects_bad_arguments(headline_frame, args, match):
    with pytest.raises(ValueError, match=match):
        metrics.headline(headline_frame, **args)


SPREAD_CASES = [
    # median, q25, q75, digits, decimal place of the last digit shown
    (0.012345, 0.0120, 0.0127, 2, 1e-3),  # IQR 7e-4 allows 1e-4; 2 significant figures
    (0.012345, 0.01230, 0.01235, 3, 1e-4),  # 3 significant figures
    (0.0134, 0.01275, 0.0153, 3, 1e-3),  # IQR 2.55e-3: no digit below 1e-3
    (1234.0, 1234.0, 1234.0, 3, 10.0),  # no spread: the significant figures decide
    (0.5, 0.01, 3.0, 2, 0.1),  # IQR wider than the median: one significant figure
    (0.2, 0.1, np.inf, 2, 0.01),  # an infinite quartile says nothing about precision
    (np.inf, np.inf, np.inf, 2, None),
    (0.0, 0.0, 0.0, 2, None),
]


@pytest.mark.parametrize(("median", "q25", "q75", "digits", "place"), SPREAD_CASES)
def test_significant_figures_rule(median, q25, q75, digits, place):
    got = tables.spread_place(median, q25, q75, digits)
    assert got == pytest.approx(place, rel=1e-12) if place is not None else got is None


# ----------------------------------------------------------------------------- item 2
def record(label, algorithm, params, **budget):
    configuration = {
        "problem": {"name": "P"},
        "seed": 0,
        "solver": {"label": label, "solver": algorithm, "params": params},
        "max_iter": 100,
        "time_limit": 10.0,
        "tol": 1e-10,
        "target_suboptimality": 1e-10,
        "batch_size": None,
        "fidelity": True,
    }
    return {"configuration": {**configuration, **budget}}


def test_hyperparameters_from_records():
    frame = frame_of(
        make_run("P", "kfac", 0, [1.0], algorithm="kfac"),
        make_run("P", "kfac", 1, [1.0], algorithm="kfac"),
        make_run("P", "adam", 0, [1.0], algorithm="adam"),
        make_run("P", "old", 0, [1.0], algorithm="gd"),  # no record
    )
    records = {
        "P|kfac|0": record(
            "kfac",
            "kfac",
            {"damping": 1e-4, "kfac_damping": "exact", "step": {"name": "quadratic", "decay": 0.7}},
        ),
        "P|adam|0": record("adam", "adam", {"learning_rate": 0.01}, batch_size=32),
    }
    table = metrics.hyperparameters(frame, records)
    assert list(table.columns) == [
        "solver",
        "config_id",
        "algorithm",
        "tuning",
        "curve",
        "problems",
        "damping",
        "kfac_damping",
        "learning_rate",
        "step",
        "step.decay",
        "max_iter",
        "time_limit",
        "tol",
        "target_suboptimality",
        "batch_size",
        "fidelity",
        "seeds",
    ]
    rows = {r["solver"]: r for r in table.to_dict("records")}
    assert rows["kfac"] == {
        "solver": "kfac",
        "config_id": "cfg-kfac",
        "algorithm": "kfac",
        "tuning": "not tuned",
        "curve": "one run",
        "problems": "P",
        "damping": 1e-4,
        "kfac_damping": "exact",
        "learning_rate": "",
        "step": "quadratic",
        "step.decay": 0.7,
        "max_iter": 100,
        "time_limit": 10.0,
        "tol": 1e-10,
        "target_suboptimality": 1e-10,
        "batch_size": "none",
        "fidelity": True,
        "seeds": "0, 1",
    }
    assert (rows["adam"]["damping"], rows["adam"]["learning_rate"]) == ("", 0.01)
    assert rows["adam"]["batch_size"] == 32
    old = rows["old"]
    assert old["algorithm"] == "gd" and old["seeds"] == "0"
    assert {old[c] for c in table.columns[6:-1]} == {"unknown"}
    assert not table.isna().any().any()  # blank, never NaN

    md = tables._markdown("hyperparameters", table, {})
    assert "|  | adam | kfac | old |" in md
    assert "| kfac_damping |  | exact | unknown |" in md
    assert "kfac_damping (K-FAC damping mode)" in md  # which "exact" is meant
    assert "max_iter = 100" not in md  # differs: "unknown" for old


# ----------------------------------------------------------------------------- item 3
def test_step_diagnostics_count_final_statuses():
    frame = frame_of(
        make_run("P", "s", 0, [1.0, 0.5], status="target", n_cg_capped=2),
        make_run("P", "s", 1, [1.0, 0.5], status="max_iter", n_fallbacks=1),
        make_run("P", "s", 2, [1.0, 2.0], status="max_iter", flags="loss_increased"),
    )
    (diag,) = metrics.step_diagnostics(frame).to_dict("records")
    assert diag == {
        "problem": "P",
        "solver": "s",
        "n_runs": 3,
        "target": 1,
        "max_iter": 2,
        "steps": 3,
        "rejected": 0,
        "cg_capped": 2,
        "fallbacks": 1,
        "flagged": 1,
        "flags": "loss_increased x1",
    }


# ----------------------------------------------------------------------------- item 4, 6
def all_tables(frame):
    out = {
        "headline_time": metrics.headline(frame, 1e-6, "time"),
        "headline_work": metrics.headline(frame, 1e-6, "work"),
        "hyperparameters": metrics.hyperparameters(frame, {}),
    }
    return {**out, **report.summary_tables(frame, (1e-2, 1e-6))}


def test_csv_are_plain_and_documented_by_a_sidecar(headline_frame, tmp_path):
    written = all_tables(headline_frame)
    report.write_tables(written, tmp_path, PROV)
    for name, table in written.items():
        path = tmp_path / f"{name}.csv"
        back = pd.read_csv(path)
        expected = table.rename(columns={"reference": "F*"})
        if name == "hyperparameters":  # object cells: compare as text
            back, expected = back.fillna("").astype(str), expected.astype(str)
        text = [c for c in expected if not pd.api.types.is_numeric_dtype(expected[c])]
        back[text] = back[text].astype(object).fillna("")  # an empty field reads as NaN
        pd.testing.assert_frame_equal(back, expected, check_dtype=False)
        sidecar = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        assert sidecar["provenance"] == PROV and sidecar["title"] == tables.TABLE_TITLES[name]
        assert set(sidecar["columns"]) == set(back.columns)
        for doc in sidecar["columns"].values():
            assert set(doc) == {"description", "unit"} and doc["description"]
        units = {c: sidecar["columns"][c]["unit"] for c in ("median", "q25") if c in back}
        assert set(units.values()) <= {tables._UNITS.get(name)}


def test_reference_is_called_f_star_with_its_meaning(headline_frame, tmp_path):
    written = all_tables(headline_frame)
    report.write_tables(written, tmp_path, PROV)
    header = (tmp_path / "time_to_eps.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "F*" in header.split(",") and "reference" not in header
    md = (tmp_path / "time_to_eps.md").read_text(encoding="utf-8")
    assert "| P2† | A |" in md and "exact optimum" in md
    assert " reference " not in md and "config_id" not in md.split("-->")[1]


def test_render_html_fragment(headline_frame):
    frame = pd.concat([headline_frame, *reach("P1", HOSTILE, [0.5] * 3)], ignore_index=True)
    fragment = tables.render_html("headline_time", metrics.headline(frame))
    assert fragment.startswith('<table class="data headline_time">')
    assert fragment.endswith("</table>")
    assert "<th>a_b&amp;c%#$</th>" in fragment and "<b>0.013</b>" in fragment
    assert "— (1/3)" in fragment and "<tfoot>" in fragment
    for name, table in all_tables(headline_frame).items():
        html = tables.render_html(name, table)
        assert html.count("<table") == 1 and html.count("</table>") == 1, name


# ----------------------------------------------------------------------------- item 5
_ENV = re.compile(r"\\(begin|end)\{(tabular|longtable)\}")


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside braces and nested tabulars (``\\sep`` kept)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text.startswith(r"\begin{tabular}", i):
            depth += 1
        elif text.startswith(r"\end{tabular}", i):
            depth -= 1
        elif text[i] == "\\" and not text.startswith(sep, i):
            i += 2  # an escaped character, e.g. \& or \\ when sep is &
            continue
        elif text[i] in "{}":
            depth += 1 if text[i] == "{" else -1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    return [*parts, text[start:]]


def check_latex_structure(tex: str) -> int:
    """Structural checks of a generated table; returns the number of tabulars.

    Environments balanced; each outermost tabular/longtable has booktabs rules and no
    vertical rules; every row has as many cells as its alignment spec has columns;
    no unescaped special character outside math and commands.
    """
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    outer, stack, texts, end = [], [], [], 0
    for m in _ENV.finditer(body):
        if m.group(1) == "begin":
            if not stack:
                texts.append(body[end : m.start()])
            stack.append(m)
            continue
        assert stack and stack[-1].group(2) == m.group(2), m.group(0)
        begin = stack.pop()
        if not stack:
            outer.append(body[begin.end() : m.start()])
            end = m.end()
    texts.append(body[end:])
    assert not stack, [m.group(0) for m in stack]
    plain = body.replace(r"\{", "").replace(r"\}", "")
    assert plain.count("{") == plain.count("}")
    assert outer
    for inner in outer:
        spec, content = re.match(r"\{([^}]*)\}(.*)", inner, re.S).groups()
        assert "|" not in spec
        n_columns = len(re.findall(r"[lrc]", spec))
        for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
            assert rule in content
        for row in _split_top(content, r"\\"):
            cells = re.sub(r"\\(toprule|midrule|bottomrule|endhead|endfoot)", "", row)
            if cells.strip():
                texts += _split_top(cells, "&")
                assert len(_split_top(cells, "&")) == n_columns, (spec, row)
    for text in texts:  # cells and the notes: specials only escaped or in math
        bare = re.sub(r"\$[^$]*\$", "", re.sub(r"\\[a-zA-Z]+|\\.", "", text))
        assert not re.search(r"[&%#_^~$]", bare), text
    return len(outer)


def latex_frame():
    """9 solvers (two tabulars), a hostile label, a non-convex problem."""
    solvers = ["adam", "cg", "diag", "ekfac", "exact", "gd", "kfac", "lbfgs", HOSTILE]
    runs = []
    for i, solver in enumerate(solvers):
        runs += reach("breast_cancer-logistic", solver, [0.0123 * (i + 1), 0.0141, 0.0167])
        runs += non_convex("iris-mlp", solver, [0.0 if i == 0 else 1e-3] * 3)
    return frame_of(*runs)


def test_latex_structure_with_hostile_labels(tmp_path):
    frame = latex_frame()
    written = all_tables(frame)
    report.write_tables(written, tmp_path, PROV)
    counts = {n: check_latex_structure((tmp_path / f"{n}.tex").read_text()) for n in written}
    assert counts["headline_time"] == 2  # 9 solver columns > MAX_LATEX_COLUMNS = 5
    tex = (tmp_path / "headline_time.tex").read_text()
    assert r"a\_b\&c\%\#\$" in tex and "iris-mlp$^\\dagger$" in tex
    assert "% requires \\usepackage{booktabs}" in tex
    for name in written:  # escaped once: no label here holds a backslash
        assert r"\textbackslash" not in (tmp_path / f"{name}.tex").read_text(), name
    long = (tmp_path / "time_to_eps.tex").read_text()
    assert ("longtable" in long) == (len(written["time_to_eps"]) > tables.LONGTABLE_ROWS)


def test_structure_check_catches_broken_latex():
    good = "\n".join(
        [r"\begin{tabular}{lr}", r"\toprule", r"a & b \\", r"\midrule", r"c & d \\"]
        + [r"\bottomrule", r"\end{tabular}", ""]
    )
    assert check_latex_structure(good) == 1
    for broken in (
        good.replace("c & d", "c & d & e"),  # more cells than columns
        good.replace("c & d", "c_1 & d"),  # unescaped special character
        good.replace("\\bottomrule\n", ""),  # a booktabs rule missing
        good.replace("\\end{tabular}\n", ""),  # unbalanced environment
    ):
        with pytest.raises(AssertionError):
            check_latex_structure(broken)


@pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex not installed (.ci/run installs texlive-latex-base and "
    "texlive-latex-recommended from Debian); the structural check above still runs",
)
def test_latex_compiles_and_fits_a_page(tmp_path):
    written = all_tables(latex_frame())
    report.write_tables(written, tmp_path, PROV)
    inputs = "\n".join(f"\\input{{{n}.tex}}\\clearpage" for n in written)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass[10pt]{article}\n"
        "\\usepackage[letterpaper,margin=1in]{geometry}\n"  # 6.5 in text width
        "\\usepackage{booktabs,longtable}\n"
        f"\\begin{{document}}\n{inputs}\n\\end{{document}}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (tmp_path / "doc.log").read_text(encoding="utf-8", errors="replace")
    assert done.returncode == 0, log[-3000:]
    assert (tmp_path / "doc.pdf").read_bytes().startswith(b"%PDF")
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull.*", log)


def test_build_report_passes_the_tables_in_order(headline_frame, tmp_path, monkeypatch):
    passed = {}

    def write_html(out_dir, tables, figure_paths, provenance_dict, studies=()):
        passed.update(tables)
        (tmp_path / "index.html").write_text("", encoding="utf-8")
        return tmp_path / "index.html"

    monkeypatch.setattr(report, "make_figures", lambda *args, **kwargs: [])
    monkeypatch.setattr(report, "write_html", write_html)
    report.build_report(headline_frame, tmp_path)
    first = ["headline_time", "headline_work", "hyperparameters", "step_diagnostics"]
    assert list(passed)[:4] == first
    assert list(passed)[4:] == [n for n in report.summary_tables(headline_frame) if n not in first]
    assert passed["headline_time"].attrs == {"eps": metrics.HEADLINE_EPS, "measure": "time"}
    for name in passed:
        assert not (tmp_path / "tables" / f"{name}.csv").read_text().startswith("#")


def test_hyperparameters_say_a_curve_was_restarted_and_keep_a_colliding_name_apart():
    frame = make_run("P", "sk", 0, [1.0, 0.5], algorithm="sklearn-lbfgs", curve="restarts")
    params = {"solver": "lbfgs", "tol": 1e-10, "budget_growth": 1.5}
    records = {"P|sk|0": record("sk", "sklearn-lbfgs", params, max_iter=100)}
    records["P|sk|0"]["configuration"]["solver"]["plugin"] = {
        "import": "m:F",
        "package": "natgrad",
        "requires": {"scikit-learn": "1.9.1"},
    }
    frame = frame_of(frame, make_run("P", "own", 0, [1.0, 0.5], algorithm="gd"))
    records["P|own|0"] = record("own", "gd", {"tol": 1e-3})
    table = metrics.hyperparameters(frame, records)
    rows = {r["solver"]: r for r in table.to_dict("records")}
    row = rows["sk"]
    # budgets 1, 2, 3, 5, 8, 12, 18, 27, 41, 62, 93, 100: computed by hand from ⌈1.5 k⌉
    assert row["curve"] == "restarted fits, one per budget 1, 2, 3, 5, …, 100 (12 fits)"
    assert rows["own"]["curve"] == "one run"
    # a plugin's hyperparameters are its library's; natgrad's own that collide with a
    # column of the table are marked
    assert row["solver [scikit-learn]"] == "lbfgs" and row["tol [scikit-learn]"] == 1e-10
    assert row["tol"] == 1e-10 and row["tol (hyperparameter)"] == ""
    assert rows["own"]["tol (hyperparameter)"] == 1e-3 and rows["own"]["tol [scikit-learn]"] == ""
    # every table shows the label marked
    labelled = metrics.label_restarts(frame)
    assert set(labelled["solver"]) == {"sk (restarts)", "own"}
    assert metrics.tuning_status("adam (tuned) (restarts)") == metrics.TUNED

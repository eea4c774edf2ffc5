"""The HTML report page: the generated headline reading and the page's structure.

The reading is checked against winners and factors computed by hand from hand-made
headline tables; the page is parsed with the standard library (ids, links, sections).
The same page in a browser: tests/dashboards/test_dashboards.py.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking.report import metrics
from natgrad_core.benchmarking.report.html import headline_reading, write_html

INF = np.inf
CONVEX, NONCONVEX = metrics.EXACT_OPTIMUM, metrics.BEST_KNOWN
REFERENCES = {"a-logistic": CONVEX, "b-logistic": CONVEX, "c-mlp": NONCONVEX}

# median cost per (problem, solver); the winners and factors below are worked out by hand
TIME = {
    ("a-logistic", "exact"): 1.0,
    ("a-logistic", "cg"): 1.5,
    ("a-logistic", "lbfgs"): 3.0,
    ("a-logistic", "gd"): INF,
    ("b-logistic", "exact"): 4.0,
    ("b-logistic", "lbfgs"): 2.0,
    ("c-mlp", "kfac"): 2.0,
    ("c-mlp", "adam"): 10.0,
    ("c-mlp", "exact"): INF,
}
WORK = {
    ("a-logistic", "exact"): 10.0,
    ("a-logistic", "lbfgs"): 30.0,
    ("b-logistic", "exact"): 5.0,
    ("b-logistic", "lbfgs"): 20.0,
    ("c-mlp", "kfac"): 3.0,
    ("c-mlp", "adam"): 50.0,
}


def headline(measure: str, medians: dict, eps: float = 1e-6) -> pd.DataFrame:
    """A headline table in the agreed long format (one row per problem and solver)."""
    rows = [
        {
            "problem": problem,
            "solver": solver,
            "reference": REFERENCES[problem],
            "median": m,
            "q25": m,
            "q75": m,
            "reached": 3 if np.isfinite(m) else 0,
            "n_runs": 3,
        }
        for (problem, solver), m in medians.items()
    ]
    frame = pd.DataFrame(rows)
    frame.attrs.update(eps=eps, measure=measure)
    return frame


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def reading(time=TIME, work=WORK, algorithms=None) -> str:
    tables = {"headline_time": headline("time", time)}
    if work is not None:
        tables["headline_work"] = headline("work", work)
    return text_of(headline_reading(tables, algorithms))


# ----------------------------------------------------------------------------- the reading
READING_CASES = [
    pytest.param(
        TIME,
        None,
        [
            # convex: exact wins a (3/... runner-up cg 1.5 -> x1.5), lbfgs wins b (4/2 = x2)
            "Lowest median time to reach ε = 1e-06 (lead = runner-up's median / winner's), "
            "on the 2 convex problems (F* = exact optimum): exact on 1 (lead ×1.5), "
            "lbfgs on 1 (lead ×2)",
            "on the 1 non-convex problem (F* = best known): kfac on 1 (lead ×5)",
            # natural gradient (exact, cg, kfac) vs baselines: a 1 < 3, b 4 > 2, c 2 < 10
            "beat the best baseline on 2 of 3 problems in time (lost on b-logistic: lbfgs led ×2)",
        ],
        id="winners-per-class-and-where-ng-lost",
    ),
    pytest.param(
        TIME,
        WORK,
        [
            "on 2 of 3 problems in time",
            "and on 3 of 3 problems in work",
            # b-logistic: natural gradient lost in time (4 > 2) but won in work (5 < 20)
            "on b-logistic it needed less work but more time",
        ],
        id="time-and-work",
    ),
    pytest.param(
        {**TIME, ("b-logistic", "exact"): 1.0},
        None,
        [
            # exact now wins a (x1.5) and b (2/1 = x2): median lead 1.75
            "exact on 2 (median lead ×1.75)",
            "beat the best baseline on 3 of 3 problems in time.",
        ],
        id="data-change-changes-the-reading",
    ),
    pytest.param(
        {("a-logistic", "exact"): 1.0, ("a-logistic", "gd"): INF, ("c-mlp", "kfac"): INF},
        None,
        [
            "exact on 1 (the only solver to reach ε)",
            "on the 1 non-convex problem (F* = best known): no solver on 1",
            # c-mlp: nobody reached it, so it is not counted in the comparison
            "beat the best baseline on 1 of 1 problems in time",
        ],
        id="sole-reacher-and-unreached",
    ),
    pytest.param(
        {("a-logistic", "kfac"): 1.0, ("a-logistic", "exact"): 2.0},
        None,
        ["Only natural-gradient solvers ran"],
        id="no-baselines",
    ),
    pytest.param(
        {("a-logistic", "lbfgs"): 5.0, ("a-logistic", "gd"): INF, ("b-logistic", "adam"): 1.0},
        None,
        ["Only baselines ran"],
        id="no-natural-gradient",
    ),
]


@pytest.mark.parametrize(("time", "work", "expected"), READING_CASES)
def test_headline_reading_names_winners_factors_and_ng_versus_baselines(time, work, expected):
    text = reading(time, work)
    for phrase in expected:
        assert phrase in text, f"{phrase!r} not in {text!r}"
    assert text.count(". ") + text.endswith(".") == 2, f"not two sentences: {text!r}"


def test_headline_reading_classifies_labels_by_algorithm():
    # "fast" is a label of the kfac algorithm: natural gradient, which then beats gd
    time = {("a-logistic", "fast"): 1.0, ("a-logistic", "gd"): 3.0}
    assert "Only baselines ran" in reading(time, None)
    text = reading(time, None, algorithms={"fast": "kfac", "gd": "gd"})
    assert "beat the best baseline on 1 of 1 problems in time" in text


def test_headline_reading_is_empty_without_headline_tables():
    assert headline_reading({}) == ""


# ----------------------------------------------------------------------------- the page
class _Elements(HTMLParser):
    """Start tags in document order: (tag, attributes, offset in the text)."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict, int]] = []
        self._lines = [0]
        for line in text.splitlines(keepends=True):
            self._lines.append(self._lines[-1] + len(line))
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        line, col = self.getpos()
        self.tags.append((tag, dict(attrs), self._lines[line - 1] + col))


def long_table(problems, solvers) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"problem": p, "solver": s, "eps": e, "median": 1.0, "reached": 1, "n_runs": 1}
            for p in problems
            for s in solvers
            for e in (1e-2, 1e-6)
        ]
    )


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
RECORD = {
    "n_runs": 18,
    "problems": ["a-logistic", "b-logistic", "c-mlp"],
    "solvers": ["adam", "cg", "exact"],
    "code_versions": ["c0ffee"],
    "configurations": {
        "cfg1": {"max_iter": 100, "solver": {"label": "kfac", "params": {"damping": 1e-4}}},
    },
    "machines": [{"cpu": "EPYC", "logical_cores": 2}],
    "blas": [[{"library": "openblas", "num_threads": 1}, {"library": "gomp", "num_threads": 1}]],
}


@pytest.fixture
def page(tmp_path):
    problems = list(REFERENCES)
    tables = {
        "headline_time": headline("time", TIME),
        "headline_work": headline("work", WORK),
        "hyperparameters": pd.DataFrame(
            {
                "solver": ["exact", "kfac", "lbfgs"],
                "config_id": ["c1", "c2", "c3"],
                "algorithm": ["exact", "kfac", "lbfgs"],
                "damping": [1e-4, 1e-4, np.nan],
                "kfac_damping": ["", "exact", ""],
                "max_iter": [100, 100, 100],
            }
        ),
        "step_diagnostics": long_table(problems, ["exact", "kfac"]),
        "time_to_eps": long_table(problems, ["exact", "kfac"]),
        "work_to_eps": long_table(problems, ["exact", "kfac"]),
        "iterations_to_eps": long_table(problems, ["exact", "kfac"]),
        "fidelity": long_table(problems, ["exact", "kfac"]),
    }
    stems = [f"suboptimality_{p}" for p in problems]
    stems += ["performance_profiles", "data_profiles", "fidelity", "something_new"]
    figures = []
    for stem in stems:
        for ext, data in (("png", PNG), ("pdf", b"%PDF-1.4")):
            path = tmp_path / "figures" / f"{stem}.{ext}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            figures.append(path)
    index = write_html(tmp_path / "out", tables, figures, RECORD)
    return index.read_text(encoding="utf-8")


def sections(text: str, elements: _Elements) -> dict[str, str]:
    """id of every h2/h3 heading or <details> holding one -> the text up to the next one."""
    starts = [
        (attrs["id"], offset)
        for tag, attrs, offset in elements.tags
        if tag in ("h2", "h3", "details") and "id" in attrs
    ]
    ends = [offset for _, offset in starts[1:]] + [len(text)]
    return {anchor: text[start:end] for (anchor, start), end in zip(starts, ends)}


def test_contents_link_every_section_and_every_link_resolves(page):
    elements = _Elements(page)
    ids = [attrs["id"] for _, attrs, _ in elements.tags if "id" in attrs]
    assert len(ids) == len(set(ids)), "duplicate ids"
    links = [a["href"][1:] for t, a, _ in elements.tags if t == "a" and a["href"].startswith("#")]
    assert set(links) <= set(ids), set(links) - set(ids)
    nav = page[page.index('<nav id="contents"') : page.index("</nav>")]
    toc = set(re.findall(r'href="#([^"]+)"', nav))
    headed = {
        attrs["id"]
        for tag, attrs, _ in elements.tags
        if tag in ("h2", "h3", "details") and "id" in attrs
    }
    assert toc == headed, ("sections missing from the contents", headed - toc)
    # the contents come first, right after the title
    assert page.index('<nav id="contents"') < page.index('id="headline"')


def test_sections_put_figures_beside_their_tables(page):
    part = sections(page, _Elements(page))
    headline = part["headline"] + part["headline-time"] + part["headline-work"]
    headline += part["profiles"]
    assert "Lowest median time to reach" in text_of(part["headline"])
    assert 'alt="performance_profiles"' in headline and 'alt="data_profiles"' in headline
    assert 'alt="suboptimality_' not in headline, "convergence figures belong to problems"
    for problem in REFERENCES:
        own = part[f"problem-{problem}"]
        assert f'alt="suboptimality_{problem}"' in own
        assert own.count("<details>") == 2 and own.count("<table") == 2  # time, work to ε
        assert own.count(f"<th>{problem}</th>") == 2 * 2 * 2  # its rows only, both tables
    assert 'alt="fidelity"' in part["table-fidelity"]  # beside the fidelity table
    assert 'alt="something_new"' in part["figures"]  # nothing dropped
    for anchor in ("table-iterations-to-eps", "table-fidelity"):
        assert part[anchor].startswith(f'<details id="{anchor}">')
    assert part["diagnostics"].count("<details><summary>") == 1
    assert "(PDF: <code>figures/fidelity.pdf</code>)" in page


def test_page_is_self_contained_and_printable(page):
    assert "<script" not in page.lower()
    assert not re.search(r"https?://", page)
    assert page.count("data:image/png;base64,") == 7
    # print: every <details> opens, wide tables are not clipped by their scroll wrapper
    print_css = page[page.index("@media print") :]
    assert "details::details-content" in print_css and "content-visibility: visible" in print_css


def test_provenance_is_nested_tables_not_json(page):
    part = sections(page, _Elements(page))["provenance"]
    assert '{"' not in part and "['" not in part and '["' not in part
    text = text_of(part)
    assert "a-logistic, b-logistic, c-mlp" in text  # a list of names as a list
    # a one-element list of a mapping: the mapping's key/value table
    assert '<th scope="row">cpu</th><td>EPYC</td>' in part
    # a list of mappings: one table, a row per item, the keys as the header
    assert re.search(r"<tr><th>library</th><th>num_threads</th></tr>", part)
    assert "<td>openblas</td><td>1</td>" in part and "<td>gomp</td><td>1</td>" in part
    # nested two levels deep (configurations): collapsed
    assert "<details><summary>1 entries</summary>" in part
    assert "damping" in text and "0.0001" in text


def test_page_tells_the_four_meanings_of_exact_apart(page):
    text = text_of(page)
    for phrase in (
        "F* = exact optimum",
        "F* = best known",
        "true Fisher",
        "K-FAC damping mode",
        "The solver exact: natural gradient with the dense Fisher matrix",
    ):
        assert phrase in text, phrase
    # in the reading a solver label is code, the reference optimum is prose
    assert "<code>exact</code> on 1" in page

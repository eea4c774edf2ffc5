"""The report's figures: styles, axes, layout, profiles and captions, checked on what is drawn.

Figures are captured as matplotlib objects while :func:`report.make_figures` saves them
(``Figure.savefig`` is wrapped), so every check sees exactly what goes into the files;
the expected numbers are computed by hand from the synthetic runs below.
"""

from __future__ import annotations

import colorsys
import itertools

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from natgrad_core.benchmarking import report
from natgrad_core.benchmarking.report import figures, metrics
from tests.benchmarking.test_report import frame_of, make_run

matplotlib.use("Agg")

EPS = (1e-2, 1e-4, 1e-6, 1e-8)
NATURAL = ("exact", "cg", "kfac")
BASELINES = ("gd", "adam")
# solver -> (factor per step of the suboptimality, steps, seconds per step, flops per step);
# cg repeats exact exactly (coinciding lines); costs span three decades (wide tau ranges)
RUNS = {
    "exact": (1e-3, 4, 5.0, 1e7),
    "cg": (1e-3, 4, 5.0, 1e7),
    "kfac": (0.1, 12, 0.02, 1e4),
    "gd": (0.5, 40, 0.001, 0.0),
    "adam": (0.9, 40, 0.0005, 0.0),
}
FIDELITY = {"exact": 1.0, "cg": 1.0 - 2e-7}


def suite_run(problem, solver, seed, convex=True):
    factor, steps, seconds, flops = RUNS[solver]
    k = np.arange(steps + 1)
    subs = factor**k
    if solver in FIDELITY:
        fidelity = np.full(k.size, FIDELITY[solver])
    else:
        fidelity = 0.2 + 0.4 * seed + 0.1 * np.cos(k)
    fidelity[0] = np.nan
    return make_run(
        problem,
        solver,
        seed,
        subs,
        times=k * seconds * (1.0 + 0.1 * seed),
        algorithm=solver,
        convex=convex,
        n_flops=k * flops,
        fidelity=fidelity,
    )


def suite_frame():
    """Two convex problems, one non-convex; five solvers, two seeds each."""
    problems = {"C1": True, "C2": True, "N1": False}
    return frame_of(
        *(
            suite_run(p, s, seed, convex)
            for (p, convex), s, seed in itertools.product(problems.items(), RUNS, (0, 1))
        )
    )


def capture(frame, out_dir, eps=EPS, **kwargs):
    """make_figures' files and the figures it saved, by their label."""
    saved = {}
    original = Figure.savefig

    def savefig(fig, *args, **kw):
        saved[id(fig)] = fig
        return original(fig, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", savefig)
        paths = report.make_figures(frame, out_dir, eps, **kwargs)
    return paths, list(saved.values())


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    paths, figs = capture(suite_frame(), tmp_path_factory.mktemp("figures"))
    return paths, {fig.get_label(): fig for fig in figs}, figs


def render(fig):
    """Draw ``fig`` on an Agg canvas (a closed figure may have lost its own) and return it."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas


def text_boxes(fig):
    """(description, window extent) of every visible, non-empty text in the figure."""
    renderer = render(fig).get_renderer()
    texts = [("figure text", t) for t in fig.texts]  # suptitle included
    for legend in fig.legends:
        texts += [("legend", t) for t in legend.get_texts()]
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        texts += [(f"axes {i} title", ax.title), (f"axes {i} x label", ax.xaxis.label)]
        texts += [(f"axes {i} y label", ax.yaxis.label)]
        for j, axis in enumerate((ax.xaxis, ax.yaxis)):
            lo, hi = sorted(axis.get_view_interval())
            tol = 1e-9 * (hi - lo)
            texts += [
                (f"axes {i} {axis.axis_name} tick", t)
                for t in axis.get_ticklabels(which="both")
                if lo - tol <= t.get_position()[j] <= hi + tol
            ]
        if ax.get_legend() is not None:
            texts += [(f"axes {i} legend", t) for t in ax.get_legend().get_texts()]
    return [
        (f"{name} {t.get_text()!r}", t.get_window_extent(renderer))
        for name, t in texts
        if t.get_visible() and t.get_text().strip()
    ]


def overlap(a, b, tol=0.5):
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


# ----------------------------------------------------------------------------- 1. styles
def test_group_of_a_label_comes_from_its_algorithm():
    frame = frame_of(
        make_run("P", "mine", 0, [1.0, 0.1], algorithm="kfac"),
        make_run("P", "exact-ish", 0, [1.0, 0.1], algorithm="gd"),
    )
    styles = figures.solver_styles(frame)
    assert styles["mine"].group == "natural gradient"
    assert styles["exact-ish"].group == "baseline"


def test_solver_styles_without_an_algorithm_column_raise():
    frame = make_run("P", "A", 0, [1.0]).drop(columns="algorithm")
    with pytest.raises(ValueError, match=r"algorithm"):
        figures.solver_styles(frame)


def hue(color):
    return colorsys.rgb_to_hsv(*to_rgb(color))[0]


def test_natural_gradient_warm_and_solid_baselines_cool_and_dashed():
    styles = figures.solver_styles(suite_frame())
    for s in NATURAL:
        assert min(hue(styles[s].color), 1 - hue(styles[s].color)) <= 0.17, s  # red..yellow
        assert styles[s].linestyle == "-"
    for s in BASELINES:
        assert 0.3 <= hue(styles[s].color) <= 0.8, s  # green..blue..violet
        assert styles[s].linestyle != "-"
    colors = [styles[s].color for s in (*NATURAL, *BASELINES)]
    assert len(set(colors)) == len(colors)
    assert len({styles[s].marker for s in styles}) == len(styles)


def test_one_style_per_solver_across_all_figures(suite):
    _, _, figs = suite
    seen = {}
    for fig in figs:
        for ax in fig.axes:
            for line in ax.get_lines():
                if line.get_label() in RUNS:
                    style = (to_rgb(line.get_color()), line.get_linestyle(), line.get_marker())
                    seen.setdefault(line.get_label(), set()).add(style)
    assert set(seen) == set(RUNS)
    assert all(len(styles) == 1 for styles in seen.values()), seen


def color_pixels(fig, ax, color, tol=0.12):
    """Pixels inside ``ax`` within ``tol`` of ``color`` (RGB in [0, 1]) once rendered."""
    image = np.asarray(render(fig).buffer_rgba())[..., :3] / 255.0
    box = ax.get_window_extent()
    height = image.shape[0]
    crop = image[int(height - box.y1) : int(height - box.y0), int(box.x0) : int(box.x1)]
    return int((np.abs(crop - np.asarray(to_rgb(color))).max(axis=-1) <= tol).sum())


def test_coinciding_lines_both_visible(suite):
    # cg and exact have identical runs: each must still show its own color in the plot
    _, by_label, _ = suite
    fig = by_label["suboptimality_C1"]
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        for solver in ("exact", "cg"):
            assert color_pixels(fig, ax, lines[solver].get_color()) >= 20, (ax, solver)


# ----------------------------------------------------------------------------- 2., 3. layout
def test_no_text_overlaps_in_any_figure(suite):
    _, _, figs = suite
    for fig in figs:
        boxes = text_boxes(fig)
        clashes = [
            (a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if overlap(ba, bb)
        ]
        assert not clashes, (fig.get_label(), clashes[:5])


def test_pngs_at_200_dpi_and_vector_pdfs(suite):
    paths, _, _ = suite
    pngs = [p for p in paths if p.suffix == ".png"]
    assert pngs and {p.with_suffix(".pdf") for p in pngs} == {
        p for p in paths if p.suffix == ".pdf"
    }
    for png in pngs:
        with Image.open(png) as image:
            assert np.allclose(image.info["dpi"], 200, atol=0.5), png.name
        pdf = png.with_suffix(".pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and b"/Subtype /Image" not in pdf


def test_legends_outside_every_axes(suite):
    _, _, figs = suite
    for fig in figs:
        render(fig)
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        assert legends, fig.get_label()
        for legend in legends:
            box = legend.get_window_extent()
            for ax in fig.axes:
                if ax.get_visible():
                    assert not overlap(box, ax.get_window_extent()), fig.get_label()


# ----------------------------------------------------------------------------- 4. time axis
def test_every_curve_starts_at_one_time_origin_with_its_initial_value(suite):
    _, by_label, _ = suite
    fig = by_label["suboptimality_C1"]
    (ax,) = [ax for ax in fig.axes if "time" in ax.get_xlabel()]
    lines = [line for line in ax.get_lines() if line.get_label() in RUNS]
    assert {line.get_label() for line in lines} == set(RUNS)
    starts = {float(line.get_xdata()[0]) for line in lines}
    assert len(starts) == 1
    # every run starts at suboptimality factor**0 = 1, and the left edge is before the
    # earliest first step of any run on the problem (adam, 0.0005 s)
    assert all(line.get_ydata()[0] == 1.0 for line in lines)
    assert starts.pop() < 0.0005
    assert ax.get_xlim()[0] <= min(line.get_xdata()[0] for line in lines)


# ----------------------------------------------------------------------------- 5. profiles
def profile_axes(fig, reference):
    return [ax for ax in fig.axes if reference in ax.get_title()]


@pytest.mark.parametrize("stem", ["performance_profiles", "data_profiles"])
def test_profiles_separate_convex_from_nonconvex(suite, stem):
    # two convex problems (exact optimum) and one non-convex (best known): never pooled,
    # so the fractions are multiples of 1/2 in one panel and 0 or 1 in the other
    _, by_label, _ = suite
    fig = by_label[stem]
    convex = profile_axes(fig, "F* = exact optimum")
    nonconvex = profile_axes(fig, "F* = best known")
    n_measures = 2 if stem == "performance_profiles" else 1
    assert len(convex) == len(nonconvex) == n_measures * len(EPS)
    for axes, n_problems in ((convex, 2), (nonconvex, 1)):
        for ax in axes:
            lines = [line for line in ax.get_lines() if line.get_label() in RUNS]
            assert lines
            for line in lines:
                y = np.asarray(line.get_ydata()) * n_problems
                assert np.allclose(y, np.round(y)), (ax.get_title(), line.get_label())


def test_data_profile_by_hand():
    # work = n_grad + n_loss = 2 * iteration. P1: A reaches 1e-2 at iterations 2 and 4
    # (work 4 and 8, median 6), B at 1 (work 2); P2: A at 5 (work 10), B never.
    a_p1 = [1.0, 0.5, 1e-3, 1e-3, 1e-3]
    frame = frame_of(
        make_run("P1", "A", 0, a_p1),
        make_run("P1", "A", 1, [1.0, 0.5, 0.5, 0.5, 1e-3]),
        make_run("P1", "B", 0, [1.0, 1e-3]),
        make_run("P2", "A", 0, [1.0, 0.5, 0.5, 0.5, 0.5, 1e-3]),
        make_run("P2", "B", 0, [1.0, 0.5, 0.5]),
    )
    prof = metrics.data_profile(frame, 1e-2)
    assert prof.attrs == {"eps": 1e-2, "measure": "work", "n_problems": 2}

    def at(solver, kappa):
        sp = prof[prof["solver"] == solver]
        return sp.loc[sp["kappa"] <= kappa, "fraction"].iloc[-1]

    expected = {("A", 2): 0.0, ("A", 6): 0.5, ("A", 9.9): 0.5, ("A", 10): 1.0}
    expected |= {("B", 2): 0.5, ("B", 10): 0.5}
    assert {k: at(*k) for k in expected} == expected
    assert prof["kappa"].min() == 2.0 and prof["kappa"].max() == 10.0


def test_data_profile_rejects_an_unknown_measure():
    frame = make_run("P", "A", 0, [1.0, 1e-3])
    with pytest.raises(ValueError, match=r"measure must be one of.*'flops'"):
        metrics.data_profile(frame, 1e-2, measure="flops")


# ----------------------------------------------------------------------------- 6. fidelity
def test_fidelity_summarizes_runs_and_omits_the_trivial_solver(suite):
    _, by_label, _ = suite
    fig = by_label["fidelity"]
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["C1", "C2", "N1"]
    names = {t.get_text() for ax in axes for t in ax.get_yticklabels()}
    assert names == {"cg", "kfac", "gd", "adam"}
    for ax in axes:
        # kfac's runs: fidelity 0.2 + 0.4 seed + 0.1 cos(k), k = 1..12, averaged per run
        k = np.arange(1, 13)
        means = sorted(0.2 + 0.4 * seed + 0.1 * np.cos(k).mean() for seed in (0, 1))
        dots = [sorted(line.get_xdata()) for line in ax.get_lines() if len(line.get_xdata()) == 2]
        assert any(np.allclose(d, means) for d in dots)
    notes = " ".join(t.get_text() for t in [fig._suptitle, *fig.texts] if t is not None)
    assert "exact" in notes and "not drawn" in notes
    assert not any(line.get_label() == "exact" for ax in axes for line in ax.get_lines())


# ----------------------------------------------------------------------------- 7. captions
def test_every_figure_has_a_caption_that_says_which_exact(suite):
    paths, _, _ = suite
    stems = {p.stem for p in paths}
    assert stems == {
        "suboptimality_C1",
        "suboptimality_C2",
        "suboptimality_N1",
        "performance_profiles",
        "data_profiles",
        "fidelity",
    }
    for stem in stems:
        assert figures.caption(stem).strip()
    assert "C1" in figures.caption("suboptimality_C1")
    for stem in ("suboptimality_C1", "performance_profiles", "data_profiles"):
        text = figures.caption(stem)
        assert "F* = exact optimum" in text and "F* = best known" in text, stem
    for stem in ("suboptimality_C1", "fidelity"):
        assert 'solver "exact"' in figures.caption(stem), stem
    assert set(figures.FIGURE_CAPTIONS) == {
        "suboptimality",
        "performance_profiles",
        "data_profiles",
        "fidelity",
    }


def test_caption_of_an_unknown_figure_raises():
    with pytest.raises(ValueError, match=r"expected one of.*got 'heatmap'"):
        figures.caption("heatmap")


def test_figures_without_fidelity_or_nonconvex_problems(tmp_path):
    frame = frame_of(
        make_run("P1", "A", 0, [1.0, 1e-3, 0.0]),
        make_run("P1", "B", 0, [1.0, 0.5, 0.25]),
        make_run("P2", "A", 0, [np.nan], status="error", time=np.nan),
    )
    paths, figs = capture(frame, tmp_path, eps=(1e-2,))
    assert sorted(p.name for p in paths) == sorted(
        f"{stem}.{ext}"
        for stem in (
            "suboptimality_P1",
            "suboptimality_P2",
            "performance_profiles",
            "data_profiles",
        )
        for ext in ("png", "pdf")
    )
    profiles = {fig.get_label(): fig for fig in figs}["performance_profiles"]
    assert profile_axes(profiles, "F* = exact optimum")
    assert not profile_axes(profiles, "F* = best known")

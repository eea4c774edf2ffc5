"""Browser tests of the two dashboards, in headless Chromium driven by Playwright.

* The asv dashboard: a real ``asv run -E existing --quick`` of the whole suite (about
  30 s; a subset would leave the summary grid requesting graphs that do not exist, which
  the browser logs as 404 errors) into a temporary results folder, ``asv publish``,
  ``tools/asv_offline.py``, served by ``http.server`` on 127.0.0.1. The run doubles as a
  smoke test of every benchmark: ``asv run`` fails when one does.
* The report page ``results/index.html`` made by ``build_report`` from a tiny run, and
  the same page with headline and hyperparameter tables: its contents links resolve, it
  does not overflow a 1280 px screen, its first screen shows the contents and the
  headline table, and it prints with every collapsed table open.

Each page must load with no console error, no uncaught exception, no failed request and no
request leaving 127.0.0.1 (any other request is aborted and reported).

Needs the Debian ``chromium`` package at /usr/bin/chromium (skipped without it), the
``playwright`` Python package (its bundled driver only: no ``playwright install``; the
system Chromium is launched, each time with a fresh temporary profile), ``asv``, ``npm``
and the npm registry (or a filled ``.asv/vendor-cache``) for the offline step.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
TRACK_BENCHMARK = "bench_track.Convergence.track_iterations_to_eps"
MACHINE = "dashboard-test"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)",
)


# ----------------------------------------------------------------------------- helpers
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextmanager
def serve(directory: Path):
    """Serve ``directory`` on 127.0.0.1 at a free port (in a thread); yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class PageLog:
    """Console errors, uncaught exceptions, failed and off-host requests of one page."""

    def __init__(self, page):
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.failed: list[str] = []
        self.external: list[str] = []
        page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("requestfailed", lambda req: self.failed.append(f"{req.url}: {req.failure}"))
        page.on(
            "response",
            lambda resp: (
                self.failed.append(f"{resp.url}: HTTP {resp.status}")
                if resp.status >= 400
                else None
            ),
        )
        page.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1":
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def assert_clean(self):
        assert self.external == [], f"requests left 127.0.0.1: {self.external}"
        assert self.page_errors == [], f"uncaught exceptions: {self.page_errors}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.failed == [], f"failed requests: {self.failed}"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # the Python package, no browser download

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser):
    contexts = []

    def make(width=1280, height=900):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        return page, PageLog(page)

    yield make
    for context in contexts:
        context.close()


def _jsonc(path: Path) -> dict:
    """asv.conf.json with its whole-line // comments removed."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("//")]
    return json.loads("\n".join(lines))


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _run(cmd, env=None, timeout=240):
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


# ----------------------------------------------------------------------------- asv dashboard
@pytest.fixture(scope="module")
def asv_html(tmp_path_factory) -> Path:
    """A published, offline asv dashboard of a quick run of the suite at HEAD."""
    tmp = tmp_path_factory.mktemp("asv")
    commit = _git("rev-parse", "HEAD")
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    conf = _jsonc(ROOT / "asv.conf.json")
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(ROOT / conf["benchmark_dir"]),
        results_dir=str(tmp / "results"),
        html_dir=str(tmp / "html"),
        env_dir=str(tmp / "env"),
        branches=[commit if branch == "HEAD" else branch],  # detached HEAD: the commit
    )
    conf_path = tmp / "asv.conf.json"
    conf_path.write_text(json.dumps(conf, indent=2))
    # asv keeps machine descriptions in ~/.asv-machine.json: use a private HOME; the peers
    # rows at their quick sizes (bench/common.py QUICK)
    env = {**os.environ, "HOME": str(tmp / "home"), "NATGRAD_ASV_QUICK": "1"}
    (tmp / "home").mkdir()
    asv = [sys.executable, "-m", "asv"]
    _run([*asv, "machine", "--yes", "--machine", MACHINE, "--config", conf_path], env)
    _run(
        [
            *asv,
            "run",
            "--config",
            conf_path,
            "--machine",
            MACHINE,
            "-E",
            f"existing:{sys.executable}",
            "--quick",
            "--show-stderr",
            "--set-commit-hash",
            commit,
        ],
        env,
    )
    _run([*asv, "publish", "--config", conf_path], env)
    html = tmp / "html"
    _run([sys.executable, ROOT / "tools" / "asv_offline.py", "--html-dir", html])
    return html


def test_asv_dashboard_is_offline(asv_html):
    index = (asv_html / "index.html").read_text()
    assert "cdn" not in index.lower() and "integrity=" not in index
    assert (asv_html / "vendor" / "jquery" / "jquery.min.js").is_file()
    # idempotent: a second run changes nothing
    before = {p: p.read_bytes() for p in asv_html.rglob("*") if p.is_file()}
    out = _run([sys.executable, ROOT / "tools" / "asv_offline.py", "--html-dir", asv_html])
    assert "already offline" in out
    assert {p: p.read_bytes() for p in asv_html.rglob("*") if p.is_file()} == before


def test_asv_dashboard_in_browser(asv_html, new_page, tmp_path):
    page, log = new_page()
    with serve(asv_html) as base:
        page.goto(f"{base}/index.html")
        page.wait_for_function(
            "names => names.every(n => document.body.innerText.includes(n))",
            arg=["Convergence.track_iterations_to_eps", "Curvature.time_fvp"],
        )
        assert not page.url.endswith("error.html"), "a vendored script failed to load"
        page.screenshot(path=str(tmp_path / "asv_grid.png"))

        page.goto(f"{base}/index.html#{TRACK_BENCHMARK}")
        page.wait_for_function(
            "() => { const c = document.querySelector('#main-graph canvas.flot-base');"
            " return c !== null && c.width > 0 && c.height > 0; }"
        )
        graph = page.evaluate(
            "() => { const c = document.querySelector('#main-graph canvas.flot-base');"
            " const plot = window.jQuery(c).parent().data('plot');"
            " return {width: c.width, height: c.height,"
            " series: plot ? plot.getData().filter(s => s.data.length > 0).length : -1}; }"
        )
        assert graph["width"] > 0 and graph["height"] > 0
        assert graph["series"] > 0, f"the graph has no data: {graph}"
        assert "iterations" in page.inner_text("body")  # the benchmark's unit on the axis
        page.screenshot(path=str(tmp_path / "asv_graph.png"))
        page.wait_for_load_state("networkidle")
    log.assert_clean()


# ----------------------------------------------------------------------------- report page
@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """results/index.html of a tiny run: iris-logistic, 2 solvers, 1 seed, 10 iterations."""
    from natgrad_core.benchmarking.grid import DEFAULT_SOLVERS
    from natgrad_core.benchmarking.problems import get_problem
    from natgrad_core.benchmarking.report import build_report
    from natgrad_core.benchmarking.runner import RunSpec, execute
    from natgrad_core.benchmarking.store import ResultsStore

    out = tmp_path_factory.mktemp("report") / "results"
    store = ResultsStore(out)
    for config in DEFAULT_SOLVERS[:2]:
        frame = execute(RunSpec(get_problem("iris-logistic"), config, 0, max_iter=10))
        store.write_run(frame["run_key"].iloc[0], frame)
    index = build_report(store.load(), out)
    assert index == out / "index.html"
    return out


def test_report_page_in_browser(report_dir, new_page, tmp_path):
    page, log = new_page()
    with serve(report_dir) as base:
        page.goto(f"{base}/index.html", wait_until="load")
        assert page.inner_text("h1") == "natgrad benchmark report"
        tables = page.locator("table.data")
        assert tables.count() >= 1
        text = page.inner_text("body")
        for needle in ("iris-logistic", "exact", "diag", "Contents", "Headline", "Provenance"):
            assert needle in text
        images = page.evaluate(
            "() => Array.from(document.images).map(i => "
            "({alt: i.alt, complete: i.complete, width: i.naturalWidth}))"
        )
        assert images, "the report has no figures"
        broken = [i for i in images if not (i["complete"] and i["width"] > 0)]
        assert broken == [], f"images that did not load: {broken}"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    log.assert_clean()


@pytest.fixture(scope="module")
def headline_dir(report_dir) -> Path:
    """The tiny report's folder; its page has the headline and hyperparameter tables."""
    for name in ("headline_time", "headline_work", "hyperparameters"):
        assert (report_dir / "tables" / f"{name}.csv").is_file(), name
    return report_dir


def test_report_contents_links_resolve(headline_dir, new_page):
    page, log = new_page()
    with serve(headline_dir) as base:
        page.goto(f"{base}/index.html", wait_until="load")
        ids = page.evaluate("() => Array.from(document.querySelectorAll('[id]'), e => e.id)")
        assert len(ids) == len(set(ids)), "duplicate element ids"
        links = page.evaluate(
            "() => Array.from(document.querySelectorAll('nav#contents a'),"
            " a => a.getAttribute('href'))"
        )
        assert len(links) >= 8 and all(href.startswith("#") for href in links)
        missing = [href for href in links if href[1:] not in ids]
        assert missing == [], f"contents links without a target: {missing}"
        headed = page.evaluate(
            "() => Array.from(document.querySelectorAll('main h2[id], main h3[id],"
            " main details[id]'), e => e.id)"
        )
        assert {href[1:] for href in links} == set(headed), "sections missing from contents"
        # following a link brings its target to the top (or the page to its end)
        page.click("nav#contents a[href='#how-to-read']")
        page.wait_for_function("() => location.hash === '#how-to-read'")
        top, at_end = page.evaluate(
            "() => [document.getElementById('how-to-read').getBoundingClientRect().top,"
            " window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 1]"
        )
        assert abs(top) < 2 or at_end, f"following the link left its target at y = {top}"
    log.assert_clean()


def test_report_has_no_horizontal_overflow_at_1280(headline_dir, new_page):
    page, log = new_page(1280, 800)
    with serve(headline_dir) as base:
        page.goto(f"{base}/index.html", wait_until="load")
        page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        # one cell wider than the screen (a long unbreakable label), so the wrapper must act
        page.evaluate(
            "() => { document.querySelector('.table-wrap td').textContent = 'x'.repeat(400); }"
        )
        widths = page.evaluate(
            "() => ({page: document.documentElement.scrollWidth, view: window.innerWidth,"
            " widest: Math.max(...Array.from(document.querySelectorAll('.table-wrap'),"
            " w => w.scrollWidth))})"
        )
        assert widths["page"] <= widths["view"] == 1280, widths
        assert widths["widest"] > 1280, "no table is wide enough to test the wrappers"
        outside = page.evaluate(
            "() => Array.from(document.querySelectorAll('body *')).filter(e =>"
            " !e.closest('.table-wrap') && e.getBoundingClientRect().right > window.innerWidth)"
            ".map(e => e.tagName + (e.id ? '#' + e.id : ''))"
        )
        assert outside == [], f"elements past the right edge: {outside[:10]}"
    log.assert_clean()


def test_report_first_screen_shows_contents_and_headline(headline_dir, new_page, tmp_path):
    page, log = new_page(1280, 800)
    with serve(headline_dir) as base:
        page.goto(f"{base}/index.html", wait_until="load")
        page.screenshot(path=str(tmp_path / "first_screen.png"))
        boxes = {
            name: page.locator(selector).bounding_box()
            for name, selector in (
                ("contents", "nav#contents"),
                ("reading", "#headline ~ p.reading"),
                ("headline table", "#headline-time + .table-wrap table"),
            )
        }
        for name, box in boxes.items():
            assert box is not None and box["height"] > 0, f"no {name}"
            assert 0 <= box["y"] and box["y"] + box["height"] <= 800, f"{name} off screen: {box}"
    assert (tmp_path / "first_screen.png").read_bytes().startswith(b"\x89PNG")
    log.assert_clean()


def test_report_prints_with_details_open(headline_dir, new_page):
    page, log = new_page()
    with serve(headline_dir) as base:
        page.goto(f"{base}/index.html", wait_until="load")
        visible = (
            "() => Array.from(document.querySelectorAll('details table'),"
            " t => t.checkVisibility() && t.getBoundingClientRect().height > 0)"
        )
        on_screen = page.evaluate(visible)
        assert on_screen and not any(on_screen), "collapsed tables should start closed"
        page.emulate_media(media="print")
        assert all(page.evaluate(visible)), "a collapsed table stays hidden in print"
    log.assert_clean()

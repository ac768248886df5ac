"""The course site: it builds with ``mkdocs build --strict``, and in a real (headless) browser its
pages typeset their equations, show their figures and request nothing from outside the machine.

The browser test drives the system's Chromium (Debian's ``chromium`` package, which CI installs)
through Playwright's own driver; it never downloads a browser. Without a browser it skips with a
one-line reason, except under CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import functools
import html.parser
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}
#: The pages opened in the browser: every lesson, plus the pages with figures or equations.
PAGES = ["", "lessons/1-coupling/", "lessons/2-model/", "lessons/3-likelihood/",
         "lessons/4-inpainting/", "lessons/5-outliers/", "lessons/6-affine/", "lessons/7-mixing/", "mnist/",
         "beyond-nice/"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str):
    """No browser here: a skip on a developer's machine, a failure under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run installs Debian's chromium first)", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    candidates = [os.environ.get("NICELAB_CHROMIUM"), shutil.which("chromium"),
                  shutil.which("chromium-browser"), "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built by ``mkdocs build --strict`` into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed (exit {result.returncode}):\n"
                    f"{result.stdout[-4000:]}{result.stderr[-6000:]}", pytrace=False)
    return out


def test_site_builds_strictly(site):
    for page in PAGES:
        assert (site / page / "index.html").is_file(), f"the build has no page {page or 'home'}"
    assert (site / "assets" / "katex" / "katex.min.js").is_file(), "KaTeX is not copied into the site"
    assert not (site / "macros.py").exists(), "docs/macros.py was published with the site"
    for page in PAGES:
        text = (site / page / "index.html").read_text(encoding="utf-8")
        left = re.findall(r"\{\{[^}]*\}\}|\{%[^%]*%\}", text)
        assert not left, f"{page or 'home'}: macros left unrendered: {left[:3]}"


# ----------------------------------------------------------------------------- numbers from data

def docs_macros():
    """docs/macros.py, the mkdocs-macros module, imported as the plugin does (by its path)."""
    spec = importlib.util.spec_from_file_location("nicelab_docs_macros", ROOT / "docs" / "macros.py")
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in docs/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def render_page(path: Path) -> str:
    """A page's Markdown as the macros plugin renders it (strict: an unknown name fails), from
    the same module; a page without ``render_macros: true`` comes back as written."""
    import jinja2

    text = path.read_text()
    match = FRONT_MATTER.match(text)
    if not match or "render_macros: true" not in match.group(1):
        return text
    macros = docs_macros()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(macros.FILTERS)
    env.globals.update(macros.MACROS)
    return env.from_string(text[match.end():]).render(fig=macros.load_figures())


def test_macros_format_and_load_every_figure_summary():
    macros = docs_macros()
    assert macros.num(4.228657, 4) == "4.2287" and macros.num(0.0045, 4, sign=True) == "+0.0045"
    assert macros.num(-0.0001, 2) == "0.00" and macros.num(230.5, -1) == "230" and macros.num(4.0) == "4"
    assert macros.pct(0.521) == "52.1 %" and macros.pct(0.05, 0) == "5 %"
    rows = [{"kind": "noise", "level": 0.02, "recall": 0.14}, {"kind": "noise", "level": 0.05, "recall": 0.9}]
    assert macros.pick(rows, kind="noise", level=0.02)["recall"] == 0.14
    with pytest.raises(ValueError, match="0 rows"):
        macros.pick(rows, kind="rotate")
    fig = macros.load_figures()
    on_disk = {p.parent.name for p in (ROOT / "docs" / "figures").rglob("*.json")}
    assert set(fig) == on_disk, "a folder's JSON summaries are not all loaded"
    assert fig["parabola"]["test_nll"] > 0 and "masks" in fig["inpainting"]


def test_pages_with_macros_opt_in_and_render():
    """A page that uses ``{{ ... }}`` says ``render_macros: true`` (the plugin renders no other
    page), and every opted-in page renders with the figures' JSON (strict: no unknown name)."""
    for path in sorted((ROOT / "docs").rglob("*.md")):
        text, rel = path.read_text(), path.relative_to(ROOT)
        match = FRONT_MATTER.match(text)
        opted_in = bool(match) and "render_macros: true" in match.group(1)
        if opted_in:
            rendered = render_page(path)
            assert "{{" not in rendered and "{%" not in rendered, f"{rel}: left unrendered"
        else:
            assert not re.search(r"\{\{\s*(fig|pick|num|pct)\b", text), (
                f"{rel} uses the figures' macros but has no `render_macros: true` front matter")


#: The pages whose prose quotes measured numbers: every figure they quote from a run must be
#: written as a macro reading that run's JSON, never by hand.
PROSE_PAGES = [*sorted((ROOT / "docs" / "lessons").glob("*.md")), ROOT / "docs" / "mnist.md",
               ROOT / "docs" / "index.md", ROOT / "docs" / "beyond-nice.md"]
NUMBER = re.compile(r"(?<![\w.])[-+\u2212]?(\d+\.\d+)(?![\w.]*\d)(\s*%)?")


def _json_numbers(value, path: str = ""):
    """Every number of a JSON document, with where it sits (``rows[3].recall``)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        if math.isfinite(value):
            yield path, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_numbers(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_numbers(item, f"{path}[{i}]")


def _prose_lines(text: str):
    """``(line number, prose)`` of a Markdown page: no front matter, fenced code, display or
    inline math, inline code, macros, HTML comments or link targets."""
    text = FRONT_MATTER.sub(lambda m: "\n" * (m.group(0).count("\n")), text)
    fence = None
    display = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence:
            fence = None if stripped.startswith(fence) else fence
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        if display:
            display = stripped.count("$$") % 2 == 0
            continue
        if stripped.count("$$") % 2 == 1:
            display = True
            continue
        line = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|`[^`]*`", " ", line)
        line = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|<!--.*?-->|\]\([^)]*\)|<[^>]*>", " ", line)
        yield number, line


def _significant_digits(digits: str) -> int:
    return len(digits.replace(".", "").lstrip("0"))


#: Numbers a page may state by hand although a figure's JSON it draws on holds a value within
#: 5 %: not measurements of a run (a constant, a paper's figure). ``(page name, "1.23"): reason``.
NOT_MEASURED: dict[tuple[str, str], str] = {}


def _figures_of(text: str, fig: dict) -> list[str]:
    """The figure folders a page draws on: read by a macro (``fig.parabola``) or shown
    (``figures/parabola/loss.png``)."""
    return [folder for folder in fig if re.search(rf"\bfig\.{folder}\b|figures/{folder}/", text)]


def hand_written_contradictions(pages=PROSE_PAGES, fig=None, root: Path = ROOT) -> list[str]:
    """Every decimal number of 3 or more significant digits written by hand in a page's prose
    that lies within 5 % of a number of the JSON of the figures the page draws on, but is not
    that number at the precision printed (signs ignored: an NLL is a negative log-likelihood;
    a number followed by % is compared with the JSON's fractions times 100)."""
    from nicelab.core.data import PARABOLA_ENTROPY

    fig = docs_macros().load_figures() if fig is None else fig
    constants = [PARABOLA_ENTROPY]
    problems = []
    for page in pages:
        text = page.read_text()
        known = [(f"{folder}.{path}", value) for folder in _figures_of(text, fig)
                 for path, value in _json_numbers(fig[folder])]
        for number, line in _prose_lines(text):
            for match in NUMBER.finditer(line):
                digits, percent = match.group(1), bool(match.group(2))
                if _significant_digits(digits) < 3 or (page.name, digits) in NOT_MEASURED:
                    continue
                value, places = float(digits), len(digits.split(".")[1])
                scale = 100.0 if percent else 1.0
                candidates = [(where, abs(v) * scale) for where, v in known]
                if any(f"{abs(c):.{places}f}" == digits for c in constants) or any(
                        f"{c:.{places}f}" == digits for _, c in candidates):
                    continue
                near = [(where, c) for where, c in candidates if c and abs(value - c) <= 0.05 * c]
                if near:
                    where, closest = min(near, key=lambda item: abs(value - item[1]))
                    problems.append(f"{page.relative_to(root)}:{number}: {digits}{' %' if percent else ''} "
                                    f"written by hand, but {where} is {closest:.{places + 2}f}")
    return problems


def test_pages_state_no_measured_number_by_hand_that_the_json_contradicts():
    """A number typed into a lesson page goes stale when ``nicelab figures`` reruns: the pages
    write such numbers as macros (``{{ fig.parabola.test_nll | num(4) }}``), and a number still
    typed by hand near a JSON value but not equal to it is caught here, with page and line."""
    problems = hand_written_contradictions()
    assert not problems, ("numbers written by hand contradict the figures' JSON (write them as "
                          "macros reading docs/figures, see docs/macros.py):\n" + "\n".join(problems))


def test_the_contradiction_finder_finds_a_stale_number(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("---\nrender_macros: true\n---\n\nThe NLL is **4.231** nats, 52.1 % of it, "
                    "exactly {{ fig.x.nll | num(4) }}.\n\n```text\n4.231\n```\n\n$4.231$ and `4.231`.\n"
                    "Recall 0.150 at 0.02, 12.3 % flagged, 4.2287 nats, 7.50 units.\n")
    fig = {"x": {"nll": 4.2287, "rows": [{"recall": 0.1449, "share": 0.521}], "flag": 0.1249}}
    problems = hand_written_contradictions([page], fig, root=tmp_path)
    found = [p.split(": ", 1)[1].split(" written")[0] for p in problems]
    assert found == ["4.231", "0.150", "12.3 %"], problems
    assert problems[0].startswith("page.md:5:") and "x.nll is 4.22870" in problems[0]


class _Assets(html.parser.HTMLParser):
    """Every URL a page would fetch by itself: scripts, styles, images, frames, media, fonts."""

    FETCHED = {("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"),
               ("source", "src"), ("video", "src"), ("audio", "src"), ("embed", "src"),
               ("object", "data")}

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and not {"stylesheet", "icon", "preload", "modulepreload", "manifest",
                                  "prefetch", "preconnect", "dns-prefetch"} & set(
                                      (attrs.get("rel") or "").split()):
            return  # rel="canonical" and friends are never fetched
        for name, value in attrs.items():
            if (tag, name) in self.FETCHED and value:
                self.urls.append(value)


def is_external(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return False
    if parts.scheme in ("http", "https", "ws", "wss") or url.startswith("//"):
        return parts.hostname not in {h.strip("[]") for h in LOCAL_HOSTS}
    return False  # a relative URL: served by the site itself


def test_pages_reference_no_outside_assets(site):
    """Static check of every built page (works without a browser)."""
    offending = []
    for page in sorted(site.rglob("*.html")):
        parser = _Assets()
        parser.feed(page.read_text(encoding="utf-8"))
        offending += [f"{page.relative_to(site)}: {url}" for url in parser.urls if is_external(url)]
    for css in sorted(site.rglob("*.css")):
        text = css.read_text(encoding="utf-8", errors="replace")
        offending += [f"{css.relative_to(site)}: {host}" for host in
                      ("fonts.googleapis.com", "fonts.gstatic.com", "cdn.jsdelivr.net") if host in text]
    assert not offending, "pages load assets from outside the site:\n" + "\n".join(offending[:20])


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def server(site):
    """The built site served on 127.0.0.1 (a free port) from a thread."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Playwright browser context on the system's Chromium, fresh profile, every request
    recorded in ``context.requests`` and any to another host aborted."""
    executable = find_chromium()
    if executable is None:
        skip_or_fail("no Chromium browser found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Python Playwright is not installed (pip install -e '.[dev]')")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            timeout=120_000)
        requests: list[str] = []

        def guard(route):
            url = route.request.url
            requests.append(url)
            if is_external(url):
                route.abort()
            else:
                route.continue_()

        context.route("**/*", guard)
        context.on("request", lambda request: requests.append(request.url))
        context.requests = requests
        try:
            yield context
        finally:
            context.close()


MATH_STATE = """() => {
  const math = [...document.querySelectorAll('.arithmatex')];
  // The page's prose, without code (where backslashes and dollars are legitimate).
  const prose = document.querySelector('article').cloneNode(true);
  prose.querySelectorAll('pre, code, .katex').forEach(e => e.remove());
  document.body.appendChild(prose);
  const text = prose.innerText;
  prose.remove();
  return {
    arithmatex: math.length,
    untypeset: math.filter(e => !e.querySelector('.katex')).length,
    katex: document.querySelectorAll('.katex').length,
    errors: [...document.querySelectorAll('.katex-error')].map(e => e.textContent).slice(0, 3),
    raw: ['\\\\(', '\\\\)', '\\\\[', '\\\\]', '$', '\\\\frac', '\\\\begin', '\\\\log', '\\\\partial',
          '\\\\sum', '\\\\mathrm', '\\\\', '_{', '^{'].filter(s => text.includes(s)),
  };
}"""

IMAGES_STATE = """() => [...document.querySelectorAll('article img')].map(
  img => ({src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth}))"""


TYPESET = """() => [...document.querySelectorAll('.arithmatex')].every(e => e.querySelector('.katex'))"""


def settle(page, url: str, timeout_ms: int = 120_000) -> None:
    """Open ``url`` and wait until its images and styles have loaded, KaTeX has typeset every
    equation (or given up: the checks below then say so) and the fonts are in. Generous timeouts:
    a loaded CI machine is slow, and nothing here waits on the network."""
    page.goto(url, wait_until="load", timeout=timeout_ms)
    try:
        page.wait_for_function(TYPESET, timeout=timeout_ms)
    except Exception:  # noqa: BLE001 - a timeout here is reported by the math assertions
        pass
    page.evaluate("document.fonts.ready.then(() => true)")


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES, ids=[p.strip("/") or "home" for p in PAGES])
def test_page_in_browser(browser, server, path):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        settle(page, server + path)

        math = page.evaluate(MATH_STATE)
        images = page.evaluate(IMAGES_STATE)
    finally:
        page.close()
    assert not errors, f"{path}: JavaScript errors: {errors[:3]}"
    if path.startswith("lessons/1") or path.startswith("lessons/2") or path.startswith("lessons/3"):
        assert math["arithmatex"] > 0, f"{path}: no equations found on a lesson page"
    assert math["untypeset"] == 0, f"{path}: {math['untypeset']} equations were not typeset by KaTeX"
    assert math["katex"] >= math["arithmatex"], f"{path}: fewer rendered formulas than equations"
    assert not math["errors"], f"{path}: KaTeX could not parse: {math['errors']}"
    assert not math["raw"], f"{path}: raw TeX left in the page text: {math['raw']}"
    broken = [img["src"] for img in images if not (img["complete"] and img["width"] > 0)]
    assert not broken, f"{path}: images that did not load: {broken}"
    if path in ("", "lessons/1-coupling/", "lessons/2-model/", "lessons/3-likelihood/"):
        assert images, f"{path}: the page shows no figure"
    outside = sorted({url for url in browser.requests if is_external(url)})
    assert not outside, f"requests left the machine: {outside[:10]}"


@pytest.mark.slow
def test_katex_fonts_come_from_the_site(browser, server):
    """After the pages above (or on its own), KaTeX's fonts were fetched, from 127.0.0.1."""
    page = browser.new_page()
    try:
        settle(page, server + "lessons/2-model/")
    finally:
        page.close()
    fonts = [url for url in browser.requests if "/assets/katex/fonts/" in url]
    assert fonts, "the pages typeset math but fetched none of KaTeX's fonts from the site"
    assert all(not is_external(url) for url in browser.requests)


def test_stage_pages_show_the_figures_nicelab_figures_copies(tmp_path):
    """``nicelab figures`` rewrites the figure block of the stage 4 and 5 pages; the block is there
    and the rewrite shows every PNG it is given (no TensorFlow, no training)."""
    from nicelab.cli.commands import figures as command

    for _, folder, page in command.IMAGE_STAGES:
        text = (ROOT / "docs" / page).read_text()
        assert command.BEGIN in text and command.END in text, f"docs/{page} lost its figure markers"
        docs = tmp_path / "docs"
        (docs / page).parent.mkdir(parents=True, exist_ok=True)
        (docs / page).write_text(text)
        images = [docs / "figures" / folder / name for name in ("b-grid.png", "a_curve.png")]
        assert command.update_page(docs / page, images, docs, "nothing yet")
        new = (docs / page).read_text()
        assert f"](../figures/{folder}/a_curve.png)" in new and f"](../figures/{folder}/b-grid.png)" in new
        assert new.index("a_curve.png") < new.index("b-grid.png"), "figures not in a stable order"
        before, after = text[:text.index(command.BEGIN)], text[text.index(command.END):]
        assert new.startswith(before) and new.endswith(after), "text outside the markers changed"
        assert not command.update_page(docs / page, images, docs, "nothing yet"), "rewrite is not idempotent"
        command.update_page(docs / page, [], docs, "nothing yet")
        assert "nothing yet" in (docs / page).read_text()


def test_figures_command_is_registered_and_light():
    """``nicelab figures`` is a subcommand, and importing it loads no TensorFlow."""
    code = ("import sys; import nicelab.cli.commands.figures; from nicelab import cli; "
            "assert 'tensorflow' not in sys.modules, 'nicelab.cli.commands.figures imports TensorFlow'; "
            "assert 'figures' in cli.build_parser()[1]")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def _percent(value: float) -> str:
    return f"{value:.1%}".replace("%", " %")


def test_stage_pages_quote_the_numbers_nicelab_figures_wrote():
    """The numbers in the text of the stage 4 and 5 pages, as the site renders them, are those of
    the JSON summaries that ``nicelab figures`` copied beside the figures (the pages read them
    through docs/macros.py; a number typed back in by hand and not rerun fails here)."""
    figures = ROOT / "docs" / "figures"
    inpainting, outliers = figures / "inpainting" / "inpainting.json", figures / "outliers" / "outliers.json"
    if not (inpainting.is_file() and outliers.is_file()):
        pytest.skip("no stage 4-5 summaries under docs/figures (run `nicelab figures`)")
    page = " ".join(render_page(ROOT / "docs" / "lessons" / "4-inpainting.md").split())
    summary = json.loads(inpainting.read_text())
    for row in summary["masks"]:
        cells = (f"| {row['mask']} | {row['hidden_fraction']:.0%} | ".replace("%", " %")
                 + f"{row['mse_inpainted']:.4f} | {row['mse_mean_fill']:.4f} | "
                 f"{row['mse_inpainted'] / row['mse_mean_fill']:.2f} | {row['log_lik_before']:.2f} | "
                 f"{row['log_lik_after']:.2f} | {row['log_lik_truth']:.2f} |")
        assert cells in page, f"4-inpainting.md: no table row {cells}"
    assert f"**{summary['step_size']:g}**, the one chosen" in page
    curvature = summary["curvature"]
    low, high = curvature["min"], curvature["max"]
    assert f"median **{curvature['median']:.0f}** (from {low:.0f} to {high:.0f})" in page
    page = " ".join(render_page(ROOT / "docs" / "lessons" / "5-outliers.md").split())
    summary = json.loads(outliers.read_text())
    assert f"$\\tau = {summary['threshold']:.2f}$ nats" in page
    assert f"clean test digits (mean log-likelihood {summary['clean_mean_log_lik']:.2f} nats)" in page
    case = summary["failure_case"]
    assert case is not None, "outliers.json has no failure case, but 5-outliers.md describes one"
    row = next(r for r in summary["rows"] if (r["kind"], r["level"]) == (case["kind"], case["level"]))
    assert (f"{case['kind']} {case['level']:g} has a mean log-likelihood of {row['mean_log_lik']:.2f} nats"
            in page)
    assert f"AUROC {row['auroc']:.3f}" in page
    assert f"$\\hat H = {case['entropy_estimate']:.2f}$" in page
    assert f"$\\epsilon = {case['epsilon']:.2f}$ nats" in page
    assert f"**{_percent(case['two_sided_batch_detection'])}**" in page
    for sweep in case["by_batch_size"]:
        detected, flagged = _percent(sweep["detection"]), _percent(sweep["false_alarms"])
        cells = f"| {sweep['batch_size']} | {detected} | {flagged} |"
        assert cells in page, f"5-outliers.md: no batch-size row {cells}"


def test_figure_summaries_agree_with_what_the_code_computes_today():
    """Each JSON summary under docs/figures was written by today's code, from one model: the
    training config is today's preset, the derived numbers (bits per dimension, the gap to the
    entropy, NLL = -log-likelihood) are what nicelab computes from the stored log-likelihood, and
    the stage 4-5 summaries measured the clean test digits under the same digits model. A summary
    left over from older code (a changed preset, convention or model) fails here: rerun
    ``nicelab figures``."""
    import dataclasses

    from nicelab.core import data
    from nicelab.core.config import PRESETS

    figures = ROOT / "docs" / "figures"
    results = {name: json.loads((figures / name / "result.json").read_text())
               for name in ("parabola", "digits")}
    for name, result in results.items():
        assert result["config"] == dataclasses.asdict(PRESETS[name]), (
            f"docs/figures/{name}/result.json was trained with another config than today's preset")
    parabola = results["parabola"]
    assert abs(parabola["gap"] - (parabola["test_nll"] - data.PARABOLA_ENTROPY)) < 1e-9
    digits, dataset = results["digits"], data.load("digits")
    assert digits["test_log_likelihood"] == -digits["test_nll"]
    expected = data.bits_per_dim(digits["test_log_likelihood"], dataset.dim, dataset.levels)
    assert abs(digits["bits_per_dim"] - expected) < 1e-9, (
        f"docs/figures/digits/result.json: bits_per_dim {digits['bits_per_dim']:.4f}, but its "
        f"log-likelihood gives {expected:.4f} in today's convention")
    clean = {"inpainting/inpainting.json": "log_lik_truth", "outliers/outliers.json": "clean_mean_log_lik"}
    # Beside the parabola's result.json: the runs its page quotes with the same model
    # (`nicelab outliers parabola`, `nicelab inpaint parabola`) and with the logistic prior.
    extra = figures / "parabola" / "outliers.json"
    if extra.is_file():
        clean_mean = json.loads(extra.read_text())["clean_mean_log_lik"]
        assert abs(clean_mean + parabola["test_nll"]) < 1e-3, (
            "docs/figures/parabola/outliers.json measured another model than parabola/result.json: rerun "
            "`nicelab outliers parabola --impl solutions --out ...` and copy its outliers.json")
    extra = figures / "parabola" / "logistic_prior.json"
    if extra.is_file():
        logistic = json.loads(extra.read_text())
        assert logistic["config"] == {**dataclasses.asdict(PRESETS["parabola"]), "prior": "logistic"}
        assert abs(logistic["gap"] - (logistic["test_nll"] - data.PARABOLA_ENTROPY)) < 1e-9
    for path, key in clean.items():
        if not (figures / path).is_file():
            continue
        summary = json.loads((figures / path).read_text())
        rows = summary.get("masks", [summary])
        for row in rows:
            if key in row:
                assert abs(row[key] - digits["test_log_likelihood"]) < 1e-3, (
                    f"docs/figures/{path}: {key} {row[key]:.3f} is not the test log-likelihood "
                    f"{digits['test_log_likelihood']:.3f} of docs/figures/digits: another model")

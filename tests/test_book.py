"""The book end to end: every page executes under `smoke` through papermill, Jupyter Book renders
it, the HTML loads nothing from outside the book, and the knob widgets work in headless Chromium
with every non-local request blocked.

ROBBOOK_TEST_BOOK_ROOT=<checkout> points these tests at an already built checkout (default: this
one, built by the test itself with `python -m robbook book`, which re-executes only what changed).
ROBBOOK_TEST_BOOK_BUILT=1 checks the book as it is in `_build/html`, without building it first (for the
page checks while working on the book: `ROBBOOK_TEST_BOOK_BUILT=1 pytest tests/test_book.py -k page`)."""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from robbook import run

ROOT = Path(os.environ.get("ROBBOOK_TEST_BOOK_ROOT") or Path(__file__).resolve().parents[1])
HTML = ROOT / "_build" / "html"
pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def built_book():
    "Execute every page (smoke, CPU) and render the HTML; fail with the log if anything breaks."
    if os.environ.get("ROBBOOK_TEST_BOOK_BUILT") == "1":
        assert (HTML / "index.html").exists(), f"ROBBOOK_TEST_BOOK_BUILT=1 but there is no book in {HTML}"
        return HTML
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "robbook", "book", "--profile", "smoke", "--device", "cpu",
                        "--root", str(ROOT)], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    print(f"book built in {time.time() - t0:.0f} s")
    assert r.returncode == 0, f"`python -m robbook book` failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    return HTML


def _executed(page):
    return nbformat.read(ROOT / "executed" / f"{page}.ipynb", as_version=4)


def test_every_page_executed_under_smoke_without_errors(built_book):
    for page in run.book_pages(ROOT):
        if run.source_of(page, ROOT).suffix == ".md":
            continue
        nb = _executed(page)
        meta = nb.metadata.get("robbook", {})
        assert meta.get("status") == "ok", f"{page}: {meta}"
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{page}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        assert all(c.get("execution_count") for c in code), f"{page}: a code cell was not executed"
        left = [c.source.splitlines()[0] for c in code if run.split_directives(c.source)[0]]
        assert not left, f"{page}: nbdev directive lines left in executed cells: {left[:3]}"


def test_chapters_ran_with_smoke_and_wrote_results(built_book):
    from robbook.profiles import PROFILES
    chapters = [p for p in run.book_pages(ROOT) if run.chapter_name(p) in PROFILES]
    assert chapters, "the book has no chapter with profiles"
    for page in chapters:
        chap = run.chapter_name(page)
        assert _executed(page).metadata["robbook"]["profile"] == "smoke"
        res = json.loads((ROOT / "executed" / f"{chap}.json").read_text())
        assert res["provenance"]["profile"] == "smoke" and res["provenance"]["wall_time_s"] > 0
        claims = res["results"].get("claims")
        assert claims, f"{chap}: no claims table in its results"
        assert {c["verdict"] for c in claims} <= {"reproduced", "inconclusive", "not reproduced", "not run here"}
        cov = res["results"].get("coverage")
        assert cov and cov["with a row"] == cov["main claims"] == len(res["results"]["paper_claims"]), chap


def test_no_reproduced_row_rests_on_an_interval_that_contains_zero(built_book):
    "Every empirical 'reproduced' has parts whose finite interval lies beyond their bound (and beyond 0 for effects)."
    from robbook.profiles import PROFILES
    for page in run.book_pages(ROOT):
        chap = run.chapter_name(page)
        if chap not in PROFILES:
            continue
        for c in json.loads((ROOT / "executed" / f"{chap}.json").read_text())["results"]["claims"]:
            assert c["kind"] in ("paper", "theory", "control", "beyond"), (chap, c["claim"])
            if c["kind"] == "theory" or c["verdict"] != "reproduced":
                continue
            assert c["parts"], f"{chap}: empirical row reproduced without a measured effect: {c['claim']}"
            for p in c["parts"]:
                lo, hi, b = p["lo"], p["hi"], p["bound"]
                assert (lo > b) if p["op"] == ">" else (hi < b), (chap, c["claim"], p)
                if (p["op"] == ">" and b >= 0) or (p["op"] == "<" and b <= 0):   # a directional effect
                    assert not lo <= 0 <= hi, (chap, c["claim"], p)


def test_chapters_show_no_stray_values(built_book):
    "A chapter's cell that ends in a call shows its return value: a bare string such as 'inprocess' is a leak."
    import re
    from robbook.profiles import PROFILES
    for page in [p for p in run.book_pages(ROOT) if run.chapter_name(p) in PROFILES]:
        for c in _executed(page).cells:
            for o in c.get("outputs", []) if c.cell_type == "code" else []:
                text = o.get("data", {}).get("text/plain", "") if o.get("output_type") == "execute_result" else ""
                if isinstance(text, list):
                    text = "".join(text)
                assert not re.fullmatch(r"""\s*(['"]).*\1\s*|\s*(None|True|False)\s*""", text, re.S), \
                    f"{page}: a cell shows the bare value {text[:80]!r} (end the cell with an assignment or ';')"


def test_time_estimates_count_what_the_smoke_runs_trained(built_book):
    """`robbook.launch.estimate` counts each chapter's models from its profile by mirroring its loops; every run
    records the models it used (one per cache key). The two must agree, model for model, or the estimates drift."""
    from collections import Counter
    from robbook.launch import training_plan
    from robbook.profiles import PROFILES
    for page in [p for p in run.book_pages(ROOT) if run.chapter_name(p) in PROFILES]:
        chap = run.chapter_name(page)
        prov = json.loads((ROOT / "executed" / f"{chap}.json").read_text())["provenance"]
        params = {k: v for k, v in prov["parameters"].items() if k in PROFILES[chap]["smoke"]}
        without = ("rimagenet",) if params.get("imagenet_root") is None else ()
        plan = [m for m in training_plan(chap, "smoke", without, params=params) if m["method"] != "build"]
        what = lambda m: (m["model"], m["method"], m["n"], m["epochs"])
        planned, ran = Counter(map(what, plan)), Counter(map(what, prov["trained"]))
        assert planned == ran, f"{chap}: planned but not run {planned - ran}; run but not planned {ran - planned}"


def test_every_page_rendered_with_provenance(built_book):
    from robbook.profiles import PROFILES
    assert (HTML / "index.html").exists()
    for page in run.book_pages(ROOT):
        html = (HTML / "executed" / f"{page}.html").read_text()
        # a directive would be highlighted as a comment token starting with "#|"
        assert not re.search(r'class="c1">#\|', html), f"{page}: an nbdev directive reached the page"
        assert "tag_injected-parameters" not in html, f"{page}: papermill's injected cell is shown"
        if run.chapter_name(page) in PROFILES:
            for field in ("profile", "device", "git commit", "wall time", "torch"):
                assert field in html, f"{page}: provenance field {field!r} not shown"


def _pages_html():
    return {page: (HTML / "executed" / f"{page}.html").read_text() for page in run.book_pages(ROOT)
            if (HTML / "executed" / f"{page}.html").exists()}


def _text(html):
    "The visible text of a page's article (scripts, styles and tags removed; entities decoded)."
    import html as h
    m = re.search(r"<article\b.*?</article>", html, flags=re.S)
    html = m.group(0) if m else html
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    return h.unescape(re.sub(r"<[^>]+>", " ", html))


def test_no_page_shows_an_error_or_a_failed_chapter(built_book):
    for page, html in _pages_html().items():
        assert not re.search(r'class="[^"]*\btraceback\b', html), f"{page}: an error output is shown"
        copy = ROOT / "executed" / f"{page}.ipynb"                 # the page a failed chapter gets instead
        if copy.exists():
            status = nbformat.read(copy, as_version=4).metadata.get("robbook", {}).get("status")
            assert status != "placeholder", f"{page}: the book shows a failed chapter"


def test_no_lost_placeholders_or_replaced_text(built_book):
    "`<name>` placeholders survive as text (not eaten as HTML tags), and '(c)' stays '(c)'."
    for page, html in _pages_html().items():
        text = _text(html)
        i = text.find("//.")
        assert i < 0, f"{page}: a path lost its <placeholders>: {text[max(0, i - 40):i + 20]!r}"
        src = run.source_of(page, ROOT).read_text()
        if "©" not in src:
            assert "©" not in text, f"{page}: '(c)' was rendered as ©"


def test_no_duplicate_section_numbers(built_book):
    seen = {}
    for page, html in _pages_html().items():
        for num in re.findall(r'<h[1-6][^>]*>\s*<span class="section-number">([\d.]+)\s*</span>', html):
            assert num not in seen, f"section number {num} appears in {seen[num]} and {page}"
            seen[num] = page
    assert seen, "no numbered sections found"


def test_pages_are_light(built_book):
    "Every page weighs at most 2 MB of HTML and local images (the widget state is in the HTML)."
    heavy = []
    for page, html in _pages_html().items():
        size = len(html.encode())
        for src in set(re.findall(r'<img[^>]*src="([^"]+)"', html)):
            if src.startswith("data:"):      # inline: already counted in the HTML
                continue
            f = (HTML / "executed" / src.split("?")[0]).resolve()
            if f.is_file():
                size += f.stat().st_size
        if size > 2_000_000:
            heavy.append(f"{page}: {size / 1e6:.2f} MB")
    assert not heavy, f"pages over 2 MB: {heavy}"


def test_images_have_alt_text_and_no_absolute_paths(built_book):
    for page, html in _pages_html().items():
        for alt in re.findall(r'<img[^>]*alt="([^"]*)"', html):
            assert alt and not re.fullmatch(r"[0-9a-f]{16,}.*\.(png|jpg|svg)", alt), f"{page}: alt text {alt!r}"
        assert str(ROOT / "executed") not in html, f"{page}: the build machine's path is shown"
    assert not (HTML / ".pytest_cache").exists(), "the book picked up .pytest_cache"


def test_no_alt_text_repeated_on_a_page(built_book):
    "Each image on a page has its own alt text: two images described alike are two images a reader cannot tell apart."
    import html as h
    from collections import Counter
    repeated = {}
    for page, html in _pages_html().items():
        twice = [a for a, n in Counter(h.unescape(a) for a in re.findall(r'<img[^>]*\balt="([^"]*)"', html)).items()
                 if n > 1]
        if twice:
            repeated[page] = [a[:90] for a in twice]
    assert not repeated, f"alt text repeated on a page: {repeated}"


_REPR = re.compile(r"""\{\s*(['"])[^'"\n]{1,80}\1\s*:|\bTrainConfig\(""")


def _shown_text(o) -> str:
    "The text of an output as the book shows it: a stream, else the first mime type myst-nb renders."
    if o.get("output_type") == "stream":
        return o.get("text", "")
    data = o.get("data", {})
    for mime in ("application/vnd.jupyter.widget-view+json", "text/html", "text/markdown", "text/latex",
                 "image/svg+xml", "image/png", "image/jpeg", "text/plain"):
        if mime in data:
            text = data[mime] if mime.startswith("text/") else ""
            return "".join(text) if isinstance(text, list) else text
    return ""


def _reader_pages():
    "The pages outside the library appendix (the overview, the chapters and their companions), in book order."
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    library = set()

    def walk(entries):                       # a library page and the sections under it (16_train's modules)
        for e in entries:
            library.add(str(e["file"]).split("/", 1)[1])
            walk(e.get("sections", []))
    for part in toc.get("parts", []):
        if str(part.get("caption", "")).startswith("Appendix"):
            walk(part.get("chapters", []))
    return [p for p in run.book_pages(ROOT) if p not in library]


def test_no_output_is_a_python_repr(built_book):
    """The book's reader pages show results in words, tables and figures, never a dict or a TrainConfig as Python
    prints it (the library appendix may: it documents the API, error messages included)."""
    found = {}
    for page in _reader_pages():
        if run.source_of(page, ROOT).suffix == ".md":
            continue
        for i, c in enumerate(_executed(page).cells):
            tags = set(c.metadata.get("tags", []))
            if c.cell_type != "code" or tags & {"remove-cell", "remove-output"}:
                continue
            for o in c.get("outputs", []):
                m = _REPR.search(_shown_text(o))
                if m:
                    text = _shown_text(o)
                    found.setdefault(page, []).append(f"cell {i}: ...{text[max(0, m.start() - 30):m.end() + 50]!r}")
    assert not found, "outputs that are Python reprs:\n" + "\n".join(f"{p}: {v[:4]}" for p, v in found.items())


def test_math_is_loaded_only_where_there_is_math(built_book):
    intro = (HTML / "index.html").read_text() if not (HTML / "executed" / "intro.html").exists() else \
        (HTML / "executed" / "intro.html").read_text()
    if "$" not in run.source_of("intro", ROOT).read_text().replace("`$ROBBOOK", ""):
        assert not re.search(r"<script[^>]*(tex-chtml|mathjax)", intro, re.I), "the intro loads MathJax without any math"


_EXTERNAL = re.compile(r"^(https?:)?//", re.I)


def test_html_loads_nothing_external(built_book):
    "No script, stylesheet, font, image or iframe is referenced from outside _build/html."
    bad = []
    attr = re.compile(r"<(script|link|img|iframe|source|audio|video)\b[^>]*?\b(src|href)=[\"']([^\"']+)", re.I)
    for f in HTML.rglob("*.html"):
        for tag, _, url in attr.findall(f.read_text(errors="replace")):
            if tag.lower() == "link" and not _EXTERNAL.match(url):
                continue
            if _EXTERNAL.match(url):
                bad.append(f"{f.relative_to(HTML)}: <{tag} {url}>")
    for f in list(HTML.rglob("*.css")):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", f.read_text(errors="replace")):
            if _EXTERNAL.match(url):
                bad.append(f"{f.relative_to(HTML)}: url({url})")
        for url in re.findall(r"@import\s+(?:url\()?['\"]([^'\"]+)", f.read_text(errors="replace")):
            if _EXTERNAL.match(url):
                bad.append(f"{f.relative_to(HTML)}: @import {url}")
    assert not bad, "external resources:\n" + "\n".join(bad[:30])


def test_widget_scripts_are_served_by_the_book(built_book):
    html = (HTML / "executed" / "17_widgets.html").read_text()
    srcs = re.findall(r"<script[^>]*src=\"([^\"]+)\"", html)
    loader = [s for s in srcs if "knobs-loader.js" in s]
    assert loader, "widget pages must load the knobs' loader (which loads the html-manager)"
    for s in loader + [loader[0].split("?")[0].replace("knobs-loader.js", "html-manager/embed.js")]:
        assert (HTML / "executed" / s.split("?")[0]).resolve().exists(), s
    assert "application/vnd.jupyter.widget-state+json" in html


# ---------- the browser ----------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def server(built_book):
    handler = functools.partial(_Quiet, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("headless Chromium is needed: `apt-get install chromium chromium-driver` "
                    "(scripts/setup.sh does this when run as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
              "--disable-dev-shm-usage", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
              # every host but the loopback resolves to nothing: the page gets no network
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
              "--window-size=1280,1600"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def _requested_urls(d):
    urls = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _visible_frame(d):
    "The src of the knob frame currently shown (the visible image inside the first widget)."
    return d.execute_script("""
        const imgs = [...document.querySelectorAll('.jupyter-widgets img, .widget-image')];
        const vis = imgs.filter(i => i.offsetParent !== null && i.getBoundingClientRect().height > 0);
        return vis.length ? vis[0].src.slice(0, 200) + ':' + vis[0].src.length + ':' + vis.length : null;""")


def _move_first_slider(d, page_url, tmp_path, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    d.get(page_url)
    # the widget manager loads when a knob comes near the screen: scroll to the first knob (again on each
    # try, since images and math still loading move it) until its sliders are drawn
    to_knob = """const v = document.querySelector('script[type="application/vnd.jupyter.widget-view+json"]');
                 if (v && v.parentElement) v.parentElement.scrollIntoView({block: 'center'});
                 return document.querySelectorAll('.noUi-handle').length;"""
    WebDriverWait(d, 90, poll_frequency=1).until(lambda d: d.execute_script(to_knob))
    WebDriverWait(d, 30).until(lambda d: _visible_frame(d))
    before = _visible_frame(d)
    handles = d.find_elements(By.CSS_SELECTOR, ".noUi-handle")
    assert len(handles) >= 2, "expected a widget with at least two knobs"
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", handles[0])
    handles[0].click()
    handles[0].send_keys(Keys.ARROW_RIGHT)
    time.sleep(1)
    after = _visible_frame(d)
    if after == before:  # at the right end of the range: go left instead
        handles[0].send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
        time.sleep(1)
        after = _visible_frame(d)
    d.save_screenshot(str(tmp_path / f"{name}.png"))
    return before, after


def _widget_pages():
    pages = []
    for page in run.book_pages(ROOT):
        f = HTML / "executed" / f"{page}.html"
        if f.exists() and re.search(r"<script[^>]*type=\"application/vnd.jupyter.widget-view\+json\"", f.read_text()):
            pages.append(page)
    return pages


def test_knob_widget_switches_frames_offline(server, browser, tmp_path):
    pages = _widget_pages()
    assert "17_widgets" in pages
    for page in pages:
        before, after = _move_first_slider(browser, f"{server}/executed/{page}.html", tmp_path, page)
        assert before and after and before != after, f"{page}: moving a slider did not change the frame"
    external = [u for u in _requested_urls(browser) if urlparse(u).hostname not in ("127.0.0.1", "localhost", None)
                and not u.startswith(("data:", "blob:", "about:", "chrome"))]
    assert not external, f"the pages asked for {external[:10]}"
    # uncaught exceptions and failed loads (console.error messages of the theme are not ours)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and e.get("source") in ("javascript", "network") and "favicon" not in e["message"]]
    assert not severe, f"JavaScript errors or failed loads: {severe[:5]}"


_OVERFLOW_JS = """
const art = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const right = art.getBoundingClientRect().right;
const bad = [];
if (document.documentElement.scrollWidth > window.innerWidth + 1) bad.push('page ' + document.documentElement.scrollWidth);
for (const el of art.querySelectorAll('*')) {
  if (el.closest('table, pre, .highlight, .jupyter-widgets, .widget-subarea, .output_html, mjx-assistive-mml, .tag_full-width')) continue;
  if (el.querySelector('table, pre')) continue;
  const cs = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  if (r.width === 0 || cs.display === 'none' || cs.visibility === 'hidden') continue;
  if (['auto', 'scroll'].includes(cs.overflowX) && el.scrollWidth > el.clientWidth + 2)
    bad.push(el.tagName + '.' + el.className + ' scrolls: ' + el.scrollWidth + ' > ' + el.clientWidth);
  else if (r.right > right + 4 && !el.closest('[style*="overflow"]'))
    bad.push(el.tagName + '.' + el.className + ' sticks out by ' + Math.round(r.right - right) + ' px');
}
return bad.slice(0, 5);
"""


def test_no_sideways_scroll_at_1280px(server, browser):
    "Outside tables and code, nothing on any page scrolls sideways or sticks out of the text column."
    from selenium.webdriver.support.ui import WebDriverWait
    browser.set_window_size(1280, 1000)
    problems = {}
    for page in run.book_pages(ROOT):
        browser.get(f"{server}/executed/{page}.html")
        WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
        time.sleep(1.5)  # MathJax typesets after load
        bad = browser.execute_script(_OVERFLOW_JS)
        if bad:
            problems[page] = bad
    assert not problems, f"sideways scroll at 1280 px: {problems}"



_PADDING_JS = """
const out = [];
for (const t of document.querySelectorAll('div.cell_output table')) {
  const c = t.querySelector('td');
  if (!c) continue;
  const cs = getComputedStyle(c);
  const pad = Math.min(parseFloat(cs.paddingLeft), parseFloat(cs.paddingRight));
  if (pad < 4) out.push((t.id || t.className || 'table') + ': ' + pad + ' px');
}
return out;
"""


def test_styled_tables_keep_numbers_apart(server, browser):
    """Output tables (pandas-styled, plain DataFrames, the run box) get at least 4 px of cell padding left and
    right, so neighbouring numbers never touch."""
    from selenium.webdriver.support.ui import WebDriverWait
    browser.set_window_size(1280, 1000)
    tight, seen = {}, 0
    for page in run.book_pages(ROOT):
        f = HTML / "executed" / f"{page}.html"
        if not f.exists() or 'table id="T_' not in f.read_text():
            continue
        seen += 1
        browser.get(f"{server}/executed/{page}.html")
        WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
        bad = browser.execute_script(_PADDING_JS)
        if bad:
            tight[page] = bad[:5]
    assert seen >= 3, f"expected styled tables on the chapters' pages, found them on {seen} pages"
    assert not tight, f"styled tables with cell padding under 4 px: {tight}"

_WEIGHT_JS = """
const all = performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'));
return [all.length, all.reduce((s, e) => s + (e.decodedBodySize || 0), 0)];
"""


def test_first_visit_weighs_at_most_5_mb(server, browser):
    """A first visit (empty cache) to any page loads at most 5 MB: the page, its scripts, styles, fonts and images,
    everything the browser asked for until the page went quiet (MathJax and the widget manager load parts late)."""
    from selenium.webdriver.support.ui import WebDriverWait
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    heavy, weights = {}, {}
    try:
        for page in run.book_pages(ROOT):
            browser.get(f"{server}/executed/{page}.html")
            WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
            last, quiet = None, 0
            for _ in range(40):                        # until nothing new has loaded for 1 s (at most 10 s)
                time.sleep(0.25)
                now = browser.execute_script(_WEIGHT_JS)
                quiet = quiet + 1 if now == last else 0
                last = now
                if quiet >= 4:
                    break
            weights[page] = last[1]
            if last[1] > 5_000_000:
                heavy[page] = f"{last[1] / 1e6:.2f} MB in {last[0]} requests"
    finally:
        browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
    print("first-visit weight (MB):", {p: round(w / 1e6, 2) for p, w in weights.items()})
    assert not heavy, f"pages over 5 MB on a first visit: {heavy}"

# ---------- absent data: a clear dataset error at once, or "not run here" rows ----------

def _run_without_data(page, params, tmp_path):
    "Execute a chapter into tmp_path with an empty data root; returns (papermill error or None, results)."
    import papermill as pm
    empty = tmp_path / "no-data"
    empty.mkdir()
    src = tmp_path / "src.ipynb"
    nbformat.write(run.preprocess(nbformat.read(ROOT / "nbs" / f"{page}.ipynb", as_version=4)), src)
    env = {"ROBBOOK_STATIC": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "ROBBOOK_DATA": str(empty)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), kernel_name="python3", cwd=str(ROOT),
                            progress_bar=False, parameters={"profile": "smoke", "device": "cpu",
                                                            "data_root": str(empty), "results_dir": str(tmp_path),
                                                            **params})
        err = None
    except pm.PapermillExecutionError as e:
        err = e
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    res = tmp_path / f"{run.chapter_name(page)}.json"
    return err, (json.loads(res.read_text()) if res.exists() else None)


@pytest.mark.slow
def test_tsipras_without_mnist_finishes_with_not_run_here_rows(tmp_path):
    "The deep-network slot asked for MNIST, which is absent: the chapter goes on and says so in its claims."
    err, res = _run_without_data("01_tsipras", {"mnist_data": "mnist"}, tmp_path)
    assert err is None, f"{err.ename}: {err.evalue}" if err else ""
    mnist = [c for c in res["results"]["claims"] if c["claim"].startswith("MNIST")]
    assert mnist and all(c["verdict"] == "not run here" for c in mnist)
    assert all("not available" in c["note"] or "absent" in c["note"] for c in mnist)


@pytest.mark.slow
@pytest.mark.parametrize("page, params", [("01_tsipras", {"linear_data": "mnist"}),
                                          ("03_kamath", {"mnist_data": "mnist"}),
                                          ("02_ilyas", {"dataset": "mnist"}),
                                          ("04_moayeri", {"cs_dataset": "mnist"})])
def test_required_data_absent_stops_with_the_dataset_error(page, params, tmp_path):
    "Data an experiment cannot go on without: the run stops with the dataset's own error, saying where to put it."
    err, _ = _run_without_data(page, params, tmp_path)
    assert err is not None and err.ename == "DatasetNotFoundError", (err.ename, err.evalue) if err else "no error"
    assert "mnist" in err.evalue.lower()


@pytest.mark.slow
@pytest.mark.parametrize("page", ["01_tsipras", "02_ilyas", "03_kamath"])
def test_bad_launch_parameters_stop_the_chapter_at_once(page, tmp_path):
    "A chapter that can train through torchrun rejects a bad launch combination in its first cells, naming it."
    err, res = _run_without_data(page, {"nproc": 2, "nnodes": 2}, tmp_path)   # 2 machines need rdzv_endpoint
    assert err is not None and err.ename == "ParameterError" and "rdzv_endpoint" in err.evalue, err
    assert "start_run(" in err.source and "check_launch(" in err.source, err.source   # the start cell, not later
    assert res is None                                                    # nothing ran, nothing was written

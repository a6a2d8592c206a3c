"""The book end to end: every page executes under `smoke` through papermill, Jupyter Book renders
it, the HTML loads nothing from outside the book, and the knob widgets work in headless Chromium
with every non-local request blocked.

ROBBOOK_TEST_BOOK_ROOT=<checkout> points these tests at an already built checkout (default: this
one, built by the test itself with `python -m robbook book`, which re-executes only what changed)."""
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
        assert {c["verdict"] for c in claims} <= {"reproduced", "partly", "not reproduced", "not run here"}


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
    mgr = [s for s in srcs if "embed-amd.js" in s]
    req = [s for s in srcs if "require.js" in s]
    assert mgr and req, "widget pages must load require.js and the html-manager"
    for s in mgr + req:
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
    WebDriverWait(d, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".noUi-handle"))
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
        if f.exists() and "application/vnd.jupyter.widget-view+json" in f.read_text():
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

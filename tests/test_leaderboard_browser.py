"""The leaderboard page in a real headless Chromium (Debian's ``chromium``, installed by CI).

The browser is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON), so no websocket package is needed. These tests FAIL
when chromium is missing; set ``MLRPL_BENCH_NO_BROWSER=1`` to skip them explicitly on a machine
without it (CI installs it with ``.ci/install_chromium.sh``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import pytest
from record_factory import make_record, sweep, write_record_file

from mlrpl_bench.leaderboard.build import build_leaderboard

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio"]

SCRIPT_NAME = "<script>alert(1)</script>"
IMG_NAME = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\">"


def chromium_binary() -> str:
    if os.environ.get("MLRPL_BENCH_NO_BROWSER") == "1":
        pytest.skip("MLRPL_BENCH_NO_BROWSER=1: browser tests skipped on request")
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium not found: install it with .ci/install_chromium.sh "
                "(or set MLRPL_BENCH_NO_BROWSER=1 to skip the browser tests explicitly)")


class Chromium:
    """A minimal DevTools-protocol client for one page."""

    def __init__(self, binary: str, timeout: float = 20.0):
        self.timeout = timeout
        self.user_data = tempfile.mkdtemp(prefix="mlrpl-bench-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes():  # the browser reads commands on fd 3 and writes replies on fd 4
            # Move both ends above 10 first: either may currently be 3 or 4 itself.
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)  # dup2 leaves the copies inheritable across exec
            os.dup2(high_w, 4)

        # close_fds=False: fds 3 and 4 are created in the child after fork; Python's own fds
        # are non-inheritable and close on exec anyway.
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.user_data}", "--remote-debugging-pipe", "about:blank"],
            close_fds=False, preexec_fn=wire_pipes,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable")

    def _read(self, predicate):
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk

    def call(self, method: str, params: dict | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._read(lambda m, i=self._id: m.get("id") == i)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self._read(lambda m: m.get("method") == "Page.loadEventFired")

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, error log entries and dialogs so far."""
        out = []
        for e in self.events:
            method, params = e["method"], e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log: {params['entry'].get('text')}")
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog: {params.get('message')}")
        return out

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.session = None
            self.call("Browser.close")
        except Exception:  # already gone: fall through to terminate
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.user_data, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    chrome = Chromium(chromium_binary())
    yield chrome
    chrome.close()


KNOWNS = tuple(round(0.1 * i, 1) for i in range(1, 10))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lb-browser")
    records = (sweep("hst", 80, knowns=KNOWNS) + sweep("partial-bce", 70, knowns=KNOWNS) + sweep("dsrb", 60, knowns=KNOWNS)
               + sweep("ipl", 50, knowns=KNOWNS)
               + sweep(SCRIPT_NAME, 50, knowns=(0.1, 0.5), seeds=(0,)) + [make_record(IMG_NAME, known=0.3, mAP=10.0)]
               + sweep("hst", 20, knowns=(0.1, 0.5), seeds=(0,), scheme="hcp"))
    for rec in records:
        rec["protocol"]["per_class_known_positives"] = [40, 20, 10, 5]
    results = tmp / "results"
    for i, rec in enumerate(records):
        write_record_file(results / str(i), rec)
    build_leaderboard(results, tmp / "site")
    return tmp / "site" / "index.html"


@pytest.fixture(scope="module")
def page(browser, site):
    browser.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False})
    browser.open(site.as_uri())
    return browser


ROWS = "Array.from(document.querySelectorAll('table.main tbody tr'))"


def test_page_loads_without_console_errors_or_network(page):
    assert page.problems() == []
    # every sortable table (main, vs baseline, bins, vs-published, every published competitor) was wired up
    assert page.js("document.documentElement.getAttribute('data-lb-ready')") == "5"
    assert page.js("document.querySelectorAll('table.sortable').length") == 5
    assert all(url.startswith(("file:", "data:")) for url in page.requested_urls())


def test_page_shows_the_expected_rows_with_intervals_marks_and_budgets(page):
    methods = page.js(f"{ROWS}.map(r => r.dataset.method)")
    # sorted by Ave. mAP; then, by name, the rows that miss proportions and so have no Ave.:
    # the <img> one, the "<script>" one, hst/hcp
    assert methods == ["hst", "partial-bce", "dsrb", "ipl", IMG_NAME, SCRIPT_NAME, "hst"]
    protocols = page.js(f"{ROWS}.map(r => r.dataset.protocol)")
    assert protocols[0] != protocols[6]  # the hcp-scheme run is its own row
    first = page.js("Array.from(document.querySelector('table.main tbody tr').cells).map(c => c.textContent.trim())")
    # 80 + 10 * known (+0.5 for seed 1): mean ± t(0.975, 1) * 0.354 / sqrt(2) = ± 3.2; 10 points above partial-bce,
    # every seed by exactly 10 (s_d = 0): MDE 0
    assert first[1:4] == [f"{v} ± 3.2▲Δ\u00a0+10.0 · MDE\u00a00.0" for v in ("81.2", "82.2", "83.2")]
    marks = page.js(f"{ROWS}.map(r => Array.from(r.querySelectorAll('.mark')).map(m => m.dataset.mark).join(','))")
    assert set(marks[0].split(",")) == {"better"} and set(marks[2].split(",")) == {"worse"} and marks[1] == ""
    title = page.js("document.querySelector('table.main tbody tr td:nth-child(2)').getAttribute('title')")
    assert "2 seeds, std 0.35, 95% interval [78.1, 84.4] (t-interval over seeds)" in title and "better: +10.00" in title
    assert "MDE 0.00 (2 seeds for 1)" in title
    # one budget for every row: a caption line, no column, no per-row badge
    caption = page.js("document.querySelector('.budget-caption').textContent")
    assert caption.startswith("Budget of every row:") and "epochs: 2; image size: –; batch size: 8; lr: 0.001" in caption
    assert page.js("document.querySelectorAll('table.main .budget').length") == 0
    headers = page.js("Array.from(document.querySelectorAll('table.main thead th')).map(h => h.textContent)")
    assert "Budget" not in headers and headers[-4:] == ["Ave. mAP", "Avg. OF1", "Avg. CF1", "Seeds"]
    assert page.js("document.querySelectorAll('table.bins tbody tr').length") == 7
    assert page.js("document.querySelectorAll('table.versus tbody tr').length") == 3


def test_one_panel_per_family_each_with_the_baseline_and_interval_bands(page, tmp_path):
    panels = page.js("Array.from(document.querySelectorAll('svg.panel')).map(p => p.dataset.family)")
    assert panels == ["linear-head baselines", "SARL-head methods", "pseudo-labeling", "other"]
    baselines = page.js("Array.from(document.querySelectorAll('svg.panel')).map(p => p.querySelectorAll('g.series.baseline').length)")
    assert baselines == [1, 1, 1, 1]
    bands = page.js("Array.from(document.querySelectorAll('svg.panel')).map(p => p.querySelectorAll('polygon.band').length)")
    assert bands == [1, 3, 2, 1]  # baseline everywhere; hst and dsrb; ipl (one-seed rows have no band)
    sarl = page.js("Array.from(document.querySelector('svg.panel[data-family=\"SARL-head methods\"]')"
                   ".querySelectorAll('g.series')).map(g => g.dataset.label)")
    assert sarl[0].startswith("partial-bce") and sarl[0].endswith("(baseline)")
    assert any(label.startswith("hst") for label in sarl) and any(label.startswith("dsrb") for label in sarl)
    # published curves (dashed) where the papers report the method on voc2007 / pal
    assert page.js("document.querySelectorAll('svg.panel g.series.published polyline[stroke-dasharray]').length") >= 2
    shot = page.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    png = base64.b64decode(shot["data"])
    path = tmp_path / "leaderboard.png"
    path.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    box = page.js("JSON.stringify(document.querySelector('svg.panel').getBoundingClientRect())")
    assert json.loads(box)["width"] == 420  # the panel is laid out at its size, not squeezed


def test_injected_names_render_as_text_and_never_run(page):
    texts = page.js("Array.from(document.querySelectorAll('table.main td:first-child')).map(c => c.firstChild.textContent)")
    assert SCRIPT_NAME in texts and IMG_NAME in texts
    assert page.js("document.scripts.length") == 1  # the page's own script only
    assert page.js("document.querySelectorAll('img').length") == 0
    assert page.js("document.documentElement.getAttribute('data-pwned')") is None
    legend = page.js("Array.from(document.querySelectorAll('svg text title')).map(t => t.textContent).join('\\n')")
    assert "<script>alert(1)" in legend
    assert page.problems() == []  # no dialog, no CSP violation


def test_clicking_a_header_sorts_numerically_with_missing_values_last(page):
    column = f"{ROWS}.map(r => r.cells[3].getAttribute('data-value'))"
    page.js("document.querySelectorAll('table.main thead th')[3].querySelector('button').click()")  # the 30% column
    ascending = page.js(column)
    numbers = [float(v) for v in ascending if v]
    assert numbers == sorted(numbers) and len(numbers) == 5 and ascending[5:] == ["", ""]
    assert page.js("document.querySelectorAll('table.main thead th')[3].getAttribute('aria-sort')") == "ascending"
    page.js("document.querySelectorAll('table.main thead th')[3].querySelector('button').click()")
    descending = page.js(column)
    assert [float(v) for v in descending if v] == sorted(numbers, reverse=True) and descending[5:] == ["", ""]
    page.js("document.querySelectorAll('table.main thead th')[0].querySelector('button').click()")
    names = page.js(f"{ROWS}.map(r => r.dataset.method)")
    assert names == [IMG_NAME, SCRIPT_NAME, "dsrb", "hst", "hst", "ipl", "partial-bce"]  # text column: localeCompare order
    assert page.problems() == []


def test_a_broken_page_would_be_caught(browser, tmp_path):
    # The checks above can fail: a page with a script error and an unescaped name is reported.
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><script>undefinedFunction();</script>"
                   "<script>alert(1)</script></body></html>")
    browser.call("Page.enable")
    browser.events.clear()
    browser.call("Page.navigate", {"url": bad.as_uri()})
    browser._read(lambda m: m.get("method") == "Page.javascriptDialogOpening")
    browser.call("Page.handleJavaScriptDialog", {"accept": True})
    browser._read(lambda m: m.get("method") == "Page.loadEventFired")
    problems = browser.problems()
    assert any("undefinedFunction" in p for p in problems) and any(p.startswith("dialog") for p in problems)


# --------------------------------------------------------------------------- the first screen (issue 19.2)

@pytest.fixture(scope="module")
def wide_site(tmp_path_factory):
    """A table as wide as the built-in one: 20 methods x 9 proportions x 3 seeds, two-digit
    intervals and MDEs (seeds 12 points apart) on half of them, paired with partial-bce."""
    tmp = tmp_path_factory.mktemp("lb-wide")
    records = sweep("partial-bce", 60, knowns=KNOWNS, seeds=(0, 1, 2))
    for i in range(19):
        jitter = 12.0 if i % 2 else 0.7
        records += sweep(f"method-{i:02d}-pl", 40 + i, knowns=KNOWNS, seeds=(0, 1, 2), seed_jitter=jitter)
    for i, rec in enumerate(records):
        write_record_file(tmp / "results" / str(i), rec)
    build_leaderboard(tmp / "results", tmp / "site")
    return tmp / "site" / "index.html"


def test_at_1400_px_the_main_table_needs_no_sideways_scroll_and_shows_ave_and_the_mde(browser, wide_site, site, tmp_path):
    browser.call("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    browser.open(wide_site.as_uri())
    try:
        assert browser.problems() == []
        box = json.loads(browser.js(
            "JSON.stringify((() => { const t = document.querySelector('table.main'), s = t.parentElement;"
            " const ave = Array.from(t.tHead.rows[0].cells).find(h => h.textContent === 'Ave. mAP');"
            " return {table: t.getBoundingClientRect().right, scroll: s.scrollWidth, client: s.clientWidth,"
            " page: document.documentElement.scrollWidth, inner: window.innerWidth,"
            " ave: ave.getBoundingClientRect().right, rows: t.tBodies[0].rows.length}; })())"))
        assert box["rows"] == 20
        assert box["scroll"] <= box["client"], box  # the table's own scroller has nothing to scroll
        assert box["page"] <= box["inner"] and box["table"] <= box["inner"] and box["ave"] <= box["inner"], box
        # every compared cell, Ave. included, says its difference and its MDE; the baseline's cells do not
        lines = browser.js(f"{ROWS}.map(r => r.querySelectorAll('small.mde').length)")
        methods = browser.js(f"{ROWS}.map(r => r.dataset.method)")
        assert {m: n for m, n in zip(methods, lines)} == {m: 0 if m == "partial-bce" else 10 for m in methods}
        shot = browser.call("Page.captureScreenshot", {"format": "png"})
        (tmp_path / "first-screen.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1600, "deviceScaleFactor": 1,
                                                            "mobile": False})
        browser.open(site.as_uri())  # back to the page the other tests share

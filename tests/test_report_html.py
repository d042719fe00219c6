"""report.html in a real headless Chromium (Debian's `chromium`), driven over the DevTools protocol.

The page of the tiny sweep must load from disk with no console errors, show every table and every
embedded image (decoded, non-zero size), fit a laptop-wide window, hide its navigation in print
and print to PDF; a screenshot is saved beside the report. Where Chromium is missing the tests
skip, except in CI (CI=true), where .ci/run installs it and its absence is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processes import stop
from proselflc.analysis import plots
from proselflc.analysis.report import Report, write_report

pytestmark = [pytest.mark.ray, pytest.mark.browser, pytest.mark.subprocess]  # the tiny (real Ray) sweep's page


def _chromium() -> str:
    found = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if found is None:
        message = "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


class DevTools:
    """One page of a headless Chromium, over the DevTools protocol's WebSocket; keeps every event."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client, from the dev extra

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            assert time.monotonic() < deadline, f"no {event} within {timeout} s"
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"]["value"]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page produced."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                out.append(str(params["exceptionDetails"].get("text")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(f"{params['entry'].get('source')}: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return out


@pytest.fixture(scope="module")
def page(tiny_sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    out = tmp_path_factory.mktemp("report-html")
    report = write_report(tiny_sweep, out=out, formats=["html"], figures=False)
    path = out / "report.html"
    assert path in report.files
    return report, path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    exe = _chromium()
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [
            exe,
            "--headless",
            "--no-sandbox",  # tests run as root in CI; the page is our own file
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1366,768",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            assert process.poll() is None, "Chromium exited before opening its DevTools port"
            assert time.monotonic() < deadline, "Chromium opened no DevTools port within 30 s"
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            target = next(t for t in json.loads(response.read()) if t["type"] == "page")
        tools = DevTools(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        yield tools
        tools.ws.close()
    finally:
        stop(process)


def _open(browser: DevTools, path: Path) -> None:
    browser.call("Page.navigate", url=path.as_uri())
    browser.wait_for("Page.loadEventFired")


def test_report_page_renders_every_table_and_image_without_errors(
    page: tuple[Report, Path], browser: DevTools
) -> None:
    report, path = page
    _open(browser, path)
    images = browser.evaluate(
        "[...document.images].map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,"
        " src: i.src.slice(0, 22)}))"
    )
    n_studies = report.dynamics["study"].nunique()
    n_figures = 1 + n_studies + len(plots.learning_curves(report.dynamics, report.best)) + (
        plots.importance_bars(report.importance) is not None
    )
    assert len(images) == n_figures
    broken = [i["alt"] for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not broken, f"images that did not render: {broken}"
    assert all(i["src"] == "data:image/png;base64," for i in images), "every image is embedded"

    tables = browser.evaluate(
        "[...document.querySelectorAll('table')].map(t => [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim())))"
    )
    # results, memorisation, selection certainty, selected, oracle, [importance], cost
    assert len(tables) == 6 + (not report.importance.empty)
    results = report.table.flat(missing="–")
    assert tables[0][0] == list(results.columns)
    assert tables[0][1:] == results.astype(str).to_numpy().tolist()
    memorisation = tables[1]
    assert memorisation[-len(report.memorisation):] == [
        [f"{rate:.1f}", *cells] for rate, cells in zip(report.memorisation.index, report.memorisation.to_numpy().tolist())
    ]
    certainty = tables[2]
    assert certainty[-len(report.certainty):] == [
        [f"{rate:.1f}", *cells] for rate, cells in zip(report.certainty.index, report.certainty.to_numpy().tolist())
    ]
    selected = tables[3]
    assert len(selected) == 1 + len(report.best)
    assert {"selected trial", "test acc.", "oracle trial", "oracle test acc."} <= set(selected[0])
    assert [row[selected[0].index("selected trial")] for row in selected[1:]] == list(report.best["trial_id"])
    assert len(tables[-1]) == 1 + len(report.cost)

    anchors = browser.evaluate("[...document.querySelectorAll('nav a')].map(a => !!document.querySelector(a.hash))")
    assert anchors and all(anchors), "every navigation link has its section"
    wide = browser.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"the page is {wide}px wider than a 1366px laptop window"
    assert browser.errors() == []

    shot = browser.call("Page.captureScreenshot", format="png")
    screenshot = path.with_name("report.png")
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and screenshot.stat().st_size > 10_000


def test_report_page_prints(page: tuple[Report, Path], browser: DevTools) -> None:
    _, path = page
    _open(browser, path)
    browser.call("Emulation.setEmulatedMedia", media="print")
    assert browser.evaluate("getComputedStyle(document.querySelector('nav')).display") == "none"
    pdf = base64.b64decode(browser.call("Page.printToPDF", printBackground=True)["data"])
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
    assert pdf.startswith(b"%PDF") and pages >= 2, f"a PDF of {pages} page(s)"
    assert browser.errors() == []


def test_report_page_needs_no_network(page: tuple[Report, Path]) -> None:
    _, path = page
    html = path.read_text()
    for attribute in ("src=", "href="):
        for part in html.split(attribute)[1:]:
            target = part[1:].split(part[0], 1)[0]
            assert target.startswith(("data:", "#")), f"{attribute}{target[:60]} reaches outside the page"

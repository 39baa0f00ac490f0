"""The live page and the OpenAPI page in a real headless browser (Debian's chromium), against a real
`lifelong serve --demo` process (issue 11).

The demo streams three permuted-digits tasks as feedback; once it has sent them all, chromium loads the
page and the test reads the DOM it rendered (``--dump-dom``, after the page's script has fetched the JSON
API): every version of ``GET /v1/models`` must be a row, with its guard accuracies. Chromium cannot
resolve any host but 127.0.0.1 here, so the pages must work with nothing from the internet.

The README's screenshot is made by this test: ``LIFELONG_SCREENSHOT=docs/serve-page.png pytest
tests/test_serve_page.py`` writes it there (otherwise into the test's temporary folder).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from serve_process import ServerProcess, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no host but this machine
    "--virtual-time-budget=5000",  # let the page's fetches and timers run before the DOM is read
]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed: run tools/system-deps.sh")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    args = ["--demo", "--demo-tasks", "3", "--demo-delay", "0", "--micro-batch", "250", "--max-wait-s", "0.5"]
    proc = ServerProcess(root / "state", *args)
    try:
        proc.start()
        wait_for(lambda: "all tasks sent" in proc.out.read_text(), timeout=120, what="the demo's stream")
        proc.key = re.search(r"#key=(\S+)", proc.out.read_text()).group(1)
        yield proc
    finally:
        proc.stop()


def chromium(url: str, profile: Path, *extra: str) -> str:
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page(HTMLParser):
    """The rendered page's versions table (rows by data-version: class, cell texts), the chart's points and
    legend, and which blocks are hidden."""

    def __init__(self, dom: str):
        super().__init__()
        self.rows: dict[int, dict] = {}
        self.head: list[str] = []
        self.circles = 0
        self.legend: list[str] = []
        self.hidden: set[str] = set()
        self.texts: dict[str, str] = {}
        self._row = self._cell = None
        self._in_head = self._in_legend = False
        self._text_of: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a and "hidden" in a:
            self.hidden.add(a["id"])
        if a.get("id") in ("summary", "login-why"):
            self._text_of = a["id"]
            self.texts[a["id"]] = ""
        if a.get("id") == "versions-head":
            self._in_head = True
        if tag == "tr" and "data-version" in a:
            self._row = {"class": a.get("class", ""), "cells": []}
            self.rows[int(a["data-version"])] = self._row
        if tag in ("td", "th"):
            self._cell = ""
        if tag == "circle":
            self.circles += 1
        if tag == "text" and a.get("class") == "legend":
            self._in_legend = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            if self._in_head:
                self.head.append(self._cell.strip())
            elif self._row is not None:
                self._row["cells"].append(self._cell.strip())
            self._cell = None
        if tag == "tr":
            self._row, self._in_head = None, False
        if tag == "text":
            self._in_legend = False
        if tag in ("p", "span"):
            self._text_of = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in_legend:
            self.legend.append(data)
        if self._text_of:
            self.texts[self._text_of] += data


def test_the_live_page_shows_every_version_with_its_guard_row(demo, tmp_path):
    page = Page(chromium(f"{demo.url}/#key={demo.key}", tmp_path / "profile", "--dump-dom"))
    with httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {demo.key}"}) as http:
        models = http.get("/v1/models").json()  # the demo has sent everything: the versions no longer change
        state = http.get("/v1/state").json()
    assert "main" not in page.hidden and "login" in page.hidden
    assert f"serving version {state['version']}" in page.texts["summary"]
    tasks = ["perm1", "perm2", "perm3"]
    assert page.head == ["version", "status", "parent", "trained on", "method", *tasks, "why"]
    assert set(page.rows) == {v["version"] for v in models["versions"]} and len(page.rows) >= 4
    for v in models["versions"]:
        row = page.rows[v["version"]]
        assert row["class"] == f"status-{v['status']}" and row["cells"][1] == v["status"]
        for task, cell in zip(tasks, row["cells"][5:8], strict=True):
            if task in v["guard"]:
                assert abs(float(cell) - 100 * v["guard"][task]) < 0.051  # the version's R row, in %
            else:
                assert cell == ""
        assert row["cells"][8] == " ".join(v["reason"].split())
    assert page.rows[models["serving"]]["class"] == "status-serving"
    assert page.circles == sum(len(v["guard"]) for v in models["versions"])  # one point per guard accuracy
    assert page.legend == tasks

    target = Path(os.environ.get("LIFELONG_SCREENSHOT") or tmp_path / "serve-page.png").resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    chromium(
        f"{demo.url}/#key={demo.key}",
        tmp_path / "profile-shot",
        f"--screenshot={target}",
        "--window-size=1200,1000",
        "--hide-scrollbars",
    )
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1200, 1000)


def test_without_a_valid_key_the_page_asks_for_one(demo, tmp_path):
    page = Page(chromium(f"{demo.url}/", tmp_path / "p1", "--dump-dom"))
    assert "login" not in page.hidden and "main" in page.hidden and not page.rows
    page = Page(chromium(f"{demo.url}/#key=llk_wrong", tmp_path / "p2", "--dump-dom"))
    assert "login" not in page.hidden and not page.rows
    assert "unknown API key" in page.texts["login-why"]


def test_the_openapi_page_renders_without_the_internet(demo, tmp_path):
    dom = chromium(f"{demo.url}/docs", tmp_path / "p", "--dump-dom")
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/v1/predict", "/v1/feedback", "/v1/models", "/v1/models/{version}/promote", "/v1/tasks"} <= paths

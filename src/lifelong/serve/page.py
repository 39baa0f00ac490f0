"""The live page at ``/``: the model versions, each version's guard-set accuracy row (its row of the
accuracy matrix R, on the held-out share of every task's feedback), and a chart of those accuracies over
the versions, refreshed every second from the JSON API (``GET /v1/models`` and ``/v1/state``).

Static files only (static/index.html, page.js, page.css): no template engine, no CDN, no inline script,
so the page is served with a Content-Security-Policy that lets it load nothing but its own files and
call nothing but this server. The page needs an API key of any scope: open ``/#key=KEY`` (the fragment
never reaches the server or its logs; the page keeps the key in the tab's sessionStorage and removes it
from the address bar) or paste it into the page's form. Data are written with ``textContent``, never as
HTML, so a task name cannot inject markup.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=HEADERS)

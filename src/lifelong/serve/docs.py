"""``GET /docs``: FastAPI's own OpenAPI page (Swagger UI), with its script and stylesheet served by the
app itself.

FastAPI's default page loads Swagger UI from a CDN, so on a machine without internet (or behind a
firewall) it stays blank. FastAPI ships no copy of Swagger UI; the ``fastapi-offline`` package ships one
(swagger-ui-dist 5, MIT/Apache-2.0, with ReDoc) in its ``static/`` folder. We serve those files under
``/docs-assets`` and render the page with FastAPI's ``get_swagger_ui_html`` pointed at them; the rest of
fastapi-offline (its FastAPI subclass) is not used. Without the package, ``/docs`` says what to install
and ``/openapi.json`` still works.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def assets_folder() -> Path | None:
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def add_docs(app: FastAPI) -> None:
    folder = assets_folder()
    if folder is not None:
        app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if folder is None:
            return HTMLResponse(
                "<p>The OpenAPI page needs Swagger UI's files, which the package fastapi-offline ships: "
                "pip install fastapi-offline (or pip install 'lifelong[serve]'). The schema itself is at "
                '<a href="/openapi.json">/openapi.json</a>.</p>',
                status_code=503,
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title}: OpenAPI",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True},
        )

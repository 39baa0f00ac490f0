"""The HTTP API of ``lifelong serve`` (FastAPI): a thin layer over the ``Service`` facade.

Endpoints (``/docs`` shows them, with a form to try each)::

    GET  /healthz                       liveness: the serving version and the learner's state (no key)
    GET  /metrics                       Prometheus text (no key; see metrics.py)
    POST /v1/predict                    scope predict: inputs -> labels, probabilities, version
    POST /v1/feedback                   scope feedback: inputs + labels (+ task) -> 202 once committed
    GET  /v1/tasks    POST /v1/tasks    any key / scope feedback: the tasks; open one
    GET  /v1/models                     any key: the versions, each with its guard accuracy row
    POST /v1/models/{version}/promote   scope admin: serve that version now
    POST /v1/models/rollback            scope admin: back to the version served before
    GET  /v1/state                      any key: version, backlog, learner state, counts
    GET  /                              the live page (page.py)

Every error is JSON ``{"detail": "one line: what is wrong and how to fix it"}`` with a 4xx status (5xx
only for the server's own failures). The order of the checks: a body over ``max_body_bytes`` is refused
(413) before it is read, then the key (401/403) and its rate (429), then the body's schema (422), then the
service's own rules (``ServeError.status``: 404, 409, 503...). A refused request stores nothing: the
service is called only after every check has passed.

Threads: endpoints that touch the store are plain ``def``, which FastAPI runs in its thread pool, so a
prediction never waits for a feedback commit. A prediction of up to ``INLINE_BATCH`` inputs (a forward
pass of well under a millisecond) is answered on the event loop itself, and the key check asks the store
only for a key it has not seen: each hand-over between threads can cost a GIL switch interval (5 ms)
while the learner trains in its thread, and a batch-1 answer would otherwise make two. Larger batches go
to the thread pool, so they never hold up the loop.
"""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lifelong.errors import LifelongError
from lifelong.serve import schemas
from lifelong.serve.auth import READ, Auth, TokenBuckets
from lifelong.serve.docs import add_docs
from lifelong.serve.metrics import Metrics, Timer
from lifelong.serve.page import add_page

log = logging.getLogger("lifelong.serve")
INLINE_BATCH = 16  # predictions of up to this many inputs run on the event loop (well under a millisecond)


# What each body field takes: the "how to fix it" of a 422 about that field.
FIELD_HINTS = {
    "inputs": "send inputs as a list of inputs, each a list of numbers",
    "labels": "send one whole-number label per input",
    "task": f"send a task tag of {schemas.TASK_RULE}, or leave it out",
    "name": f"send a task name of {schemas.TASK_RULE}",
    "version": "give a version number (a whole number) from GET /v1/models",
}


def create_app(service, settings=None) -> FastAPI:
    """The app over ``service`` (anything with the ``Service`` facade's methods). ``settings``: the
    service's ``Settings`` (default ``service.settings``), of which this layer reads ``max_batch``,
    ``max_body_bytes``, ``rate_limit`` and ``rate_burst``."""
    settings = settings if settings is not None else service.settings
    app = FastAPI(
        title="lifelong serve",
        summary="A served model that keeps learning from labelled feedback, with guarded model versions.",
        description=(
            "Send `Authorization: Bearer KEY` (a key from `lifelong serve keys create --scope predict|feedback|admin`;"
            " press *Authorize*). Inputs are JSON numbers in the model's input shape "
            f"{tuple(service.input_shape)} or flat; labels are 0 to {service.n_classes - 1}."
        ),
        docs_url=None,  # docs.py serves FastAPI's page with local files instead of a CDN's
        redoc_url=None,
    )
    app.state.service, app.state.settings = service, settings
    auth = Auth(service, TokenBuckets(settings.rate_limit, settings.rate_burst))
    metrics = Metrics(service)
    app.state.metrics = metrics
    predict_key = Depends(auth.require("predict"))
    feedback_key = Depends(auth.require("feedback"))
    admin_key = Depends(auth.require("admin"))
    any_key = Depends(auth.require(READ))

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        """Liveness: 200 while the service answers (no key needed)."""
        state = service.state()
        return {"status": "ok", "version": state.get("version"), "learner": state.get("learner")}

    @app.get("/metrics", tags=["service"], response_class=Response)
    def prometheus() -> Response:
        """Request counts and latencies, feedback backlog, learner state, serving version (Prometheus text)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/v1/predict", tags=["model"], dependencies=[predict_key])
    async def predict(body: schemas.PredictRequest) -> schemas.PredictResponse:
        """Labels and class probabilities for a batch of inputs, and the model version that answered."""
        if len(body.inputs) <= INLINE_BATCH:  # a few inputs: answered at once, no hand-over to a worker thread
            return answer(body.inputs)
        return await run_in_threadpool(answer, body.inputs)

    def answer(inputs: list) -> dict:
        return service.predict(schemas.parse_inputs(inputs, tuple(service.input_shape), settings.max_batch))

    @app.post("/v1/feedback", tags=["feedback"], status_code=202, dependencies=[feedback_key])
    def feedback(body: schemas.FeedbackRequest) -> schemas.FeedbackResponse:
        """Labelled inputs for the learner. 202 means committed to the store: it survives a crash. Untagged
        feedback goes to the current task; a new tag opens a new task."""
        x = schemas.parse_inputs(body.inputs, tuple(service.input_shape), settings.max_batch)
        y = schemas.parse_labels(body.labels, len(x), service.n_classes)
        return service.add_feedback(x, y, body.task)

    @app.get("/v1/tasks", tags=["feedback"], dependencies=[any_key])
    def tasks() -> dict:
        """The tasks opened so far, oldest first."""
        return {"tasks": service.tasks()}

    @app.post("/v1/tasks", tags=["feedback"], status_code=201, dependencies=[feedback_key])
    def open_task(body: schemas.TaskRequest) -> dict:
        """Open a new task: untagged feedback goes to it from now on."""
        return service.open_task(body.name)

    @app.get("/v1/models", tags=["model"], dependencies=[any_key])
    def models() -> dict:
        """Every version with its guard-set accuracy per task (its row of R), status, and why it was
        rejected if it was."""
        versions = service.versions()
        serving = next((v["version"] for v in versions if v.get("status") == "serving"), None)
        return {"serving": serving, "versions": versions}

    @app.post("/v1/models/rollback", tags=["model"], dependencies=[admin_key])
    def rollback() -> dict:
        """Serve the version that was served before the current one."""
        return service.rollback()

    @app.post("/v1/models/{version}/promote", tags=["model"], dependencies=[admin_key])
    def promote(version: int) -> dict:
        """Serve this version now, whatever the promotion rule said."""
        return service.promote(version)

    @app.get("/v1/state", tags=["service"], dependencies=[any_key])
    def state() -> dict:
        """The serving version, the feedback backlog, the learner's state and the store's counts."""
        return service.state()

    _add_error_handlers(app)
    _set_openapi_examples(app, service)
    add_docs(app)
    add_page(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Timer, metrics=metrics)  # added last: the outermost, so it times all
    return app


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413 before it is read: by its Content-Length when it
    has one, else (chunked) as soon as the bytes received pass the limit. The refusal is raised from the
    app's first read of the body, so it is answered like any other error, under the endpoint's name."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        received = 0

        async def limited():
            nonlocal received
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
                raise HTTPException(413, self._message(declared.decode(errors="replace")))
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._message(f"more than {received}"))
            return message

        await self.app(scope, limited, send)

    def _message(self, size: str) -> str:
        return f"the body has {size} bytes; this server takes at most {self.max_bytes}: send fewer inputs per request"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LifelongError)
    async def serve_error(request: Request, e: LifelongError) -> JSONResponse:
        return _error(getattr(e, "status", 400), str(e))

    @app.exception_handler(schemas.Invalid)
    async def invalid(request: Request, e: schemas.Invalid) -> JSONResponse:
        return _error(422, str(e))

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, e: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(e.errors(), request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        detail = str(e.detail)
        if e.status_code == 404 and detail == "Not Found":
            detail = f"no endpoint {where}: the endpoints are listed at /docs"
        elif e.status_code == 405:
            detail = f"{request.url.path} does not take {request.method}: see /docs for its methods"
        elif e.status_code == 400 and "parsing the body" in detail:
            detail = "the body could not be parsed: send one JSON object with Content-Type: application/json"
        return _error(e.status_code, detail, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def failure(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(e).__name__}): nothing was acknowledged; see the server's log")


def _error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": " ".join(detail.split())}, status_code=status, headers=headers)


def _validation_message(errors: list[dict], request: Request) -> str:
    """The first schema error as one line: where, what, and how to fix it."""
    e = errors[0]
    kind = e.get("type", "")
    loc = [p for p in e.get("loc", ()) if p not in ("body", "path", "query")]
    where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    field = next((p for p in loc if isinstance(p, str)), "")
    hint = FIELD_HINTS.get(field, "see the request's schema at /docs")
    if kind == "json_invalid":
        position = e["loc"][-1] if e.get("loc") else "?"
        return (
            f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')} at character "
            f"{position}): send one JSON object with Content-Type: application/json"
        )
    if not loc:  # the body as a whole: missing, not an object, or not JSON at all
        return "the body must be one JSON object, sent with Content-Type: application/json (see /docs)"
    if kind == "missing":
        return f"`{where}` is missing: {hint}"
    if kind == "extra_forbidden":
        return f"unknown field `{where}`: leave it out (the fields are at /docs)"
    given = e.get("input")
    if kind == "string_pattern_mismatch":
        return f"`{where}` {str(given)[:40]!r} is not allowed: {hint}"
    shown = "" if isinstance(given, dict | list) else f" (got {str(given)[:40]!r})"
    return f"`{where}`: {e.get('msg', 'invalid')}{shown}: {hint}"


def _set_openapi_examples(app: FastAPI, service) -> None:
    """The page's "Try it out" forms start from a valid body: one zero input of the model's size."""
    build = app.openapi
    size = 1
    for n in service.input_shape:
        size *= n

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            components = schema.get("components", {}).get("schemas", {})
            for name in ("PredictRequest", "FeedbackRequest"):
                properties = components.get(name, {}).get("properties", {})
                if "inputs" in properties:
                    properties["inputs"]["examples"] = [[[0.0] * size]]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi

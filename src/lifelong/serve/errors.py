"""The service's errors: a LifelongError with the HTTP status the app answers with (re-exported by
service.py, where the facade's callers import them from)."""

from __future__ import annotations

from lifelong.errors import LifelongError


class ServeError(LifelongError):
    """A one-line message that says what is wrong and how to fix it; ``status`` is the HTTP status."""

    status = 400


class NotFound(ServeError):
    status = 404


class Conflict(ServeError):
    status = 409


class Unavailable(ServeError):
    """The store cannot be reached or written (a full disk, a stopped database server): retry later."""

    status = 503

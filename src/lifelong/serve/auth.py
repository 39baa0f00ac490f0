"""API keys with scopes, and a per-key rate limit.

A request names its key as ``Authorization: Bearer KEY``. The service keeps only the key's sha256 (see
``Service.create_key``), so this layer asks ``Service.scopes_of(key)`` and never sees a stored secret.
Scopes: ``predict``, ``feedback`` and ``admin``; ``admin`` implies the other two. Reading the versions, tasks
and state needs a key of any scope.

Answers: 401 without a key or with an unknown one, 403 with a key whose scopes do not include the
endpoint's, 429 when the key has spent its tokens (with ``Retry-After``).

The rate limit is a token bucket per key (Turner 1986, as in most API gateways): a key holds up to
``burst`` tokens, refilled at ``rate`` tokens a second, and each request spends one. A burst of requests
is served at once; a steady flood is held to ``rate`` a second (``Settings.rate_limit``, ``rate_burst``).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

READ = "read"  # any valid key
KEYS_HINT = "create one with `lifelong serve keys create --scope {scope}`"

bearer = HTTPBearer(auto_error=False, description="an API key from `lifelong serve keys create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class TokenBuckets:
    """One token bucket per key; thread-safe (sync endpoints run in a thread pool)."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key digest -> (tokens, time of last refill)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend a token of ``key``: 0 if there was one, else the seconds until there is one."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class Auth:
    """``Auth(service, buckets).require(scope)`` is a FastAPI dependency that admits a request or answers
    401/403/429."""

    def __init__(self, service, buckets: TokenBuckets):
        self.service = service
        self.buckets = buckets
        self._known: dict[str, set[str]] = {}  # sha256 of a key -> its scopes, for keys seen

    def require(self, scope: str):
        async def check(request: Request, credentials: Credentials) -> str:
            endpoint = f"{request.method} {request.url.path}"
            need = "predict" if scope == READ else scope  # reading needs any key: suggest the narrowest
            if credentials is None or not credentials.credentials:
                raise HTTPException(
                    401,
                    f"{endpoint} needs an API key: send the header 'Authorization: Bearer KEY' "
                    f"({KEYS_HINT.format(scope=need)})",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            key = credentials.credentials
            digest = hashlib.sha256(key.encode()).hexdigest()
            scopes = self._known.get(digest)
            if scopes is None:  # the store is asked in a worker thread, once per key (keys never change)
                scopes = await run_in_threadpool(self.service.scopes_of, key)
                if scopes is not None:
                    self._known[digest] = scopes
            if scopes is None:
                raise HTTPException(
                    401,
                    f"unknown API key: check the key you sent, or {KEYS_HINT.format(scope=need)}",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not allowed(scopes, scope):
                has = ", ".join(sorted(scopes)) or "none"
                wants = {READ: "any scope", "admin": "scope admin"}.get(scope, f"scope {scope} (or admin)")
                raise HTTPException(
                    403,
                    f"{endpoint} needs a key with {wants}; this key has {has}: use such a key, "
                    f"or {KEYS_HINT.format(scope=scope if scope != READ else 'predict')}",
                )
            wait = self.buckets.take(digest)
            if wait > 0:
                raise HTTPException(
                    429,
                    f"rate limit of {self.buckets.rate:g} requests/s per key exceeded (bursts up to "
                    f"{self.buckets.burst}): retry after {wait:.2f} s",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            return key

        return check


def allowed(scopes: set[str], scope: str) -> bool:
    if scope == READ:
        return bool(scopes)
    return scope in scopes or "admin" in scopes

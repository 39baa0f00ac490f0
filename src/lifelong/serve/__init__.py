"""``lifelong serve``: a served model that keeps learning from labelled feedback (issue 11).

The package is imported lazily by the CLI and imports nothing heavy itself: ``lifelong run`` never loads
SQLAlchemy, safetensors or FastAPI. Layout (one idea per file):

- ``service.py``       the facade the HTTP layer calls (Settings, Service, ServeError / NotFound / Conflict)
- ``store.py``         feedback, tasks, versions, API keys in SQLite (WAL) or PostgreSQL (SQLAlchemy Core)
- ``weights.py``       safetensors files with sha256 checksums, written atomically; never pickles
- ``method_state.py``  a library method's state as tensors + JSON (so a restart resumes it without pickles)
- ``replay_l2.py``     the learner's default method: the library's Replay and L2, driven together
- ``learner.py``       the background learner: micro-batches, candidates, guard sets, the promotion rule
- ``app.py`` ...       the HTTP layer (FastAPI), built on the facade

    from lifelong.serve import Service, Settings
"""

from __future__ import annotations

__all__ = ["Conflict", "NotFound", "ServeError", "Service", "Settings"]


def __getattr__(name: str):
    if name in __all__:
        from lifelong.serve import service

        return getattr(service, name)
    raise AttributeError(f"module 'lifelong.serve' has no attribute {name!r}")

"""``lifelong serve``: the service on uvicorn, and ``lifelong serve keys create``.

    lifelong serve [--host 127.0.0.1] [--port 8000] [--state-dir lifelong-serve] [--db URL]
                   [--config run.yaml | --run ID [--store runs.db]] [learner settings] [--demo]
    lifelong serve keys create --scope predict[,feedback,admin] [--name NAME] [--state-dir D | --db URL]

lifelong/cli.py hands every ``lifelong serve …`` command line here before it builds its own parser, so
``lifelong run`` never imports FastAPI, SQLAlchemy or uvicorn. The learner's settings are the fields of
``lifelong.serve.service.Settings``, one flag each (``micro_batch`` is ``--micro-batch``), read from the
dataclass so a new setting is a new flag without an edit here.

The port is bound here, before the model is built, so a busy port is a one-line error at once (and the
socket is handed to uvicorn, so nothing can take the port in between). A state folder that holds other
files (not a service's ``serve.db`` / ``weights/``) is refused rather than written into.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
import typing
from pathlib import Path

from lifelong.errors import LifelongError, option

HELP = {
    "state_dir": "folder of the service's state: serve.db (SQLite) and weights/; created if missing",
    "db": "postgresql://user@host:port/db to keep feedback, versions and keys in PostgreSQL (default: SQLite)",
    "method": "the learner's method: replay-l2, or any method of `lifelong list` with settings (ewc:lam=100)",
    "micro_batch": "new feedback rows that start a candidate",
    "max_wait_s": "... or seconds after the oldest untrained row, whichever comes first",
    "steps": "optimisation steps per candidate",
    "batch_size": "the candidates' mini-batch size",
    "lr": "the candidates' learning rate",
    "optimizer": "sgd or adam",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "guard_fraction": "share of each task's feedback held out as its guard set, never trained on",
    "max_forgetting": "largest drop of an old task's guard accuracy a promotion may cost (0.02 = 2 points)",
    "seed": "seed of the candidates' mini-batch order",
    "poll_s": "seconds between the idle learner's looks at the backlog",
    "max_batch": "most inputs in one predict or feedback request",
    "max_body_bytes": "largest request body read (413 above)",
    "rate_limit": "requests per second per API key (429 above)",
    "rate_burst": "requests a key may send at once",
}


def build_parser() -> argparse.ArgumentParser:
    from lifelong.cli import OneLineParser
    from lifelong.serve.service import Settings

    parser = OneLineParser(
        prog="lifelong serve",
        description="Serve a model that keeps learning from labelled feedback (HTTP, with guarded versions).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    model = parser.add_argument_group("the model (first start only; later starts resume the stored one)")
    model.add_argument("--config", help="a run config YAML (as `lifelong run --config`): its benchmark and model")
    model.add_argument("--run", type=int, help="a stored run (its id) whose config gives the model")
    model.add_argument("--store", help="the results store of --run (default: lifelong-runs/runs.db)")
    learner = parser.add_argument_group("the service and its learner")
    _add_settings(learner, Settings)
    parser.add_argument("--log-level", default="warning", choices=("error", "warning", "info", "debug"))
    demo = parser.add_argument_group("the demo")
    demo.add_argument("--demo", action="store_true", help="also stream permuted digits as feedback, task by task")
    demo.add_argument("--demo-tasks", type=_positive, default=3, help="tasks the demo streams (default: 3)")
    demo.add_argument("--demo-delay", type=float, default=0.2, help="seconds between its batches (default: 0.2)")
    parser.set_defaults(func=serve)

    sub = parser.add_subparsers(dest="serve_command", parser_class=OneLineParser)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", parser_class=OneLineParser)
    create = keys.add_parser("create", help="create an API key and print it (it is shown only once)")
    create.add_argument("--scope", required=True, help="predict, feedback and/or admin, comma-separated")
    create.add_argument("--name", default="", help="a note on whom the key is for")
    create.add_argument("--state-dir", default=str(_default(Settings, "state_dir")), help=HELP["state_dir"])
    create.add_argument("--db", help=HELP["db"])
    create.set_defaults(func=create_key)
    return parser


def _add_settings(group, settings_class) -> None:
    hints = typing.get_type_hints(settings_class)
    for field in dataclasses.fields(settings_class):
        kind = hints[field.name]
        convert = {int: _whole, float: float, Path: str}.get(kind, str)
        default = _default(settings_class, field.name)
        shown = f" (default: {default})" if default is not None else ""
        flag = "--" + field.name.replace("_", "-")
        group.add_argument(flag, dest=field.name, type=convert, default=None, help=HELP.get(field.name, "") + shown)


def _default(settings_class, name: str):
    field = next(f for f in dataclasses.fields(settings_class) if f.name == name)
    return field.default if field.default is not dataclasses.MISSING else None


def main(argv: list[str]) -> int:
    """Called by lifelong.cli's main (inside its one-line error handling)."""
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise LifelongError(f"`lifelong serve` needs the package {e.name}: pip install 'lifelong[serve]'") from None
    args = build_parser().parse_args(argv)
    if args.serve_command == "keys" and not getattr(args, "keys_command", None):
        raise LifelongError("say what to do with keys: `lifelong serve keys create --scope predict`")
    return args.func(args)


def settings_from(args: argparse.Namespace):
    from lifelong.serve.service import Settings

    names = [f.name for f in dataclasses.fields(Settings)]
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.demo:
        from lifelong.serve.demo import DEMO_SETTINGS

        given = {**DEMO_SETTINGS, **given}  # the demo's model is not the default one: keep their states apart
    settings = Settings(**given)
    if settings.db:
        from lifelong.serve.store import database_url

        database_url(settings.db)  # a URL of another database is refused before anything is made
    _check_state_dir(Path(settings.state_dir))
    return settings


def _check_state_dir(path: Path) -> None:
    """Never write into a folder of someone else's files."""
    if path.exists() and not path.is_dir():
        raise LifelongError(f"{option('state_dir')} {path} is a file; give a folder (it is created if missing)")
    if path.is_dir():
        entries = {p.name for p in path.iterdir()}
        ours = {"serve.db", "serve.db-wal", "serve.db-shm", "weights"}
        if entries and not entries & ours:
            raise LifelongError(
                f"{option('state_dir')} {path} holds other files, not a service's state (serve.db, weights/): "
                "give a new or empty folder"
            )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lifelong.serve.app import create_app
    from lifelong.serve.service import Service

    if args.config and args.run is not None:
        raise LifelongError("give --config or --run, not both: one of them describes the model")
    if args.store and args.run is None:
        raise LifelongError("--store names the results store of --run; give --run too")
    if args.demo and (args.config or args.run is not None):
        raise LifelongError("--demo serves its own model (permuted digits); leave out --config and --run")
    settings = settings_from(args)
    config = None
    if args.config:
        from lifelong.config import read_config_file

        config = read_config_file(args.config)
    elif args.demo:
        from lifelong.serve.demo import demo_config

        config = demo_config(args.demo_tasks)
    listener = _listen(args.host, args.port)  # before the model is built: a busy port fails at once
    try:
        service = Service.create(settings, config=config, run=args.run, store_path=args.store)
    except BaseException:
        listener.close()
        raise
    try:
        app = create_app(service, settings)
        host, port = listener.getsockname()[:2]
        base = f"http://{_url_host(host)}:{port}"
        version = service.state()["version"]
        where = settings.db or settings.state_dir
        print(
            f"lifelong serve: {base} · model {_describe(service)} · serving version {version} · "
            f"learner {settings.method} · state in {_hide_password(str(where))}",
            flush=True,
        )
        print(f"  the live page: {base}/ · try the API: {base}/docs · metrics: {base}/metrics", flush=True)
        service.start()
        client = None
        if args.demo:
            from lifelong.serve.demo import Demo

            client = Demo(service, base, args.demo_tasks, args.demo_delay)
            client.start()
        else:
            print(
                f"  API keys: lifelong serve keys create --scope predict|feedback|admin "
                f"{'--db …' if settings.db else '--state-dir ' + str(settings.state_dir)}",
                flush=True,
            )
        config = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level in ("info", "debug"))
        uvicorn.Server(config).run(sockets=[listener])
        if client is not None:
            client.stop()
    finally:
        service.close()
        listener.close()
    return 0


def create_key(args: argparse.Namespace) -> int:
    from lifelong.serve import service as core

    scopes = {s.strip() for s in args.scope.split(",") if s.strip()}
    if not scopes or scopes - set(core.SCOPES):
        given = ", ".join(sorted(scopes)) or "none"
        raise LifelongError(f"--scope takes some of {', '.join(core.SCOPES)}, comma-separated (got {given})")
    given = {"state_dir": args.state_dir} | ({"db": args.db} if args.db else {})
    settings = core.Settings(**given)
    if not args.db:
        _check_state_dir(Path(settings.state_dir))
    key = core.create_key(settings, scopes, args.name)  # the store alone: no model is built
    print(key)
    print(f"lifelong serve: a key with scope {', '.join(sorted(scopes))}; it is shown only this once", file=sys.stderr)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line error (busy port, unknown host)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise LifelongError(f"cannot listen on {host}: {e.strerror}; give an address such as 127.0.0.1") from None
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise LifelongError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); stop what uses it or give another --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def _port(text: str) -> int:
    value = _whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _hide_password(url: str) -> str:
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, place = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}@{place}"
    return url


def _describe(service) -> str:
    """e.g. ``permuted-minimnist, inputs 14×14, 10 classes``."""
    cfg = getattr(service, "model_config", {}) or {}
    shape = "×".join(map(str, service.input_shape))
    return f"{cfg.get('benchmark', '?')}, inputs {shape}, {service.n_classes} classes"

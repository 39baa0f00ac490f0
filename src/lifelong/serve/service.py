"""The service facade: the only thing the HTTP layer calls (issue 11; the contract is /work/notes/SERVE.md).

Where the model comes from. On the first start over a state folder (or database), from a run config:
a dict of the run options that ``lifelong run`` takes (lifelong.config; e.g. ``{"benchmark":
"permuted-digits", "hidden": [50, 50, 50]}``; unnamed options take their defaults, so no config at all is
the library's default run: the 3 × 50 MLP for permuted minimnist's 14 × 14 inputs and 10 classes), or
from a stored run (``run=7`` of the results store): its recorded config. The results store keeps no
weights (a run's folder has result.json and plots, not its network), so a stored run gives the
architecture, the data's shape and classes and the seed, and the served model starts from the
initialisation that seed gives, with a warning that says so. The benchmark's stream is built once, for
the input shape and the output units' names; its data is not trained on (the served model learns from
feedback). The model's config, shape and classes are recorded in the store; a later start RESUMES (the
serving version from its checksummed files, the learner's backlog) and refuses a config, or a learner
method, that does not match the stored one, with a one-line error.

Durability: ``add_feedback`` returns after its transaction has committed (store.py: SQLite WAL with
synchronous=FULL, or PostgreSQL), so acknowledged feedback survives a kill -9 or a power cut.

Atomic swaps: the serving (version, model) pair is one tuple in one attribute. ``predict`` reads it once
and answers with that model and that version; promotion builds the new model completely (a separate
object, in eval mode, never trained again) and then assigns the new tuple, so a prediction never waits
for a swap and never sees half a model. Promotions, rollbacks and the learner's promotions take a lock
among themselves (never taken by predictions) so the store's serving history and the attribute agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import secrets
import threading
from pathlib import Path

import torch
from torch import nn

from lifelong.errors import LifelongError, option, warn
from lifelong.serve import weights
from lifelong.serve.errors import Conflict, NotFound, ServeError, Unavailable
from lifelong.serve.learner import Learner, check_servable, is_guard, make_method
from lifelong.serve.replay_l2 import NAME as DEFAULT_METHOD
from lifelong.serve.store import Store, describe

SCOPES = ("predict", "feedback", "admin")
KEY_PREFIX = "llk_"

__all__ = ["Conflict", "NotFound", "SCOPES", "ServeError", "Service", "Settings", "Unavailable", "create_key"]


@dataclasses.dataclass
class Settings:
    """Every setting of the service and its learner, with defaults that work."""

    state_dir: Path = Path("lifelong-serve")  # serve.db (SQLite) and weights/ live here
    db: str | None = None  # None: sqlite:///<state_dir>/serve.db; or postgresql://user@host:port/db
    method: str = DEFAULT_METHOD  # the learner's method spec: replay-l2, or any library method ("ewc:lam=100")
    micro_batch: int = 64  # backlog rows that trigger a candidate
    max_wait_s: float = 5.0  # ... or this long after the oldest backlog row arrived
    # Adam at 0.01 for 200 steps: a candidate must learn from a few hundred rows; plain SGD at 0.05 for 100 steps
    # took the default model's guard accuracy from 9 % to 15 % on 1 000 rows of permuted digits, Adam to 84 %
    steps: int = 200  # optimisation steps (mini-batches) per candidate
    batch_size: int = 32
    lr: float = 0.01
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    guard_fraction: float = 0.2  # share of each task's feedback held out as its guard set
    max_forgetting: float = 0.02  # largest drop of an old task's guard accuracy a promotion may cost
    seed: int = 0  # of the candidates' mini-batch order
    poll_s: float = 0.5  # how often the idle learner looks at the backlog (feedback also wakes it)
    max_batch: int = 1024  # the most rows one predict or feedback request may carry
    max_body_bytes: int = 8_000_000  # the largest request body the HTTP layer reads
    rate_limit: float = 100.0  # requests per second per API key (token bucket refill)
    rate_burst: int = 200  # the bucket's size

    def __post_init__(self):
        self.state_dir = Path(self.state_dir)
        whole = ("micro_batch", "steps", "batch_size", "max_batch", "max_body_bytes", "rate_burst")
        for name in whole:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ServeError(f"{option(name)} must be a whole number >= 1 (got {value!r})")
        for name in (
            "max_wait_s",
            "lr",
            "momentum",
            "weight_decay",
            "guard_fraction",
            "max_forgetting",
            "poll_s",
            "rate_limit",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ServeError(f"{option(name)} must be a finite number >= 0 (got {value!r})")
        if not 0 < self.guard_fraction < 1:
            raise ServeError(f"{option('guard_fraction')} must be in (0, 1) (got {self.guard_fraction})")
        for name in ("lr", "poll_s", "rate_limit"):
            if getattr(self, name) <= 0:
                raise ServeError(f"{option(name)} must be > 0 (got {getattr(self, name)})")
        if self.optimizer not in ("sgd", "adam"):
            raise ServeError(f"{option('optimizer')} must be sgd or adam (got {self.optimizer!r})")
        try:
            make_method(self.method)
        except LifelongError as e:
            raise ServeError(str(e)) from None

    @property
    def url(self) -> str:
        return self.db or f"sqlite:///{(self.state_dir / 'serve.db').resolve()}"


class Service:
    """A served model that keeps learning (see the module docstring). Build it with ``Service.create``."""

    input_shape: tuple[int, ...]
    n_classes: int
    class_names: list[str]

    def __init__(self, settings: Settings, store: Store, meta: dict):
        self.settings, self.store = settings, store
        self.model_config = meta["model"]
        self.input_shape = tuple(meta["input_shape"])
        self.n_classes = int(meta["n_classes"])
        self.class_names = list(meta["class_names"])
        self.source = meta.get("source", "")
        self.weights_folder = settings.state_dir / weights.FOLDER
        self.swap_lock = threading.Lock()
        self._keys: dict[str, set[str]] = {}  # key hash -> scopes, for keys seen (keys never change)
        self._serving: tuple[int, nn.Module] | None = None
        self.learner = Learner(self)

    # ---- creation ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, settings: Settings, config: dict | None = None, run: int | None = None, store_path=None) -> Service:
        """A new service over ``settings.state_dir`` / ``settings.db``, or the one stored there, resumed."""
        if config is not None and run is not None:
            raise ServeError("give the service a run config or a stored run, not both")
        try:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ServeError(
                f"cannot create {settings.state_dir} ({e.strerror or e}); choose a writable {option('state_dir')}"
            ) from None
        store = Store(settings.url)
        try:
            return cls._open(settings, store, config, run, store_path)
        except BaseException:
            store.close()
            raise

    @classmethod
    def _open(cls, settings, store, config, run, store_path) -> Service:
        wanted = _model_config(config, run, store_path) if (config is not None or run is not None) else None
        meta = store.meta()
        where = describe(store.url)
        if "model" not in meta:
            model_cfg, source = wanted or _model_config({}, None, None)
            shape, n, names = _shape_of(model_cfg)
            meta = store.init_meta(
                {
                    "model": model_cfg,
                    "input_shape": list(shape),
                    "n_classes": n,
                    "class_names": names,
                    "source": source,
                    "method": settings.method,
                }
            )
        elif wanted is not None and wanted[0] != meta["model"]:
            differ = sorted(k for k in set(wanted[0]) | set(meta["model"]) if wanted[0].get(k) != meta["model"].get(k))
            raise Conflict(
                f"the service in {where} was created from another model config ({', '.join(differ)} differ); "
                f"start it without a config to resume it, or give a new {option('state_dir')} / {option('db')}"
            )
        if meta["method"] != settings.method:
            raise Conflict(
                f"the service in {where} learns with {meta['method']!r}, not {settings.method!r}; "
                f"start it with {option('method')} {meta['method']}, "
                f"or give a new {option('state_dir')} / {option('db')}"
            )
        service = cls(settings, store, meta)
        check_servable(settings.method, service.build_model(), service.learner.stream)
        service._resume()
        return service

    def _resume(self) -> None:
        """Serve the stored serving version, or record the initial model as version 1."""
        self.store.abandon_candidates(
            "the service stopped while it was trained; its feedback goes to the next candidate"
        )
        version = self.store.serving()
        if version is None:
            torch.manual_seed(int(self.model_config.get("seed") or 0))  # the initialisation the config's seed gives
            model = self.build_model()
            with self.swap_lock:
                version = self.store.new_version(None, self.settings.method, None, status="candidate")
                tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
                name = f"v{version:06d}.safetensors"
                sha = weights.save(self.weights_folder, name, tensors, {"version": str(version)})
                self.store.finish_version(
                    version,
                    status="candidate",
                    guard={},
                    reason=f"the initial model ({self.source})",
                    trained_on=0,
                    files={"weights": name, "weights_sha256": sha},
                    info={},
                    serve="initial",
                )
                self.swap(version, model)
            return
        self.swap(version, self.load_version(version))

    def build_model(self) -> nn.Module:
        """A new model of the stored config's architecture (its own initialisation; weights load over it)."""
        from lifelong.data.task import Stream
        from lifelong.experiment import build_model

        stub = Stream("serve", [], "domain", self.input_shape, self.n_classes, list(self.class_names))
        return build_model(stub, self.model_config)

    def load_version(self, version: int) -> nn.Module:
        """The model of a stored version, its weights checked against their sha256 first."""
        row = self.store.version(version)
        if not row["weights"]:
            raise Conflict(f"version {version} has no weights yet (status {row['status']}); wait until it is evaluated")
        tensors, _ = weights.load(self.weights_folder, row["weights"], row["weights_sha256"])
        model = self.build_model()
        model.load_state_dict(tensors)
        return model.eval()

    # ---- the serving pair -------------------------------------------------------------------------

    def serving_pair(self) -> tuple[int, nn.Module]:
        return self._serving

    def swap(self, version: int, model: nn.Module) -> None:
        """Serve ``model`` as ``version`` from now on: one assignment (callers hold swap_lock)."""
        for p in model.parameters():
            p.requires_grad_(False)
        self._serving = (version, model.eval())

    # ---- the facade -------------------------------------------------------------------------------

    def start(self) -> None:
        self.learner.start()

    def stop(self) -> None:
        self.learner.stop()

    def close(self) -> None:
        self.stop()
        self.store.close()

    def predict(self, x: torch.Tensor) -> dict:
        """Labels and probabilities for a batch ``x`` (N, *input_shape) float32, and the version that answered."""
        x = self._inputs(x)
        version, model = self._serving
        with torch.inference_mode():
            probabilities = torch.softmax(model(x), dim=1)
        return {
            "labels": probabilities.argmax(1).tolist(),
            "probabilities": probabilities.tolist(),
            "version": version,
        }

    def add_feedback(self, x: torch.Tensor, y: torch.Tensor, task: str | None = None) -> dict:
        """Store labelled inputs in ``task`` (a new name opens a task; None: the newest task); durable
        when it returns: {"accepted": N, "task": name, "ids": [first, last]}."""
        x = self._inputs(x)
        y = torch.as_tensor(y)
        if y.dim() != 1 or len(y) != len(x):
            raise ServeError(f"give one label per input: {len(x)} inputs but labels of shape {tuple(y.shape)}")
        if y.is_floating_point() and not bool((y == y.round()).all()):
            raise ServeError("labels must be whole numbers (output units)")
        y = y.long()
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ServeError(f"labels must be in [0, {self.n_classes}) (got {int(y.min())}..{int(y.max())})")
        if task is not None:
            task = _task_name(task)
        rows = [r.numpy().astype("<f4").tobytes() for r in x]
        guards = [is_guard(r, self.settings.guard_fraction) for r in rows]
        out = self.store.add_feedback(rows, y.tolist(), guards, task)
        self.learner.wake()
        return out

    def open_task(self, name: str) -> dict:
        """Open a new task: untagged feedback goes to it from now on."""
        task = self.store.add_task(_task_name(name))
        self.learner.wake()
        return {"name": task["name"], "id": task["id"], "created": task["created"]}

    def tasks(self) -> list[dict]:
        """[{"name", "id", "created", "feedback", "guard", "current"}], oldest first."""
        out = self.store.tasks()
        for i, t in enumerate(out):
            t["current"] = i == len(out) - 1
        return out

    def versions(self) -> list[dict]:
        """[{"version", "parent", "status", "created", "method", "guard": {task: accuracy}, "reason",
        "trained_on", "task"}], oldest first."""
        tasks = {t["id"]: t["name"] for t in self.store.tasks()}
        keep = ("version", "parent", "status", "created", "method", "guard", "reason", "trained_on")
        return [{**{k: v[k] for k in keep}, "task": tasks.get(v["task"])} for v in self.store.versions()]

    def promote(self, version: int) -> dict:
        """Serve ``version`` (an evaluated one: rejected, promoted or retired) now."""
        with self.swap_lock:
            current, _ = self._serving
            row = self.store.version(version)
            if row["status"] == "candidate":
                raise Conflict(f"version {version} is still being trained; promote it once it is evaluated")
            if version == current:
                return {"version": version, "previous": current}
            model = self.load_version(version)
            before = self.store.serve(version, "admin", expect=current)
            self.swap(version, model)
        self.learner.wake()
        return {"version": version, "previous": before}

    def rollback(self) -> dict:
        """Serve again the version served before the current one (the current one is retired)."""
        with self.swap_lock:
            current, _ = self._serving
            previous = self.store.previous_serving(current)  # checked before its weights are loaded
            model = self.load_version(previous)
            retired, now = self.store.rollback(expect=current)
            self.swap(now, model)
        self.learner.wake()
        return {"version": now, "retired": retired}

    def state(self) -> dict:
        """{"version", "backlog", "learner", "tasks", "feedback", "versions", "promoted", "rejected", ...}"""
        version, _ = self._serving
        backlog, _ = self.store.backlog()
        tasks = self.store.tasks()
        return {
            "version": version,
            "backlog": backlog,
            "learner": self.learner.status,
            **self.store.counts(),
            "current_task": tasks[-1]["name"] if tasks else None,
            "method": self.settings.method,
        }

    def create_key(self, scopes: set[str], name: str = "") -> str:
        """A new API key with ``scopes`` (predict / feedback / admin); only its sha256 is stored, so the
        plaintext returned here is the only copy."""
        return _new_key(self.store, scopes, name)

    def scopes_of(self, key: str) -> set[str] | None:
        """The scopes of an API key, or None for an unknown key."""
        if not isinstance(key, str) or not key:
            return None
        digest = _digest(key)
        if digest in self._keys:
            return set(self._keys[digest])
        found = self.store.key_scopes(digest)
        if found is not None:
            self._keys[digest] = found
        return found

    # ---- helpers ----------------------------------------------------------------------------------

    def _inputs(self, x) -> torch.Tensor:
        """(N, *input_shape) float32 from a tensor of that shape or of (N, prod(input_shape)); finite."""
        x = torch.as_tensor(x, dtype=torch.float32)
        size = math.prod(self.input_shape)
        shape = "x".join(map(str, self.input_shape))
        if x.dim() == 2 and x.shape[1] == size:
            x = x.reshape(len(x), *self.input_shape)
        if tuple(x.shape[1:]) != self.input_shape or x.dim() < 2:
            raise ServeError(f"inputs must be N x {shape} (or N x {size} flat); got {'x'.join(map(str, x.shape))}")
        if len(x) > self.settings.max_batch:
            raise ServeError(f"at most {self.settings.max_batch} inputs per request (got {len(x)}); split the batch")
        if not bool(torch.isfinite(x).all()):
            raise ServeError("inputs must be finite numbers (no NaN or infinity)")
        return x.contiguous()


def create_key(settings: Settings, scopes: set[str], name: str = "") -> str:
    """Service.create_key without a Service: opens only the store (``lifelong serve keys create``). The
    store's tables are created if this is its first use."""
    if settings.db is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.url)
    try:
        return _new_key(store, scopes, name)
    finally:
        store.close()


def _new_key(store: Store, scopes: set[str], name: str) -> str:
    scopes = set(scopes)
    unknown = scopes - set(SCOPES)
    if not scopes or unknown:
        raise ServeError(f"scopes must be some of {', '.join(SCOPES)} (got {', '.join(sorted(scopes)) or 'none'})")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    store.add_key(_digest(key), str(name), sorted(scopes))
    return key


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _task_name(name) -> str:
    text = str(name).strip() if name is not None else ""
    if not text or len(text) > 200:
        raise ServeError(f"a task name must be 1 to 200 characters (got {name!r})")
    return text


def _model_config(config: dict | None, run: int | None, store_path) -> tuple[dict, str]:
    """The options that fix the served model (benchmark, its options, the model's, the seed), from a
    run config or a stored run, checked like ``lifelong run`` checks them; and where they came from."""
    from lifelong import config as cfg_mod

    if run is not None:
        from lifelong.results.store import DEFAULT_PATH
        from lifelong.results.store import Store as Runs

        runs = Runs(store_path or DEFAULT_PATH, create=False)
        given, source = dict(runs.get(run)["config"] or {}), f"run {run} of {runs.name}"  # a URL without its password
        warn(
            f"the results store keeps no weights: serving run {run}'s model freshly initialised from its config "
            f"(seed {given.get('seed')}), not its trained weights"
        )
    else:
        given, source = dict(config or {}), "the run config given" if config else "the default run config"
    by_name = {o.name: o for o in cfg_mod.options()}
    flags = {}
    for key, value in given.items():
        name = str(key).replace("-", "_")
        if name not in by_name:
            if run is not None:
                continue  # a run records more than options (method_spec, validation_fraction, ...)
            raise ServeError(f"config: unknown key {key!r}; `lifelong list` shows every option")
        flags[name] = cfg_mod.convert(by_name[name], value, "config")
    resolved = cfg_mod.resolve(None, flags)
    groups = cfg_mod.split_config(resolved)
    model_cfg = {
        "benchmark": resolved["benchmark"],
        "seed": resolved["seed"],
        **groups["benchmark"],
        **groups["model"],
    }
    if resolved["benchmark"].startswith("babi"):
        raise ServeError(f"the service serves models of numeric inputs; {resolved['benchmark']} is text (bAbI)")
    return _json(model_cfg), source


def _shape_of(model_cfg: dict) -> tuple[tuple[int, ...], int, list[str]]:
    """The input shape, output units and their names of the config's benchmark (built once)."""
    from lifelong.experiment import build_model, build_stream

    stream = build_stream(model_cfg["benchmark"], model_cfg, model_cfg["seed"])
    build_model(stream, model_cfg)  # checks the model's options against the data now, not at the first request
    return tuple(stream.input_shape), int(stream.n_classes), list(stream.class_names)


def _json(value):
    import json

    return json.loads(json.dumps(value))

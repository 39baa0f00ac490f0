"""The background learner: committed feedback → a candidate version → guard sets → promoted or not.

The stream. The served model answers without being told a task, so task-IL (which picks the task's own
units at test time) cannot serve. The learner runs the served stream as **domain-IL over all of the
model's output units** (van de Ven & Tolias 2019, arXiv 1904.07734): feedback labels are output units,
every unit is live in training and in prediction, and no logit mask is applied (``mask=None`` in
``loss``, exactly what fit() passes in domain-IL). That also serves class-incremental feedback (tasks
that bring new labels): the one difference from the library's class-IL is that units no task has used
yet are not masked out of the loss, which only pushes their logits down, so they are not predicted
before someone teaches them. Methods that need the task at test time, or that are valid only in task-IL
(PNN, PackNet, CPG, independent), are refused at start with a one-line error.

Tasks and micro-batches. A task is a tag of the feedback (a new tag, or ``Service.open_task``, opens the
next task; untagged feedback goes to the newest task). Each task's feedback is split once, when it is
stored, into a guard set (held out, never trained on) and training rows: a row is a guard row iff the
first 8 bytes of sha256(its input's float32 bytes), read as a fraction of 2^64, are below
``guard_fraction``. The split is deterministic, needs no counter shared between writers, and keeps a
resent input on the side it fell on the first time (it cannot be trained on and guarded at once). The
learner holds the library's Stream of these tasks (train_x/train_y = training rows, test_x/test_y = guard
rows), growing in place as feedback arrives. A candidate is triggered when the backlog (rows no
candidate has trained on) reaches ``micro_batch`` rows, or ``max_wait_s`` after the oldest backlog row
arrived; it waits while the newest task has no guard row or no training row (it could not be judged).

Driving a library Method online, through its hooks in fit()'s order (methods/base.py, train.py). A
version carries the method's state as data (method_state.py: tensors + JSON, no pickles) together with
``info``: the task the method is in (its ``before_task`` was called) and, per closed task, how many of its
training rows the method consolidated. A candidate for the newest task k is built from the serving
version: a new model loaded with its weights, the method built from its spec, ``prepare``-d on the
model and restored from the version's state. If the method is still in an earlier task j, that task is
closed first: ``after_task(task j, model)`` with the serving weights (Replay stores task j's feedback in
its memory, EWC computes its Fisher there, L2 anchors there), then ``before_task``/``after_task`` for any
task in between that no version trained on, then ``before_task(task k)``. Then, like fit()'s inner loop
with ``iterations=steps``: a new optimizer (``make_optimizer`` with the learner's lr / optimizer /
momentum / weight decay) and ``on_optimizer``; per mini-batch ``loss`` → backward → ``after_backward`` →
step → ``after_step``. The mini-batches are epochs of random permutations of the stage's data: every
training row of task k so far, plus rows of closed tasks that arrived after they were consolidated
(late feedback for an old tag). ``after_task`` of task k is called by the first candidate of the next
task, never per candidate, so the method sees the tasks the users made, not micro-batches (a per-batch
``after_task`` would make Replay weight the current task 1/(number of batches) and sum EWC's Fisher
over every batch).

Rejected feedback is learned later: a candidate trains on all of the current task's training rows so
far, not only on the backlog that triggered it, so the rows of a rejected candidate are in every later
candidate's data; when the task closes they reach the method's consolidation (Replay's memory) too. A
rejected candidate's method state is dropped (the next one starts again from the serving version's),
so a path integral (SI) or a memory never counts a rejected update.

The promotion rule. Both the candidate and the serving version are evaluated on every task's guard set
(the model's own forward pass, argmax over all units, as predictions are served). The candidate is
promoted iff

(a) for every old task (every task with a guard set other than the newest), forgetting = serving
    version's guard accuracy − candidate's ≤ ``max_forgetting``; and
(b) the current (newest) task improves: the candidate's guard accuracy is strictly higher than the
    serving version's, or both are 100 % (a tie at the ceiling cannot be improved on; refusing it would
    stop the learner from ever absorbing new feedback of a task it already gets right).

Otherwise the serving version stays and the candidate is kept with status "rejected" and the reason
(which task forgot how much, or what the current task scored). Every evaluated candidate's weights and
method state are saved, so an admin may still promote it. The serving version's guard row is measured
again at each evaluation (the guard sets grow), and stored.

Threads: training runs in this thread with ``torch.set_num_threads(1)``, so that predictions keep a
core; a candidate is a separate model, so the serving model is never written while it answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import threading
import time

import torch
from torch import nn

from lifelong import methods
from lifelong.data.task import Stream, Task
from lifelong.errors import option
from lifelong.serve import method_state, weights
from lifelong.serve.errors import ServeError
from lifelong.serve.replay_l2 import NAME as DEFAULT_METHOD
from lifelong.serve.replay_l2 import ReplayL2
from lifelong.serve.store import Store
from lifelong.train import Settings as TrainSettings
from lifelong.train import make_optimizer

log = logging.getLogger("lifelong.serve")

TOLERANCE = 1e-9  # accuracies are ratios of small counts: compare without float noise


def is_guard(x: bytes, fraction: float) -> bool:
    """Whether a feedback row with input bytes ``x`` is held out (see the module docstring)."""
    return int.from_bytes(hashlib.sha256(x).digest()[:8], "big") < fraction * 2**64


def make_method(spec: str) -> methods.Method:
    """A method from its spec, ``name:setting=value:...`` (the default ``replay-l2``, or any library
    method such as ``ewc:lam=100``), checked for serving: domain-IL, no per-task prediction."""
    from lifelong import config
    from lifelong.experiment import parse_method

    name = spec.strip().split(":")[0]
    if name == DEFAULT_METHOD:
        own = {f.name for f in dataclasses.fields(ReplayL2)}
        by_name = {o.name: o for o in config.options()}
        values = {}
        for pair in spec.strip().split(":")[1:]:
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in own:
                raise ServeError(
                    f"method {spec}: {pair!r} is not setting=value for one of {name}'s settings "
                    f"({', '.join(sorted(own))})"
                )
            values[key] = config.convert(by_name[key], value.strip(), f"method {spec}")
        method = ReplayL2(**values)
    else:
        name, values = parse_method(spec)
        method = methods.create(name, **values)
    if "domain" not in method.scenarios:
        raise ServeError(
            f"{method.name} cannot serve: a served model is not told the task, and {method.name} "
            f"needs it ({method.scenarios_why or 'task-IL only'}); use replay-l2, replay, ewc, si, ..."
        )
    if type(method).overrides("predict") and method.name != DEFAULT_METHOD:
        raise ServeError(
            f"{method.name} cannot serve: it classifies with its own predict() (a classifier of its own, or a "
            "model per task), and the service answers with the model alone; use replay-l2, replay, ewc, si, ..."
        )
    return method


def check_servable(spec: str, model: nn.Module, stream: Stream) -> None:
    """Run the method once the way the learner will, on two tiny made-up tasks of ``stream``'s shape that
    arrive one after the other (``prepare`` sees one task, the second opens later), then save and restore
    its state: a method that cannot follow an open-ended stream (a memory sized per task up front, as
    GEM's ring) or whose state cannot be saved without pickles (DGR's generator) is refused at start
    with one line, not at its first candidate."""
    method = make_method(spec)
    g = torch.Generator().manual_seed(0)
    units = tuple(range(stream.n_classes))

    def task(i: int) -> Task:
        x = torch.rand((8, *stream.input_shape), generator=g)
        y = torch.arange(8) % stream.n_classes
        return Task(i, f"check-{i}", x, y, x, y, units)

    check = dataclasses.replace(stream, name="serve-check", tasks=[task(0)])
    try:
        method.check(check)
        model = method.prepare(model, check)
        for i in range(2):
            if i == 1:
                check.tasks.append(task(1))
            t = check.tasks[i]
            method.before_task(t, model)
            optimizer = make_optimizer(model.parameters(), TrainSettings())
            method.on_optimizer(optimizer)
            for _ in range(2):
                loss = method.loss(model, t.train_x, t.train_y, None)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                method.after_backward(model, t)
                optimizer.step()
                method.after_step(model, t)
            method.after_task(t, model)
        tensors, document = method_state.capture(method, model)
        method_state.restore(make_method(spec), model, check, tensors, document)
    except ServeError:
        raise
    except Exception as e:
        raise ServeError(
            f"{method.name} cannot serve: it fails on a stream whose tasks arrive one by one ({_one_line(e)})"
        ) from None


@dataclasses.dataclass
class Snapshot:
    """A version as data: its weights, its method state (None before the first candidate) and info."""

    version: int
    weights: dict[str, torch.Tensor]
    state: tuple[dict[str, torch.Tensor], dict] | None
    info: dict


class Learner:
    """The learner thread of one Service (see the module docstring)."""

    def __init__(self, service):
        self.service = service
        self.store: Store = service.store
        self.settings = service.settings
        self.folder = service.weights_folder
        self.status = "stopped"
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # the stream's tensors, between this thread and loads
        self._loaded: set[int] = set()  # feedback ids in the stream
        self._task_index: dict[int, int] = {}  # store task id -> stream position
        self._cache: Snapshot | None = None
        shape, n = service.input_shape, service.n_classes
        self.stream = Stream("serve", [], "domain", tuple(shape), n, list(service.class_names))

    # ---- thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.status = "idle"
        self._thread = threading.Thread(target=self._run, name="lifelong-learner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        if not self.status.startswith("failed"):
            self.status = "stopped"

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        torch.set_num_threads(1)  # training keeps one core; predictions have the rest
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception as e:  # the learner never takes the service down: it says why and retries
                log.exception("learner failed")
                self.status = f"failed: {_one_line(e)}"
                wait = max(self.settings.max_wait_s, 5.0)
            if wait:
                self._wake.wait(wait)
                self._wake.clear()

    # ---- one step -------------------------------------------------------------------------------

    def step(self, force: bool = False) -> float:
        """Train and judge one candidate if a trigger fired (or ``force`` and there is a backlog);
        returns how long to wait before the next look (0: look again now)."""
        self.load()
        n, oldest = self.store.backlog()
        s = self.settings
        if n == 0:
            self.status = "idle"
            return s.poll_s
        age = time.time() - (oldest or time.time())
        if not force and n < s.micro_batch and age < s.max_wait_s:
            self.status = "idle"
            return min(s.poll_s, s.max_wait_s - age)
        task = self.stream.tasks[-1]
        if len(task.test_y) == 0 or len(task.train_y) == 0:
            what = "guard" if len(task.test_y) == 0 else "training"
            self.status = f"idle: waiting for a {what} row of task {task.name}"
            return s.poll_s
        backlog = [i for i in self.store.backlog_ids() if i in self._loaded]  # what this candidate sees
        self.candidate(task, backlog)
        return 0.0

    def load(self) -> None:
        """Add committed feedback that the stream does not hold yet (all of it on the first call)."""
        if self._loaded:  # later: only backlog rows it has not read (ids first, inputs only for those)
            rows = self.store.feedback([i for i in self.store.backlog_ids() if i not in self._loaded])
        else:
            rows = self.store.feedback()
        if not rows:
            return
        tasks = {t["id"]: t["name"] for t in self.store.tasks()}
        shape = self.stream.input_shape
        with self._lock:
            # Every task the store has, in its order, also one opened without feedback yet (open_task): the
            # newest is the current one.
            for t in sorted(tasks):
                if t not in self._task_index:
                    self._add_task(t, tasks[t])
            for task_id in sorted({r.task for r in rows}):
                mine = [r for r in rows if r.task == task_id]
                task = self.stream.tasks[self._task_index[task_id]]
                for guard in (False, True):
                    part = [r for r in mine if r.guard == guard]
                    if not part:
                        continue
                    x = torch.frombuffer(bytearray(b"".join(r.x for r in part)), dtype=torch.float32)
                    x = x.reshape(len(part), *shape)
                    y = torch.tensor([r.y for r in part], dtype=torch.long)
                    if guard:
                        task.test_x, task.test_y = torch.cat([task.test_x, x]), torch.cat([task.test_y, y])
                    else:
                        task.train_x, task.train_y = torch.cat([task.train_x, x]), torch.cat([task.train_y, y])
            self._loaded.update(r.id for r in rows)

    def _add_task(self, task_id: int, name: str) -> None:
        empty_x = torch.empty((0, *self.stream.input_shape))
        empty_y = torch.empty(0, dtype=torch.long)
        index = len(self.stream.tasks)
        units = tuple(range(self.stream.n_classes))
        self.stream.tasks.append(Task(index, name, empty_x, empty_y, empty_x, empty_y, units))
        self._task_index[task_id] = index

    # ---- a candidate ----------------------------------------------------------------------------

    def candidate(self, task: Task, backlog: list[int]) -> int:
        """Train, judge and record one candidate for ``task`` (the newest); returns its version."""
        s = self.settings
        parent, serving_model = self.service.serving_pair()
        snap = self.snapshot(parent)
        store_task = next(t for t, i in self._task_index.items() if i == task.id)
        version = self.store.new_version(parent, s.method, store_task)
        self.status = "training"
        try:
            model, method, info, trained_on = self._train(snap, task, version)
        except _Stopped:
            self._untrained(version, "the service stopped while it trained")
            return version
        except Exception as e:
            self._untrained(version, f"training failed: {_one_line(e)}")
            raise
        self.status = "evaluating"
        guard = self.guard_accuracy(model)
        before = self.guard_accuracy(serving_model)
        self.store.set_guard(parent, before)
        promote, reason = decide(before, guard, task.name, s.max_forgetting)
        if not math.isfinite(info.pop("loss", 0.0)):
            promote, reason = False, f"training diverged (loss not finite); lower the learner's {option('lr')}"
        files = self._save(version, model, method, info)
        with self.service.swap_lock:
            promoted = self.store.finish_version(
                version,
                status="rejected",
                guard=guard,
                reason=reason,
                trained_on=trained_on,
                files=files,
                info=info,
                seen=backlog,
                serve="learner" if promote else None,
                expect_serving=parent,
            )
            if promoted:
                self.service.swap(version, model)
                self._cache = Snapshot(version, _weights_of(model), method_state.capture(method, model), info)
        self.status = "idle"
        log.info("version %d %s: %s", version, "promoted" if promoted else "rejected", reason)
        return version

    def _untrained(self, version: int, reason: str) -> None:
        """Record a candidate whose training did not finish: rejected, with nothing evaluated or saved."""
        self.store.finish_version(version, status="rejected", guard={}, reason=reason, trained_on=0, files={}, info={})

    def _train(self, snap: Snapshot, task: Task, version: int):
        s = self.settings
        model = self.service.build_model()
        model.load_state_dict(snap.weights)
        torch.manual_seed(s.seed * 1_000_003 + version)  # as fit() seeds a run: a candidate is reproducible
        method = make_method(s.method)
        info = json.loads(json.dumps(snap.info))  # a copy: the parent's stays as it was
        closed = {int(k): v for k, v in info.get("closed", {}).items()}
        with self._lock:  # the stream's tensors stay put while the stage's data is gathered
            if snap.state is None:
                method.check(self.stream)
            model = method.prepare(model, self.stream)
            if snap.state is not None:
                method_state.restore(method, model, self.stream, *snap.state)
            model.train()
            current = info.get("task")
            if current != task.id:
                if current is not None:
                    method.after_task(self.stream.tasks[current], model)
                    closed[current] = len(self.stream.tasks[current].train_y)
                for j in range(0 if current is None else current + 1, task.id):
                    between = self.stream.tasks[j]
                    method.before_task(between, model)
                    method.after_task(between, model)
                    closed[j] = len(between.train_y)
                method.before_task(task, model)
            xs, ys = [task.train_x], [task.train_y]
            for j, n in closed.items():  # late feedback of closed tasks
                xs.append(self.stream.tasks[j].train_x[n:])
                ys.append(self.stream.tasks[j].train_y[n:])
            x, y = torch.cat(xs), torch.cat(ys)
        info = {"task": task.id, "closed": {str(k): v for k, v in sorted(closed.items())}}
        optimizer = make_optimizer(model.parameters(), self.train_settings)
        method.on_optimizer(optimizer)
        g = torch.Generator().manual_seed(s.seed * 1_000_003 + version)
        order, total = torch.empty(0, dtype=torch.long), torch.zeros(())
        for _ in range(s.steps):
            if self._stop.is_set():
                raise _Stopped
            if len(order) == 0:
                order = torch.randperm(len(y), generator=g)
            idx, order = order[: s.batch_size], order[s.batch_size :]
            loss = method.loss(model, x[idx], y[idx], None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            method.after_backward(model, task)
            optimizer.step()
            method.after_step(model, task)
            total += loss.detach()  # summed as a tensor: no sync per step, as in fit()
        info["loss"] = float(total) / max(s.steps, 1)
        model.eval()
        return model, method, info, len(y)

    @property
    def train_settings(self) -> TrainSettings:
        s = self.settings
        return TrainSettings(
            lr=s.lr, optimizer=s.optimizer, momentum=s.momentum, weight_decay=s.weight_decay, batch_size=s.batch_size
        )

    @torch.no_grad()
    def guard_accuracy(self, model: nn.Module) -> dict[str, float]:
        """Accuracy on every task's guard set that has rows: {task name: accuracy}."""
        out = {}
        with self._lock:
            sets = [(t.name, t.test_x, t.test_y) for t in self.stream.tasks if len(t.test_y)]
        for name, x, y in sets:
            correct = sum(
                int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(4096), y.split(4096), strict=True)
            )
            out[name] = correct / len(y)
        return out

    # ---- versions as files ----------------------------------------------------------------------

    def _save(self, version: int, model: nn.Module, method, info: dict) -> dict:
        tensors, document = method_state.capture(method, model)
        name = f"v{version:06d}"
        meta = {
            "format": "lifelong-serve-method-state/1",
            "method": self.settings.method,
            "document": json.dumps(document),
        }
        return {
            "weights": f"{name}.safetensors",
            "weights_sha256": weights.save(
                self.folder, f"{name}.safetensors", _weights_of(model), {"version": str(version)}
            ),
            "state": f"{name}.state.safetensors",
            "state_sha256": weights.save(self.folder, f"{name}.state.safetensors", tensors, meta),
        }

    def snapshot(self, version: int) -> Snapshot:
        """A version as data: the cached serving one, else read from its files (checksums verified)."""
        if self._cache is not None and self._cache.version == version:
            return self._cache
        row = self.store.version(version)
        tensors, _ = weights.load(self.folder, row["weights"], row["weights_sha256"])
        state = None
        if row["state"]:
            state_tensors, meta = weights.load(self.folder, row["state"], row["state_sha256"])
            state = (state_tensors, json.loads(meta["document"]))
        self._cache = Snapshot(version, tensors, state, row["info"])
        return self._cache


def decide(before: dict[str, float], after: dict[str, float], current: str, max_forgetting: float) -> tuple[bool, str]:
    """The promotion rule of the module docstring: (promote?, the reason in one line)."""
    old = [t for t in after if t != current and t in before]
    forgetting = {t: before[t] - after[t] for t in old}
    worst = max(forgetting, key=forgetting.get, default=None)
    if worst is not None and forgetting[worst] > max_forgetting + TOLERANCE:
        return False, (
            f"forgets task {worst}: guard accuracy {before[worst]:.3f} -> {after[worst]:.3f} "
            f"(-{forgetting[worst]:.3f} > max_forgetting {max_forgetting:g})"
        )
    a, b = before.get(current, 0.0), after.get(current, 0.0)
    kept = f"; largest forgetting {forgetting[worst]:+.3f} on task {worst}" if worst is not None else ""
    if b > a + TOLERANCE or (a >= 1 - TOLERANCE and b >= 1 - TOLERANCE):
        return True, f"task {current} improves: guard accuracy {a:.3f} -> {b:.3f}{kept}"
    return False, f"task {current} does not improve: guard accuracy {a:.3f} -> {b:.3f}{kept}"


class _Stopped(Exception):
    """The service is stopping: the candidate is abandoned (its feedback stays in the backlog)."""


def _weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__

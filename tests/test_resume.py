"""Checkpoints and `lifelong resume` (issue 12, item 1): a run killed with SIGKILL at any moment, even in the
middle of writing a checkpoint, or stopped with Ctrl-C, and resumed, ends with the R matrix, the losses and
the model of a run never stopped, bit for bit, for every method; and a checkpoint that is damaged or does
not belong to the run is refused in one line."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from test_lamol import memn2n
from test_lamol import stream as babi_stream  # noqa: F401  (a fixture)

import lifelong as ll
from lifelong.checkpoint import CheckpointError
from lifelong.checkpoint.graph import capture, rebuild
from lifelong.cli import main
from lifelong.errors import LifelongWarning
from lifelong.methods import Method
from lifelong.results import Store

# A class-IL replay run whose optimizer (SGD with momentum) is kept across tasks: a memory with its own
# generators, momentum buffers, and fit()'s batch order all have to come back exactly. Each task takes a
# few tenths of a second, time enough to be killed in the middle of one.
RUN = (
    "--benchmark split-digits --scenario class --tasks 3 --method replay --memory-size 60 --iterations 400 "
    "--batch-size 16 --momentum 0.9 --reset-optimizer no --report no --quiet"
).split()
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the tests' own process (conftest): one thread


def start(db, kill: str | None = None) -> subprocess.Popen:
    env = {**ENV, "LIFELONG_TEST_KILL": kill} if kill else ENV
    command = [sys.executable, "-m", "lifelong.cli", "run", *RUN, "--store", str(db)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_ctrl_c_interrupts
    )


def _ctrl_c_interrupts() -> None:
    """In the child, before Python starts: SIGINT's default action back, so that Python raises
    KeyboardInterrupt on it. A shell runs a background job (``make test &``, nohup) with SIGINT ignored,
    which every child inherits, and Python then leaves it ignored: the Ctrl-C run would finish unstopped."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stages_recorded(db) -> int:
    try:
        progress = Store(db, create=False).get(1)["progress"]
    except ll.LifelongError:  # not created yet
        return 0
    return progress["stages_done"] if progress else 0


def outcome(db) -> dict:
    """What must not change when a run is stopped and resumed: R under every view, the losses of every
    epoch, the capacity records, the method's facts, and the R the store's row holds."""
    store = Store(db)
    result = store.result(1).to_dict()
    keep = ("R", "views", "losses", "curves", "capacity", "facts")
    return {k: result[k] for k in keep} | {"row R": store.get(1)["R"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    db = tmp_path_factory.mktemp("reference") / "runs.db"
    torch.set_num_threads(1)
    assert main(["run", *RUN, "--store", str(db)]) == 0
    return outcome(db)


def test_a_run_killed_anywhere_or_interrupted_resumes_to_the_same_result(tmp_path, reference, capsys):
    # Killed by the checkpoint writer itself: half-way through the tensors file of the first checkpoint
    # (so no checkpoint exists yet), between the tensors file and state.json, half-way through state.json,
    # and just after a complete checkpoint; then from outside, by SIGKILL and by Ctrl-C, while training.
    points = ["tensors:1", "between:2", "state:2", "after:1"]
    runs = {point: (tmp_path / point.replace(":", "-") / "r.db", point) for point in points}
    runs |= {name: (tmp_path / name / "r.db", None) for name in ("sigkill", "sigint")}
    procs = {name: start(db, kill) for name, (db, kill) in runs.items()}
    # Both watched at once: each is signalled as soon as its task 1 is recorded (its checkpoint written), in
    # task 2's training; watching one after the other let the second finish its 3 tasks meanwhile.
    pending, deadline = {"sigkill": signal.SIGKILL, "sigint": signal.SIGINT}, time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for name in [n for n in pending if stages_recorded(runs[n][0]) >= 1 or procs[n].poll() is not None]:
            procs[name].send_signal(pending.pop(name))
        time.sleep(0.005)
    for name, proc in procs.items():
        err = proc.communicate(timeout=120)[1].decode()
        assert proc.returncode == (130 if name == "sigint" else -signal.SIGKILL), (name, err)
    expected_note = {
        "tensors:1": "resumed from the start (no checkpoint yet)",
        "between:2": "resumed after task 1 of 3",  # the tensors of checkpoint 2 were written, its state was not
        "state:2": "resumed after task 1 of 3",
        "after:1": "resumed after task 1 of 3",
        "sigkill": "resumed after task 1 of 3",
        "sigint": "stopped by the user with Ctrl-C; resumed after task 1 of 3",
    }
    for name, (db, _) in runs.items():
        row = Store(db).get(1)
        assert row["status"] == ("interrupted" if name == "sigint" else "killed"), name
        assert row["progress"] is None or row["progress"]["stages_done"] < 3, name  # stopped before the end
        assert main(["resume", "1", "--store", str(db)]) == 0, (name, capsys.readouterr().err)
        out = capsys.readouterr().out
        assert out.startswith(f"run 1: replay (seed 0), {expected_note[name].split('; ')[-1]}\n"), out
        assert outcome(db) == reference, name  # bit for bit: JSON floats are exact
        row = Store(db).get(1)
        assert row["status"] == "finished" and row["message"] == expected_note[name]
        # The last checkpoint is kept, whole, and no file of a killed write is left behind.
        files = sorted(p.name for p in (Store(db).folder(1) / "checkpoint").iterdir())
        assert files == ["state.json", "tensors-0003.safetensors"], (name, files)


# ---- every method, from Python: stopped after task k, resumed in a fresh model and method ----------------


class Stop(Exception):
    pass


def train(method, stream, model, folder=None, stop_after=None, resume=False, **settings):
    def on_row(done, n_stages, rows):
        if done == stop_after:
            raise Stop  # after the checkpoint of stage `done` is written, as a kill would be

    return ll.fit(stream, model, method, on_row=on_row, checkpoint=folder, resume=resume, seed=0, **settings)


def mlp(stream, hidden=(16,)):
    torch.manual_seed(0)
    return ll.models.MLP(stream.input_size, list(hidden), stream.n_classes)


CASES = [  # (method, its settings, scenario, fit settings): every method, and the optimizer kept or not
    ("finetune", {}, "domain", {}),
    ("joint", {}, "domain", {}),
    ("cumulative", {}, "class", {}),
    ("independent", {}, "task", {}),
    ("l2", {}, "domain", {"momentum": 0.9, "reset_optimizer": False}),
    ("ewc", {"fisher": "sampled"}, "domain", {}),  # samples from the global RNG
    ("ewc", {"step": "explicit"}, "domain", {"optimizer": "adam", "reset_optimizer": False}),
    ("online-ewc", {}, "task", {}),
    ("si", {}, "domain", {}),
    ("mas", {}, "class", {}),
    ("rwalk", {}, "task", {}),
    ("scp", {}, "domain", {}),
    ("replay", {"memory_policy": "class-balanced"}, "class", {"eval_every_epoch": True}),
    ("gem", {}, "task", {}),
    ("agem", {}, "class", {"momentum": 0.5, "reset_optimizer": False}),
    ("lwf", {}, "task", {}),
    ("icarl", {"memory_size": 30}, "class", {}),
    ("dgr", {"generator_units": 16, "latent": 4}, "class", {}),
    ("pnn", {}, "task", {"optimizer": "adam", "reset_optimizer": False}),  # columns join the kept optimizer
    ("packnet", {}, "task", {}),
    ("cpg", {"max_growths": 1, "goal": 1.0}, "task", {"reset_optimizer": False}),  # it grows: new shapes
]


@pytest.mark.filterwarnings("ignore:.*expected to fail")
@pytest.mark.parametrize(("name", "options", "scenario", "settings"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_every_method_resumed_after_a_task_equals_the_run_never_stopped(tmp_path, name, options, scenario, settings):
    stream = ll.benchmarks.split("synthetic", n_tasks=3, scenario=scenario)
    settings = {"iterations": 15, "lr": 0.05, "batch_size": 10, **settings}
    k = 1 if name != "joint" else None  # joint has one stage: nothing to stop after but the end
    whole = train(ll.methods.create(name, **options), stream, model := mlp(stream), **settings)
    if k is not None:
        with pytest.raises(Stop):
            train(ll.methods.create(name, **options), stream, mlp(stream), tmp_path, stop_after=k, **settings)
    else:
        train(ll.methods.create(name, **options), stream, mlp(stream), tmp_path, **settings)
    method, fresh = ll.methods.create(name, **options), mlp(stream)
    torch.manual_seed(123)  # another global random state: the checkpoint's must replace it
    resumed = train(method, stream, fresh, tmp_path, resume=True, **settings)
    for key in ("R", "views", "losses", "curves", "capacity", "facts"):
        got, want = resumed.to_dict()[key], whole.to_dict()[key]
        assert got == want, key
    if name not in ("pnn",):  # fit() trains the model it is given (PNN trains its own columns)
        for (n, p), (_, q) in zip(fresh.state_dict().items(), model.state_dict().items(), strict=True):
            assert torch.equal(p, q), n


def test_lamol_resumed_after_a_task_equals_the_run_never_stopped(tmp_path, babi_stream):  # noqa: F811
    s = babi_stream()
    settings = {"iterations": 4, "batch_size": 3, "lr": 1e-3, "optimizer": "adam"}

    def lamol():
        return ll.methods.create("lamol", gen_ratio=1.0, d_model=16, heads=2)

    whole = train(lamol(), s, memn2n(s), **settings)
    with pytest.raises(Stop):
        train(lamol(), s, memn2n(s), tmp_path, stop_after=1, **settings)
    resumed = train(lamol(), s, memn2n(s), tmp_path, resume=True, **settings)
    assert resumed.to_dict()["R"] == whole.to_dict()["R"] and resumed.losses == whole.losses
    assert resumed.facts == whole.facts  # the generated samples, as text


# ---- what a checkpoint keeps, and what it refuses --------------------------------------------------------


def test_shared_memory_and_autograd_views_come_back_as_they_were():
    stream = ll.benchmarks.split("synthetic", n_tasks=2)
    p = torch.nn.Parameter(torch.arange(6.0))
    roots = {"state": {"p": p, "alias": p.detach(), "rows": p.view(2, 3), "half": p[3:], "g": torch.Generator()}}
    document, tensors = capture(roots, stream, "test")
    # One storage for the five tensors, saved once, as bytes; the generator's state is another.
    assert len(tensors) == 2 and tensors["s0"].numel() == 6 * 4
    state = rebuild(json.loads(json.dumps(document)), tensors, stream)["state"]
    q = state["p"]
    assert isinstance(q, torch.nn.Parameter) and torch.equal(q, p)
    with torch.no_grad():
        q[4] = 40.0
    assert state["alias"][4] == 40.0 and state["half"][1] == 40.0  # still the same memory
    state["rows"].sum().backward()  # the view is still linked to its base by autograd
    assert torch.equal(q.grad, torch.ones(6))


@dataclass
class Forgetful(Method):
    """A method that keeps a function made at run time: a checkpoint cannot hold it."""

    name: ClassVar[str] = "forgetful"

    def after_task(self, task, model):
        self.rule = lambda x: x


def test_state_a_checkpoint_cannot_hold_is_refused_by_name_and_the_run_goes_on(tmp_path):
    stream = ll.benchmarks.split("synthetic", n_tasks=2)
    with pytest.warns(
        LifelongWarning, match=r"could not save a checkpoint \(forgetful: cannot checkpoint method\.rule"
    ):
        result = ll.fit(stream, mlp(stream), Forgetful(), iterations=2, checkpoint=tmp_path)
    assert result.R.shape == (3, 2) and not (tmp_path / "state.json").exists()
    with pytest.raises(CheckpointError, match=r"forgetful: cannot checkpoint method\.rule, a function \(made at run"):
        method = Forgetful()
        method.after_task(None, None)
        capture({"method": method}, stream, "forgetful")


def test_fit_refuses_a_checkpoint_of_another_run_and_a_folder_that_has_one(tmp_path):
    stream = ll.benchmarks.permuted("synthetic", n_tasks=3)
    with pytest.raises(Stop):
        train(ll.methods.create("ewc"), stream, mlp(stream), tmp_path, stop_after=1, iterations=3)
    with pytest.raises(ll.LifelongError, match="holds a checkpoint already; resume it with resume=True"):
        train(ll.methods.create("ewc"), stream, mlp(stream), tmp_path, iterations=3)
    other = ll.benchmarks.permuted("synthetic", n_tasks=3, seed=1)  # the same tasks, other permutations
    wrong = [
        ("ewc", {"lam": 5.0}, stream, {"iterations": 3}, "was made by lifelong.methods.regularization.ewc:EWC with"),
        ("si", {}, stream, {"iterations": 3}, "was made by lifelong.methods.regularization.ewc:EWC"),
        ("ewc", {}, stream, {"iterations": 4}, r"a run with other training settings \(iterations: 3 then, 4 now\)"),
        ("ewc", {}, other, {"iterations": 3}, r"a run with another stream \(sha256: "),
    ]
    for name, options, s, settings, message in wrong:
        with pytest.raises(CheckpointError, match=message):
            train(ll.methods.create(name, **options), s, mlp(s), tmp_path, resume=True, **settings)
    # An empty folder: resume=True starts from the beginning.
    fresh = train(ll.methods.create("ewc"), stream, mlp(stream), tmp_path / "new", resume=True, iterations=3)
    assert fresh.R.shape == (4, 3)


# ---- `lifelong resume`: damaged checkpoints, versions, and runs that cannot be resumed ---------------------

QUICK = "--benchmark split-digits --tasks 3 --method si --iterations 20 --report no --quiet".split()


def interrupted_after_task_1(db, monkeypatch) -> None:
    """A recorded run stopped by Ctrl-C right after its task 1 (and its checkpoint) was recorded."""
    progress = Store.progress

    def stop(self, run_id, R, *args):
        progress(self, run_id, R, *args)
        if len(R) == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Store, "progress", stop)
        assert main(["run", *QUICK, "--store", str(db)]) == 130
    assert Store(db).get(1)["status"] == "interrupted"


def test_a_damaged_checkpoint_is_refused_in_one_line_and_the_run_stays_resumable(tmp_path, monkeypatch, capsys):
    assert main(["run", *QUICK, "--store", str(tmp_path / "whole.db")]) == 0
    whole = outcome(tmp_path / "whole.db")
    db = tmp_path / "r.db"
    interrupted_after_task_1(db, monkeypatch)
    folder = tmp_path / "r-run-0001" / "checkpoint"
    tensors, state = folder / "tensors-0001.safetensors", folder / "state.json"
    good_tensors, good_state = tensors.read_bytes(), state.read_text()
    damaged = bytearray(good_tensors)
    damaged[-1] ^= 1
    shape = json.loads(good_state)
    shape["graph"]["model"]["attrs"]["_modules"]["head"]["attrs"]["_parameters"]["weight"]["shape"] = [500, 50]
    torch_version = json.loads(good_state)
    torch_version["versions"]["torch"] = "1.0.0"
    cases = [
        (bytes(damaged), good_state, "does not match its checksum"),
        (good_tensors, good_state[:-20], "is damaged (not the JSON it should be)"),
        (good_tensors, json.dumps(shape), "of shape [500, 50] does not fit its saved storage"),
        (good_tensors, json.dumps(torch_version), "was written by torch 1.0.0, this is torch"),
    ]
    capsys.readouterr()
    for tensor_bytes, state_text, message in cases:
        tensors.write_bytes(tensor_bytes)
        state.write_text(state_text)
        assert main(["resume", "1", "--store", str(db)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lifelong: error: ") and err.count("\n") == 1 and message in err, err
        assert err.endswith(f" (to run it again from the start instead, delete {folder})\n"), err
        row = Store(db).get(1)
        assert row["status"] == "interrupted" and row["message"].startswith("could not resume: ")
    # Another commit of the same release: a warning, and the run goes on to the same result.
    commit = json.loads(good_state)
    commit["versions"]["code"] = "0.0.0+gdeadbeef"
    tensors.write_bytes(good_tensors)
    state.write_text(json.dumps(commit))
    assert main(["resume", "1", "--store", str(db)]) == 0
    err = capsys.readouterr().err
    assert "lifelong: warning: the checkpoint" in err and "was written by lifelong 0.0.0+gdeadbeef" in err
    assert outcome(db) == whole


def test_runs_that_cannot_be_resumed_say_why(tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["run", *QUICK, "--store", str(db)]) == 0  # run 1: finished
    store = Store(db)
    store.start({"method_spec": "si", "seed": 0}, seed=0)  # run 2: running, in this very process
    store.fail(store.start({}, seed=0), "training diverged")  # run 3: failed
    store.interrupt(store.start({}, seed=0))  # run 4: interrupted, but not recorded by `lifelong run`
    cases = [
        ("9", "no run 9 in"),
        ("1", "run 1 finished: nothing to resume (`lifelong show 1` shows its result)"),
        ("2", f"run 2 is still running (process {os.getpid()}); stop it first"),
        ("3", "run 3 failed (training diverged), and resuming it would repeat the same computation"),
        ("4", "run 4 was not recorded by `lifelong run` or `lifelong tune`"),
    ]
    capsys.readouterr()
    for run, message in cases:
        assert main(["resume", run, "--store", str(db)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lifelong: error: ") and err.count("\n") == 1 and message in err, err
    assert [r["status"] for r in Store(db).runs()] == ["finished", "running", "failed", "interrupted"]

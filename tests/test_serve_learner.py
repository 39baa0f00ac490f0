"""The service's learner (issue 11): candidates, the promotion rule, restarts, method state, checksums.

The learner is driven one candidate at a time with ``learner.step(force=True)`` (what its thread does when
a trigger fires), so every test is deterministic; one test runs the thread itself for the triggers.
Data: the library's permuted synthetic stream (8 x 8 inputs, 10 classes), fed as feedback.
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch

from lifelong import benchmarks
from lifelong.serve import method_state, weights
from lifelong.serve.errors import Conflict, ServeError
from lifelong.serve.learner import decide, make_method
from lifelong.serve.service import Service, Settings

CONFIG = {"benchmark": "permuted-synthetic", "hidden": [32], "tasks": 2}


@pytest.fixture(scope="module")
def data():
    return benchmarks.permuted("synthetic", n_tasks=3, seed=0)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request):
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def open_service(tmp_path):
    """open_service(**settings) -> a Service over tmp_path/s (resumed if it exists); all closed at the end."""
    opened = []

    def make(config=CONFIG, **settings) -> Service:
        settings = {"state_dir": tmp_path / "s", "steps": 100, **settings}
        svc = Service.create(Settings(**settings), config=config)
        opened.append(svc)
        return svc

    yield make
    for svc in opened:
        svc.close()


def learn(svc: Service, x, y, task: str) -> dict:
    """Send feedback and let the learner judge one candidate; returns the candidate's version row."""
    svc.add_feedback(x, y, task)
    wait = svc.learner.step(force=True)
    assert wait == 0.0  # a candidate was made (else it says how long to wait for a trigger)
    return svc.versions()[-1]


# ---- the promotion rule ---------------------------------------------------------------------------------


def test_the_rule_by_hand():
    # forgetting at the threshold passes, above it fails (0.9 - 0.88 = 0.02; 0.9 - 0.87 = 0.03)
    assert decide({"a": 0.9, "b": 0.1}, {"a": 0.88, "b": 0.5}, "b", 0.02)[0]
    ok, why = decide({"a": 0.9, "b": 0.1}, {"a": 0.87, "b": 0.5}, "b", 0.02)
    assert not ok and why == "forgets task a: guard accuracy 0.900 -> 0.870 (-0.030 > max_forgetting 0.02)"
    # the current task must improve strictly...
    ok, why = decide({"a": 0.9, "b": 0.5}, {"a": 0.9, "b": 0.5}, "b", 0.02)
    assert not ok and why.startswith("task b does not improve: guard accuracy 0.500 -> 0.500")
    # ...except at the ceiling, where nothing can improve
    assert decide({"b": 1.0}, {"b": 1.0}, "b", 0.02) == (True, "task b improves: guard accuracy 1.000 -> 1.000")
    # the worst old task is named, not the first
    assert "task c" in decide({"a": 0.9, "c": 0.9, "d": 0}, {"a": 0.85, "c": 0.5, "d": 1}, "d", 0.02)[1]


def test_a_candidate_that_learns_is_promoted(open_service, data):
    svc = open_service()
    a = data.tasks[0]
    row = learn(svc, a.train_x, a.train_y, "a")
    assert row["status"] == "serving" and row["parent"] == 1
    assert row["guard"]["a"] >= 0.9
    assert svc.versions()[0]["guard"]["a"] < 0.3  # the initial model, measured on the same guard set
    assert row["reason"].startswith("task a improves: guard accuracy 0.")
    assert svc.predict(a.test_x[:5])["version"] == row["version"] == svc.state()["version"]
    held = {r.id for r in svc.store.feedback() if r.guard}
    assert row["trained_on"] == len(a.train_y) - len(held)  # guard rows are never trained on
    assert svc.state()["backlog"] == 0


def test_a_candidate_that_forgets_is_rejected_and_the_old_version_keeps_serving(open_service, data, db):
    svc = open_service(db=db)
    a = data.tasks[0]
    good = learn(svc, a.train_x, a.train_y, "a")
    answers = svc.predict(a.test_x)
    # task b relabels task a's inputs: whatever learns b unlearns a
    bad = learn(svc, a.train_x, (a.train_y + 1) % 10, "b")
    assert bad["status"] == "rejected" and bad["parent"] == good["version"]
    assert bad["reason"].startswith("forgets task a: guard accuracy 1.000 -> ")
    assert bad["guard"]["a"] < good["guard"]["a"] - 0.02
    assert svc.state()["version"] == good["version"] and svc.state()["rejected"] == 1
    assert svc.predict(a.test_x) == answers  # the same version, the same answers
    assert [v["status"] for v in svc.versions()] == ["promoted", "serving", "rejected"]


def test_rejected_feedback_is_still_learned_by_later_candidates(open_service, data):
    svc = open_service(steps=1, lr=1e-9)  # no training to speak of: the current task cannot improve
    a = data.tasks[0]
    first = learn(svc, a.train_x[:200], a.train_y[:200], "a")
    assert first["status"] == "rejected" and "does not improve" in first["reason"]
    svc.settings.steps, svc.settings.lr = 100, 0.05
    second = learn(svc, a.train_x[200:], a.train_y[200:], "a")
    # the second candidate trained on the rejected candidate's rows as well as its own
    assert second["trained_on"] > first["trained_on"]
    assert second["trained_on"] == sum(1 for r in svc.store.feedback() if not r.guard)
    assert second["status"] == "serving"


def test_a_restart_resumes_the_promoted_version_and_the_backlog(open_service, data, db):
    a, b = data.tasks[0], data.tasks[1]
    svc = open_service(db=db)
    promoted = learn(svc, a.train_x, a.train_y, "a")["version"]
    svc.add_feedback(b.train_x[:150], b.train_y[:150], "b")  # acknowledged, not yet trained on
    answers = svc.predict(b.test_x)
    svc.close()

    again = open_service(db=db)  # the same state folder / database, no config: resumed
    assert again.state()["version"] == promoted and again.state()["backlog"] == 150
    assert again.predict(b.test_x) == answers
    assert [t["name"] for t in again.tasks()] == ["a", "b"]
    row = learn(again, b.train_x[150:], b.train_y[150:], "b")
    assert row["parent"] == promoted and row["task"] == "b"
    assert again.state()["backlog"] == 0


def test_a_restart_continues_the_method_exactly_where_it_was(open_service, tmp_path, data):
    """Weights, the replay memory, its generators and L2's anchor come back from the files: the candidate
    trained after a restart is bit for bit the one trained without the restart."""
    a, b = data.tasks[0], data.tasks[1]

    def run(folder, restart: bool):
        svc = open_service(state_dir=folder, steps=30)
        learn(svc, a.train_x, a.train_y, "a")
        svc.add_feedback(b.train_x[:200], b.train_y[:200], "b")
        svc.learner.step(force=True)
        if restart:
            svc.close()
            svc = open_service(state_dir=folder, steps=30)
        learn(svc, b.train_x[200:], b.train_y[200:], "b")
        last = svc.versions()[-1]["version"]
        return svc.load_version(last).state_dict(), [(v["status"], v["guard"]) for v in svc.versions()]

    w1, rows1 = run(tmp_path / "plain", False)
    w2, rows2 = run(tmp_path / "restarted", True)
    assert rows1 == rows2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


@pytest.mark.parametrize("spec", ["replay-l2:lam=0.1:memory_size=50", "ewc:lam=10", "si", "lwf"])
def test_method_state_round_trips_without_pickles(spec, data):
    """capture -> restore -> capture gives the same tensors and document; continuing from either copy
    gives the same weights (generators included)."""
    stream = benchmarks.permuted("synthetic", n_tasks=2, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    method = make_method(spec)
    model = method.prepare(model, stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task in stream.tasks:
            method.before_task(task, model)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            method.on_optimizer(opt)
            for i in range(3):
                loss = method.loss(model, task.train_x[i * 10 : i * 10 + 10], task.train_y[i * 10 : i * 10 + 10], None)
                opt.zero_grad()
                loss.backward()
                method.after_backward(model, task)
                opt.step()
                method.after_step(model, task)
            if task.id == 0:
                method.after_task(task, model)
    tensors, document = method_state.capture(method, model)
    twin_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    twin_model.load_state_dict(model.state_dict())
    twin = make_method(spec)
    twin_model = twin.prepare(twin_model, stream)
    method_state.restore(twin, twin_model, stream, tensors, document)
    tensors2, document2 = method_state.capture(twin, twin_model)
    assert document2 == document and tensors2.keys() == tensors.keys()
    assert all(torch.equal(tensors[k], tensors2[k]) for k in tensors)
    for m, net in ((method, model), (twin, twin_model)):  # one more step and the task's end, on each
        task = stream.tasks[1]
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        m.on_optimizer(opt)
        loss = m.loss(net, task.train_x[50:80], task.train_y[50:80], None)
        opt.zero_grad()
        loss.backward()
        m.after_backward(net, task)
        opt.step()
        m.after_step(net, task)
        m.after_task(task, net)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin_model.parameters(), strict=True))


# ---- refusals -------------------------------------------------------------------------------------------


def test_a_tampered_version_is_never_served(open_service, tmp_path, data):
    svc = open_service()
    a = data.tasks[0]
    v2 = learn(svc, a.train_x, a.train_y, "a")["version"]
    svc.close()
    path = tmp_path / "s" / "weights" / f"v{v2:06d}.safetensors"
    data_ = bytearray(path.read_bytes())
    data_[-4] ^= 0x40
    path.write_bytes(bytes(data_))
    with pytest.raises(weights.ChecksumError, match=f"v{v2:06d}.safetensors does not match the sha256"):
        open_service()
    # an admin promotion of the damaged version is refused too, and the serving one stays
    path.write_bytes(bytes(data_[:-4]) + bytes([data_[-4] ^ 0x40]) + bytes(data_[-3:]))  # repaired
    svc = open_service()
    svc.rollback()
    path.write_bytes(bytes(data_))
    with pytest.raises(weights.ChecksumError):
        svc.promote(v2)
    assert svc.state()["version"] == 1


def test_a_different_config_or_method_is_refused_on_resume(open_service):
    open_service().close()
    with pytest.raises(Conflict, match=r"another model config \(hidden differ\)"):
        open_service(config={**CONFIG, "hidden": [16]})
    with pytest.raises(Conflict, match="learns with 'replay-l2', not 'ewc'"):
        open_service(method="ewc")
    assert open_service(config=None).state()["version"] == 1  # no config: the stored one


@pytest.mark.parametrize(
    "spec, why",
    [
        ("pnn", "pnn cannot serve: a served model is not told the task"),
        ("icarl", "icarl cannot serve: it classifies with its own predict()"),
        ("gem", "gem cannot serve: it fails on a stream whose tasks arrive one by one"),
        ("dgr", "dgr keeps a VAE in generator, which the learner cannot save without pickles"),
        ("ewc:lam=-1", "lam must be >= 0"),
    ],
)
def test_methods_that_cannot_serve_are_refused_at_start(open_service, spec, why):
    with pytest.raises(ServeError, match=why) as e:
        open_service(method=spec)
    assert "\n" not in str(e.value)


def test_promote_and_rollback(open_service, data):
    svc = open_service()
    a = data.tasks[0]
    v2 = learn(svc, a.train_x, a.train_y, "a")["version"]
    assert svc.rollback() == {"version": 1, "retired": v2}
    assert svc.predict(a.test_x[:1])["version"] == 1
    with pytest.raises(Conflict, match="none before it"):
        svc.rollback()
    assert svc.promote(v2) == {"version": v2, "previous": 1}
    assert [v["status"] for v in svc.versions()] == ["promoted", "serving"]


# ---- the thread -----------------------------------------------------------------------------------------


def wait_for(condition, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_thread_triggers_on_size_and_on_time(open_service, data):
    a = data.tasks[0]
    svc = open_service(micro_batch=100, max_wait_s=60, poll_s=0.05, steps=20)
    svc.start()
    try:
        svc.add_feedback(a.train_x[:60], a.train_y[:60], "a")
        time.sleep(0.5)
        assert len(svc.versions()) == 1 and svc.state()["backlog"] == 60  # under both triggers: waits
        svc.add_feedback(a.train_x[60:100], a.train_y[60:100], "a")  # 100 rows: the size trigger
        assert wait_for(lambda: len(svc.versions()) == 2 and svc.versions()[-1]["status"] != "candidate")
        assert svc.state()["backlog"] == 0 and svc.state()["learner"] == "idle"
    finally:
        svc.stop()
    assert svc.state()["learner"] == "stopped"
    svc.settings.max_wait_s = 0.3
    svc.start()
    try:
        svc.add_feedback(a.train_x[100:110], a.train_y[100:110], "a")  # 10 rows: only the time trigger
        assert wait_for(lambda: len(svc.versions()) == 3 and svc.versions()[-1]["status"] != "candidate")
    finally:
        svc.stop()

"""`lifelong serve` over real HTTP (issue 11): a real server process on 127.0.0.1 (tests/serve_process.py),
talked to with httpx, on SQLite and on PostgreSQL (the throwaway server of tests/postgres.py).

The served model is the default 3 × 50 MLP over permuted 8 × 8 digits (a run config file); feedback is the
digits of the first permutation. Task A: the true labels; task B: the same inputs with every label moved
by one, so no model can learn B without forgetting A, and the learner must refuse every B candidate.
Tests in this file run in order and share one server per backend (module scope).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from serve_process import ServerProcess, wait_for

from lifelong import benchmarks
from lifelong.serve.store import Store

MAX_BODY = 200_000
MAX_BATCH = 500
RATE, BURST = 5, 30  # low enough to reach in a test; the tests' polling stays under it
LEARNER = ["--micro-batch", "100", "--max-wait-s", "0.3", "--steps", "200", "--optimizer", "adam", "--lr", "0.01"]


@pytest.fixture(scope="module")
def digits():
    """Task A's training rows (600, flat 64) and labels, and its test set."""
    task = benchmarks.permuted("digits", n_tasks=1, seed=0)[0]
    return task.train_x[:600].flatten(1), task.train_y[:600], task.test_x.flatten(1), task.test_y


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request, tmp_path_factory):
    """A database URL (None: SQLite in the state folder) for the module's servers, dropped at the end."""
    if request.param == "sqlite":
        yield None
        return
    pg = request.getfixturevalue("postgres_server")
    names = []

    def new() -> str:
        names.append(pg.new_database())
        return pg.url(names[-1])

    yield new
    for name in names:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _db(backend):
    return backend() if backend else None


@pytest.fixture(scope="module")
def server(backend, tmp_path_factory):
    """The shared server: a state folder that does not exist yet (the server creates it), a run config."""
    root = tmp_path_factory.mktemp("http")
    config = root / "digits.yaml"
    config.write_text("benchmark: permuted-digits\ntasks: 2\n")
    limits = ["--max-body-bytes", str(MAX_BODY), "--max-batch", str(MAX_BATCH)]
    rate = ["--rate-limit", str(RATE), "--rate-burst", str(BURST)]
    proc = ServerProcess(root / "new" / "state", "--config", str(config), *LEARNER, *limits, *rate, db=_db(backend))
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def keys(server):
    """One key per scope: admin made by the real CLI command, the others written into the store."""
    made = subprocess.run(
        [sys.executable, "-m", "lifelong.cli", "serve", "keys", "create", "--scope", "admin", "--name", "tests"]
        + ["--state-dir", str(server.state_dir)]
        + (["--db", server.db] if server.db else []),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip()
    assert admin.startswith("llk_") and "\n" not in admin and "shown only" in made.stderr
    return {
        "admin": admin,
        "predict": server.add_key({"predict"}),
        "feedback": server.add_key({"feedback"}),
        "poll": server.add_key({"predict"}, "polling"),
    }


def counts(server) -> dict:
    """Rows in the store, read straight from the database (not through the server)."""
    store = Store(server.store_url)
    try:
        return store.counts() | {"backlog": store.backlog()[0]}
    finally:
        store.close()


def one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and 20 < len(detail) < 300, detail
    return detail


def settled(client: httpx.Client, after: int = 0):
    """The versions once the learner has trained on every row, is idle, and a version above ``after`` exists."""

    def check():
        state = client.get("/v1/state").json()
        if state["backlog"] or not str(state["learner"]).startswith("idle"):
            return None
        models = client.get("/v1/models").json()
        return models if max(v["version"] for v in models["versions"]) > after else None

    return wait_for(check, timeout=60, every=0.5, what="the learner catching up")


def test_health_docs_and_metrics_need_no_key_and_no_internet(server):
    with server.client() as http:
        assert http.get("/healthz").json() == {"status": "ok", "version": 1, "learner": "idle"}
        docs = http.get("/docs")
        assert docs.status_code == 200
        assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text  # served locally
        script = http.get("/docs-assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 500_000
        schema = http.get("/openapi.json").json()
        assert {"/v1/predict", "/v1/feedback", "/v1/models", "/v1/models/{version}/promote"} <= set(schema["paths"])
        example = schema["components"]["schemas"]["PredictRequest"]["properties"]["inputs"]["examples"][0][0]
        assert len(example) == 64  # the form starts from a valid input of this model's size
        metrics = http.get("/metrics").text
        assert "lifelong_serve_version 1.0" in metrics
        assert 'lifelong_serve_learner_state{state="idle"} 1.0' in metrics
        assert 'lifelong_serve_requests_total{endpoint="/healthz",method="GET",status="200"}' in metrics
    assert server.state_dir.is_dir()  # `lifelong serve` made the missing folders


def test_every_endpoint_needs_a_key_of_its_scope(server, keys, digits):
    x = digits[0][:1].tolist()
    calls = [
        ("POST", "/v1/predict", {"inputs": x}, "predict"),
        ("POST", "/v1/feedback", {"inputs": x, "labels": [0], "task": "A"}, "feedback"),
        ("POST", "/v1/models/1/promote", None, "admin"),
        ("POST", "/v1/models/rollback", None, "admin"),
        ("POST", "/v1/tasks", {"name": "X"}, "feedback"),
    ]
    before = counts(server)
    with server.client() as anonymous, server.client("llk_not_a_key") as unknown:
        for method, path, body, scope in calls:
            assert "Authorization: Bearer" in one_line_error(anonymous.request(method, path, json=body), 401)
            assert "unknown API key" in one_line_error(unknown.request(method, path, json=body), 401)
            for other in {"predict", "feedback"} - {scope}:
                with server.client(keys[other]) as wrong:
                    detail = one_line_error(wrong.request(method, path, json=body), 403)
                    assert f"scope {scope}" in detail and f"--scope {scope}" in detail
        assert anonymous.get("/v1/models").status_code == 401
    assert counts(server) == before  # refused requests stored nothing
    with server.client(keys["predict"]) as reader:  # any key reads the versions
        assert reader.get("/v1/models").json()["serving"] == 1
    with server.client(keys["admin"]) as admin:  # admin implies predict
        assert admin.post("/v1/predict", json={"inputs": x}).json()["version"] == 1


def test_oversized_and_malformed_requests_are_refused_and_store_nothing(server, keys):
    row = [0.5] * 64
    good = {"inputs": [row], "labels": [1], "task": "A"}
    raw = {  # bodies a JSON encoder would not write
        "not JSON": b'{"inputs": [[0.5, ',
        "NaN": json.dumps(good).replace("0.5", "NaN", 1).encode(),
        "Infinity": json.dumps(good).replace("0.5", "1e999", 1).encode(),
        "empty": b"",
    }
    malformed = {
        "no inputs": {"labels": [1]},
        "no labels": {"inputs": [row]},
        "short input": {"inputs": [row[:63]], "labels": [1]},
        "wrong nesting": {"inputs": [[row[:8]] * 7], "labels": [1]},
        "a string": {"inputs": [row[:63] + ["1"]], "labels": [1]},
        "a boolean": {"inputs": [row[:63] + [True]], "labels": [1]},
        "a null": {"inputs": [row[:63] + [None]], "labels": [1]},
        "beyond float32": {"inputs": [row[:63] + [1e39]], "labels": [1]},
        "label too large": {"inputs": [row], "labels": [10]},
        "negative label": {"inputs": [row], "labels": [-1]},
        "fractional label": {"inputs": [row], "labels": [1.5]},
        "labels and inputs differ": {"inputs": [row, row], "labels": [1]},
        "unknown field": {**good, "weights": "x"},
        "control character in task": {**good, "task": "a\nb"},
        "empty batch": {"inputs": [], "labels": []},
        "over max_batch": {"inputs": [[0] * 64] * (MAX_BATCH + 1), "labels": [0] * (MAX_BATCH + 1)},
        "a list body": [good],
    }
    before = counts(server)
    with server.client(keys["admin"]) as http:
        for what, body in raw.items():
            response = http.post("/v1/feedback", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 422, (what, response.text)
            one_line_error(response, 422)
        for what, body in malformed.items():
            response = http.post("/v1/feedback", json=body)
            assert response.status_code == 422, (what, response.text)
            one_line_error(response, 422)
        text = http.post("/v1/feedback", content=json.dumps(good), headers={"Content-Type": "text/plain"})
        assert "JSON" in one_line_error(text, 422)
        big = {"inputs": [row] * 2000, "labels": [1] * 2000}
        assert f"at most {MAX_BODY}" in one_line_error(http.post("/v1/feedback", json=big), 413)

        def chunks():  # no Content-Length: the server counts the bytes as they arrive
            data = json.dumps(big).encode()
            for i in range(0, len(data), 16_384):
                yield data[i : i + 16_384]

        assert f"at most {MAX_BODY}" in one_line_error(http.post("/v1/feedback", content=chunks()), 413)
        assert "whole number" in one_line_error(http.post("/v1/models/first/promote"), 422)
        assert "/docs" in one_line_error(http.get("/v1/nothing"), 404)
    assert counts(server) == before  # nothing stored, no task opened, no version made


def test_feedback_is_learned_and_the_candidate_promoted(server, keys, digits):
    x, y, test_x, test_y = digits
    with server.client(keys["feedback"]) as feedback, server.client(keys["poll"]) as poll:
        acknowledged = 0
        for start in range(0, len(x), 100):
            response = feedback.post(
                "/v1/feedback",
                json={
                    "inputs": x[start : start + 100].tolist(),
                    "labels": y[start : start + 100].tolist(),
                    "task": "A",
                },
            )
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["task"] == "A" and body["accepted"] == 100 and body["ids"][1] - body["ids"][0] == 99
            acknowledged += 100
        assert counts(server)["feedback"] == acknowledged  # 202 = committed, before the learner ran
        models = settled(poll, after=1)
        serving = [v for v in models["versions"] if v["status"] == "serving"]
        assert len(serving) == 1 and serving[0]["version"] == models["serving"] > 1
        assert serving[0]["guard"]["A"] > 0.5  # its R row on task A's guard set
        answer = poll.post("/v1/predict", json={"inputs": test_x[:150].tolist()}).json()
        assert answer["version"] == models["serving"]
        labels = torch.tensor(answer["labels"])
        assert (labels == test_y[:150]).float().mean() > 0.5  # it learned task A from the feedback
        probabilities = torch.tensor(answer["probabilities"])
        assert probabilities.shape == (150, 10)
        assert torch.allclose(probabilities.sum(1), torch.ones(len(probabilities)), atol=1e-4)
        metrics = poll.get("/metrics").text
        assert f"lifelong_serve_version {float(models['serving'])}" in metrics
        assert 'lifelong_serve_requests_total{endpoint="/v1/feedback",method="POST",status="202"} 6.0' in metrics


def test_a_candidate_that_forgets_is_not_promoted(server, keys, digits):
    x, y, test_x, test_y = digits
    with server.client(keys["feedback"]) as feedback, server.client(keys["poll"]) as poll:
        before = poll.get("/v1/models").json()
        shifted = (y + 1) % 10  # the same inputs, other labels: learning B means forgetting A
        for start in range(0, len(x), 100):
            body = {
                "inputs": x[start : start + 100].tolist(),
                "labels": shifted[start : start + 100].tolist(),
                "task": "B",
            }
            assert feedback.post("/v1/feedback", json=body).status_code == 202
        after = settled(poll, after=len(before["versions"]))
        assert after["serving"] == before["serving"]  # still the version that knows A
        b_versions = [v for v in after["versions"] if v["task"] == "B"]
        assert b_versions and all(v["status"] == "rejected" for v in b_versions)
        serving = next(v for v in after["versions"] if v["version"] == after["serving"])
        forgot = [v for v in b_versions if v["guard"]["A"] < serving["guard"]["A"] - 0.02]
        assert forgot and all("forgets task A" in v["reason"] for v in forgot)
        assert poll.post("/v1/predict", json={"inputs": x[:5].tolist()}).json()["version"] == before["serving"]


def test_admin_promotes_a_rejected_version_and_rolls_back(server, keys, digits):
    x = digits[0][:200]
    with server.client(keys["admin"]) as admin:
        models = admin.get("/v1/models").json()
        good = models["serving"]
        b_versions = [v for v in models["versions"] if v["status"] == "rejected" and v["task"] == "B"]
        rejected = min(b_versions, key=lambda v: v["guard"]["A"])["version"]  # the one that forgot A most
        assert admin.post(f"/v1/models/{rejected}/promote").json() == {"version": rejected, "previous": good}
        assert admin.post("/v1/predict", json={"inputs": x[:1].tolist()}).json()["version"] == rejected
        shifted = admin.post("/v1/predict", json={"inputs": x.tolist()}).json()["labels"]
        assert admin.get("/v1/models").json()["serving"] == rejected
        assert admin.post("/v1/models/rollback").json() == {"version": good, "retired": rejected}
        back = admin.post("/v1/predict", json={"inputs": x.tolist()}).json()
        assert back["version"] == good and back["labels"] != shifted  # the other model answers again
        statuses = {v["version"]: v["status"] for v in admin.get("/v1/models").json()["versions"]}
        assert statuses[good] == "serving" and statuses[rejected] == "retired"
        assert "version" in one_line_error(admin.post("/v1/models/99999/promote"), 404)
        assert admin.post("/v1/tasks", json={"name": "C"}).status_code == 201
        assert "C" in one_line_error(admin.post("/v1/tasks", json={"name": "C"}), 409)


def test_a_key_over_its_rate_gets_429_then_service_again(server):
    key = server.add_key({"predict"})
    with server.client(key) as http:
        statuses = []
        while 429 not in statuses and len(statuses) < 20 * BURST:  # each request spends a token, RATE/s come back
            statuses.append((refused := http.get("/v1/state")).status_code)
        assert statuses[: BURST - 2] == [200] * (BURST - 2) and statuses[-1] == 429  # a burst, then the limit
        detail = one_line_error(refused, 429)
        assert "retry after" in detail and int(refused.headers["Retry-After"]) >= 1
        time.sleep(1.5 / RATE)
        assert http.get("/v1/state").status_code == 200  # the bucket refills


class Streamer(threading.Thread):
    """Posts feedback as fast as the server takes it and records every acknowledged batch."""

    def __init__(self, url: str, key: str, x: torch.Tensor, y: torch.Tensor):
        super().__init__(daemon=True)
        self.url, self.key, self.x, self.y = url, key, x, y
        self.acknowledged: list[tuple[list[int], torch.Tensor, torch.Tensor]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10) as http:
            for i in range(10_000):
                if self.stopping.is_set():
                    return
                start = (i * 8) % (len(self.x) - 8)
                x = self.x[start : start + 8] + 1e-3 * i  # every row unique: the store must hold each once
                y = self.y[start : start + 8]
                try:
                    response = http.post("/v1/feedback", json={"inputs": x.tolist(), "labels": y.tolist(), "task": "A"})
                except httpx.TransportError:
                    return  # the server was killed
                if response.status_code == 202:
                    self.acknowledged.append((response.json()["ids"], x, y))


def test_kill_9_while_feedback_streams_loses_nothing_acknowledged_and_the_learner_resumes(backend, tmp_path, digits):
    x, y = digits[0], digits[1]
    config = tmp_path / "digits.yaml"
    config.write_text("benchmark: permuted-digits\ntasks: 2\n")
    args = ["--config", str(config), "--micro-batch", "40", "--max-wait-s", "0.2", "--steps", "30"]
    proc = ServerProcess(tmp_path / "state", *args, "--rate-limit", "1000", "--rate-burst", "1000", db=_db(backend))
    streamer = None
    try:
        proc.start()
        key = proc.add_key({"admin"})
        streamer = Streamer(proc.url, key, x, y)
        streamer.start()
        with proc.client(key) as http:  # until the learner has promoted at least once, mid-stream
            wait_for(lambda: http.get("/v1/models").json()["serving"] > 1, timeout=60, what="a first promotion")
        wait_for(lambda: len(streamer.acknowledged) >= 40, timeout=30, what="40 acknowledged batches")
        proc.kill9()
        streamer.join(15)
        assert len(streamer.acknowledged) >= 40

        store = Store(proc.store_url)  # the database as the killed process left it
        try:
            rows = {r.id: r for r in store.feedback()}
            killed_serving = store.serving()
            killed_versions = max(v["version"] for v in store.versions())
        finally:
            store.close()
        for (first, last), sent_x, sent_y in streamer.acknowledged:  # every 202 is there, exactly as sent
            assert last - first + 1 == len(sent_x)
            for i, row_id in enumerate(range(first, last + 1)):
                assert bytes(rows[row_id].x) == sent_x[i].numpy().astype("<f4").tobytes()
                assert rows[row_id].y == int(sent_y[i])
        seen_before = {i: r.seen for i, r in rows.items() if r.seen is not None}
        assert killed_serving > 1 and seen_before

        proc.start()  # the same state, a new process
        with proc.client(key) as http:
            resumed = re.search(r"serving version (\d+)", proc.out.read_text()).group(1)
            assert int(resumed) == killed_serving  # it started with the promoted version (not the initial one)
            more = {"inputs": (x[:80] + 0.5).tolist(), "labels": y[:80].tolist(), "task": "A"}
            assert http.post("/v1/feedback", json=more).status_code == 202
            models = settled(http, after=killed_versions)
        store = Store(proc.store_url)
        try:
            after = {r.id: r for r in store.feedback()}
        finally:
            store.close()
        assert set(rows) <= set(after)
        assert all(after[i].seen == v for i, v in seen_before.items())  # trained-on rows are not trained on anew
        new = [v for v in models["versions"] if v["version"] > killed_versions]
        assert new and new[0]["parent"] == killed_serving  # the learner continued from the resumed version
        unseen_before = [i for i in rows if i not in seen_before]
        assert all(after[i].seen is not None and after[i].seen > killed_versions for i in unseen_before)
    finally:
        if streamer is not None:
            streamer.stopping.set()
        proc.stop()


# ---- the command line -------------------------------------------------------------------------------


def test_serve_defaults(tmp_path, monkeypatch):
    from lifelong.serve.cli import build_parser, settings_from

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.demo) == ("127.0.0.1", 8000, False)
    settings = settings_from(args)
    assert settings.state_dir == Path("lifelong-serve") and settings.db is None
    assert settings_from(build_parser().parse_args(["--demo"])).state_dir == Path("lifelong-serve-demo")
    assert not (tmp_path / "lifelong-serve").exists()  # nothing is made before the server starts


def test_bad_command_lines_are_one_line_errors_that_change_nothing(tmp_path, monkeypatch, capsys):
    from lifelong.cli import main

    monkeypatch.chdir(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("a user's file")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "bad.yaml").write_text("benchmark: permuted-digits\nwidth: 3\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    cases = {
        ("--port", "70000"): "port",
        ("--port", "eighty"): "port",
        ("--micro-batch", "0"): "--micro-batch",
        ("--guard-fraction", "1.5"): "--guard-fraction",
        ("--optimizer", "rmsprop"): "--optimizer",
        ("--method", "no-such-method"): "no-such-method",
        ("--state-dir", "a-file"): "is a file",
        ("--state-dir", "theirs"): "holds other files",
        ("--config", "missing.yaml"): "does not exist",
        ("--config", "bad.yaml"): "unknown key",
        ("--config", "bad.yaml", "--run", "1"): "not both",
        ("--store", "runs.db"): "--run",
        ("--demo", "--config", "bad.yaml"): "--demo",
        ("--port", str(busy.getsockname()[1])): "cannot listen",
        ("--db", "mysql://localhost/x", "--port", "0"): "postgresql",
        ("keys",): "keys create",
        ("keys", "create"): "--scope",
        ("keys", "create", "--scope", "root"): "--scope",
        ("--bogus",): "unrecognized",
    }
    try:
        for argv, says in cases.items():
            assert main(["serve", *argv]) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith("lifelong: error: ") and err.count("\n") == 1, (argv, err)
            assert says in err and "Traceback" not in err, (argv, err)
    finally:
        busy.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "bad.yaml", "theirs"]  # nothing made
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]


def test_the_command_line_of_lifelong_run_does_not_load_the_service():
    code = (
        "import sys; from lifelong.cli import build_parser, main; build_parser(); "
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'uvicorn') if m in sys.modules)); "
        "sys.exit(main(['serve', '--port', '99999']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]"
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--port" in done.stderr, done.stderr

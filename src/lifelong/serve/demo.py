"""``lifelong serve --demo``: the service, and a client that streams a permuted-digits stream to it as
feedback, task by task, over HTTP like any other client.

The stream is the library's own ``lifelong.benchmarks.permuted("digits", …)`` (scikit-learn's bundled 8 × 8
digits, no download; each task a fixed pixel permutation, Goodfellow et al. 2013). For each task the client
posts the training set as tagged feedback in small batches (a pause between them, so a person can watch
the live page), waits until the learner has trained on all of it, then asks ``/v1/predict`` for every
test set seen so far and prints that row of accuracies — the client's own row of R for the serving
version. The served model starts from the same config (``demo_config``), so its input shape matches.
"""

from __future__ import annotations

import threading
import time

import httpx

from lifelong import benchmarks

BATCH = 32  # feedback rows per request
# The demo's state folder (apart from the default one: another model), and a learner that learns a task
# from scratch in a few candidates (Adam; the service's SGD defaults take many more).
# 200 rows a candidate: about seven versions a task, few enough for the page to show each.
DEMO_SETTINGS = {"state_dir": "lifelong-serve-demo", "optimizer": "adam", "lr": 0.01, "steps": 200, "micro_batch": 200}
SETTLE_S = 180.0  # longest wait for the learner to catch up after a task


def demo_config(n_tasks: int) -> dict:
    """The served model's run config: the default 3 × 50 MLP over permuted 8 × 8 digits."""
    return {"benchmark": "permuted-digits", "tasks": n_tasks}


class Demo(threading.Thread):
    """The demo's client thread (a daemon: it never keeps the process alive after the server stops)."""

    def __init__(self, service, base_url: str, n_tasks: int, delay_s: float, out=print):
        super().__init__(name="lifelong-serve-demo", daemon=True)
        self.base_url, self.n_tasks, self.delay_s, self.out = base_url, n_tasks, delay_s, out
        self.feedback_key = service.create_key({"feedback", "predict"}, "demo client")
        self.page_key = service.create_key({"predict"}, "demo page")
        self.stopping = threading.Event()
        already = service.state()["feedback"]
        if already:
            out(f"  demo: the state folder has {already} feedback rows from an earlier demo; the stream adds to them")
        out(f"  demo: open {base_url}/#key={self.page_key} to watch (a predict-only key, made for the page)")

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            self._stream()
        except Exception as e:  # the client's failure must not take the server down; say what happened
            if not self.stopping.is_set():
                self.out(f"  demo: the client stopped: {type(e).__name__}: {e}")

    def _stream(self) -> None:
        stream = benchmarks.permuted("digits", n_tasks=self.n_tasks, seed=0)
        headers = {"Authorization": f"Bearer {self.feedback_key}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=60) as http:
            self._wait_healthy(http)
            for i, task in enumerate(stream):
                x, y = task.train_x.flatten(1), task.train_y
                for start in range(0, len(x), BATCH):
                    if self.stopping.is_set():
                        return
                    body = {
                        "inputs": x[start : start + BATCH].tolist(),
                        "labels": y[start : start + BATCH].tolist(),
                        "task": task.name,
                    }
                    http.post("/v1/feedback", json=body).raise_for_status()
                    self.stopping.wait(self.delay_s)
                self.out(f"  demo: task {i + 1}/{len(stream)} ({task.name}): {len(x)} feedback rows sent")
                self._settle(http)
                self._report(http, list(stream)[: i + 1])
            self.out("  demo: all tasks sent; the service keeps serving (Ctrl-C stops it)")

    def _wait_healthy(self, http: httpx.Client) -> None:
        for _ in range(100):
            try:
                if http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            self.stopping.wait(0.1)

    def _settle(self, http: httpx.Client) -> None:
        """Until the learner has trained on every row sent (or SETTLE_S passes)."""
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and not self.stopping.is_set():
            state = http.get("/v1/state").json()
            if state["backlog"] == 0 and str(state["learner"]).startswith("idle"):
                return
            self.stopping.wait(0.5)

    def _report(self, http: httpx.Client, seen: list) -> None:
        row, version = [], None
        for task in seen:
            x = task.test_x.flatten(1)
            correct = 0
            for start in range(0, len(x), 256):
                answer = http.post("/v1/predict", json={"inputs": x[start : start + 256].tolist()}).json()
                version = answer["version"]
                truth = task.test_y[start : start + 256].tolist()
                correct += sum(int(a == b) for a, b in zip(answer["labels"], truth, strict=True))
            row.append(f"{task.name} {100 * correct / len(x):.1f} %")
        self.out(f"  demo: serving version {version}; test accuracy: {' · '.join(row)}")

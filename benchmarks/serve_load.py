"""Loopback load test of `lifelong serve` (issue 11): prediction latency and throughput while feedback
streams in and the learner trains.

One real server process (`lifelong serve`, the library's default model: the 3 × 50 MLP over permuted
minimnist's 14 × 14 inputs, 10 classes; the learner's default settings; SQLite in a temporary folder),
and in this process:

- predict clients: ``--clients`` threads, each one keep-alive connection, sending batch-1 requests back
  to back (closed loop) and timing each from send to the last byte of the answer;
- a feedback client: minimnist's training digits as feedback, ``--feedback-rows`` rows a request,
  ``--feedback-rate`` requests a second, two tasks one after another (a new tag opens the second);
- a watcher that reads /v1/state every 0.1 s: the share of the time the learner was training or
  evaluating, and how many versions it made.

Two phases of the same length, bounded in requests and time: ``idle`` (no feedback: the learner waits)
and ``learning`` (feedback streams, the learner trains). Target (issue 11): p99 < 50 ms for batch 1 on 2
cores while the learner trains. The server runs with one torch thread (the learner keeps one core, the
answers the other); the clients share the same 2 cores, so the figures include their own cost.

    python benchmarks/serve_load.py [--requests 3000] [--seconds 60] [--clients 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from lifelong import benchmarks
from lifelong.serve.service import Settings, create_key

RESULTS = Path(__file__).parent / "results"
TARGET_P99_MS = 50.0
LOCK = threading.Lock()  # the predict clients share one request budget


def start_server(state: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(state.parent / "server.out", "w")  # noqa: SIM115 - closed with the process
    command = [sys.executable, "-m", "lifelong.cli", "serve", "--port", "0", "--state-dir", str(state), *extra]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while not (found := re.search(r"http://127\.0\.0\.1:\d+", (state.parent / "server.out").read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start: " + (state.parent / "server.out").read_text()[-2000:])
        time.sleep(0.05)
    url = found.group(0)
    while True:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)


def predict_loop(url: str, key: str, x: list[float], stop: threading.Event, budget: list[int], out: list[float]):
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        body = json.dumps({"inputs": [x]})
        headers = {"Content-Type": "application/json"}
        for _ in range(20):  # warm-up: the connection, the first requests' allocations
            http.post("/v1/predict", content=body, headers=headers)
        while not stop.is_set():
            with LOCK:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            start = time.perf_counter()
            response = http.post("/v1/predict", content=body, headers=headers)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            out.append(elapsed)


def feedback_loop(url: str, key: str, rows: int, rate: float, stop: threading.Event, sent: list[int]):
    stream = benchmarks.permuted("minimnist", n_tasks=2, seed=0)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        for task in stream:
            x, y = task.train_x.flatten(1), task.train_y
            for start in range(0, len(x) - rows, rows):
                if stop.is_set():
                    return
                began = time.monotonic()
                body = {"inputs": x[start : start + rows].tolist(), "labels": y[start : start + rows].tolist()}
                http.post("/v1/feedback", json={**body, "task": task.name}).raise_for_status()
                sent[0] += rows
                stop.wait(max(0.0, 1.0 / rate - (time.monotonic() - began)))


def watch(url: str, key: str, stop: threading.Event, seen: list[str]):
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        while not stop.is_set():
            seen.append(str(http.get("/v1/state").json()["learner"]))
            stop.wait(0.1)


def phase(url: str, keys: dict, probe: list[float], args, feedback: bool) -> dict:
    stop = threading.Event()
    latencies: list[float] = []
    budget = [args.requests]
    sent, learner = [0], []
    threads = [
        threading.Thread(target=predict_loop, args=(url, keys["predict"], probe, stop, budget, latencies))
        for _ in range(args.clients)
    ]
    helpers = [threading.Thread(target=watch, args=(url, keys["admin"], stop, learner))]
    if feedback:
        loop_args = (url, keys["feedback"], args.feedback_rows, args.feedback_rate, stop, sent)
        helpers.append(threading.Thread(target=feedback_loop, args=loop_args))
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['admin']}"}) as http:
        versions_before = http.get("/v1/state").json()["versions"]
    for t in helpers:
        t.start()
    if feedback:
        time.sleep(2.0)  # let the learner get busy before the clock starts
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, args.seconds - (time.perf_counter() - began)))
    stop.set()
    wall = time.perf_counter() - began
    for t in threads + helpers:
        t.join()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['admin']}"}) as http:
        versions_after = http.get("/v1/state").json()["versions"]
    ms = sorted(1000 * s for s in latencies)
    busy = sum(s.startswith(("training", "evaluating")) for s in learner) / max(1, len(learner))
    return {
        "requests": len(ms),
        "seconds": round(wall, 2),
        "throughput_per_s": round(len(ms) / wall, 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(0.90 * (len(ms) - 1))], 2),
        "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
        "feedback_rows_sent": sent[0],
        "learner_busy_share": round(busy, 2),
        "versions_made": versions_after - versions_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="predict requests per phase (the bound)")
    parser.add_argument("--seconds", type=float, default=60.0, help="at most this long per phase")
    parser.add_argument("--clients", type=int, default=1, help="concurrent predict clients")
    parser.add_argument("--feedback-rows", type=int, default=32, help="rows per feedback request")
    parser.add_argument("--feedback-rate", type=float, default=20.0, help="feedback requests per second")
    parser.add_argument("--out", default=str(RESULTS / "serve_load"), help="writes OUT.json and OUT.txt")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-load-") as folder:
        state = Path(folder) / "state"
        limits = ["--rate-limit", "1000000", "--rate-burst", "1000000"]  # the benchmark measures the service
        process, url = start_server(state, limits)
        try:
            settings = Settings(state_dir=state)
            keys = {s: create_key(settings, {s}, "serve_load") for s in ("predict", "feedback", "admin")}
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['admin']}"}) as http:
                state_now = http.get("/v1/state").json()
            probe = benchmarks.permuted("minimnist", n_tasks=1, seed=0)[0].test_x[0].flatten().tolist()
            results = {
                "setup": {
                    "model": "3 x 50 MLP, 196 inputs (14 x 14), 10 classes; batch 1",
                    "learner": state_now["method"],
                    "clients": args.clients,
                    "feedback": f"{args.feedback_rows} rows x {args.feedback_rate:g}/s",
                    "cores": os.cpu_count(),
                    "load_average_before": os.getloadavg()[0],  # other work on the machine (1-minute average)
                    "command": " ".join(["python benchmarks/serve_load.py", *sys.argv[1:]]),
                },
                "idle": phase(url, keys, probe, args, feedback=False),
                "learning": phase(url, keys, probe, args, feedback=True),
            }
        finally:
            process.terminate()
            process.wait(30)
    text = report(results)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")


def report(results: dict) -> str:
    setup = results["setup"]
    lines = [
        f"lifelong serve, loopback: {setup['model']}; {setup['clients']} predict client(s), closed loop; "
        f"{setup['cores']} cores (1-minute load average before: {setup['load_average_before']:.1f})",
        f"{'phase':<9} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'feedback rows':>13} {'learner busy':>12} {'versions':>8}",
    ]
    for name in ("idle", "learning"):
        r = results[name]
        lines.append(
            f"{name:<9} {r['requests']:>8} {r['throughput_per_s']:>7} {r['p50_ms']:>7} {r['p90_ms']:>7} "
            f"{r['p99_ms']:>7} {r['max_ms']:>7} {r['feedback_rows_sent']:>13} "
            f"{100 * r['learner_busy_share']:>11.0f}% {r['versions_made']:>8}"
        )
    p99 = results["learning"]["p99_ms"]
    verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
    lines.append(f"target: p99 < {TARGET_P99_MS:g} ms while the learner trains: {verdict} ({p99} ms)")
    lines.append(f"feedback: {setup['feedback']}; learner: {setup['learner']}; command: {setup['command']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""The study/sweep worker pool (lifelong.studies.pool): results in the order of the jobs, and a worker that
dies ends the run with a one-line error instead of a hang."""

import os
import subprocess
import sys

from lifelong.studies import pool


def test_results_come_back_in_the_order_of_the_jobs_from_two_workers():
    jobs = [(n,) for n in (5, -3, 12, 0, 7)]
    assert pool.run(abs, jobs, workers=2) == [5, 3, 12, 0, 7]


def test_a_worker_that_dies_is_an_error_not_a_hang():
    # os._exit ends the worker process at once, as a SIGKILL or the OOM killer would; in a subprocess with a
    # deadline, so that a regression to a pool that waits forever fails here instead of hanging the suite.
    code = (
        "import os\nfrom lifelong.studies import pool\nfrom lifelong.errors import LifelongError\n"
        "try:\n    pool.run(os._exit, [(3,), (3,), (3,)], workers=2)\n"
        "except LifelongError as e:\n    print(e)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert message.startswith("a worker process died after 0 of 3 units"), message
    assert "\n" not in message and "fewer workers" in message  # option("workers"): the Python name here

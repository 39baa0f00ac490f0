"""Bad input through the command line, end to end: every case ends in exit code 2 and one line on stderr
that says what is wrong, with no traceback, before any training, and leaves the results store as it was."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lifelong.cli import main

QUICK = "--benchmark permuted-synthetic --tasks 2 --iterations 3 --report no --method finetune".split()


def snapshot(folder) -> dict:
    """Every file under ``folder`` with the hash of its bytes: what 'unchanged' is checked against."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a store that holds one finished run, and the files a user gets wrong."""
    d = tmp_path_factory.mktemp("bad")
    assert main(["run", *QUICK, "--method", "finetune", "--store", str(d / "runs" / "runs.db")]) == 0
    (d / "latin1.yaml").write_bytes("tasks: 2\n# caf\xe9 in Latin-1\n".encode("latin-1"))
    (d / "dup.yaml").write_text("tasks: 2\nlr: 0.1\ntasks: 3\n")
    (d / "a-file").write_text("not a folder")
    (d / "folder.yaml").mkdir()
    return d


def bad_cases(d) -> list[tuple[list[str], str]]:
    store = ["--store", str(d / "runs" / "runs.db")]
    return [
        # 1. these used to end in a traceback
        (["run", *QUICK, "--method", "", *store], "--method needs at least one value"),
        (["run", "--config", str(d / "latin1.yaml"), *store], "is not UTF-8 text"),
        (["report", "1", "--out", str(d / "a-file"), *store], "is a file, not a folder"),
        (["report", "1", "--out", str(d / "a-file" / "sub"), *store], "cannot write the report"),
        # 2. nonsense that used to be accepted
        (["run", *QUICK, "--momentum", "nan", *store], "--momentum got 'nan'; give finite numbers"),
        (["run", *QUICK, "--weight-decay", "inf", *store], "--weight-decay got 'inf'"),
        (["run", *QUICK, "--benchmark", "rotated-synthetic", "--angles", "nan,45", *store], "--angles got"),
        (["run", *QUICK, "--benchmark", "split-synthetic", "--class-order", "0,1,2", *store], "every class"),
        (["run", *QUICK, "--benchmark", "split-synthetic", "--class-order", "0,1,2,3,4,5,6,7,8,8", *store], "once"),
        (["run", *QUICK, "--benchmark", "split-synthetic", "--classes-per-task", "0", *store], "at least 1"),
        (["run", *QUICK, "--seeds", "0,0", *store], "--seeds '0,0' repeats a value"),
        (["run", *QUICK, "--seeds", "", *store], "--seeds needs at least one value"),
        (["run", "--config", str(d / "dup.yaml"), *store], "duplicate key at line 3"),
        (["run", "--config", str(d / "folder.yaml"), *store], "is a folder"),
        (["run", *QUICK, "--pad-to", "4", *store], "--pad-to 4 is smaller than the images"),
        (["run", *QUICK, "--task-order", "-1,0", *store], "--task-order must list each of 0..1 once"),
        (["run", *QUICK, "--method", "finetune,finetune", *store], "repeats a value"),
        # 3. a request far larger than memory is refused with its estimate, before anything is built
        (["run", *QUICK, "--tasks", "100000", *store], "would need about"),
        # 4. memory methods' settings (issue 7)
        (["run", *QUICK, "--method", "replay", "--memory-size", "-5", *store], "--memory-size must be >= 1"),
        (["run", *QUICK, "--method", "gem", "--margin", "-1", *store], "--margin must be >= 0"),
        (
            ["run", *QUICK, "--benchmark", "split-synthetic", "--method", "replay", "--memory-policy", "class-balanced"]
            + ["--memory-size", "5", *store],
            "cannot keep one of each of the stream's 10 classes; use --memory-size 10 or more",
        ),
    ]


@pytest.mark.parametrize("case", range(len(bad_cases(Path("unused")))))
def test_bad_input_is_one_line_exit_2_and_leaves_the_store(workdir, capsys, case):
    args, message = bad_cases(workdir)[case]
    before = snapshot(workdir)
    code = main(args)  # an uncaught exception here is a traceback for the user
    out, err = capsys.readouterr()
    assert code == 2, (args, err)
    assert err.startswith("lifelong: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert snapshot(workdir) == before  # nothing written, nothing changed


def test_a_closed_pipe_ends_quietly(workdir):
    """`lifelong show 1 | head -1`: the reader goes away; no BrokenPipeError traceback, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lifelong.cli", "show", "1", "--store", str(workdir / "runs" / "runs.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the program has printed anything: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == ""


def test_a_split_that_leaves_classes_out_says_so_in_the_header(tmp_path, capsys):
    args = ["run", "--benchmark", "split-synthetic", "--tasks", "3", "--iterations", "2", "--report", "no"]
    assert main([*args, "--method", "finetune", "--store", str(tmp_path / "r.db")]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "3 tasks · leaves out class 9 ·" in header  # 3 tasks of 3 classes: class 9 is in none


def test_a_value_list_may_start_with_a_negative_number(tmp_path, capsys):
    args = ["run", *QUICK, "--benchmark", "rotated-synthetic", "--angles", "-45,45", "--json"]
    assert main([*args, "--store", str(tmp_path / "r.db")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["angles"] == [-45.0, 45.0] and result["task_names"] == ["rot-45", "rot45"]

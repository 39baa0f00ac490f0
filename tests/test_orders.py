"""Order studies (lifelong.studies.orders): exactly the orders asked for, each run as `lifelong run` would
run that order, the spread/best/worst/rank read off the records, and `lifelong order` end to end."""

import itertools
import json
import math

import numpy as np
import pytest

from lifelong import LifelongError, config, text
from lifelong.cli import main
from lifelong.experiment import Experiment
from lifelong.studies import orders
from lifelong.studies.orders import OrderStudy

TINY = {"benchmark": "permuted-synthetic", "tasks": 3, "iterations": 10, "hidden": [16], "method": ["finetune"]}
CLI_TINY = "--benchmark permuted-synthetic --tasks 3 --iterations 10 --hidden 16".split()


def cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_all_orders_are_every_permutation_once():
    for T in (2, 3, 4):
        got = orders.all_orders(T)
        assert len(got) == math.factorial(T) and len(set(got)) == len(got)
        assert set(got) == set(itertools.permutations(range(T)))
        assert got[0] == tuple(range(T))  # the natural order first
    with pytest.raises(LifelongError, match="5040 runs"):
        orders.all_orders(7)


def test_random_orders_are_distinct_permutations_reproducible_from_the_seed():
    a = orders.random_orders(6, 15, seed=3)
    assert a == orders.random_orders(6, 15, seed=3)
    assert a != orders.random_orders(6, 15, seed=4)
    assert len(a) == 15 and len(set(a)) == 15
    assert all(sorted(o) == list(range(6)) for o in a)
    excluded = orders.random_orders(3, 5, seed=0, exclude=[(0, 1, 2)])  # the 5 other orders of 3 tasks
    assert set(excluded) == set(itertools.permutations(range(3))) - {(0, 1, 2)}
    with pytest.raises(LifelongError, match="only 6 distinct orders"):
        orders.random_orders(3, 7)


def test_parse_orders_gives_exactly_what_was_asked():
    assert orders.parse_orders("0,1,2;2,1,0", 3) == [(0, 1, 2), (2, 1, 0)]
    assert orders.parse_orders(" 2,0,1 ", 3) == [(2, 0, 1)]
    assert orders.parse_orders("all", 3) == list(itertools.permutations(range(3)))
    assert orders.parse_orders("4", 5, seed=1) == orders.random_orders(5, 4, seed=1)
    assert orders.parse_orders(None, 4) == orders.all_orders(4)  # the default: all up to 4 tasks
    assert len(orders.parse_orders(None, 5)) == orders.DEFAULT_RANDOM


@pytest.mark.parametrize(
    "text,message",
    [
        ("0,1", "0,1 is not an order of the 3 tasks"),
        ("0,1,1", "is not an order of the 3 tasks"),
        ("0,1,3", "list each of 0..2 once"),
        ("0,1,2;0,1,2", "lists 0,1,2 twice"),
        ("a,b,c", "is not a list of task numbers"),
        ("0", "needs a number of random orders >= 1"),
        (";", "needs all, a number, or orders"),
    ],
)
def test_bad_orders_are_refused_in_one_line(text, message):
    with pytest.raises(LifelongError, match=message) as e:
        orders.parse_orders(text, 3)
    assert "\n" not in str(e.value)


def test_one_order_run_is_the_run_of_that_task_order():
    cfg = config.resolve(None, TINY)
    rec = orders.run_order(cfg, (2, 0, 1), 0)
    exp = Experiment({**cfg, "task_order": [2, 0, 1]})  # what `lifelong run --task-order 2,0,1` runs
    _, result = exp.execute(0, "finetune")
    assert rec["task_names"] == ["perm3", "perm1", "perm2"] == result.task_names
    np.testing.assert_array_equal(np.array(rec["R"]), result.R)
    assert rec["acc"] == pytest.approx(result.acc) and rec["bwt"] == pytest.approx(result.bwt)


def test_a_study_runs_each_method_order_and_seed_once():
    cfg = config.resolve(None, {**TINY, "tasks": 2, "method": ["finetune", "ewc"], "seeds": [0, 1]})
    study = orders.study(cfg, "all", workers=1)
    asked = {(m, o, s) for m in ("finetune", "ewc") for o in [(0, 1), (1, 0)] for s in (0, 1)}
    got = [(r["method"], tuple(r["order"]), r["seed"]) for r in study.records]
    assert len(got) == len(asked) and set(got) == asked
    with pytest.raises(LifelongError, match="chooses the orders itself"):
        orders.study({**cfg, "task_order": [1, 0]}, "all", workers=1)


def _record(order, acc, bwt, seed=0):
    R = [[0, 0], [1, 0], [1, 1]]
    return {"method": "m", "order": list(order), "seed": seed, "R": R, "acc": acc, "bwt": bwt, "fwt": 0.0}


def test_spread_best_worst_and_rank_are_read_off_the_records():
    records = [
        _record((0, 1, 2), 0.50, -0.30),
        _record((0, 1, 2), 0.70, -0.10, seed=1),  # mean over seeds: 0.60, -0.20
        _record((2, 1, 0), 0.80, -0.05),
        _record((1, 0, 2), 0.40, -0.40),
        {"method": "m", "order": [1, 2, 0], "seed": 0, "error": "diverged"},
    ]
    asked = [(0, 1, 2), (2, 1, 0), (1, 0, 2), (1, 2, 0)]
    study = OrderStudy("b", "domain", ["a", "b", "c"], ["m"], asked, [0, 1], records)
    assert study.scores("m", "acc") == pytest.approx({(0, 1, 2): 0.6, (2, 1, 0): 0.8, (1, 0, 2): 0.4})
    s = study.spread("m")["acc"]
    assert s["mean"] == pytest.approx(0.6) and s["sd"] == pytest.approx(0.2)
    assert (s["min"], s["max"], s["spread"]) == pytest.approx((0.4, 0.8, 0.4))
    assert study.best_worst("m") == ((2, 1, 0), (1, 0, 2))
    assert study.rank("m", (0, 1, 2)) == (2, 3) and study.rank("m", (2, 1, 0), "bwt") == (1, 3)
    assert len(study.errors()) == 1


def test_cli_order_with_two_workers_runs_the_orders_asked(tmp_path, capsys):
    args = ["order", *CLI_TINY, "--method", "finetune", "--orders", "0,1,2;2,1,0", "--workers", "2", "--report", "no"]
    code, out, err = cli([*args, "--store", str(tmp_path / "r.db")], capsys)
    assert code == 0, err
    assert "2 orders × 1 method(s) × seed 0 = 2 runs on 2 worker(s)" in out
    assert "ACC = mean_j R[T,j]" in out and "spread" in out
    # the worker processes ran exactly what this process runs for each order (same seed, same numbers)
    cfg = config.resolve(None, TINY)
    for order in [(0, 1, 2), (2, 1, 0)]:
        here = orders.run_order(cfg, order, 0)
        block = text.matrix(here["R"], here["task_names"], "")
        assert block.split("\n", 1)[1] in out  # its R matrix, as best or worst order
    assert "best order" in out and "worst order" in out


def test_cli_order_writes_its_report_and_never_replaces_one(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["order", *CLI_TINY, "--method", "finetune", "--orders", "2,0,1;0,1,2", "--workers", "1"]
    code, _, err = cli([*args, "--store", str(tmp_path / "r.db"), "--out", str(out)], capsys)
    assert code == 0, err
    data = json.loads((out / "order.json").read_text())
    assert [r["order"] for r in data["records"]] == [[2, 0, 1], [0, 1, 2]]
    for name in ("order.md", "order-distribution.png", "order-finetune-best-worst.png"):
        assert (out / name).is_file()
    before = (out / "order.md").read_bytes()
    code, _, err = cli([*args, "--store", str(tmp_path / "r.db"), "--out", str(out)], capsys)
    assert code == 2 and "already holds order.md" in err and err.count("\n") == 1
    assert (out / "order.md").read_bytes() == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--method", "magic"], "unknown method 'magic'"),
        (["--orders", "0,1,1"], "--orders: 0,1,1 is not an order of the 3 tasks"),
        (["--orders", "0,1,2;2,1"], "--orders: 2,1 is not an order"),
        (["--orders", "9"], "3 tasks have only 6 distinct orders"),
        (["--workers", "0"], "--workers must be a whole number >= 1"),
        (["--task-order", "2,1,0"], "give them with --orders"),
    ],
)
def test_cli_order_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    code, _, err = cli(["order", *CLI_TINY, *args, "--store", str(tmp_path / "r.db")], capsys)
    assert code == 2
    assert message in err and err.startswith("lifelong: error:") and err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_curriculum_is_ranked_against_the_other_orders(tmp_path, capsys):
    out = tmp_path / "cur"
    args = ["order", *CLI_TINY, "--method", "finetune", "--curriculum", "--orders", "3", "--workers", "1"]
    code, text, err = cli([*args, "--store", str(tmp_path / "r.db"), "--out", str(out)], capsys)
    assert code == 0, err
    data = json.loads((out / "order.json").read_text())
    proposed = data["curriculum"]
    assert data["orders"][0] == proposed and len(data["orders"]) == 4  # itself + 3 random others
    assert len({tuple(o) for o in data["orders"]}) == 4
    accs = {tuple(r["order"]): r["acc"] for r in data["records"]}
    rank = 1 + sum(a > accs[tuple(proposed)] for a in accs.values())
    assert f"curriculum {','.join(map(str, proposed))}" in text and f"finetune {rank} of 4 by ACC" in text
    assert "proposed curriculum" in text and (out / "affinity-matrices.png").is_file()


def test_cli_order_keeps_the_other_runs_when_some_diverge_and_exits_1(tmp_path, capsys):
    bad = "ewc:lam=1e6:step=explicit"  # diverges at lr 0.5 (the README's example of a failed run)
    args = ["order", *CLI_TINY, "--tasks", "2", "--method", f"finetune,{bad}", "--lr", "0.5", "--orders", "all"]
    code, out, err = cli([*args, "--workers", "1", "--report", "no", "--store", str(tmp_path / "r.db")], capsys)
    assert code == 1
    assert "finetune, best order" in out and f"{bad}: every run failed (training diverged" in out
    assert err.splitlines()[-1].startswith("lifelong: error: 2 of 4 runs failed")


def test_cli_order_json_is_the_whole_study(tmp_path, capsys):
    args = ["order", *CLI_TINY, "--method", "finetune", "--orders", "1,0,2", "--workers", "1", "--json"]
    code, out, err = cli([*args, "--report", "no", "--store", str(tmp_path / "r.db")], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["order_study"]["orders"] == [[1, 0, 2]] and data["affinity"] is None
    (record,) = data["order_study"]["records"]
    assert record["task_names"] == ["perm2", "perm1", "perm3"] and len(record["R"]) == 4

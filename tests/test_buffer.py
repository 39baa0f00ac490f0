"""The episodic memory: each selection policy against what it promises, extra fields, sampling, errors."""

import pytest
import torch
from scipy import stats

from lifelong.errors import LifelongError
from lifelong.methods.memory.buffer import EpisodicMemory, herding_order


def feed(memory, n, batch=32, task=0, classes=None):
    """Stream items 0..n-1 (x = [i, -i], y = class of i) in batches."""
    for start in range(0, n, batch):
        i = torch.arange(start, min(start + batch, n))
        y = i % 10 if classes is None else classes[i]
        memory.add(torch.stack([i.float(), -i.float()], 1), y, task)


def stored_ids(memory):
    return memory.items()["x"][:, 0].long()


def test_reservoir_keeps_every_item_with_equal_probability():
    # 1000 items through a capacity-100 memory, 300 seeds: each item is kept with probability 0.1.
    n, capacity, runs = 1000, 100, 300
    counts = torch.zeros(n)
    for seed in range(runs):
        memory = EpisodicMemory(capacity, "reservoir", seed=seed)
        feed(memory, n)
        ids = stored_ids(memory)
        assert len(ids) == capacity and len(ids.unique()) == capacity
        counts[ids] += 1
    # Per item: counts ~ Binomial(300, 0.1); chi-square over the 1000 items (a fixed seed, so no flakiness).
    expected = runs * capacity / n
    chi2 = float(((counts - expected) ** 2 / (expected * (1 - capacity / n))).sum())
    assert 1e-3 < stats.chi2.sf(chi2, n - 1) < 1 - 1e-3
    # By stream position (10 blocks of 100): early and late items are kept alike.
    blocks = counts.reshape(10, -1).sum(1)
    assert stats.chisquare(blocks.numpy()).pvalue > 1e-3


def test_reservoir_fills_in_order_then_stays_full():
    memory = EpisodicMemory(50, "reservoir")
    feed(memory, 40)
    assert len(memory) == 40 and stored_ids(memory).tolist() == list(range(40))
    feed(memory, 500)
    assert len(memory) == 50 and memory.seen == 540


def test_ring_keeps_the_last_items_of_each_task():
    memory = EpisodicMemory(7, "ring", per="task", n_tasks=3)
    assert memory.capacity == 21
    for t, n in enumerate([100, 5, 33]):
        feed(memory, n, batch=10, task=t)
    for t, n in enumerate([100, 5, 33]):
        kept = memory.items(task=t)
        assert sorted(kept["x"][:, 0].long().tolist()) == list(range(max(0, n - 7), n))
        assert (kept["task"] == t).all()
    # a batch larger than a task's slots keeps its last items
    big = EpisodicMemory(12, "ring", n_tasks=3)  # 12 in total: 4 per task
    big.add(torch.arange(10.0)[:, None], torch.zeros(10, dtype=torch.long), 1)
    assert sorted(big.items(task=1)["x"].flatten().tolist()) == [6.0, 7.0, 8.0, 9.0]
    assert len(big.items(task=0)["x"]) == 0


def test_class_balanced_gives_each_class_an_equal_share():
    memory = EpisodicMemory(60, "class-balanced", seed=1)
    for c in range(5):  # one new class per task, 200 items each
        memory.add(torch.randn(200, 2), torch.full((200,), c), c)
        counts = memory.summary()["per_class"]
        assert len(memory) == 60
        assert sorted(counts) == list(range(c + 1))
        assert max(counts.values()) - min(counts.values()) <= 1  # 60 / 5 classes, or within one of it
    assert set(memory.summary()["per_class"].values()) == {12}


def test_task_balanced_splits_the_memory_over_the_tasks_seen_each_a_uniform_sample():
    # Hsu et al.'s memory: 60 in all; after task k each of the k tasks keeps 60 / k of its items.
    counts = torch.zeros(3, 300)
    for seed in range(200):
        memory = EpisodicMemory(60, "task-balanced", n_tasks=3, seed=seed)
        for t, share in enumerate([60, 30, 20]):
            feed(memory, 300, task=t)
            per_task = memory.summary()["per_task"]
            assert len(memory) == 60 and per_task == {k: share for k in range(t + 1)}
        for t in range(3):
            counts[t, memory.items(task=t)["x"][:, 0].long()] += 1
    # Each task's 20 survivors are a uniform sample of its 300 items: kept alike by stream position
    # (6 blocks of 50), whether the task came first (shrunk twice) or last (reservoir within the task).
    for t in range(3):
        assert stats.chisquare(counts[t].reshape(6, -1).sum(1).numpy()).pvalue > 1e-3


def test_class_balanced_per_class_size():
    memory = EpisodicMemory(5, "class-balanced", per="class", n_classes=3)
    for c in range(3):
        memory.add(torch.randn(40, 2), torch.full((40,), c), 0)
    assert memory.capacity == 15 and memory.summary()["per_class"] == {0: 5, 1: 5, 2: 5}


def brute_force_herding(f, m):
    """iCaRL's Algorithm 4 written out with Python loops over plain floats."""
    rows = f.tolist()
    d, n = len(rows[0]), len(rows)
    mu = [sum(r[j] for r in rows) / n for j in range(d)]
    chosen, total = [], [0.0] * d
    for k in range(1, m + 1):
        best, best_dist = None, float("inf")
        for i in range(n):
            if i in chosen:
                continue
            dist = sum((mu[j] - (total[j] + rows[i][j]) / k) ** 2 for j in range(d))
            if dist < best_dist:
                best, best_dist = i, dist
        chosen.append(best)
        total = [total[j] + rows[best][j] for j in range(d)]
    return chosen


def test_herding_order_matches_a_brute_force_computation():
    g = torch.Generator().manual_seed(0)
    for n, d in [(30, 4), (50, 8)]:
        f = torch.randn(n, d, generator=g)
        assert herding_order(f, 12).tolist() == brute_force_herding(f, 12)
    assert sorted(herding_order(f).tolist()) == list(range(50))  # with no m: a full ordering


def test_herding_memory_keeps_and_reduces_in_herding_order():
    g = torch.Generator().manual_seed(0)
    memory = EpisodicMemory(12, "herding")
    x1, f1 = torch.arange(40.0)[:, None], torch.randn(40, 3, generator=g)
    y1 = torch.arange(40) % 2  # classes 0 and 1: 6 exemplars each
    memory.add(x1, y1, 0, features=f1)
    for c in (0, 1):
        rows = (y1 == c).nonzero().flatten()
        kept = memory.items()["x"][memory.items()["y"] == c].flatten()
        assert sorted(kept.tolist()) == sorted(x1[rows[herding_order(f1[rows], 6)]].flatten().tolist())
    memory.add(torch.arange(100.0, 120.0)[:, None], torch.full((20,), 2), 1, features=torch.randn(20, 3, generator=g))
    assert memory.summary()["per_class"] == {0: 4, 1: 4, 2: 4}  # 12 / 3 classes
    rows = (y1 == 0).nonzero().flatten()
    first4 = x1[rows[herding_order(f1[rows], 4)]].flatten().tolist()
    assert sorted(memory.items()["x"][memory.items()["y"] == 0].flatten().tolist()) == sorted(first4)


def test_extra_fields_stay_aligned_with_x_after_evictions():
    for policy, kw in [("reservoir", {}), ("ring", {"n_tasks": 4}), ("class-balanced", {})]:
        memory = EpisodicMemory(40, policy, **kw)
        for t in range(4):
            i = torch.arange(300 * t, 300 * (t + 1))
            for chunk in i.split(32):
                x = chunk.float()[:, None].expand(-1, 5)
                memory.add(x, chunk % 7, t, logits=chunk.double()[:, None] * 2, idx=chunk)
        s = memory.items()
        assert len(s["x"]) == 40
        assert torch.equal(s["x"][:, 0].long(), s["idx"]) and torch.equal(s["logits"][:, 0], s["idx"].double() * 2)
        assert torch.equal(s["y"], s["idx"] % 7) and torch.equal(s["task"], s["idx"] // 300)


def test_sample_only_returns_the_tasks_asked_for():
    memory = EpisodicMemory(100, "reservoir")
    for t in range(5):
        feed(memory, 60, task=t)
    g = torch.Generator().manual_seed(0)
    out = memory.sample(500, g, tasks=[1, 3])
    assert len(out["x"]) == 500 and set(out["task"].tolist()) == {1, 3}
    assert set(memory.sample(500, g)["task"].tolist()) == set(range(5))
    assert len(memory.sample(10, g, tasks=[9])["x"]) == 0
    two = memory.items(task=2)
    assert (two["task"] == 2).all() and len(two["x"]) == memory.summary()["per_task"][2] > 0


def test_the_fields_cannot_change():
    memory = EpisodicMemory(10)
    memory.add(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), 0, logits=torch.randn(4, 3))
    with pytest.raises(LifelongError, match="same fields"):
        memory.add(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), 0)


def test_nbytes_and_summary():
    memory = EpisodicMemory(30, "reservoir")
    memory.add(torch.randn(10, 784), torch.zeros(10, dtype=torch.long), 0, logits=torch.randn(10, 10))
    assert memory.nbytes == 30 * (784 * 4 + 8 + 8 + 10 * 4) == sum(v.nbytes for v in memory.fields.values())
    summary = memory.summary()
    assert summary["samples"] == 10 and summary["bytes"] == memory.nbytes and summary["per_task"] == {0: 10}


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((-5,), {}, "memory_size must be a whole number >= 1"),
        ((10, "fifo"), {}, "unknown memory_policy 'fifo'"),
        ((10, "ring"), {}, "needs the number of tasks"),
        ((10, "reservoir"), {"per": "task"}, "memory_per must be total or class"),
    ],
)
def test_bad_settings_are_one_line_errors(args, kwargs, message):
    with pytest.raises(LifelongError, match=message) as err:
        EpisodicMemory(*args, **kwargs)
    assert "\n" not in str(err.value)


def test_a_memory_smaller_than_the_classes_is_an_error():
    memory = EpisodicMemory(3, "class-balanced")
    memory.add(torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]), 0)
    with pytest.raises(LifelongError, match="cannot keep one of each of the 4 classes.*memory_size"):
        memory.add(torch.randn(2, 2), torch.tensor([3, 3]), 1)
    tasks = EpisodicMemory(2, "task-balanced", n_tasks=3)
    feed(tasks, 10, task=0)
    feed(tasks, 10, task=1)
    with pytest.raises(LifelongError, match="cannot keep one of each of the 3 tasks.*memory_size"):
        feed(tasks, 10, task=2)
    herding = EpisodicMemory(3, "herding")
    with pytest.raises(LifelongError, match="4 classes"):
        herding.add(torch.randn(8, 2), torch.arange(8) % 4, 0, features=torch.randn(8, 2))
    with pytest.raises(LifelongError, match="features"):
        herding.add(torch.randn(8, 2), torch.arange(8) % 2, 0)


def test_reservoir_same_seed_same_memory():
    a, b = (EpisodicMemory(20, "reservoir", seed=3) for _ in range(2))
    for m in (a, b):
        feed(m, 200)
    assert torch.equal(stored_ids(a), stored_ids(b))
    assert stored_ids(a).tolist() != list(range(20))  # it did replace items

"""The episodic memory every memory method shares (experience replay, GEM, A-GEM, iCaRL).

Tensors are preallocated to the capacity on the first insert (from the batch's shapes, dtypes and
device) and filled in place: no dataset is concatenated, so an insert and a sample cost the same
whether one task or twenty are stored. Besides ``x`` the memory always keeps ``y`` and ``task`` and
any extra field given to ``add`` (logits for dark experience replay, say), aligned slot by slot.

Selection policies (which items stay when the memory is full):

- ``reservoir``       uniform over the whole stream (Vitter 1985; in continual learning: Chaudhry et al.
                      2019, "On tiny episodic memories in continual learning", arXiv 1902.10486).
- ``ring``            a fixed number of slots per task, first in first out within them (GEM's memory,
                      Lopez-Paz & Ranzato 2017; Chaudhry et al. 2019).
- ``class-balanced``  the capacity is split equally over the classes seen so far.
- ``task-balanced``   the capacity is split equally over the tasks seen so far, a uniform sample of each
                      (Hsu et al. 2018's rehearsal and GEM memory, arXiv 1810.12488).
- ``herding``         iCaRL's exemplars (Rebuffi et al. 2017, arXiv 1611.07725), chosen from features.

``size`` is the total capacity (``per="total"``), or the slots per task or per class.
"""

from __future__ import annotations

import random

import torch

from lifelong.errors import LifelongError, option

POLICIES = ("reservoir", "ring", "class-balanced", "task-balanced", "herding")
PER = ("total", "task", "class")


def herding_order(features: torch.Tensor, m: int | None = None) -> torch.Tensor:
    """iCaRL's exemplar selection (Rebuffi et al. 2017, Algorithm 4), the first ``m`` indices in order.

    Step k picks the item whose feature, added to the k-1 already picked, brings the running mean
    closest to the class mean, so every prefix is a good small exemplar set and ``reduce`` (Algorithm 5)
    can keep just the first m. Picks are without replacement (the paper's argmin may repeat an item).
    The caller normalises the features as iCaRL does (L2, per item).
    """
    f = features.reshape(len(features), -1).double()
    m = len(f) if m is None else min(m, len(f))
    mean, total = f.mean(0), torch.zeros_like(f[0])
    taken = torch.zeros(len(f), dtype=torch.bool, device=f.device)
    squared = (f * f).sum(1)
    order = []
    for k in range(1, m + 1):
        # ‖mean − (total + f)/k‖² = ‖a‖² − 2⟨a, f⟩/k + ‖f‖²/k² with a = mean − total/k: one matrix-vector
        # product per pick instead of an N × D temporary (66 s → well under a second for 6000 MNIST items).
        a = mean - total / k
        dist = (squared / k**2 - 2 * (f @ a) / k + (a @ a)).masked_fill(taken, float("inf"))
        i = int(dist.argmin())
        order.append(i)
        taken[i] = True
        total += f[i]
    return torch.tensor(order, dtype=torch.long)


def one_per_task(method: str, size: int, n_tasks: int) -> None:
    """Refuse a task-balanced memory without a slot for each of the stream's tasks, before any training."""
    if size < n_tasks:
        raise LifelongError(
            f"{method}: a task-balanced memory of {size} examples cannot keep one of each of the stream's "
            f"{n_tasks} tasks; use {option('memory_size')} {n_tasks} or more"
        )


class EpisodicMemory:
    """A fixed-capacity store of past examples with one selection policy (see the module docstring)."""

    def __init__(
        self,
        size: int,
        policy: str = "reservoir",
        *,
        per: str = "total",
        n_tasks: int | None = None,
        n_classes: int | None = None,
        seed: int = 0,
    ):
        if policy not in POLICIES:
            raise LifelongError(f"unknown {option('memory_policy')} {policy!r}; choose one of: {', '.join(POLICIES)}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise LifelongError(f"{option('memory_size')} must be a whole number >= 1 (got {size!r})")
        by_task = policy in ("ring", "task-balanced")
        if per not in PER or (per == "class" and by_task) or (per == "task" and policy != "ring"):
            allowed = "total or task" if policy == "ring" else "total" if by_task else "total or class"
            raise LifelongError(f"{option('memory_per')} must be {allowed} for the {policy} policy (got {per!r})")
        need = {
            "task": n_tasks if policy == "ring" or per == "task" else 1,
            "class": n_classes if per == "class" else 1,
        }
        for what, n in need.items():
            if n is None or n < 1:
                raise LifelongError(f"the {policy} memory needs the number of {what}s (n_{what}s) to size itself")
        self.policy, self.size, self.per = policy, size, per
        self.capacity = size * (n_tasks if per == "task" else n_classes if per == "class" else 1)
        if policy == "ring":
            self.per_task = size if per == "task" else size // n_tasks
            if self.per_task < 1:
                raise LifelongError(f"{option('memory_size')} {size} leaves no slot for each of {n_tasks} tasks")
        self.n_tasks, self.seen = n_tasks, 0
        self.fields: dict[str, torch.Tensor] = {}
        self._gen = torch.Generator().manual_seed(seed)  # CPU: decides slots; the data may live elsewhere
        self._rng = random.Random(seed)  # per-item decisions of the class-balanced policy
        self._filled = torch.zeros(self.capacity, dtype=torch.bool)
        self._occ = torch.empty(self.capacity, dtype=torch.long)  # occupied slots, first len(self) entries
        self._n = 0
        self._task_seen: dict[int, int] = {}  # ring: items of each task seen so far
        self._seen_of: dict[int, int] = {}  # class- and task-balanced: items of each class (task) seen so far
        self._slots: dict[int, list[int]] = {}  # class-/task-balanced and herding: each class's (task's) slots

    # ---- inserting --------------------------------------------------------------------------------

    def add(self, x: torch.Tensor, y: torch.Tensor, task_id: int | torch.Tensor, **extra) -> None:
        """Offer a batch to the memory; the policy decides which items it keeps and where.

        ``herding`` takes a whole task's data at once and needs ``features=`` (not stored)."""
        features = extra.pop("features", None)
        task = torch.as_tensor(task_id, dtype=torch.long, device=x.device).expand(len(x))
        batch = {"x": x, "y": y, "task": task, **extra}
        if not self.fields:
            self.fields = {
                k: torch.empty((self.capacity, *v.shape[1:]), dtype=v.dtype, device=v.device) for k, v in batch.items()
            }
        elif batch.keys() != self.fields.keys():
            raise LifelongError(
                f"the memory stores {sorted(self.fields)} but got {sorted(batch)}: give add() the same fields each time"
            )
        if self.policy == "herding":
            if features is None:
                raise LifelongError("the herding memory needs the items' features: add(..., features=...)")
            return self._add_herding(batch, y, features)
        slots, rows = getattr(self, "_" + self.policy.replace("-", "_"))(y, task)
        self.seen += len(x)
        self._write(batch, slots, rows)

    def _reservoir(self, y, task):
        """Vitter's algorithm R (1985): the N-th item of the stream replaces a random slot with probability
        capacity / N, so after N items every one of them is stored with probability capacity / N."""
        n = self.seen + 1 + torch.arange(len(y), dtype=torch.float64)  # stream position of each item
        draw = (torch.rand(len(y), generator=self._gen, dtype=torch.float64) * n).long()
        slots = torch.where(n <= self.capacity, n.long() - 1, draw)
        keep = slots < self.capacity
        slots, rows = slots[keep], torch.arange(len(y))[keep]
        # Two items of one batch may draw the same slot: the later one wins, as one at a time would.
        key, _ = (slots * len(y) + rows).sort()
        last = torch.ones_like(key, dtype=torch.bool)
        last[:-1] = key[1:] // len(y) != key[:-1] // len(y)
        return key[last] // len(y), key[last] % len(y)

    def _ring(self, y, task):
        """GEM's memory (Lopez-Paz & Ranzato 2017): each task owns ``per_task`` slots and keeps its last
        ``per_task`` items, first in first out."""
        slots, rows = [], []
        for t in task.unique().tolist():
            if not 0 <= t < self.n_tasks:
                raise LifelongError(f"task id {t} is outside the ring memory's {self.n_tasks} tasks (n_tasks)")
            r = (task == t).nonzero().flatten().cpu()[-self.per_task :]
            start = self._task_seen.get(t, 0) + int((task == t).sum()) - len(r)
            self._task_seen[t] = start + len(r)
            slots.append(t * self.per_task + (start + torch.arange(len(r))) % self.per_task)
            rows.append(r)
        return torch.cat(slots), torch.cat(rows)

    def _class_balanced(self, y, task):
        """The capacity is split equally over the classes seen so far: a new class takes its slots from
        the largest class, and a class at its share replaces its own items by reservoir sampling within
        the class (class-balanced reservoir, Chrysakis & Moens 2020, "Online continual learning from
        imbalanced data"). Per class (``per="class"``) every class keeps up to ``size`` items."""
        return self._balanced(y)

    def _task_balanced(self, y, task):
        """The same with tasks for classes: each task seen so far keeps capacity / tasks items, a uniform
        sample of its data (Hsu et al. 2018 reduce each task's random sample to its share)."""
        return self._balanced(task)

    def _balanced(self, keys):
        free = (~self._filled).nonzero().flatten().tolist()[::-1]
        chosen: dict[int, int] = {}  # slot -> batch row; a later row overwrites an earlier one
        for row, c in enumerate(keys.tolist()):
            slots = self._slots.setdefault(c, [])
            self._seen_of[c] = self._seen_of.get(c, 0) + 1
            if len(self._slots) > self.capacity // (self.size if self.per == "class" else 1):
                raise self._too_small(len(self._slots), "tasks" if self.policy == "task-balanced" else "classes")
            largest = None if free or self.per == "class" else max(self._slots.values(), key=len)
            if free and (self.per != "class" or len(slots) < self.size):
                slot = free.pop()
            elif largest is not None and len(slots) < len(largest):
                victim = largest
                i = self._rng.randrange(len(victim))
                slot, victim[i] = victim[i], victim[-1]
                victim.pop()
            else:
                i = self._rng.randrange(self._seen_of[c])
                if i < len(slots):
                    chosen[slots[i]] = row
                continue
            slots.append(slot)
            chosen[slot] = row
        return torch.tensor(list(chosen), dtype=torch.long), torch.tensor(list(chosen.values()), dtype=torch.long)

    def _add_herding(self, batch, y, features):
        """iCaRL (Rebuffi et al. 2017): each new class gets m exemplars in herding order (Algorithm 4),
        after the stored classes are reduced to their first m (Algorithm 5); m = capacity / classes seen,
        or ``size`` per class. A class offered again has its exemplars chosen anew from the new data."""
        classes = y.unique().tolist()
        k = len(set(self._slots) | set(classes))
        m = self.size if self.per == "class" else self.capacity // k
        if m < 1 or k * m > self.capacity:
            raise self._too_small(k)
        for c in classes:  # a class offered again gives up its old exemplars
            self._filled[torch.tensor(self._slots.pop(c, []), dtype=torch.long)] = False
        self.reduce(m)
        free = (~self._filled).nonzero().flatten()
        for c in classes:
            rows = (y == c).nonzero().flatten()
            rows = rows[herding_order(features[rows], m).to(rows.device)].cpu()
            slots, free = free[: len(rows)], free[len(rows) :]
            self._slots[c] = slots.tolist()
            self._write(batch, slots, rows)
        self.seen += len(y)

    def _too_small(self, k: int, what: str = "classes") -> LifelongError:
        return LifelongError(
            f"a memory of {self.capacity} items cannot keep one of each of the {k} {what} seen; "
            f"raise {option('memory_size')} or use another {option('memory_policy')}"
        )

    def reduce(self, m: int) -> None:
        """Keep the first ``m`` exemplars of every class (iCaRL's Algorithm 5: herding order is priority)."""
        for c, slots in self._slots.items():
            self._filled[torch.tensor(slots[m:], dtype=torch.long)] = False
            self._slots[c] = slots[:m]
        self._occ[: int(self._filled.sum())] = self._filled.nonzero().flatten()
        self._n = int(self._filled.sum())

    def _write(self, batch, slots, rows):
        new = slots[~self._filled[slots]]
        self._filled[new] = True
        self._occ[self._n : self._n + len(new)] = new
        self._n += len(new)
        dev_slots, dev_rows = slots.to(self._device), rows.to(self._device)
        for k, v in batch.items():
            self.fields[k][dev_slots] = v[dev_rows]

    # ---- reading ----------------------------------------------------------------------------------

    @property
    def _device(self):
        return self.fields["x"].device

    def __len__(self) -> int:
        return self._n

    def sample(self, n: int, generator: torch.Generator | None = None, tasks=None) -> dict[str, torch.Tensor]:
        """``n`` stored items drawn uniformly with replacement (only of ``tasks`` when given)."""
        pool = self._occ[: self._n]
        if tasks is not None:
            stored = self.fields["task"][pool.to(self._device)].cpu()
            pool = pool[torch.isin(stored, torch.as_tensor(tasks, dtype=torch.long))]
        if len(pool) == 0:
            return {k: v[:0] for k, v in self.fields.items()}
        idx = pool[torch.randint(len(pool), (n,), generator=generator or self._gen)].to(self._device)
        return {k: v.index_select(0, idx) for k, v in self.fields.items()}  # ~3x faster than v[idx] on CPU

    def items(self, task: int | None = None) -> dict[str, torch.Tensor]:
        """Everything stored (of one task when given); a ring memory returns views of the task's slots."""
        if not self.fields:
            return {}
        if self.policy == "ring" and task is not None:
            stored = min(self._task_seen.get(task, 0), self.per_task)
            return {k: v[task * self.per_task : task * self.per_task + stored] for k, v in self.fields.items()}
        idx = self._occ[: self._n].sort().values.to(self._device)
        if task is not None:
            idx = idx[self.fields["task"][idx] == task]
        return {k: v[idx] for k, v in self.fields.items()}

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated tensors (the memory's real footprint, full or not)."""
        return sum(v.numel() * v.element_size() for v in self.fields.values())

    def summary(self) -> dict:
        """What the run record keeps: policy, capacity, samples and bytes, counts per task and class."""
        stored = self.items()
        return {
            "policy": self.policy,
            "capacity": self.capacity,
            "samples": len(self),
            "bytes": self.nbytes,
            "per_task": _counts(stored["task"]) if stored else {},
            "per_class": _counts(stored["y"]) if stored else {},
        }


def _counts(values: torch.Tensor) -> dict[int, int]:
    return {int(k): int(n) for k, n in zip(*values.unique(return_counts=True), strict=True)}

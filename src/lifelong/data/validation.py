"""A validation split carved from the training data, for choosing hyper-parameters without the test set."""

from __future__ import annotations

import dataclasses

import torch

from lifelong.data.task import Stream
from lifelong.errors import LifelongError, option


def holdout(stream: Stream, fraction: float = 0.1, seed: int = 0) -> Stream:
    """The same stream with each task's test set replaced by a held-out ``fraction`` of its training
    set, and its training set reduced to the rest. The real test sets are not touched or seen."""
    if not 0 < fraction < 1:
        raise LifelongError(f"{option('val_fraction')} must be between 0 and 1 (got {fraction})")
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for task in stream.tasks:
        n = len(task.train_y)
        n_val = round(n * fraction)
        if n_val < 1 or n_val >= n:
            raise LifelongError(f"task {task.name} has {n} training samples: too few to hold out {fraction:.0%}")
        order = torch.randperm(n, generator=g)
        val, train = order[:n_val], order[n_val:]
        tasks.append(
            dataclasses.replace(
                task,
                train_x=task.train_x[train],
                train_y=task.train_y[train],
                test_x=task.train_x[val],
                test_y=task.train_y[val],
            )
        )
    return dataclasses.replace(stream, name=f"{stream.name} (validation)", tasks=tasks)

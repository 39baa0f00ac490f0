"""How a remembered example is scored: on its own task's output units, as it was trained (its head in
task-IL, every unit seen so far in class-IL, all units in domain-IL). Shared by every memory method."""

from __future__ import annotations

import torch

from lifelong.data.task import Stream, Task


def own_units(stream: Stream, task: Task) -> torch.Tensor | None:
    """Additive logit masks while ``task`` is learned, one row per task (index a row by an example's task
    id), on the data's device; None in domain-IL, where every unit is allowed."""
    masks = stream.train_masks([task.id])
    return None if masks is None else masks.to(task.train_x.device)

"""Weight ownership: which task each weight of a fixed network belongs to (PackNet, CPG).

Methods that pack several tasks into one network (Mallya & Lazebnik 2018, arXiv 1711.05769; Hung et al.
2019, arXiv 1910.06562) give every weight one owner: the task that trained it and keeps it frozen, or
nobody yet. Here every entry of every Linear layer's weight *and* bias has an integer owner,

    0 = free,  k + 1 = owned by task k (task ids start at 0; see ``owner_id``),

held in int16 tensors of the parameter's shape (``Ownership.weight[i]``, ``Ownership.bias[i]`` for the MLP's
i-th Linear layer, the output layer last). One integer per entry makes "one weight, one task" hold by
construction, and the masks the papers store per task are comparisons on it: task k's network is the
weights owned by tasks 0..k (PackNet's nested masks).

The API, for the MLP (``lifelong.models.MLP``: Linear layers with ReLU between, the head last):

- ``linears(model)``: its Linear layers in order.
- ``Ownership(model)``: every entry free. ``claim_free(task_id, layers)`` gives the free entries of those
  layers to a task; ``claim_units(task_id, layer, units)`` gives it whole output units (rows and their
  biases: a task-IL head's units); ``release(model, layer, where)`` frees weight entries and zeroes them.
- ``usable(task_id, training)``: boolean (weight, bias) masks of the entries task k computes with: those of
  tasks 0..k, plus the free ones while it trains. ``forward(model, x, masks)`` runs the MLP with them.
- ``trainable(task_id)``: the entries task k may change (its own). ``Freezer(model, masks)`` keeps every
  other entry exactly where it was: ``zero_grads(model)`` after backward, ``restore(model)`` after the
  optimizer step (weight decay, momentum and Adam move an entry whose gradient is zero).
- ``counts(task_id)``: weights a task owns per layer; ``free_fraction(layers)``; ``nbytes`` (a property).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Masks = list[tuple[torch.Tensor, torch.Tensor]]  # per Linear layer: (weight mask, bias mask)


def linears(model: nn.Module) -> list[nn.Linear]:
    """The MLP's Linear layers in order: the hidden ones, then the output layer."""
    return [m for m in model.body if isinstance(m, nn.Linear)] + [model.head]


def owner_id(task_id: int) -> int:
    """The owner value of task ``task_id`` (0 means free)."""
    return task_id + 1


def forward(model: nn.Module, x: torch.Tensor, masks: Masks) -> torch.Tensor:
    """The MLP's logits computed with only the masked-in weights and biases (the others count as zero)."""
    lins, h = linears(model), x.flatten(1)
    for i, (lin, (wm, bm)) in enumerate(zip(lins, masks, strict=True)):
        h = F.linear(h, lin.weight * wm, lin.bias * bm)
        if i < len(lins) - 1:
            h = F.relu(h)
    return h


class Ownership:
    """The owner of every weight and bias entry of an MLP's Linear layers (0 free, k + 1 task k)."""

    def __init__(self, model: nn.Module):
        lins = linears(model)
        self.weight = [torch.zeros(lin.weight.shape, dtype=torch.int16, device=lin.weight.device) for lin in lins]
        self.bias = [torch.zeros(lin.bias.shape, dtype=torch.int16, device=lin.bias.device) for lin in lins]

    def __len__(self) -> int:
        return len(self.weight)

    # ---- giving and taking back ------------------------------------------------------------------

    @torch.no_grad()
    def claim_free(self, task_id: int, layers) -> None:
        """Every free weight and bias entry of ``layers`` (indices) becomes task ``task_id``'s."""
        for i in layers:
            for owner in (self.weight[i], self.bias[i]):
                owner[owner == 0] = owner_id(task_id)

    @torch.no_grad()
    def claim_units(self, task_id: int, layer: int, units) -> None:
        """Output units ``units`` of ``layer`` (their weight rows and biases) become the task's. They must be
        free or the task's already: a unit never changes hands."""
        units = torch.as_tensor(list(units), dtype=torch.long, device=self.weight[layer].device)
        me = owner_id(task_id)
        for owner in (self.weight[layer][units], self.bias[layer][units]):
            if ((owner != 0) & (owner != me)).any():
                raise ValueError(f"units {units.tolist()} of layer {layer} are owned by another task")
        self.weight[layer][units] = me
        self.bias[layer][units] = me

    @torch.no_grad()
    def release(self, model: nn.Module, layer: int, where: torch.Tensor) -> None:
        """Weight entries ``where`` (a boolean mask) of ``layer`` become free, and zero."""
        self.weight[layer][where] = 0
        linears(model)[layer].weight[where] = 0.0

    # ---- masks -------------------------------------------------------------------------------

    def usable(self, task_id: int, training: bool = False) -> Masks:
        """The entries task ``task_id`` computes with: owned by tasks 0..task_id, and the free ones while it
        trains (the free ones are zero once released, so including them only matters before they are)."""
        top = owner_id(task_id)

        def ok(owner):
            mask = (owner >= 1) & (owner <= top)
            return mask | (owner == 0) if training else mask

        return [(ok(w), ok(b)) for w, b in zip(self.weight, self.bias, strict=True)]

    def trainable(self, task_id: int) -> Masks:
        """The entries task ``task_id`` may change: its own; every other entry is frozen."""
        me = owner_id(task_id)
        return [(w == me, b == me) for w, b in zip(self.weight, self.bias, strict=True)]

    # ---- accounting ------------------------------------------------------------------------------

    def counts(self, task_id: int) -> list[int]:
        """Weights (not biases) task ``task_id`` owns in each layer."""
        return [int((w == owner_id(task_id)).sum()) for w in self.weight]

    def free_fraction(self, layers) -> float:
        """The fraction of the weights (not biases) of ``layers`` that no task owns."""
        free = sum(int((self.weight[i] == 0).sum()) for i in layers)
        return free / max(sum(self.weight[i].numel() for i in layers), 1)

    @property
    def nbytes(self) -> int:
        """Bytes of the owner tensors (the per-task masks are comparisons on them: nothing else is stored).
        An int attribute, so that capacity accounting (methods/capacity.py) counts an Ownership by itself."""
        return sum(t.numel() * t.element_size() for t in (*self.weight, *self.bias))


class Freezer:
    """Holds every entry outside ``trainable`` (per layer: (weight mask, bias mask)) exactly at its value
    when the Freezer was made. A zero gradient alone is not enough: weight decay, momentum and Adam's
    moments move an entry whose gradient is zero, so the values are also put back after each step."""

    def __init__(self, model: nn.Module, trainable: Masks):
        self.frozen = [(~wm, ~bm) for wm, bm in trainable]
        self.values = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in linears(model)]

    @torch.no_grad()
    def zero_grads(self, model: nn.Module) -> None:
        """After backward: no gradient reaches a frozen entry."""
        for lin, (fw, fb) in zip(linears(model), self.frozen, strict=True):
            for p, frozen in ((lin.weight, fw), (lin.bias, fb)):
                if p.grad is not None:
                    p.grad.masked_fill_(frozen, 0.0)

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """After the optimizer step: frozen entries back to their values, bit for bit."""
        for lin, (fw, fb), (w0, b0) in zip(linears(model), self.frozen, self.values, strict=True):
            lin.weight.copy_(torch.where(fw, w0, lin.weight))
            lin.bias.copy_(torch.where(fb, b0, lin.bias))

"""Progressive neural networks (Rusu, Rabinowitz, Desjardins, Soyer, Kirkpatrick, Kavukcuoglu, Pascanu &
Hadsell 2016, "Progressive Neural Networks", arXiv 1606.04671): a new column per task, lateral
connections from the frozen earlier columns.

Task k gets a new column, a network of the MLP's shape, and every earlier column is frozen. Layer 1 of
each column reads the input; every later layer i (the later hidden layers and the output layer) also reads
layer i−1 of all earlier columns through the paper's non-linear lateral connection, the *adapter*
(section 2, "Adapters", equation 2):

    h_i^(k) = σ(W_i^(k) h_{i−1}^(k) + U_i^(k) σ(V_i^(k) α_i^(k) h_{i−1}^(<k)))

where h_{i−1}^(<k) concatenates layer i−1 of columns 1..k−1, α_i^(k) is a learned scalar that adjusts
for the different scales of the inputs ("initialized by a random small value"), V_i^(k) projects the
concatenation onto a space of one column's width of layer i−1 (n_{i−1}: the paper's choice, which keeps
the lateral parameters in the order of one column's as k grows) and U_i^(k) maps it to layer i. σ is the
MLP's ReLU; the output layer's sum has none (logits). Task k is answered by column k, so no later column
can change an earlier task's outputs: they are bit-identical after later tasks and BWT is exactly 0.

Parameters after T tasks: T columns of the MLP's weights and biases, plus for column k (k−1 earlier
columns) and each layer i ≥ 2 one α, V of (k−1)·n_{i−1} × w_i and U of w_i × n_i (w_i = n_{i−1}, or
``adapter_width``): the model grows linearly per task and quadratically in all. The cost of a training
step grows with the number of columns too: column k's forward pass runs the k−1 frozen columns (with
their own adapters) to read their activations, and its adapters read all of them.

Choices where the paper is silent, and deviations:

- The MLP only (lifelong.models.MLP; the paper also has convolutional columns): each column has the
  MLP's hidden sizes and one output layer for all the stream's units, of which task k trains its own
  (the library's task-IL masks the logits: the paper's per-column task head, with dead rows counted).
- Column 1 starts from the given MLP's weights; later columns from PyTorch's default initialisation,
  seeded by the task (fit()'s seed), and α uniform in [0, ``alpha_init``) (the paper gives no size).
- Biases: the paper's equations have none; W keeps the MLP's bias, V and U have none. One α per adapter.
- A task not learned yet has no column: it is answered by the column it would get if it came next (the
  same seeded initialisation, adapters from the columns learned so far), which is not part of the model
  and not counted. So R[j−1][j] is exactly task j's starting point; R[0] uses a column with no adapters.
- Freezing is exact: earlier columns and their adapters have requires_grad False, so they get no gradient
  and no optimizer (weight decay, momentum, Adam) moves them. With the optimizer kept across tasks, each
  new column joins it as a parameter group.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import LifelongError, option
from lifelong.methods.base import Method, cross_entropy, param
from lifelong.methods.resources import TASK_IL_ONLY
from lifelong.models import MLP


class Adapter(nn.Module):
    """The non-linear lateral connection into one layer: U σ(V α h^(<k)) (no biases, as in equation 2)."""

    def __init__(self, n_in: int, width: int, n_out: int, alpha_init: float):
        super().__init__()
        self.alpha = nn.Parameter(torch.empty(()).uniform_(0.0, alpha_init))
        self.V = nn.Linear(n_in, width, bias=False)
        self.U = nn.Linear(width, n_out, bias=False)

    def forward(self, earlier: torch.Tensor) -> torch.Tensor:
        return self.U(F.relu(self.V(self.alpha * earlier)))


class Column(nn.Module):
    """One task's network: the MLP's layers, and an adapter into every layer after the first from
    ``n_earlier`` earlier columns (none for the first column)."""

    def __init__(self, sizes: list[int], n_earlier: int, widths: list[int], alpha_init: float):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.adapters = nn.ModuleList()
        if n_earlier:
            for i in range(1, len(self.layers)):
                self.adapters.append(Adapter(n_earlier * sizes[i], widths[i - 1], sizes[i + 1], alpha_init))

    def layer(self, i: int, h: torch.Tensor, earlier: list[torch.Tensor]) -> torch.Tensor:
        """Layer i's sum before σ: W h + b, plus the adapter on the earlier columns' layer i−1."""
        z = self.layers[i](h)
        if i > 0 and earlier:
            z = z + self.adapters[i - 1](torch.cat(earlier, dim=1))
        return z


def progressive(x: torch.Tensor, columns: list[Column]) -> torch.Tensor:
    """The last column's logits. The earlier columns run alongside it, layer by layer, to feed its adapters;
    each of them reads only the columns before it, so its activations do not depend on later ones."""
    h = [x.flatten(1)] * len(columns)
    last = len(columns[-1].layers) - 1
    for i in range(last):
        h = [F.relu(col.layer(i, h[c], h[:c])) for c, col in enumerate(columns)]
    return columns[-1].layer(last, h[-1], h[:-1])


class ProgressiveNet(nn.Module):
    """The columns learned so far (and the one being learned); ``net(x, c)`` gives column c's logits."""

    def __init__(self):
        super().__init__()
        self.columns = nn.ModuleList()

    def forward(self, x: torch.Tensor, column: int = -1) -> torch.Tensor:
        if not len(self.columns):
            raise LifelongError("the progressive network has no column yet; train a task first")
        c = range(len(self.columns))[column]
        return progressive(x, list(self.columns[: c + 1]))


@dataclasses.dataclass
class PNN(Method):
    """Progressive neural networks (MLP only): a new column per task, lateral adapters from the frozen earlier ones."""

    name: ClassVar[str] = "pnn"
    scenarios: ClassVar[tuple[str, ...]] = ("task",)
    scenarios_why: ClassVar[str] = TASK_IL_ONLY
    scratch: ClassVar[tuple[str, ...]] = ("_like",)  # a reference to the caller's head: device and dtype only

    adapter_width: int | None = param(
        None, "width each adapter's V projects onto (unset: one column's width of the layer below, the paper's)"
    )
    alpha_init: float = param(0.1, "> 0: each adapter's α starts uniform in [0, this) (paper: a small random value)")

    def __post_init__(self):
        super().__post_init__()
        if self.adapter_width is not None and self.adapter_width < 1:
            raise LifelongError(f"pnn: {option('adapter_width')} must be >= 1, or unset (got {self.adapter_width})")
        if not 0 < self.alpha_init < math.inf:
            raise LifelongError(f"pnn: {option('alpha_init')} must be a finite number > 0 (got {self.alpha_init!r})")

    def prepare(self, model, stream):
        if not isinstance(model, MLP):
            raise LifelongError(f"pnn works on lifelong.models.MLP only (got {type(model).__name__}); use an MLP")
        linears = [m for m in model.body if isinstance(m, nn.Linear)] + [model.head]
        self._sizes = [linears[0].in_features, *model.hidden, model.head.out_features]
        self._widths = [self.adapter_width or n for n in self._sizes[1:-1]]
        self._like = model.head.weight  # the device and dtype of the columns
        self._initial = [copy.deepcopy(lin.state_dict()) for lin in linears]  # column 1 starts from the MLP
        self._seed = int(torch.randint(2**31 - 1, ()))  # fit() seeded the global RNG
        self.column_of: dict[int, int] = {}  # task id -> its column
        self._fresh: dict[int, Column] = {}  # columns of tasks not learned yet, for evaluation only
        self._optimizer = None
        self.net = ProgressiveNet()  # the model fit() trains (the given MLP is only read)
        return self.net

    def _new_column(self, task_id: int, n_earlier: int) -> Column:
        """The column task ``task_id`` starts from after ``n_earlier`` columns: seeded, so the same every time,
        and drawn from its own RNG, so it leaves fit()'s random stream alone."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._seed + task_id)
            column = Column(self._sizes, n_earlier, self._widths, self.alpha_init).to(self._like)
        if task_id == 0 and n_earlier == 0:
            for lin, state in zip(column.layers, self._initial, strict=True):
                lin.load_state_dict(state)
        return column

    def before_task(self, task, model) -> None:
        if task.id in self.column_of:
            return
        for col in model.columns:  # exact freezing: no gradient, so no optimizer step moves them
            col.requires_grad_(False)
        model.columns.append(self._new_column(task.id, len(model.columns)))
        self._initial = None  # column 1 holds the MLP's weights now: no copy is kept
        self.column_of[task.id] = len(model.columns) - 1
        self._current, self._fresh = task.id, {}
        if self._optimizer is not None:  # if fit() keeps it (reset_optimizer off), it must train the new column
            self._optimizer.add_param_group({"params": list(model.columns[-1].parameters())})

    def on_optimizer(self, optimizer) -> None:
        self._optimizer = optimizer

    def loss(self, model, x, y, mask):
        return cross_entropy(model(x, self.column_of[self._current]), y, mask)

    def predict(self, model, x, task):
        if task.id in self.column_of:
            return model(x, self.column_of[task.id])
        if task.id not in self._fresh:
            self._fresh[task.id] = self._new_column(task.id, len(model.columns))
        return progressive(x, [*model.columns, self._fresh[task.id]])

"""lifelong: lifelong (continual) learning in PyTorch.

import lifelong as ll
stream = ll.benchmarks.permuted("digits", n_tasks=5, seed=0)
model = ll.models.MLP(stream.input_size, [50, 50, 50], stream.n_classes)
result = ll.fit(stream, model, ll.methods.Finetune(), epochs=5, lr=0.1)
result.R, result.acc, result.bwt, result.fwt
"""

from lifelong import benchmarks, methods, metrics, models
from lifelong.data.task import SCENARIOS, Stream, Task
from lifelong.errors import DivergedError, LifelongError
from lifelong.result import Result
from lifelong.train import Settings, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "SCENARIOS",
    "DivergedError",
    "LifelongError",
    "Result",
    "Settings",
    "Stream",
    "Task",
    "benchmarks",
    "evaluate",
    "fit",
    "methods",
    "metrics",
    "models",
]

"""What can be trained as vectorised seeds, and the one-line refusal of everything else.

Supported: the MLP (models/mlp.py), and the methods whose per-step work is elementwise per parameter
(hooks.py says why each one is, and why RWalk is not). Every training setting of fit() is supported
(SGD with momentum and weight decay, Adam, the lr schedule, gradient clipping per seed, a kept or reset
optimizer, per-epoch curves), because torch's optimizers act on each element alone: a stacked SGD or
Adam step is S separate steps.
"""

from __future__ import annotations

from torch import nn

from lifelong.errors import LifelongError, option
from lifelong.methods.base import Method
from lifelong.methods.baselines import Cumulative, Finetune, Joint
from lifelong.methods.regularization import EWC, L2, MAS, SCP, SI, OnlineEWC
from lifelong.models.mlp import MLP
from lifelong.vectorized.hooks import PathIntegral, Penalised, Plain

HOOKS: dict[type[Method], type[Plain]] = {
    Finetune: Plain,
    Joint: Plain,
    Cumulative: Plain,
    L2: Penalised,
    EWC: Penalised,
    OnlineEWC: Penalised,
    MAS: Penalised,
    SCP: Penalised,
    SI: PathIntegral,
}
SUPPORTED = ", ".join(cls.name for cls in HOOKS)


def check_method(method: Method) -> None:
    if type(method) not in HOOKS:
        raise LifelongError(
            f"{method.name} cannot be trained as vectorised seeds ({option('vectorize')}): that supports the "
            f"methods {SUPPORTED}; run {method.name} without it"
        )


def check_model(model: nn.Module) -> None:
    if type(model) is not MLP:
        raise LifelongError(
            f"vectorised seeds ({option('vectorize')}) train the MLP only, not {type(model).__name__}; "
            f"use the MLP or run without {option('vectorize')}"
        )
    if not all(p.requires_grad for p in model.parameters()):
        raise LifelongError(
            f"vectorised seeds ({option('vectorize')}) train every parameter of the MLP; this one has frozen "
            "parameters (requires_grad False): unfreeze them or use fit()"
        )

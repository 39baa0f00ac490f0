"""Methods by name. Each is a dataclass whose fields are its hyper-parameters."""

from __future__ import annotations

from lifelong.errors import LifelongError, option
from lifelong.methods.base import Method
from lifelong.methods.baselines import Cumulative, Finetune, Independent, Joint
from lifelong.methods.memory.agem import AGEM
from lifelong.methods.memory.dgr import DGR
from lifelong.methods.memory.fearnet import FearNet
from lifelong.methods.memory.gem import GEM
from lifelong.methods.memory.icarl import ICaRL
from lifelong.methods.memory.lamol import LAMOL
from lifelong.methods.memory.lwf import LwF
from lifelong.methods.memory.replay import Replay
from lifelong.methods.regularization import EWC, L2, MAS, SCP, SI, OnlineEWC, Regularizer, RWalk
from lifelong.methods.resources.cpg import CPG
from lifelong.methods.resources.packnet import PackNet
from lifelong.methods.resources.pnn import PNN

METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in (
        Finetune,
        Joint,
        Cumulative,
        Independent,
        L2,
        EWC,
        OnlineEWC,
        SI,
        MAS,
        RWalk,
        SCP,
        Replay,
        GEM,
        AGEM,
        LwF,
        ICaRL,
        DGR,
        FearNet,
        LAMOL,
        PNN,
        PackNet,
        CPG,
    )
}


def get(name: str) -> type[Method]:
    if name not in METHODS:
        raise LifelongError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def create(name: str, **hyperparameters) -> Method:
    cls = get(name)
    known = {f.name for f in cls.hyperparameters()}
    unknown = set(hyperparameters) - known
    if unknown:
        flags = ", ".join(option(k) for k in sorted(unknown))
        has = ", ".join(option(k) for k in sorted(known)) or "none"
        raise LifelongError(f"{flags} is not a setting of {name} (its settings: {has})")
    return cls(**hyperparameters)


__all__ = [
    "METHODS",
    "Method",
    "Finetune",
    "Joint",
    "Cumulative",
    "Independent",
    "Regularizer",
    "L2",
    "EWC",
    "OnlineEWC",
    "SI",
    "MAS",
    "RWalk",
    "SCP",
    "Replay",
    "GEM",
    "AGEM",
    "LwF",
    "ICaRL",
    "DGR",
    "FearNet",
    "LAMOL",
    "PNN",
    "PackNet",
    "CPG",
    "get",
    "create",
]

"""Selective synaptic plasticity: L'(θ) = L(θ) + λ Σ_i Ω_i (θ_i − θ*_i)², methods differing in Ω.

One base (``base.Regularizer``: anchor, accumulation over tasks, the penalty) and one short class per
method, each documenting its equation, citation, defaults and deviations.
"""

from lifelong.methods.regularization.base import ParamLayout, Regularizer
from lifelong.methods.regularization.ewc import EWC, OnlineEWC
from lifelong.methods.regularization.l2 import L2
from lifelong.methods.regularization.mas import MAS
from lifelong.methods.regularization.rwalk import RWalk
from lifelong.methods.regularization.scp import SCP
from lifelong.methods.regularization.si import SI

REGULARIZERS = (L2, EWC, OnlineEWC, SI, MAS, RWalk, SCP)

__all__ = ["EWC", "L2", "MAS", "REGULARIZERS", "SCP", "SI", "OnlineEWC", "ParamLayout", "RWalk", "Regularizer"]

"""FearNet (Kemker & Kanan 2018, arXiv 1711.10563): hc.py, mpfc.py and bla.py are its three networks,
method.py the Method that runs them (its docstring says how, and what differs from the paper)."""

from lifelong.methods.memory.fearnet.method import FearNet

__all__ = ["FearNet"]

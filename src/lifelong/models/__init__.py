from lifelong.models.mlp import MLP, mlp_for

__all__ = ["MLP", "mlp_for"]

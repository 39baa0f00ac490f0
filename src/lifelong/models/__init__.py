from lifelong.models.mlp import MLP, mlp_for
from lifelong.models.vae import VAE

__all__ = ["MLP", "VAE", "mlp_for"]

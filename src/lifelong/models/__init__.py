from lifelong.models.memn2n import MemN2N
from lifelong.models.mlp import MLP, mlp_for
from lifelong.models.transformer import TransformerLM
from lifelong.models.vae import VAE

__all__ = ["MLP", "MemN2N", "TransformerLM", "VAE", "mlp_for"]

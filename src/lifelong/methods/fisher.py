"""The diagonal Fisher information, four ways, and the per-sample gradient sums behind it.

EWC, online EWC and RWalk share these estimators; MAS and SCP reuse the per-sample machinery. For a
classifier with logits z(x; θ) and predictive distribution p(c|x) = softmax(z)_c, the diagonal of
the Fisher information on data x_1..x_N is

    F_i = 1/N Σ_n E_{c ~ p(·|x_n)} [ (∂ log p(c|x_n) / ∂θ_i)² ]

and the libraries that implement EWC disagree on how to estimate it (van de Ven 2025, "On the
computation of the Fisher information in continual learning", arXiv 2502.11756):

- ``exact``:     the expectation over the model's own predictive distribution, summed over every
                 allowed output unit c with weight p(c|x_n) (the definition above).
- ``sampled``:   one label ĉ_n ~ p(·|x_n) drawn from the model per sample: an unbiased one-sample
                 estimate of ``exact``.
- ``empirical``: the true labels y_n instead of the model's: 1/N Σ_n (∂ log p(y_n|x_n)/∂θ_i)². Not
                 the Fisher (the "empirical Fisher"), but what many implementations compute.
- ``batched``:   squared gradients of mini-batch *mean* losses, averaged over the B-sized batches:
                 1/⌈N/B⌉ Σ_b (1/B Σ_{n∈b} ∂ log p(y_n|x_n)/∂θ_i)². Cheap, but the per-sample terms
                 partly cancel inside each batch, so it is roughly 1/B of ``empirical`` and the best
                 λ moves by orders of magnitude with B (e.g. Avalanche's EWC squares each training
                 batch's gradient this way).

Every estimator is a mean over samples (never a sum), so its scale does not grow with the task's size.

Logit masks: the predictive distribution is the softmax over the allowed output units only (a task's
own units in task-IL, all units seen so far in class-IL, all units in domain-IL), exactly as the task
was trained; the other units have p = 0 and contribute nothing.

How per-sample gradients are computed, vectorised (never a Python loop over samples):

1. ``vmap``: torch.func — ``vmap(grad(f))`` over samples of a per-sample function evaluated with
   ``functional_call``. Works for any model whose forward treats samples independently (the model is
   put in eval mode: dropout off, batch norm on running statistics), but it materialises one
   gradient per sample, N × (number of parameters) floats, which is memory-bound: about 50 s for one
   empirical Fisher of a 2 × 400 MLP on 60 000 MNIST images on 2 CPU cores (10 times that for exact).
2. ``linear``: for models whose parameters all belong to ``nn.Linear`` layers applied once to (N, d)
   inputs (the MLPs of this library), the per-sample gradient of a layer's weight is an outer product
   δ_n a_nᵀ (δ_n: gradient w.r.t. the layer's output, a_n: its input), so
   Σ_n (δ_n a_nᵀ)² = (δ∘δ)ᵀ (a∘a) and Σ_n |δ_n a_nᵀ| = |δ|ᵀ |a|: one matrix product per layer, the
   per-sample gradients never materialised. δ for all samples comes from one batched backward pass
   (batched over the K directions ``exact`` needs). Same numbers as 1, 1 to 3 s instead of 50 to 600 s
   on that benchmark (benchmarks/importance_speed.py).

``impl="auto"`` takes 2 when the model qualifies and 1 otherwise; the tests check both against a
plain Python loop over samples.

Both paths compute, for per-sample output-space vectors v_nk (K per sample) and weights w_nk,

    S_i = Σ_n Σ_k w_nk |∂(v_nk · z(x_n; θ)) / ∂θ_i|^power        (v_nk treated as constants)

which gives each estimator: ∂(−log p_c)/∂z = p − e_c, so v = p − e_c is the cross-entropy gradient
(``empirical``: c = y_n; ``sampled``: c = ĉ_n; ``exact``: every c with w = p_c), and MAS's
∂‖z‖²/∂z = 2z is v = 2z with power 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from lifelong.errors import LifelongError

ESTIMATORS = ("exact", "sampled", "empirical", "batched")
IMPLEMENTATIONS = ("auto", "linear", "vmap")

# Floats the per-chunk intermediates may take: bounds memory whatever the model and data size.
LINEAR_BUDGET = 1 << 22  # (K directions × chunk × widest layer) for the linear path
VMAP_BUDGET = 1 << 25  # (K directions × chunk × parameters) for the vmap path

# cotangents(z, extra) -> (V, w): z (n, U) detached logits of the allowed units, extra the per-sample
# tensor passed along (labels) or None; V (n, K, U) the output-space vectors, w (n, K) weights or None.
Cotangents = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]


# ---- small helpers ------------------------------------------------------------------------------


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters importances are computed for: those that require gradients, by name."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def units_of(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Indices of the output units an additive logit mask allows (None: every unit)."""
    if mask is None:
        return None
    if mask.dim() != 1:
        raise LifelongError(f"expected one mask row (C,), got shape {tuple(mask.shape)}")
    return torch.nonzero(mask == 0).flatten()


def restrict(logits: torch.Tensor, units: torch.Tensor | None) -> torch.Tensor:
    return logits if units is None else logits.index_select(-1, units)


def positions(y: torch.Tensor, units: torch.Tensor | None, n_outputs: int) -> torch.Tensor:
    """Each label's column among the allowed units (labels are output-unit ids of the stream)."""
    if units is None:
        return y
    lookup = torch.full((n_outputs,), -1, dtype=torch.long, device=y.device)
    lookup[units] = torch.arange(len(units), device=y.device)
    pos = lookup[y]
    if (pos < 0).any():
        raise LifelongError("some labels are outside the output units the mask allows; pass the task's own mask")
    return pos


class _EvalMode:
    """Eval mode (dropout off, batch norm on running statistics) and gradients on, restored after."""

    def __init__(self, model: nn.Module):
        self.model, self.grad = model, torch.enable_grad()

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        self.grad.__enter__()

    def __exit__(self, *exc):
        self.grad.__exit__(*exc)
        self.model.train(self.was_training)


def _n_outputs(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return model(x[:1]).shape[-1]


# ---- the per-sample engine ------------------------------------------------------------------------


class _NotLinear(Exception):
    """The model does not qualify for the linear-layer identity (caught: the vmap path is used)."""


def _linear_layers(model: nn.Module, params: dict[str, torch.Tensor]) -> list[nn.Linear] | None:
    """The Linear layers owning the trainable parameters, or None if some parameter is elsewhere."""
    wanted = {id(p) for p in params.values()}
    layers = [
        m
        for m in model.modules()
        if isinstance(m, nn.Linear) and any(id(p) in wanted for p in (m.weight, m.bias) if p is not None)
    ]
    owned = {id(p) for m in layers for p in (m.weight, m.bias) if p is not None}
    if not layers or not wanted <= owned:
        return None
    return layers


def per_sample_sums(
    model: nn.Module,
    x: torch.Tensor,
    cotangents: Cotangents,
    units: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    power: int = 2,
    impl: str = "auto",
    directions: int = 1,
) -> dict[str, torch.Tensor]:
    """S_i = Σ_n Σ_k w_nk |∂(v_nk · z_n)/∂θ_i|^power over the samples x (a sum, not a mean).

    ``directions`` is K, the number of vectors per sample (used to size chunks).
    """
    if power not in (1, 2):
        raise ValueError("power must be 1 or 2")
    if impl not in IMPLEMENTATIONS:
        raise LifelongError(f"unknown implementation {impl!r}; choose one of: {', '.join(IMPLEMENTATIONS)}")
    params = trainable(model)
    with _EvalMode(model):
        if impl in ("auto", "linear"):
            layers = _linear_layers(model, params)
            if layers is not None:
                try:
                    return _linear_sums(model, params, layers, x, cotangents, units, extra, power, directions)
                except _NotLinear:
                    if impl == "linear":
                        raise LifelongError(
                            "the linear-layer path needs every Linear applied once to (N, d) inputs"
                        ) from None
            elif impl == "linear":
                raise LifelongError("the linear-layer path needs every trainable parameter in an nn.Linear")
        return _vmap_sums(model, params, x, cotangents, units, extra, power, directions)


def _direction_sum(d: torch.Tensor, w: torch.Tensor | None, power: int) -> torch.Tensor:
    """Σ_k w_k |d_k|^power for d (K, n, out), w (n, K): the per-sample factor of a layer's sums.

    An in-place loop over the K directions (each a fused pass over a contiguous (n, out) slice) is
    an order of magnitude faster than a reduction over the leading dimension.
    """
    G = torch.zeros(d.shape[1:], dtype=d.dtype, device=d.device)
    for k in range(d.shape[0]):
        dk = d[k] if w is None else d[k] * w[:, k, None]
        if power == 2:
            G.addcmul_(dk, d[k])
        else:
            G.add_(dk.abs())
    return G


def _linear_sums(model, params, layers, x, cotangents, units, extra, power, directions):
    widest = max(max(m.in_features, m.out_features) for m in layers)
    chunk = max(16, min(8192, LINEAR_BUDGET // (max(1, directions) * widest)))
    names = {id(p): n for n, p in params.items()}
    out = {n: torch.zeros_like(p) for n, p in params.items()}
    records: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []

    def hook(module, inputs, output):
        records.append((module, inputs[0], output))

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        for start in range(0, len(x), chunk):
            records.clear()
            z = restrict(model(x[start : start + chunk]), units)
            # Every layer applied exactly once (a layer used twice, or not through its forward, would
            # break the outer-product identity): otherwise the vmap path is used.
            if len(records) != len(layers) or len({id(m) for m, _, _ in records}) != len(layers):
                raise _NotLinear
            if any(a.dim() != 2 for _, a, _ in records):
                raise _NotLinear
            V, w = cotangents(z.detach(), None if extra is None else extra[start : start + chunk])
            # δ_k for every layer output, batched over the K directions: (K, n, out)
            deltas = torch.autograd.grad(
                z, [o for _, _, o in records], grad_outputs=V.transpose(0, 1), is_grads_batched=True, allow_unused=True
            )
            for (m, a, _), d in zip(records, deltas, strict=True):
                if d is None:
                    continue
                G = _direction_sum(d, w, power)  # (n, out)
                a = a.detach()
                if id(m.weight) in names:
                    out[names[id(m.weight)]] += G.t() @ (a.square() if power == 2 else a.abs())
                if m.bias is not None and id(m.bias) in names:
                    out[names[id(m.bias)]] += G.sum(0)
    finally:
        for h in handles:
            h.remove()
    return out


def _vmap_sums(model, params, x, cotangents, units, extra, power, directions):
    n_params = sum(p.numel() for p in params.values())
    chunk = max(1, min(4096, VMAP_BUDGET // (max(1, directions) * n_params)))
    detached = {n: p.detach() for n, p in params.items()}

    def projected(p, xi, v):  # v · z(x_i): one sample, one direction
        return (restrict(functional_call(model, p, (xi.unsqueeze(0),))[0], units) * v).sum()

    # vmap over samples of vmap over directions of grad: (n, K, *shape) per parameter
    per_sample = vmap(vmap(grad(projected), in_dims=(None, None, 0)), in_dims=(None, 0, 0))
    out = {n: torch.zeros_like(p) for n, p in params.items()}
    for start in range(0, len(x), chunk):
        xc = x[start : start + chunk]
        with torch.no_grad():
            z = restrict(model(xc), units)
        V, w = cotangents(z, None if extra is None else extra[start : start + chunk])
        grads = per_sample(detached, xc, V)
        for name, g in grads.items():
            g = g.square() if power == 2 else g.abs()
            if w is not None:
                g = g * w.reshape(*w.shape, *([1] * (g.dim() - 2)))
            out[name] += g.sum((0, 1))
    return out


# ---- cotangents of the estimators -----------------------------------------------------------------


def _label_cotangents(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, None]:
    """∂(−log p_y)/∂z = p − e_y: one vector per sample."""
    V = torch.softmax(z, -1)
    V[torch.arange(len(labels), device=z.device), labels] -= 1.0
    return V.unsqueeze(1), None


def _exact_cotangents(z: torch.Tensor, _: torch.Tensor | None) -> tuple[torch.Tensor, None]:
    """√p_c (p − e_c) for every allowed unit c: K = U vectors per sample.

    Σ_c p_c (∂ log p_c/∂θ)² = Σ_c (∂(√p_c (p − e_c)) · z/∂θ)², so the weights p_c go into the vectors.
    """
    p = torch.softmax(z, -1)
    eye = torch.eye(p.shape[1], device=z.device, dtype=z.dtype)
    return p.sqrt().unsqueeze(-1) * (p.unsqueeze(1) - eye.unsqueeze(0)), None


def output_norm_cotangents(z: torch.Tensor, _: torch.Tensor | None) -> tuple[torch.Tensor, None]:
    """∂‖z‖²/∂z = 2z (MAS)."""
    return (2.0 * z).unsqueeze(1), None


# ---- the estimators ------------------------------------------------------------------------------


def subsample(n: int, samples: int | None, generator: torch.Generator | None, device) -> torch.Tensor | None:
    """Indices of ``samples`` of n items drawn without replacement, or None for all of them."""
    if not samples or samples >= n:
        return None
    g = generator or torch.Generator(device=device).manual_seed(0)
    return torch.randperm(n, generator=g, device=g.device).to(device)[:samples]


@torch.no_grad()
def sample_labels(
    model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One label per sample drawn from the model's predictive distribution (output-unit ids)."""
    units = units_of(mask)
    was_training = model.training
    model.eval()
    probs = torch.cat([torch.softmax(restrict(model(xc), units), -1) for xc in x.split(8192)])
    model.train(was_training)
    g = generator or torch.Generator(device=x.device).manual_seed(0)
    drawn = torch.multinomial(probs.to(g.device), 1, generator=g).flatten().to(x.device)
    return drawn if units is None else units[drawn]


def diagonal_fisher(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    estimator: str = "exact",
    samples: int | None = None,
    batch_size: int = 128,
    generator: torch.Generator | None = None,
    impl: str = "auto",
) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of ``model`` on (x, y), one tensor per trainable parameter (by name).

    ``mask``: the task's additive logit mask row (C,) or None. ``samples``: estimate on that many
    samples drawn without replacement (None or 0: all). ``batch_size``: the mini-batch size of the
    ``batched`` estimator. ``generator``: draws the subset and the ``sampled`` labels (the global RNG
    is never touched). ``y`` is needed by ``empirical`` and ``batched``.
    """
    if estimator not in ESTIMATORS:
        raise LifelongError(f"unknown Fisher estimator {estimator!r}; choose one of: {', '.join(ESTIMATORS)}")
    if len(x) == 0:
        raise LifelongError("cannot estimate the Fisher information on zero samples")
    keep = subsample(len(x), samples, generator, x.device)
    if keep is not None:
        x, y = x[keep], (None if y is None else y[keep])
    units = units_of(mask)
    n = len(x)
    if estimator == "exact":
        U = len(units) if units is not None else _n_outputs(model, x)
        sums = per_sample_sums(model, x, _exact_cotangents, units, None, 2, impl, directions=U)
    elif estimator == "batched":
        if y is None:
            raise LifelongError("the batched Fisher needs the true labels y")
        return _batched(model, x, positions(y, units, _n_outputs(model, x)), units, batch_size)
    else:
        if estimator == "sampled":
            y = sample_labels(model, x, mask, generator)
        elif y is None:
            raise LifelongError("the empirical Fisher needs the true labels y")
        pos = positions(y, units, _n_outputs(model, x))
        sums = per_sample_sums(model, x, _label_cotangents, units, pos, 2, impl)
    return {name: s / n for name, s in sums.items()}


def _batched(model, x, pos, units, batch_size) -> dict[str, torch.Tensor]:
    params = trainable(model)
    acc = [torch.zeros_like(p) for p in params.values()]
    batches = 0
    with _EvalMode(model):
        for start in range(0, len(x), batch_size):
            z = restrict(model(x[start : start + batch_size]), units)
            loss = F.cross_entropy(z, pos[start : start + batch_size])
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params.values(), grads, strict=True)]
            torch._foreach_addcmul_(acc, grads, grads)
            batches += 1
    return {name: a / batches for name, a in zip(params, acc, strict=True)}

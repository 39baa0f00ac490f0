"""A small causal transformer language model, trained from scratch: LAMOL's language model (Sun, Ho & Lee
2020, arXiv 1909.03329, use GPT-2; no pretrained weights can be downloaded here, and bAbI's tiny templated
vocabulary does not need them).

GPT-2's shape at a small size (Radford et al. 2019): token + learned position embeddings, ``layers`` pre-LN
blocks (x + attention(LN(x)), then x + MLP(LN(x)), the MLP 4·d wide with GELU), a final LayerNorm, and the
output layer tied to the token embedding (logits = h Eᵀ). Weights ~ N(0, 0.02²), biases 0, as GPT-2.

Attention is causal: position i attends to positions ≤ i only, so no position sees the future. Token
``pad`` (0) is padding: a key padding mask keeps it out of every real position's attention (a padding
position attends to itself, so no row of the softmax is empty), and every layer but the attention runs
on the real tokens only, packed, so that padding costs nothing there: bAbI's stories vary in length
(task 2's QA inputs: 99 tokens on average, 319 at most), and a padded batch would be mostly padding.

``generate`` samples with top-k (LAMOL's default k = 20, temperature 1), one token per step with a cache
of each layer's keys and values (preallocated), so a sequence of length L costs L one-token steps rather
than L full passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import LifelongError, option


class Block(nn.Module):
    """One pre-LN block: causal multi-head self-attention, then the MLP, each around a residual."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, h: torch.Tensor, real: torch.Tensor, allowed: torch.Tensor, cache: dict | None = None):
        """``h`` (T, d): the states of the real tokens only, ``real`` (N, L) bool says where they sit in the
        padded batch; ``allowed`` (…, L, K) bool: which keys each query may attend to; ``cache`` (generation)
        holds preallocated key and value buffers (N, heads, max_length, d / heads) with the K − L keys and
        values seen so far; the new ones are written after them. Every layer but the attention runs on the
        real tokens only: a batch's padding costs nothing there."""
        (n, length), d = real.shape, h.shape[1]
        qkv = h.new_zeros(n, length, 3 * d)
        qkv[real] = self.qkv(self.ln1(h))
        q, k, v = qkv.view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            seen = allowed.shape[-1] - length
            cache["k"][:, :, seen : seen + length], cache["v"][:, :, seen : seen + length] = k, v
            k, v = cache["k"][:, :, : seen + length], cache["v"][:, :, : seen + length]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        h = h + self.out(a.transpose(1, 2)[real].reshape(-1, d))
        return h + self.mlp(self.ln2(h))


class TransformerLM(nn.Module):
    """``forward(tokens)`` (N, L) int64 -> (N, L, vocab_size) next-token logits; token 0 is padding."""

    def __init__(self, vocab_size: int, d_model: int = 128, layers: int = 2, heads: int = 4, max_length: int = 512):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("layers", layers), ("heads", heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LifelongError(f"TransformerLM: {option(name)} must be a whole number >= 1 (got {value!r})")
        if d_model % heads:
            raise LifelongError(
                f"TransformerLM: {option('d_model')} {d_model} must be a multiple of {option('heads')} {heads}"
            )
        self.max_length, self.pad = max_length, 0
        self.embed = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_length, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def hidden(self, tokens: torch.Tensor, start: int = 0, caches: list[dict] | None = None) -> torch.Tensor:
        """The final (normalised) states (N, L, d); ``start`` is the position of the first token, after the
        ``start`` tokens whose keys and values ``caches`` hold (generation: no padding there)."""
        n, length = tokens.shape
        if start + length > self.max_length:
            raise LifelongError(
                f"a sequence of {start + length} tokens is longer than the language model's {self.max_length}"
            )
        positions = torch.arange(start, start + length, device=tokens.device)
        keys = torch.arange(start + length, device=tokens.device)
        allowed = keys[None, :] <= positions[:, None]  # causal: (L, start + L)
        real = tokens.ne(self.pad)
        if caches is None:
            caches = [None] * len(self.blocks)
            # (N, 1, L, L): no query sees a padding key; a padding query sees itself, so no row is empty
            allowed = allowed & real[:, None, None, :] | torch.eye(length, dtype=torch.bool, device=tokens.device)
        h = self.embed(tokens[real]) + self.position(positions.expand(n, -1)[real])
        for block, cache in zip(self.blocks, caches, strict=True):
            h = block(h, real, allowed, cache)
        out = h.new_zeros(n, length, h.shape[1])  # padding positions: zero states
        out[real] = self.ln(h)
        return out

    def logits(self, hidden: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over every token, or over ``tokens`` only (their ids): the tied output layer."""
        weight = self.embed.weight if tokens is None else self.embed.weight[tokens]
        return hidden @ weight.T

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(tokens))

    @torch.no_grad()
    def generate(
        self,
        prefix: torch.Tensor,
        max_new: int,
        top_k: int = 20,
        generator: torch.Generator | None = None,
        end: int | None = None,
    ) -> torch.Tensor:
        """Continue each row of ``prefix`` (N, P) (no padding) by top-k sampling until token ``end`` or
        ``max_new`` tokens (never past ``max_length``); (N, P + steps), padding after a row's ``end``.
        Padding is never sampled."""
        n, d, heads = len(prefix), self.embed.weight.shape[1], self.blocks[0].heads
        weight, shape = self.embed.weight, (n, heads, self.max_length, d // heads)
        caches = [{"k": weight.new_zeros(shape), "v": weight.new_zeros(shape)} for _ in self.blocks]
        out, length = [prefix], prefix.shape[1]
        done = torch.zeros(n, dtype=torch.bool, device=prefix.device)
        h = self.hidden(prefix, 0, caches)[:, -1]
        for _ in range(min(max_new, self.max_length - length)):
            logits = self.logits(h)
            logits[:, self.pad] = float("-inf")
            values, ids = logits.topk(min(top_k, logits.shape[1] - 1), dim=1)
            pick = torch.multinomial(values.softmax(1), 1, generator=generator)
            token = ids.gather(1, pick).squeeze(1).masked_fill(done, self.pad)
            out.append(token[:, None])
            done |= token.eq(end) if end is not None else done
            if bool(done.all()) or length + 1 >= self.max_length:
                break
            h = self.hidden(token[:, None], length, caches)[:, -1]
            length += 1
        return torch.cat(out, 1)

"""End-to-end memory network for bAbI question answering (Sukhbaatar, Szlam, Weston & Fergus 2015,
"End-To-End Memory Networks", arXiv 1503.08895), the paper's bAbI model as its authors' code builds it
(facebook/MemNN, folder ``MemN2N-babi-matlab``: ``build_model.m``, ``memory/MemoryL.m``, ``train.m``,
``train_linear_start.m``, ``config_babi.m``, ``config_babi_joint.m``).

Input: one int64 tensor ``x`` (N, S + 1, W) as ``lifelong.data.datasets.babi.pack`` writes it: rows 0..S-1 are
the story's sentences NEWEST FIRST (slot i = the sentence i steps back; an all-zero row is an empty slot),
the last row is the question; word index 0 is padding. Output: (N, n_answers) logits over the answer labels.

The model, K hops (``hops``, the paper's bAbI choice is 3):

- a sentence ``x_i`` is embedded as ``sum_j l_j * E[x_ij]``, ``l_j`` its word position's encoding (PE);
  the question ``u^1 = sum_j l_j * B[q_j]``;
- hop k: memories ``m_i = sum_j l_j * A^k[x_ij] + T_A^k(i)``, outputs ``c_i = sum_j l_j * C^k[x_ij] + T_C^k(i)``,
  attention ``p = softmax_i(u^k . m_i)`` over the story's sentences (empty slots are masked out),
  ``o^k = sum_i p_i c_i`` and ``u^{k+1} = u^k + o^k`` (no matrix H: the paper uses none with adjacent tying);
- logits ``W u^{K+1}``.

Choices, and where the authors' code differs from the paper:

- **Adjacent weight tying** (paper Sec. 2.2): ``A^{k+1} = C^k``, ``B = A^1``, ``W^T = C^K``, and the temporal
  matrices tie the same way (``T_A^{k+1} = T_C^k``; the paper: "subject to the same sharing constraints").
  So K + 1 word embeddings ``embeddings[0..K]`` (``A^k = embeddings[k-1]``, ``C^k = embeddings[k]``) and K + 1
  temporal matrices ``times[0..K]``. The authors' code ties exactly so (``share_type = 1``), with the answer
  layer's softmax over the whole dictionary. Here the answers are their own vocabulary (``n_answers``
  labels, e.g. ``"apple,milk"`` of task 8 is one label but no word), so ``W`` is tied to ``C^K`` only when
  ``answer_words`` maps each answer to its word index (``[vocab.word_id(a) for a in vocab.answers]``; the
  softmax is then over the answers only, not over every word); without it ``W`` is its own (n_answers, d)
  matrix, which adds n_answers * d parameters.
- **Position encoding** (PE, paper Sec. 4.1): ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)``, j = 1..J the word's
  position, k = 1..d the dimension. ``J`` is the padded sentence width ``words`` for every sentence, as in
  the authors' code (``config.max_words``, the longest sentence or question of the data), not each
  sentence's own length as the paper's text reads: a word's weight depends on its position only, and
  padding (which contributes nothing) never changes it. ``position_encoding="authors"`` uses the code's
  matrix instead (``build_model.m``): ``1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J)``, which equals
  ``2 l(k - 1/2, j - 1/2)`` (twice the paper's, centred), with ``J = words + 1`` when temporal (the code
  stores the time index as one more word, whose PE column then scales ``T_A``, ``T_C``; that is done here
  too in this mode). ``position_encoding=False``: bag of words (all ``l = 1``).
- **Temporal encoding** (TE): ``T_A(i)`` is the row of the slot, i.e. how far back the sentence is, as the
  code's time words (``n:-1:1``, newest = first row). ``sentences`` rows; a story may have fewer slots.
- **Empty slots and padding words** contribute nothing: the padding row of every embedding is zero (and
  gets no gradient, ``padding_idx=0``), padding words are also masked, and empty slots are masked out of the
  softmax (``empty_slots="masked"``, the default). The authors' code differs here: its empty memories
  (all-nil words and no time word, so key and value 0) stay in the softmax with score 0, which dilutes the
  attention of short stories in a memory of ``min(50, longest story)`` slots; masking makes a story's
  answer independent of how far it was padded. ``empty_slots="attended"`` does as the code: each of the
  ``sentences`` slots a story leaves empty takes part in the softmax with score 0 and adds nothing to o.
- **Linear start** (LS, paper Sec. 4.2): ``linear_start = True`` removes the softmax in every hop, so
  ``p_i = u . m_i`` (empty slots 0), the model linear up to the answer's softmax. The paper trains so
  until the validation loss stops decreasing, then re-inserts the softmax; the authors' code instead
  uses a fixed number of LS epochs (``train_linear_start.m``): 20 per task (``config_babi.m``:
  ``ls_nepochs = 20``), 30 joint (``config_babi_joint.m``), at lr 0.005 with no decay during LS.
- **Random noise** (RN, paper Sec. 4.1: "randomly add 10% of empty memories to the stories"): the code
  (``train.m``, ``randomize_time = 0.1``) inserts no memories but gaps into the time indices: for a story
  of n sentences it draws ``b`` uniformly from ``0..ceil(0.1 n)``, takes a random n-subset of the rows
  ``1..n+b`` (clipped to the last row), sorted, the newest sentence the smallest. ``temporal_indices`` does
  the same, in training mode only (``model.train()``), from torch's global random generator.
- **Initialisation**: every weight ~ N(0, 0.1^2) (paper Sec. 4.2; code ``nn/Weight.m``), padding rows 0.

Training schedule of the paper (Sec. 4.2) and the authors' code, for ``fit()`` to follow:

- 10% of each task's training set held out for validation (code: the last 10% per task, a random 10% joint);
  SGD without momentum or weight decay, batch 32 drawn with replacement (``train.m``: ``randi``), one epoch =
  ``floor(n_train / 32)`` batches; the cross-entropy is SUMMED over the batch, not averaged (paper: "cost is
  not averaged over a batch"; code ``loss.size_average = false``), so lr 0.01 on the sum is 0.32 on the mean;
- lr 0.01 halved every 25 epochs, 100 epochs (per task, d = 20); joint: 60 epochs, halved every 15, d = 50
  (``config_babi_joint.m``); the 10k set joint: 20 epochs halved every 5 (paper);
- with LS (the best reported results, "PE LS RN"): LS epochs at lr 0.005 (20 per task, 30 joint), then the
  softmax back and the full schedule again from lr 0.005 (the code overwrites ``init_lrate`` with 0.005,
  so the post-LS phase also starts at 0.005: 120 epochs per task, 90 joint); in the code the decay fires at
  the start of epochs 25, 50, 75, 100 (``mod(ep, 25) == 0``);
- gradients with an l2 norm over 40 are rescaled to 40; the code clips each weight matrix on its own
  (``Weight.update``; MATLAB's ``norm`` of a matrix is its largest singular value), not the global norm;
- the memory holds the 50 most recent sentences; the paper repeats training 10 times and keeps the run
  with the lowest training error (some tasks vary a lot).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import LifelongError, option
from lifelong.models.sizes import whole

SIGMA = 0.1  # the paper's initialisation: N(0, 0.1^2)
PE_STYLES = ("paper", "authors")
EMPTY_SLOTS = ("masked", "attended")


def position_encoding(length: int, dim: int, style: str = "paper") -> torch.Tensor:
    """The (length, dim) matrix ``l[j-1, k-1]`` for word positions j = 1..length and dimensions k = 1..dim,
    with J = ``length``: the paper's ``(1 - j/J) - (k/d)(1 - 2j/J)``, or ``style="authors"``: their code's
    ``1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J)``."""
    j = torch.arange(1, length + 1, dtype=torch.float64)[:, None]
    k = torch.arange(1, dim + 1, dtype=torch.float64)[None, :]
    if style == "paper":
        out = (1 - j / length) - (k / dim) * (1 - 2 * j / length)
    elif style == "authors":
        out = 1 + 4 * (k - (dim + 1) / 2) * (j - (length + 1) / 2) / (dim * length)
    else:
        raise LifelongError(f"position_encoding style must be one of {', '.join(PE_STYLES)}, not {style!r}")
    return out.float()


position_encoding_matrix = position_encoding  # MemN2N's argument of the same name shadows the function


def temporal_indices(real: torch.Tensor, noise: float = 0.0, rows: int | None = None) -> torch.Tensor:
    """The row of the temporal matrices for each memory slot: (N, S) int64 from ``real`` (N, S) bool, the
    slots that hold a sentence (newest first).

    Without noise a slot's row is its index (how far back it is). With ``noise`` (random noise, RN, as
    the authors' ``train.m``): per story of n sentences, b ~ uniform{0..ceil(noise * n)} gaps, and the
    sentences get a random n-subset of the rows 0..n+b-1, sorted so the newest has the smallest, each
    clipped to ``rows - 1`` (the last temporal row). Rows of empty slots are their index (they are masked).
    Draws from torch's global generator."""
    n_stories, slots = real.shape
    index = torch.arange(slots, device=real.device).expand(n_stories, slots)
    if noise <= 0:
        return index.clone()
    rows = slots if rows is None else rows
    n = real.sum(1)
    most = torch.ceil(n.double() * noise).long()  # in double, like MATLAB's ceil(n * 0.1)
    gaps = torch.floor(torch.rand(n_stories, device=real.device, dtype=torch.float64) * (most + 1)).long()
    width = slots + math.ceil(slots * noise)  # room for every candidate row 0..n+b-1
    candidates = torch.arange(width, device=real.device).expand(n_stories, width)
    keys = torch.rand(n_stories, width, device=real.device)
    keys = keys.masked_fill(candidates >= (n + gaps)[:, None], 2.0)  # rows past n+b-1 are never drawn
    chosen = keys.argsort(1).argsort(1) < n[:, None]  # a uniform n-subset of the rows 0..n+b-1
    picked = torch.where(chosen, candidates, width).sort(1).values[:, :slots]  # ascending; first n are chosen
    order = (real.long().cumsum(1) - 1).clamp(min=0)  # the k-th real slot (newest first) gets the k-th row
    noisy = picked.gather(1, order).clamp(max=rows - 1)
    return torch.where(real, noisy, index)


class MemN2N(nn.Module):
    """The end-to-end memory network of the module docstring: ``forward(x)`` -> (N, n_answers) logits.

    ``vocab_size``: word indices 0..vocab_size-1 (0 = padding); ``sentences``: memory slots (temporal rows);
    ``words``: the padded sentence width (the PE's J); ``dim``: embedding size d (20 per task, 50 joint);
    ``position_encoding``: True (= "paper"), "authors" or False (bag of words); ``temporal``: TE;
    ``noise``: RN's fraction (0.1; training mode only; no effect without ``temporal``); ``linear_start``: LS (an
    attribute the training code switches off; ``linear_start_epochs`` > 0 has ``start_epoch`` switch it on for
    the first epochs of every task, as fit() calls it); ``answer_words``: each answer's word index, to tie ``W`` to
    ``C^K`` (else ``W`` is its own matrix)."""

    def __init__(
        self,
        vocab_size: int,
        n_answers: int,
        sentences: int,
        words: int,
        dim: int = 20,
        hops: int = 3,
        position_encoding: bool | str = True,
        temporal: bool = True,
        noise: float = 0.1,
        linear_start: bool = False,
        answer_words: Sequence[int] | None = None,
        linear_start_epochs: int = 0,
        empty_slots: str = "masked",
    ):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("n_answers", n_answers), ("sentences", sentences)):
            if not whole(value):
                raise LifelongError(f"MemN2N: {option(name)} must be a whole number >= 1 (got {value!r})")
        for name, value in (("words", words), ("dim", dim), ("hops", hops)):
            if not whole(value):
                raise LifelongError(f"MemN2N: {option(name)} must be a whole number >= 1 (got {value!r})")
        if vocab_size < 2:
            raise LifelongError(f"MemN2N: {option('vocab_size')} counts the padding word 0, so it must be >= 2")
        style = "paper" if position_encoding is True else position_encoding
        if style is not False and style not in PE_STYLES:
            raise LifelongError(
                f"MemN2N: {option('position_encoding')} must be True, False or 'authors' (got {position_encoding!r})"
            )
        if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0 <= noise <= 1:
            raise LifelongError(f"MemN2N: {option('noise')} must be a fraction 0..1, such as 0.1 (got {noise!r})")
        if empty_slots not in EMPTY_SLOTS:
            raise LifelongError(
                f"MemN2N: {option('empty_slots')} must be one of {', '.join(EMPTY_SLOTS)} (got {empty_slots!r})"
            )
        self.empty_slots = empty_slots
        self.vocab_size, self.n_answers, self.sentences, self.words = vocab_size, n_answers, sentences, words
        self.dim, self.hops, self.temporal, self.noise = dim, hops, bool(temporal), float(noise)
        self.position_encoding = style
        if isinstance(linear_start_epochs, bool) or not isinstance(linear_start_epochs, int) or linear_start_epochs < 0:
            raise LifelongError(
                f"MemN2N: {option('linear_start_epochs')} must be a whole number >= 0 (got {linear_start_epochs!r})"
            )
        self.linear_start = bool(linear_start)
        self.linear_start_epochs = linear_start_epochs
        self.input_shape = (sentences + 1, words)
        self.n_classes = n_answers

        # embeddings[k]: A^{k+1} = C^k (B = A^1 = embeddings[0], C^K = embeddings[K]); times likewise.
        self.embeddings = nn.ModuleList(nn.Embedding(vocab_size, dim, padding_idx=0) for _ in range(hops + 1))
        n_times = hops + 1 if temporal else 0
        self.times = nn.ParameterList(nn.Parameter(torch.empty(sentences, dim)) for _ in range(n_times))
        if answer_words is None:
            self.answer = nn.Parameter(torch.empty(n_answers, dim))
            self.register_buffer("answer_words", None)
        else:
            ids = list(answer_words)
            if len(ids) != n_answers or not all(isinstance(i, int) and 0 < i < vocab_size for i in ids):
                raise LifelongError(
                    f"MemN2N: {option('answer_words')} must give each of the {n_answers} answers a word index "
                    f"1..{vocab_size - 1} (vocab.word_id of the answer)"
                )
            self.answer = None
            self.register_buffer("answer_words", torch.tensor(ids, dtype=torch.int64))

        # The PE matrix for positions 1..words, and the factor of the temporal rows ("authors": the PE column
        # of the code's extra time word; else 1).
        if style is False:
            encoding, time_scale = torch.ones(words, dim), torch.ones(dim)
        else:
            length = words + 1 if style == "authors" and temporal else words
            full = position_encoding_matrix(length, dim, style)
            encoding = full[:words]
            time_scale = full[words] if length > words else torch.ones(dim)
        self.register_buffer("encoding", encoding)
        self.register_buffer("time_scale", time_scale)
        self.register_buffer("not_padding", (torch.arange(vocab_size) != 0).float().unsqueeze(1), persistent=False)
        self.reset_parameters()

    def start_epoch(self, epoch: int) -> None:
        """fit() calls this at the start of each epoch of each task: linear start for the first
        ``linear_start_epochs`` epochs of every task, then the softmax (the authors' fixed count of LS epochs;
        none when 0, and ``linear_start`` is left as set)."""
        if self.linear_start_epochs:
            self.linear_start = epoch < self.linear_start_epochs

    def reset_parameters(self) -> None:
        """Every weight ~ N(0, 0.1^2), the padding rows 0 (paper Sec. 4.2)."""
        with torch.no_grad():
            for p in self.parameters():
                nn.init.normal_(p, 0.0, SIGMA)
            for embedding in self.embeddings:
                embedding.weight[0].zero_()

    def answer_matrix(self) -> torch.Tensor:
        """W (n_answers, d): C^K's rows of the answer words when tied, else its own matrix."""
        if self.answer is None:
            return self.embeddings[-1].weight[self.answer_words]
        return self.answer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.answer_matrix().T

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The state after the last hop, u^{K+1} = u^K + o^K (N, d), which W maps to the logits."""
        return self._run(x)[0]

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Each hop's weights over the memory slots (N, hops, S): the softmax, or the raw scores ``u . m_i``
        under linear start; 0 for empty slots."""
        return torch.stack(self._run(x)[1], 1)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._check(x)
        sentences = self._embed(x)  # K + 1 tensors (N, S+1, d)
        real = (x[:, :-1] != 0).any(-1)  # (N, S): slots that hold a sentence
        if self.temporal:
            rows = temporal_indices(real, self.noise if self.training else 0.0, self.sentences)
            times = [t[rows] * self.time_scale for t in self.times]  # empty slots get 0 attention either way
        else:
            times = [0.0] * (self.hops + 1)
        u = sentences[0][:, -1]
        attention = []
        for k in range(self.hops):
            memories = sentences[k][:, :-1] + times[k]
            outputs = sentences[k + 1][:, :-1] + times[k + 1]
            scores = torch.einsum("nsd,nd->ns", memories, u)
            p = self._attend(scores, real)
            u = u + torch.einsum("ns,nsd->nd", p, outputs)
            attention.append(p)
        return u, attention

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every row of ``x`` (the sentences and the question) under each of the K + 1 embeddings,
        sum_j l_j * E[x_j], as one ``embedding_bag`` over a table of the embeddings scaled by each word
        position's encoding: the (N, S+1, W, d) products are never made (8 times faster, forward and
        backward, at bAbI's sizes). The padding row is multiplied by 0, so padding words add exactly
        nothing and the padding embedding gets no gradient."""
        n, rows, width = x.shape
        words = torch.cat([e.weight for e in self.embeddings], 1) * self.not_padding  # (V, (K+1) d)
        scale = self.encoding[:width].repeat(1, len(self.embeddings))  # (W, (K+1) d)
        table = (scale[:, None, :] * words[None]).reshape(width * self.vocab_size, -1)
        index = x + torch.arange(width, device=x.device) * self.vocab_size  # word j of a row: table block j
        # A word index outside the vocabulary must not read another position's block: send it past the
        # table, where embedding_bag refuses it (no value is read here, so vmap and graphs still work).
        index = torch.where((x >= 0) & (x < self.vocab_size), index, width * self.vocab_size)
        if n == 1:  # one sample, as torch.func transforms (the per-sample Fisher's vmap) see it: embedding_bag
            # has no batching rule there and would fall back to a slow loop; a plain gather and sum has one.
            return F.embedding(index, table).sum(2).split(self.dim, -1)
        return F.embedding_bag(index.reshape(-1, width), table, mode="sum").view(n, rows, -1).split(self.dim, -1)

    def _attend(self, scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Softmax over the real slots (linear start: the raw scores), 0 on empty slots. With
        ``empty_slots="attended"`` the softmax's denominator also counts the ``sentences - n`` empty slots of
        a story of n sentences, each exp(0): one more logit, log(sentences - n), whose weight is dropped."""
        if self.linear_start:
            return scores * real
        if self.empty_slots == "attended":
            empty = (self.sentences - real.sum(1, keepdim=True)).to(scores.dtype)
            scores = torch.cat([scores.masked_fill(~real, float("-inf")), empty.log()], 1)
            return torch.softmax(scores, 1)[:, :-1]
        scores = scores.masked_fill(~real, float("-inf")).masked_fill(~real.any(1, keepdim=True), 0.0)
        return torch.softmax(scores, 1) * real  # a story without sentences attends to nothing

    def _check(self, x: torch.Tensor) -> None:
        if (
            not isinstance(x, torch.Tensor)
            or x.dtype not in (torch.int64, torch.int32)
            or x.dim() != 3
            or not 2 <= x.shape[1] <= self.sentences + 1
            or x.shape[2] > self.words
        ):
            got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise LifelongError(
                f"MemN2N reads word indices of shape (N, S + 1, W), S <= {self.sentences} story sentences and "
                f"the question, W <= {self.words} words (babi.pack), not {got}; use it with the babi benchmark"
            )
        # Word indices are range-checked in _embed without reading them here: reading values costs a sync
        # every step, and torch.func transforms (the per-sample Fisher's vmap) do not allow it.

    def extra_repr(self) -> str:
        return (
            f"vocab_size={self.vocab_size}, n_answers={self.n_answers}, sentences={self.sentences}, "
            f"words={self.words}, dim={self.dim}, hops={self.hops}, position_encoding={self.position_encoding}, "
            f"temporal={self.temporal}, noise={self.noise}, linear_start={self.linear_start}, "
            f"tied_answers={self.answer is None}, empty_slots={self.empty_slots}"
        )

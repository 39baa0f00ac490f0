"""LAMOL's samples as token sequences, for a bAbI stream; and the QA model that reads them (methods/memory/lamol.py).

The token table: the stream's vocabulary words (token id = word id, so 0 is padding and 1 ``<unk>``), then
every answer label that is not a word (a test-only list such as ``football,apple,milk``), so that every
answer is ONE token, then ``.`` ``?`` ``<ans>`` ``<eos>`` and one generation token ``<gen:k>`` per task
(LAMOL's task-specific tokens). A packed bAbI sample (``babi.pack``: story rows newest first, question
last) becomes, as LAMOL writes its samples (Sun, Ho & Lee 2020, arXiv 1909.03329, Sec. 3):

    QA input:      story (oldest first, "." after each sentence)  question  ?  <ans>
    LM sequence:   <gen:k>  story  question  ?  <ans>  answer  <eos>

The conversion is whole-batch tensor work: the story and question words are laid out in a grid with a
``.`` after each sentence row and ``? <ans>`` after the question, and the real tokens are moved to the
front of each row by a scatter to their running count (no Python loop over samples).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lifelong.data.datasets import babi
from lifelong.models.transformer import TransformerLM

SPECIALS = (".", "?", "<ans>", "<eos>")
SIZES = {"d_model": 128, "layers": 2, "heads": 4}  # LAMOL's default network (0.50 M parameters on bAbI's 20 tasks)
CHUNK = 16  # sequences per forward pass of the language model (LamolQA.hidden)


class Tokens:
    """The token table of a stream (``vocabulary``, ``answers`` = its class names, ``n_tasks``) and the
    conversions between packed samples, token sequences and ``babi.Example``."""

    def __init__(self, vocabulary: Sequence[str], answers: Sequence[str], n_tasks: int):
        words = list(vocabulary)
        self.n_words = len(words)
        extra = [a for a in dict.fromkeys(answers) if a not in set(words)]
        self.names = [*words, *extra, *SPECIALS, *(f"<gen:{k}>" for k in range(n_tasks))]
        self.id = {name: i for i, name in enumerate(self.names)}
        self.dot, self.ask, self.ans, self.eos = (self.id[s] for s in SPECIALS)
        self.gen = torch.tensor([self.id[f"<gen:{k}>"] for k in range(n_tasks)])
        self.answer_names = list(answers)
        self.answers = torch.tensor([self.id[a] for a in answers])  # output unit -> token

    def __len__(self) -> int:
        return len(self.names)

    def qa(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The QA inputs of packed samples ``x`` (N, S+1, W): tokens (N, L) left-aligned, padded with 0, and
        each one's length (N,); its last token is ``<ans>``, after which the answer comes."""
        story, question = babi.unpack(x)
        story = story.flip(1)  # oldest first; empty slots now come first and are dropped below
        n, s, _ = story.shape
        words = story.ne(0)
        grid = torch.cat([story, story.new_full((n, s, 1), self.dot)], 2).reshape(n, -1)
        keep = torch.cat([words, words.any(2, keepdim=True)], 2).reshape(n, -1)
        ends = question.new_tensor([self.ask, self.ans]).expand(n, 2)
        grid = torch.cat([grid, question, ends], 1)
        keep = torch.cat([keep, question.ne(0), torch.ones_like(ends, dtype=torch.bool)], 1)
        lengths = keep.sum(1)
        longest = int(lengths.max())
        where = torch.where(keep, keep.cumsum(1) - 1, longest)  # each token's place; the rest to a spare column
        out = grid.new_zeros(n, longest + 1).scatter_(1, where, grid)
        return out[:, :longest], lengths

    def lm(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LM sequences ``<gen:task> QA-input answer <eos>`` (N, L + 3) and their lengths, for samples
        ``x`` with answers ``y`` (output units) of stream tasks ``task`` (N,)."""
        qa, lengths = self.qa(x)
        rows = torch.arange(len(qa), device=qa.device)
        out = torch.cat([self.gen.to(qa.device)[task][:, None], qa, qa.new_zeros(len(qa), 2)], 1)
        out[rows, lengths + 1] = self.answers.to(qa.device)[y]
        out[rows, lengths + 2] = self.eos
        return out, lengths + 3

    def words(self, ids: Sequence[int]) -> list[str]:
        return [self.names[i] for i in ids]

    def example(self, ids: Sequence[int], task: int) -> babi.Example | str:
        """A generated sequence (after its ``<gen:k>``) back as a ``babi.Example`` (whose ``task`` is
        ``task``), or why not: "no end" (no ``<eos>``), "malformed" (not story ``?`` ``<ans>`` answer: a
        special token elsewhere, an empty sentence or question...), "answer" (not an answer token)."""
        ids = list(ids)
        if self.eos not in ids:
            return "no end"
        ids = ids[: ids.index(self.eos)]
        if len(ids) < 3 or ids[-2] != self.ans or ids[-3] != self.ask:
            return "malformed"
        body, answer = ids[:-2], ids[-1]
        if any(i >= self.n_words and i not in (self.dot, self.ask) for i in body):
            return "malformed"
        if self.names[answer] not in self.answer_names:
            return "answer"
        parsed = babi.from_words([*self.words(body), self.names[answer]], task, self.answer_names)
        return "malformed" if parsed is None else parsed


class LamolQA(nn.Module):
    """The language model as the stream's QA model: ``forward(x)`` (packed samples) -> (N, n_answers), the
    logits of the token after ``<ans>`` restricted to the answer tokens, in the stream's answer order."""

    def __init__(self, tokens: Tokens, lm: TransformerLM):
        super().__init__()
        self.tokens, self.lm = tokens, lm
        self.register_buffer("answer_ids", tokens.answers.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qa, lengths = self.tokens.qa(x)
        h = self.hidden(qa, lengths)
        return self.lm.logits(h[torch.arange(len(h)), lengths - 1], self.answer_ids)

    def hidden(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The LM's states of padded sequences, computed in chunks of ``CHUNK`` sequences of similar length
        (sorted), each only as wide as its longest: attention costs each chunk's width squared, and bAbI's
        lengths vary (task 2: 99 tokens on average, 319 at most); an evaluation batch of thousands never
        holds one attention matrix of them all at the longest one's length."""
        out = self.lm.embed.weight.new_zeros(*tokens.shape, self.lm.embed.weight.shape[1])
        for idx in lengths.argsort().split(CHUNK):
            width = int(lengths[idx].max())
            out[idx, :width] = self.lm.hidden(tokens[idx, :width])
        return out

    def losses(self, x, y, task, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """LAMOL's two losses on one batch, in one pass (``hidden``'s chunks) over the QA inputs and the LM
        sequences stacked: the QA loss (cross-entropy of the answer among the answer tokens, plus the scenario's
        additive ``mask``) and the LM loss (next-token cross-entropy over every token of the whole LM
        sequence, averaged over tokens as the authors' code does)."""
        qa, qa_len = self.tokens.qa(x)
        seq, seq_len = self.tokens.lm(x, y, task)
        inputs, targets = seq[:, :-1], seq[:, 1:]
        width = max(qa.shape[1], inputs.shape[1])
        h = self.hidden(torch.cat([_pad(qa, width), _pad(inputs, width)]), torch.cat([qa_len, seq_len - 1]))
        n = len(qa)
        answer_logits = self.lm.logits(h[torch.arange(n), qa_len - 1], self.answer_ids)
        qa_loss = nn.functional.cross_entropy(answer_logits if mask is None else answer_logits + mask, y)
        real = torch.arange(targets.shape[1], device=x.device) < (seq_len - 1)[:, None]
        lm_logits = self.lm.logits(h[n:, : targets.shape[1]][real])
        return qa_loss, nn.functional.cross_entropy(lm_logits, targets[real])


def lamol_qa(stream, d_model: int = SIZES["d_model"], layers: int = SIZES["layers"], heads: int = SIZES["heads"]):
    """LAMOL's QA model for a text stream, untrained: a causal transformer LM over the stream's tokens, long
    enough for ``<gen:k>``, every sentence with its ".", the question, "?", ``<ans>``, the answer, ``<eos>``.
    Any method can train it (``model transformer``): finetune, joint and replay beside LAMOL."""
    tokens = Tokens(stream.vocabulary, stream.class_names, len(stream))
    sentences, words = stream.input_shape[0] - 1, stream.input_shape[1]
    length = 1 + sentences * (words + 1) + words + 4
    return LamolQA(tokens, TransformerLM(len(tokens), d_model, layers, heads, max_length=length))


def _pad(tokens: torch.Tensor, width: int) -> torch.Tensor:
    return nn.functional.pad(tokens, (0, width - tokens.shape[1]))

"""LAMOL: one language model that answers the current task and writes pseudo-samples of the earlier ones.

Sun, Ho & Lee 2020, "LAMOL: LAnguage MOdeling for Lifelong Language Learning", ICLR, arXiv 1909.03329, and
their code (jojotenya/LAMOL: ``train.py``, ``utils.py``), for a bAbI stream:

- **One model, two objectives** (Sec. 3): a causal transformer LM (models/transformer.py, from scratch:
  no pretrained GPT-2 here) reads ``story question ? <ans>`` and is scored on the next token, the answer
  (the QA loss); it also learns the whole sample ``<gen:k> story question ? <ans> answer <eos>`` as a
  language model (the LM loss, every next token). L = L_QA + λ_LM · L_LM with λ_LM = ``lm_weight`` = 0.25
  (the authors' ``lm_lambda``). The QA input carries no task token: at test time the task is unknown.
- **Generative replay** (Sec. 3, "task-specific tokens"): before task t ≥ 2 the model samples
  γ·|task t| pseudo-samples (γ = ``gen_ratio`` = 0.2, the paper's LAMOL_0.2; rounded up, then down to a
  multiple of the earlier tasks as the code does), an equal share from each earlier task's ``<gen:k>``, by
  top-k sampling (k = ``top_k`` = 20, temperature 1, the code's defaults). A sample that does not parse
  back into story, question and answer (lamol_tokens.py; ``babi.from_words``), whose answer is not an
  answer, or that does not fit the stream's encoding is dropped and counted; the rest are packed like real
  samples and trained on with the same two losses and their own ``<gen:k>``.
- **Mixing**: the paper adds the pseudo-samples to the new task's data, one shuffled data set. Here fit()
  owns the batches of the task, so each batch of n new samples gets n·P/N pseudo-samples (P in the pool,
  N in the task; the fraction carried to the next batch), drawn from a shuffled pass over the pool: over
  an epoch each pseudo-sample is seen once, as in the concatenated set, and every batch has the same mix.
  The losses are means over the merged batch (the QA loss per sample, the LM loss per token), as theirs.
- **Real replay** (``real_replay``, the paper's LAMOL^REAL upper bound): the same number of REAL
  training samples of the earlier tasks (equal shares, drawn without replacement; the code draws with)
  instead of generated ones. It reads the earlier tasks' training data, which generative replay never does.

Deviations: the QA loss is over the answer tokens only (the library's classifier: fit() evaluates the
argmax over the answers, and task-IL and class-IL masks apply to them), where the authors' is over the
whole vocabulary and also scores ``<eos>`` after the answer (here in the LM loss only). The given model is
ignored: ``prepare`` returns LAMOL's own model (lamol_tokens.LamolQA), which fit() trains and evaluates.
Train it with Adam (``optimizer adam``, lr about 1e-3 from scratch; the authors fine-tune GPT-2 at 6.25e-5).

Price: a transformer reads every token of a story, where the memory network sums each sentence's words.
``benchmarks/babi_step_cost.py`` (batch 32, one thread, on a 2-core machine busy with two other jobs): a
LAMOL step (both losses) costs 125-1260 ms depending on the task (task 3's QA inputs: 230 tokens on
average), the same transformer trained on the answer alone 50-590 ms, the memory network (d 50) 7-22 ms;
one epoch over the 20 tasks' 1000 questions each: 203 s, 100 s and 8 s. No data is kept between tasks:
the pool of pseudo-samples is written at the start of a task and dropped at its end.

``facts()``: per task from the second, the pseudo-samples generated, the share that parsed, why the others
were dropped, and a few parsed ones as text: what the model "remembers" of the earlier tasks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from lifelong.data.datasets import babi
from lifelong.errors import LifelongError, option, warn
from lifelong.methods.base import Method, param
from lifelong.methods.memory.lamol_tokens import SIZES, LamolQA, lamol_qa
from lifelong.methods.memory.scoring import own_units

SHOWN = 5  # parsed pseudo-samples kept as text per task, for the report
CHUNK = 256  # sequences generated at once


@dataclasses.dataclass
class LAMOL(Method):
    """L_QA + λ_LM · L_LM on the task's data and on pseudo-samples the model wrote of the earlier tasks."""

    name: ClassVar[str] = "lamol"
    scratch: ClassVar[tuple[str, ...]] = ("_masks", "_order")

    lm_weight: float = param(0.25, "λ_LM: weight of the language-modelling loss (>= 0)", min=0)
    gen_ratio: float = param(0.2, "γ: pseudo-samples per new task's training sample (> 0)")
    top_k: int = param(20, "top-k sampling when generating pseudo-samples", min=1)
    real_replay: bool = param(False, "replay real samples of earlier tasks instead (the paper's upper bound)")
    d_model: int = param(SIZES["d_model"], "the transformer's width (a multiple of heads)", min=1)
    layers: int = param(SIZES["layers"], "transformer blocks", min=1)
    heads: int = param(SIZES["heads"], "attention heads per block", min=1)

    def __post_init__(self):
        super().__post_init__()
        for name in ("lm_weight", "gen_ratio"):
            if not math.isfinite(getattr(self, name)):
                raise LifelongError(f"lamol: {option(name)} must be a finite number (got {getattr(self, name)!r})")
        if self.gen_ratio <= 0:
            raise LifelongError(f"lamol: {option('gen_ratio')} must be > 0 (got {self.gen_ratio!r})")
        if self.d_model % self.heads:
            raise LifelongError(
                f"lamol: {option('d_model')} {self.d_model} must be a multiple of {option('heads')} {self.heads}"
            )

    def prepare(self, model, stream):
        """Builds and returns LAMOL's own QA model for ``stream`` (a text stream); ``model`` is not used."""
        if not stream.vocabulary:
            raise LifelongError(f"lamol needs a text stream of questions; use {option('benchmark')} babi")
        self.stream = stream
        self.vocab = babi.Vocabulary(tuple(stream.vocabulary), tuple(stream.class_names))
        model = lamol_qa(stream, self.d_model, self.layers, self.heads).to(stream.tasks[0].train_x.device)
        self.tokens = model.tokens
        self._rng = torch.Generator().manual_seed(torch.initial_seed() + 1)
        self._learned: list[int] = []
        self.pool = {"x": None, "y": None, "task": None}
        self.history: list[dict] = []
        self._warned = False
        return model

    def on_optimizer(self, optimizer) -> None:
        if isinstance(optimizer, torch.optim.SGD) and not self._warned:
            self._warned = True
            warn(f"lamol's transformer learns slowly with SGD; use {option('optimizer')} adam, {option('lr')} 1e-3")

    def before_task(self, task, model) -> None:
        self._task, self._masks = task.id, own_units(self.stream, task)
        self._owed, self._order, self._cursor = 0.0, None, 0
        if not self._learned:
            return
        total = math.ceil(self.gen_ratio * len(task.train_y))
        share = max(1, total // len(self._learned))  # equal shares (the code: total - total % tasks)
        if self.real_replay:
            parts = [self._real(k, share) for k in self._learned]
            self.history.append({"task": task.name, "replayed": sum(len(p[1]) for p in parts)})
        else:
            parts = [self._generate(model, k, share) for k in self._learned]
        self.pool = {key: torch.cat([p[i] for p in parts]) for i, key in enumerate(("x", "y", "task"))}
        self._rate = len(self.pool["y"]) / len(task.train_y)

    def _real(self, k: int, share: int) -> tuple[torch.Tensor, ...]:
        old = self.stream.tasks[k]
        pick = torch.randperm(len(old.train_y), generator=self._rng)[:share].to(old.train_y.device)
        return old.train_x[pick], old.train_y[pick], torch.full_like(pick, k)

    @torch.no_grad()
    def _generate(self, model: LamolQA, k: int, share: int) -> tuple[torch.Tensor, ...]:
        """``share`` samples from ``<gen:k>``, parsed; the counts and a few examples go to ``generated``."""
        was_training = model.training
        model.eval()
        device = self.stream.tasks[0].train_x.device
        prefix = self.tokens.gen[k].repeat(share, 1).to(device)
        rows = [
            row
            for chunk in prefix.split(CHUNK)
            for row in model.lm.generate(chunk, model.lm.max_length, self.top_k, self._rng, self.tokens.eos).tolist()
        ]
        model.train(was_training)
        examples, dropped = [], {}
        sentences, words = self.stream.input_shape[0] - 1, self.stream.input_shape[1]
        for row in rows:
            parsed = self.tokens.example(row[1:], task=k)
            if not isinstance(parsed, str) and max(map(len, (*parsed.story, parsed.question))) > words:
                parsed = "too long"  # a sentence longer than the stream's encoding holds
            if isinstance(parsed, str):
                dropped[parsed] = dropped.get(parsed, 0) + 1
            else:
                examples.append(parsed)
        self.history.append(
            {
                "task": self.stream.tasks[k].name,
                "during": self.stream.tasks[self._task].name,
                "generated": len(rows),
                "parsed": len(examples),
                "parse_share": len(examples) / max(len(rows), 1),
                "dropped": dropped,
                "examples": [" ".join(babi.to_words(ex)) for ex in examples[:SHOWN]],
            }
        )
        if not examples:
            empty = torch.zeros(0, *self.stream.input_shape, dtype=torch.int64, device=device)
            return empty, empty.new_zeros(0), empty.new_zeros(0)
        encoded = babi.encode(examples, self.vocab, sentences, words)
        x = babi.pack(encoded.story, encoded.question).to(device)
        return x, encoded.answer.to(device), torch.full((len(x),), k, device=device)

    def loss(self, model, x, y, mask):
        task = torch.full_like(y, self._task)
        pick = self._replayed(len(y))
        if pick is not None:
            old = self.pool["task"][pick]
            if self._masks is not None:  # each sample scored on its own task's units
                mask = torch.cat([mask.expand(len(y), -1), self._masks[old]])
            x, y = torch.cat([x, self.pool["x"][pick]]), torch.cat([y, self.pool["y"][pick]])
            task = torch.cat([task, old])
        qa_loss, lm_loss = model.losses(x, y, task, mask)
        return qa_loss + self.lm_weight * lm_loss

    def _replayed(self, n: int) -> torch.Tensor | None:
        """Pool indices to mix into a batch of ``n`` new samples: n·P/N of them (the fraction carried over),
        the next ones of a shuffled pass over the pool that restarts when it is used up."""
        if not self._learned or not len(self.pool["y"]):
            return None
        self._owed += n * self._rate
        m = int(self._owed)
        self._owed -= m
        taken = []
        while m > 0:
            if self._order is None or self._cursor == len(self._order):
                self._order, self._cursor = torch.randperm(len(self.pool["y"]), generator=self._rng), 0
            step = min(m, len(self._order) - self._cursor)
            taken.append(self._order[self._cursor : self._cursor + step])
            self._cursor, m = self._cursor + step, m - step
        return torch.cat(taken).to(self.pool["y"].device) if taken else None

    def after_task(self, task, model) -> None:
        self._learned.append(task.id)
        self.pool = {"x": None, "y": None, "task": None}  # written anew for the next task: nothing is kept

    def facts(self) -> dict:
        if not hasattr(self, "tokens"):
            return {}
        key = "real_replay" if self.real_replay else "pseudo_samples"
        return {"tokens": len(self.tokens), key: self.history}

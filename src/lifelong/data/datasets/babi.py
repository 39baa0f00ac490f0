"""bAbI question answering, tasks 1–20 (Weston et al. 2015, arXiv 1502.05698), v1.2 English text files.

Three layers, each usable on its own:

1. **Parsing** (``parse``, ``read_file``): the bAbI text format, ``ID text`` for a story sentence and
   ``ID question<TAB>answer<TAB>supporting IDs`` for a question; an ID of 1 starts a new story and a
   story may carry several questions. Each question becomes one ``Example`` that sees the story
   sentences before it. Questions are not story sentences (as in the memory network's code, Sukhbaatar
   et al. 2015), so supporting-fact IDs are mapped to indices into the sentences the question sees.
   Words are lowercased and stripped of punctuation (``.`` ``?`` and the like). An answer is kept as
   ONE label even when it is a comma-separated list (task 8, ``"apple,milk"``) or path (task 19,
   ``"n,w"``), as the memory network paper does: the answer is a choice among labels, not a sequence.
2. **Encoding** (``Vocabulary``, ``encode``, ``decode``): a word vocabulary built from training data
   (index 0 = ``<pad>``, 1 = ``<unk>``; every answer label is also one word, so a language model can
   emit an answer as one token) and an answer vocabulary shared across tasks (the class labels).
   Stories are capped to the ``memory_size`` MOST RECENT sentences (default 50: the memory of
   Sukhbaatar et al. 2015, arXiv 1503.08895), stored newest first, so memory slot ``i`` holds the
   sentence ``i`` steps back from the question and the temporal encoding can be indexed by slot;
   padded slots and words are 0. A test word not in the training vocabulary is encoded as ``<unk>``
   (index 1) rather than refused: bAbI's test sets are drawn from the same templates, and the memory
   network's embedding of an unseen word could not have been learned anyway. The answer labels, unlike
   the words, are taken from the training AND test files, like the class names of an image data set and
   like the authors' code (whose dictionary covers every file): in the 1k set, one test question of
   task 8 has a list never seen in training (``football,apple,milk``); it keeps its own label, which a
   model never trained on it gets wrong. An answer outside the vocabulary is refused by ``encode``
   (it would be a class the model cannot output). ``decode`` is the inverse, for reading back what a
   model (e.g. LAMOL's generator) produced; ``to_words`` / ``from_words`` give a flat word sequence
   (``.`` after each sentence, ``?`` after the question, then the answer) and parse one back,
   returning None when it is not a well-formed example.
3. **Loading** (``load_tasks``): looks for the files in ``data_dir``, then ``$LIFELONG_DATA``, then the
   cache ``~/.cache/lifelong/babi`` (``$XDG_CACHE_HOME`` respected), each either directly
   (``<dir>/en/qa1_single-supporting-fact_train.txt``) or one level down (``<dir>/babi/en/...``); the
   10k set lives in ``en-10k`` and may be gzip-compressed (``.txt.gz``). Every file is verified against
   the sha256 of its text published with the data (``/work/shared/data/babi/SOURCE.md``); the 10k
   training file of task 3 has no published sum and is read unverified, with a warning. If no folder
   holds the files, the official archive is downloaded once into the cache, every file is verified in
   a temporary folder and only then moved into place.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lifelong.data.datasets import mnist
from lifelong.errors import LifelongError, option, warn

URL = "https://dl.fbaipublicfiles.com/babi/tasks_1-20_v1-2.tar.gz"
ARCHIVE_ROOT = "tasks_1-20_v1-2"
SIZES = {"1k": "en", "10k": "en-10k"}  # the data set's size -> its folder in the archive
MEMORY_SIZE = 50  # sentences a memory network sees (Sukhbaatar et al. 2015)
PAD, UNK = "<pad>", "<unk>"
PUNCTUATION = re.compile(r"[.?!,;:]")

# task -> (file name part, sha256 of en/ train, sha256 of the test file (en/ and en-10k/ are identical),
#          sha256 of en-10k/ train as text, None where SOURCE.md has none)
TASKS = {
    1: (
        "single-supporting-fact",
        "c64ba9b1a49bbb111ffc4cd2ae4f129d25c012399dd7ade9679eea464b9afb05",
        "55acf66cef2f6d798e2aa1d056e1ec8f24e910ea9215b639450574321132959b",
        "749ea9f7c99070feb2d88c975a254417a0dcc8274add4435ae5ae24c7afc7e9d",
    ),
    2: (
        "two-supporting-facts",
        "a4978af5bc0dc30191810e7c9949aaa6eae939ed0f6beb9fcb5f4330c2a27860",
        "eff93fb9cd81ba02eb765772cf7cc269769ed44ec71cbbbc19cfb16ee5eba0f6",
        "d4074c0c5d54f70ce2f538056ce2b6ef6a313da336da4245f1a24f1298e37ef3",
    ),
    3: (
        "three-supporting-facts",
        "a6e78019f36a02a7ed71fe6aaded0b563ff09c8deec392931801fcd9c6af4d60",
        "17795c977100baf8188f386522ae301b62d6c1a13efc01b3aea781e588b4d57f",
        None,
    ),
    4: (
        "two-arg-relations",
        "c9370502d85fa382f32d1fea2111e817f81ae9e3e79eb2924a1a5392a90417fa",
        "07f0ca18ddeea9eed4ba6d59e162adcb0ce44815721114b3540d92825509331e",
        "5d11b821d35234988ab907866aa7ce718e6b6d751acf63bdef52262afb59f12c",
    ),
    5: (
        "three-arg-relations",
        "086cd59c3ca9677bfac3d6a22ca5853c76a5c1fbae3159c7c4a6aef759a74ec0",
        "ec825c1c8a76e63a31f0d7a7763cd63740e98332fa9bdf246a19068949bd5f97",
        "2506910935b701bac64fc8b1d7ff12bd8d0f47ceefca183454282bec784c12a5",
    ),
    6: (
        "yes-no-questions",
        "5a133115ee35d475776df703ff605d145b11effbcdbf7e74861f9d5639246a5a",
        "b108b16f1eccbd1c24df6dca2649079a7b2f10af7fd12d4c45a3393802de59e3",
        "602f379184bf3cb59660d0f7769d9c94ccdc1fc4d82dfe90bd460d985b1ff0c5",
    ),
    7: (
        "counting",
        "dca03bd91876951c49f1c971c83c9dd55404de60201b7b6435451cf7ddb4751c",
        "a74d1f2b91329b2bae814d41cdac2fbdfdf0328562b7d8afa9a0fa576d461e27",
        "4a2508733bef9b38cfce4b3108a91b83cdee378de4a7370e4d32fea2dacd3b7d",
    ),
    8: (
        "lists-sets",
        "058604df6f9440458317e8ae685d2b7b84261e1a80b4d6410a9140d16f81bf06",
        "362a653c821a580fa315a85243b4f03bfa06fa7e0269b6f8e596f8fe6911646a",
        "9518da2d3aa5d98bec33335e0d5ba3a22c2bd1929ee679085d37eb50a7652e4a",
    ),
    9: (
        "simple-negation",
        "0c3b89921af0caea1c4059ee3f7b7f2a88869f924195a428da37820446b8c49f",
        "63590aff3f89993db409f0e9a9eb39c2a5b9d5efff99b255d800a891b0044d9f",
        "5f8949f6ef7d64516fc4dd5732b12b5932d057b1a614e8ac94e795fb020d4ff0",
    ),
    10: (
        "indefinite-knowledge",
        "0b7691689447bab05476c5b48c44999b41e747c3978df69c18fdd87b60d6e8b3",
        "fde8f20ed0b3ba979058ed391a566af34653f23baab5b2793ee37f87ef4e88b7",
        "c5c0788b0446095c07a0442784cad2b59c1d58e875ebe8ad852f5e3f628613f4",
    ),
    11: (
        "basic-coreference",
        "9468de9a1f256f43dfda693a5d07182d21149a82b65f7c2451c64e9cff5eb138",
        "46f3290d0158ce1285a40cd2d793f5a65f86ae5000226e165cbc85a3dfeb2f6f",
        "edfcd97fecd4a5045af25e1790cf1408856ae362c39521b1b69cd32b88ec0ced",
    ),
    12: (
        "conjunction",
        "45c2764bb2d3c8f699d35e9d9aa7958fcd96379c6e907116cdf74526c108bb25",
        "6437718f8f9801ce345869e910b896836cdc6fd2d01dc7b4d2df49730703b4b1",
        "39d58df3564916c66cebc98befb65d605c032181e51208730fd8837a77bc166a",
    ),
    13: (
        "compound-coreference",
        "533a391edbda743e4c99504de88b40cdded5b1d5ef454d1390f0863f748a4cc9",
        "76a25b684f23c9cc473d8cd1465506168b9a1ec8891cfc59d0bbd87e6a064990",
        "c530fdf122d26617a8a03ba5cdbacee87c22624ba7f50d1f07f9658c900e22d8",
    ),
    14: (
        "time-reasoning",
        "b7561cbc624205c9c2fdbb8c843cfa8ad90edd65e78bb223fc6dea8113662df8",
        "e3f0b19858ffbec3ed1e49076cc4d1295a89ce146c50318b862f13f202b3caf2",
        "c322e0814eef71f088af1aa1334e7ae4b1ee6ca18f2ee94c05e2189226964ed6",
    ),
    15: (
        "basic-deduction",
        "e856ebfdcce4dd7d617c1d10f985e96a0850c0ca18e9a19a017cb710d135ed3d",
        "32b77e117fe9acf5f94906684e3b5206de0108e646c76e1da3e022896ec7ee94",
        "0a86673f7fafa484f8ee394048f03de19405bdc40b58f21086969efad2862010",
    ),
    16: (
        "basic-induction",
        "20121005137e3d4b061a086eb177a456303d5742b764eb8da2d0e480b6af4d28",
        "4a11e55366f2a5a859b5a81f683ee23801bdbe71ef984e51adb976bd053e8dcf",
        "27fef347ce0b25dd148efea2b15f154926e0e9069d4ea6ab9cfca3add492ab35",
    ),
    17: (
        "positional-reasoning",
        "20083bf56ff74f0e7cf5e3e2f8c3905cdb8ef09293c3e8cf7a96ed8b45ae2277",
        "9e1e0250ed4ec1831757fab26c04138f81ea557ebf6976a220db879cbed04bac",
        "8a383651e009db50d6c9effed5778b8646c28c55fadb1592b5f4d8d3a187bbce",
    ),
    18: (
        "size-reasoning",
        "18b7dcf52c9a0e87e4e7dd3d65b7e5a630de039645f52a1294197af7481d739d",
        "d34f70eb7228a276fcb3a7854174fe562c5634f4fb454a39fc3d1ad9934be3ef",
        "9e7c15107067d2070170ef12579a8bfe34dfc35a7ac9ebd13f2001dc1a7488f9",
    ),
    19: (
        "path-finding",
        "dcb788352a56effb7bea1449128f31cc9c342c8c327b6df2caeee0e379e6ad3a",
        "023e391f0d7f79c9e6ae1c46c093e2d0dbd50ab8fbd8965e037a75e3614c20e5",
        "6cfdc6f448e3cf0e3d8a390fa3add461935b033f89ede32aeef30812401ec91e",
    ),
    20: (
        "agents-motivations",
        "29580ad55fb7b4b29ba014696056cc68f8f347dac3be88470fd692ad60150398",
        "bd3bde3788ac14ba0ae095078f7b820fbd2bfa6a34dba9d1d46a34afde9c2729",
        "36f20f3baf6bad2297d5b9fd877e633550c36106fe78bc10ddfb7b1eede62573",
    ),
}


# ----------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Example:
    """One question with the story it sees.

    ``story``: the sentences before the question, oldest first, each a tuple of lowercase words;
    ``question``: its words; ``answer``: one label (``"n,w"`` for a task-19 path);
    ``supporting``: indices into ``story`` of the supporting facts, in the file's order;
    ``task``: the bAbI task number, 1–20.
    """

    story: tuple[tuple[str, ...], ...]
    question: tuple[str, ...]
    answer: str
    supporting: tuple[int, ...]
    task: int

    def recent(self, memory_size: int) -> Example:
        """The same question seeing only its ``memory_size`` most recent sentences; supporting facts that
        fall out of that window are dropped, the others re-indexed."""
        cut = max(0, len(self.story) - memory_size)
        kept = tuple(i - cut for i in self.supporting if i >= cut)
        return Example(self.story[cut:], self.question, self.answer, kept, self.task)


def tokenize(text: str) -> tuple[str, ...]:
    """Lowercase words without punctuation: ``"Where is Mary? "`` -> ``("where", "is", "mary")``."""
    return tuple(PUNCTUATION.sub(" ", text.lower()).split())


def parse(lines: Iterable[str], task: int, source: str = "the text") -> list[Example]:
    """The examples of one bAbI file, given as its lines; ``source`` names it in error messages.

    Story IDs must start at 1 and increase by one within a story; a supporting-fact ID must name an
    earlier story sentence of the same story (not a question)."""

    def bad(number: int, why: str) -> LifelongError:
        return LifelongError(f"{source} line {number} is not in the bAbI format ({why}); replace the file")

    examples: list[Example] = []
    story: list[tuple[str, ...]] = []
    sentence_of: dict[int, int] = {}  # story line ID -> index into story
    previous = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        head, _, text = line.partition(" ")
        if not head.isdigit() or not text.strip():
            raise bad(number, "expected 'ID text'")
        line_id = int(head)
        if line_id == 1:
            story, sentence_of = [], {}
        elif line_id != previous + 1:
            raise bad(number, f"ID {line_id} follows {previous}; IDs count up from 1 within a story")
        previous = line_id
        if "\t" not in text:
            if not tokenize(text):
                raise bad(number, "a sentence without words")
            sentence_of[line_id] = len(story)
            story.append(tokenize(text))
            continue
        fields = text.split("\t")
        if len(fields) not in (2, 3):
            raise bad(number, "a question line has the fields question, answer, supporting IDs")
        question, answer = tokenize(fields[0]), fields[1].strip().lower()
        if not question or not answer or " " in answer:
            raise bad(number, "a question needs words and a one-word answer")
        ids = fields[2].split() if len(fields) == 3 else []
        if not all(i.isdigit() and int(i) in sentence_of for i in ids):
            raise bad(number, f"supporting IDs {fields[2].strip()!r} must name earlier sentences of the story")
        examples.append(Example(tuple(story), question, answer, tuple(sentence_of[int(i)] for i in ids), task))
    return examples


def read_file(path: str | Path, task: int) -> list[Example]:
    """The examples of one bAbI file (``.txt``, or ``.txt.gz``), unverified; ``load_tasks`` verifies."""
    return parse(_text(_bytes(Path(path)), path).splitlines(), task, source=str(path))


def _bytes(path: Path) -> bytes:
    """The file's text bytes (decompressed if it is a .gz file)."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError, zlib.error) as e:
        raise LifelongError(f"{path} cannot be read ({e}); replace it with the original file") from None


def _text(raw: bytes, path: str | Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LifelongError(f"{path} is not UTF-8 text; replace it with the original file") from None


# ----------------------------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Vocabulary:
    """Words and answer labels with their indices.

    ``words[0]`` is ``<pad>`` and ``words[1]`` ``<unk>``; then any ``extra`` tokens, then the words of the
    examples it was built from (story, question, and every answer label as one word), sorted.
    ``answers``: the answer labels, the classes of the QA task, numbered in task order (the labels of the
    lowest task first, each task's new labels sorted), so that the classes seen so far in a stream in
    task order form a prefix."""

    words: tuple[str, ...]
    answers: tuple[str, ...]

    @classmethod
    def build(
        cls, examples: Iterable[Example], extra: Sequence[str] = (), labels: Iterable[Example] = ()
    ) -> Vocabulary:
        """The vocabulary of ``examples`` (give it the training examples); ``extra`` adds special tokens
        (e.g. a language model's separators or task tokens) right after ``<pad>`` and ``<unk>``; the answers
        of ``labels`` (give it the test examples) join the answer labels, but not the words."""
        words: set[str] = set()
        answers: dict[int, set[str]] = {}
        for ex in examples:
            words.update(w for sentence in ex.story for w in sentence)
            words.update(ex.question)
            words.add(ex.answer)
            answers.setdefault(ex.task, set()).add(ex.answer)
        for ex in labels:
            answers.setdefault(ex.task, set()).add(ex.answer)
        specials = (PAD, UNK, *extra)
        ordered: list[str] = []
        for task in sorted(answers):
            ordered += sorted(answers[task] - set(ordered))
        return cls(specials + tuple(sorted(words - set(specials))), tuple(ordered))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self.words)} words, {len(self.answers)} answers)"

    def __post_init__(self):
        object.__setattr__(self, "_word_ids", {w: i for i, w in enumerate(self.words)})
        object.__setattr__(self, "_answer_ids", {a: i for i, a in enumerate(self.answers)})

    def word_id(self, word: str) -> int:
        """The word's index; 1 (``<unk>``) for a word not in the vocabulary."""
        return self._word_ids.get(word, 1)

    def answer_id(self, answer: str) -> int:
        if answer not in self._answer_ids:
            raise LifelongError(
                f"the answer {answer!r} is not among the vocabulary's {len(self.answers)} answers; "
                "build the vocabulary from the data of every task you encode"
            )
        return self._answer_ids[answer]


@dataclass(eq=False)
class Encoded:
    """Examples as int64 tensors (N = number of examples, S = memory slots, W = words per sentence).

    ``story`` (N, S, W): slot 0 is the most recent sentence, slot i the sentence i steps back;
    slots past the story's start and words past a sentence's end are 0 (``<pad>``).
    ``question`` (N, W), ``answer`` (N,) indices into ``Vocabulary.answers``, ``task`` (N,) bAbI task
    numbers, ``supporting`` (N, S) bool: slots holding a supporting fact (kept for analysis, e.g. where
    the attention goes; a supporting fact out of the memory is lost, and their order is not kept)."""

    story: torch.Tensor
    question: torch.Tensor
    answer: torch.Tensor
    task: torch.Tensor
    supporting: torch.Tensor

    def __len__(self) -> int:
        return len(self.answer)


def _row(words: Sequence[str], vocab: Vocabulary, width: int, what: str) -> list[int]:
    if len(words) > width:
        raise LifelongError(
            f"{what} has {len(words)} words, more than the {width} the encoding holds; "
            f"encode with words >= {len(words)}"
        )
    return [vocab.word_id(w) for w in words] + [0] * (width - len(words))


def encode(examples: Sequence[Example], vocab: Vocabulary, sentences: int, words: int) -> Encoded:
    """Examples as tensors with ``sentences`` memory slots (the most recent sentences are kept) and
    ``words`` words per sentence and question (a longer one is an error: nothing is cut silently)."""
    # Questions of one story share its sentence tuples: each distinct sentence is encoded once, into a
    # table whose row 0 is the padding, and the story tensor is gathered from it.
    table: dict[tuple[str, ...], int] = {}
    rows = [[0] * words]
    slots = np.zeros((len(examples), sentences), dtype=np.int64)
    supporting = torch.zeros(len(examples), sentences, dtype=torch.bool)
    for k, ex in enumerate(examples):
        kept = ex.recent(sentences)
        for slot, sentence in enumerate(reversed(kept.story)):  # newest first
            if sentence not in table:
                table[sentence] = len(rows)
                rows.append(_row(sentence, vocab, words, f"a story sentence of task {ex.task}"))
            slots[k, slot] = table[sentence]
        for i in kept.supporting:
            supporting[k, len(kept.story) - 1 - i] = True
    story = torch.from_numpy(np.asarray(rows, dtype=np.int64)[slots])
    question = torch.tensor(
        [_row(ex.question, vocab, words, f"a question of task {ex.task}") for ex in examples], dtype=torch.int64
    ).reshape(len(examples), words)
    answer = torch.tensor([vocab.answer_id(ex.answer) for ex in examples], dtype=torch.int64)
    task = torch.tensor([ex.task for ex in examples], dtype=torch.int64)
    return Encoded(story, question, answer, task, supporting)


def decode(encoded: Encoded, vocab: Vocabulary) -> list[Example]:
    """The inverse of ``encode``: each row back to an ``Example`` (story oldest first, padding dropped,
    ``<unk>`` where a word was unknown, supporting facts in story order). A story slot counts as a
    sentence when it holds a word."""
    out = []
    for k in range(len(encoded)):
        rows = [row for row in encoded.story[k].tolist() if any(row)]
        story = tuple(_words(row, vocab) for row in reversed(rows))
        support = tuple(sorted(len(rows) - 1 - i for i in encoded.supporting[k].nonzero().flatten().tolist()))
        question = _words(encoded.question[k].tolist(), vocab)
        answer = vocab.answers[int(encoded.answer[k])]
        out.append(Example(story, question, answer, support, int(encoded.task[k])))
    return out


def _words(ids: Sequence[int], vocab: Vocabulary) -> tuple[str, ...]:
    return tuple(vocab.words[i] for i in ids if i != 0)


def pack(story: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
    """Story (N, S, W) and question (N, W) as one tensor (N, S + 1, W), the question last, so that a bAbI
    set fits the library's one-input ``(x, y)`` tasks; ``unpack`` splits it again."""
    return torch.cat([story, question.unsqueeze(1)], dim=1)


def unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(story, question)`` from ``pack``'s (N, S + 1, W) tensor."""
    return x[:, :-1], x[:, -1]


def to_words(example: Example) -> list[str]:
    """A flat word sequence: each sentence followed by ``.``, the question by ``?``, then the answer label
    (one word). A language model can learn and generate examples in this form."""
    out = [w for sentence in example.story for w in (*sentence, ".")]
    return out + [*example.question, "?", example.answer]


def from_words(words: Sequence[str], task: int, answers: Iterable[str] | None = None) -> Example | None:
    """Parse ``to_words``' form back into an ``Example`` (no supporting facts); None if it does not parse:
    no ``?``, an empty sentence or question, not exactly one answer word after ``?``, a special token
    (``<pad>``, ``<unk>``) anywhere, or an answer outside ``answers`` when given."""
    words = list(words)
    if "?" not in words or PAD in words or UNK in words:
        return None
    mark = words.index("?")
    if len(words) != mark + 2 or words[-1] in (".", "?"):
        return None
    if answers is not None and words[-1] not in set(answers):
        return None
    story, current = [], []
    for w in words[:mark]:
        if w != ".":
            current.append(w)
        elif current:
            story.append(tuple(current))
            current = []
        else:
            return None  # an empty sentence
    if not current:
        return None  # no question
    return Example(tuple(story), tuple(current), words[-1], (), task)


# ------------------------------------------------------------------------------------------------ loading


@dataclass(eq=False)
class Babi:
    """Loaded bAbI tasks with one vocabulary and one tensor shape for all of them.

    ``train[t]`` / ``test[t]``: the examples of task ``t``; ``vocab`` is built from the training examples of
    every loaded task; ``sentences`` = min(``memory_size``, longest story), ``words`` = longest sentence or
    question, both over all loaded examples, so every task's tensors can be concatenated."""

    size: str
    folder: Path
    train: dict[int, list[Example]]
    test: dict[int, list[Example]]
    vocab: Vocabulary
    memory_size: int
    sentences: int
    words: int

    @property
    def tasks(self) -> tuple[int, ...]:
        return tuple(self.train)

    def encode(self, examples: Sequence[Example]) -> Encoded:
        return encode(examples, self.vocab, self.sentences, self.words)

    def decode(self, encoded: Encoded) -> list[Example]:
        return decode(encoded, self.vocab)


def cache_dir() -> Path:
    """``~/.cache/lifelong/babi`` (``$XDG_CACHE_HOME`` respected), beside MNIST's cache."""
    return mnist.cache_dir().parent / "babi"


def file_name(task: int, split: str) -> str:
    return f"qa{task}_{TASKS[task][0]}_{split}.txt"


def expected_sha256(task: int, split: str, size: str) -> str | None:
    """The published sha256 of the file's text; None for the one file SOURCE.md has none for."""
    _, train_1k, test, train_10k = TASKS[task]
    return test if split == "test" else (train_1k if size == "1k" else train_10k)


def find_folder(size: str, data_dir: str | None = None) -> Path | None:
    """The first ``en`` (1k) or ``en-10k`` (10k) folder under ``data_dir``, ``$LIFELONG_DATA`` or the cache,
    each looked at directly and in a ``babi`` subfolder."""
    sub = SIZES[size]
    for base in filter(None, (data_dir, os.environ.get("LIFELONG_DATA"), str(cache_dir()))):
        for folder in (Path(base) / sub, Path(base) / "babi" / sub):
            if folder.is_dir():
                return folder
    return None


def _verified(path: Path, task: int, split: str, size: str) -> bytes:
    raw = _bytes(path)
    expected = expected_sha256(task, split, size)
    if expected is None:
        warn(f"{path} has no published sha256 and is read unverified")
    elif hashlib.sha256(raw).hexdigest() != expected:
        raise LifelongError(
            f"{path} is corrupt (sha256 differs from the published one); "
            f"delete it and put the original file from {URL} there"
        )
    return raw


def _read_task(folder: Path, task: int, split: str, size: str) -> list[Example]:
    name = file_name(task, split)
    path = next((p for p in (folder / name, folder / (name + ".gz")) if p.is_file()), None)
    if path is None:
        raise LifelongError(
            f"{folder / name} is missing; copy {name} from {URL} ({ARCHIVE_ROOT}/{SIZES[size]}/) into {folder}, "
            f"or leave task {task} out of {option('tasks')}"
        )
    return parse(_text(_verified(path, task, split, size), path).splitlines(), task, source=str(path))


def load_tasks(
    tasks: Iterable[int] = range(1, 21),
    size: str = "1k",
    data_dir: str | None = None,
    memory_size: int = MEMORY_SIZE,
    download: bool = True,
) -> Babi:
    """Read and verify the train and test files of ``tasks`` (numbers 1–20) of the ``size`` ("1k" or "10k")
    set; see the module docstring for where they are looked for. ``download=False`` never downloads."""
    tasks = tuple(tasks)
    if size not in SIZES:
        raise LifelongError(f"{option('size')} must be one of {', '.join(SIZES)}, not {size!r}")
    if not tasks or not all(isinstance(t, int) and t in TASKS for t in tasks) or len(set(tasks)) != len(tasks):
        raise LifelongError(f"{option('tasks')} must be distinct bAbI task numbers 1-20, not {list(tasks)}")
    if not isinstance(memory_size, int) or memory_size < 1:
        raise LifelongError(f"{option('memory_size')} must be a positive number of sentences, not {memory_size!r}")
    folder = find_folder(size, data_dir)
    if folder is None:
        if data_dir:
            raise LifelongError(
                f"{option('data_dir')} {data_dir} has no bAbI folder {SIZES[size]}/ (nor babi/{SIZES[size]}/); "
                f"put the folder {SIZES[size]}/ of {URL} there "
                f"(as {Path(data_dir) / SIZES[size] / file_name(1, 'train')} and so on)"
            )
        if not download:
            raise LifelongError(
                f"the bAbI files are not on this machine; give their folder as {option('data_dir')} "
                f"or set LIFELONG_DATA (it must hold {SIZES[size]}/{file_name(1, 'train')} and so on)"
            )
        fetch(cache_dir())
        folder = cache_dir() / SIZES[size]
    train = {t: _read_task(folder, t, "train", size) for t in tasks}
    test = {t: _read_task(folder, t, "test", size) for t in tasks}
    everything = [ex for part in (train, test) for examples in part.values() for ex in examples]
    sentences = min(memory_size, max(len(ex.story) for ex in everything))
    words = max(len(s) for ex in everything for s in (*ex.story, ex.question))
    vocab = Vocabulary.build(
        (ex for examples in train.values() for ex in examples),
        labels=(ex for examples in test.values() for ex in examples),
    )
    return Babi(size, folder, train, test, vocab, memory_size, max(sentences, 1), words)


def fetch(target: Path, url: str | None = None, timeout: float = 60.0) -> None:
    """Download the official archive (``url``, default ``URL``) once and put its verified ``en`` and ``en-10k``
    files into ``target``.

    The archive is saved and unpacked inside a temporary folder next to ``target``; every file is
    checked against its published sha256 before any is moved into place, so a failed or corrupt
    download leaves nothing that looks good. Only the ``qa*.txt`` files of ``en`` and ``en-10k`` are kept."""
    url = url or URL
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".babi-") as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(archive, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise LifelongError(
                f"the bAbI files are not on this machine and could not be downloaded from {url} "
                f"({getattr(e, 'reason', e)}); put the folders en/ and en-10k/ of that archive in a folder "
                f"and give it as {option('data_dir')} (or set LIFELONG_DATA), or put them in {target}"
            ) from None
        staged = _unpack(archive, Path(tmp) / "files", url)
        for relative in staged:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / "files" / relative, target / relative)


def _unpack(archive: Path, into: Path, url: str) -> list[str]:
    """Write the archive's task files to ``into`` (as ``en/...`` and ``en-10k/...``) and verify them all;
    returns their relative paths. Member names are matched against the known file names, so nothing
    outside ``into`` is ever written."""
    wanted = {
        f"{ARCHIVE_ROOT}/{sub}/{file_name(t, split)}": (t, split, size)
        for size, sub in SIZES.items()
        for t in TASKS
        for split in ("train", "test")
    }
    staged = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name not in wanted or not member.isfile():
                    continue
                relative = member.name.split("/", 1)[1]
                (into / relative).parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(into / relative, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                staged.append((relative, *wanted[member.name]))
    except (OSError, tarfile.TarError, EOFError) as e:
        raise LifelongError(f"the archive downloaded from {url} is not a readable tar.gz ({e}); try again") from None
    if not any(size == "1k" for *_, size in staged):
        raise LifelongError(f"the archive downloaded from {url} holds no bAbI v1.2 task files; try again")
    for relative, task, split, size in staged:
        expected = expected_sha256(task, split, size)
        if expected and hashlib.sha256((into / relative).read_bytes()).hexdigest() != expected:
            raise LifelongError(
                f"{relative} in the archive downloaded from {url} is corrupt (sha256 differs from the published "
                "one); nothing was kept: try again, or put the original files in place by hand"
            )
    return [relative for relative, *_ in staged]

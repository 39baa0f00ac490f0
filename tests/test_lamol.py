"""LAMOL (Sun, Ho & Lee 2020) on tiny bAbI files: the language model's causal mask, samples as tokens and back,
the QA and LM losses against independent computations, generated and real replay, and fit() end to end."""

import math

import pytest
import torch
import torch.nn.functional as F
from hooks import at_task
from test_babi_data import STORIES, published_tasks

import lifelong as ll
from lifelong.data.datasets import babi
from lifelong.methods.memory import lamol_tokens
from lifelong.methods.memory.lamol import LAMOL
from lifelong.methods.memory.lamol_tokens import LamolQA, Tokens
from lifelong.models import MemN2N
from lifelong.models.transformer import TransformerLM
from lifelong.results import write_report

TASK_2 = (
    "1 Sandra went to the garden.\n"
    "2 Sandra took the football there.\n"
    "3 Where is the football? \tgarden\t2 1\n"
    "4 Sandra moved to the bathroom.\n"
    "5 Where is the football? \tbathroom\t4 2\n"
)
TEST_1 = "1 John moved to the bathroom.\n2 Where is John? \tbathroom\t1\n"
TEST_2 = "1 Mary went to the office.\n2 Where is Mary? \toffice\t1\n"  # "office": an answer no training file has


@pytest.fixture
def stream(tmp_path, monkeypatch):
    """bAbI tasks 1 and 2 from small published files, domain-IL; ``stream(scenario)`` for another."""
    folder = published_tasks(tmp_path, monkeypatch, ((1, STORIES, TEST_1), (2, TASK_2, TEST_2)))
    return lambda scenario="domain": ll.benchmarks.babi(n_tasks=2, scenario=scenario, data_dir=folder)


def memn2n(s):
    """The model fit() is given (and LAMOL ignores)."""
    return MemN2N(len(s.vocabulary), s.n_classes, s.input_shape[0] - 1, s.input_shape[1], dim=4, hops=1)


def qa_model(s, seed=0):
    torch.manual_seed(seed)
    tokens = Tokens(s.vocabulary, s.class_names, len(s))
    return LamolQA(tokens, TransformerLM(len(tokens), d_model=16, layers=2, heads=2, max_length=64))


def test_no_position_sees_the_future_and_padding_changes_nothing():
    torch.manual_seed(0)
    lm = TransformerLM(12, d_model=16, layers=2, heads=4, max_length=10).eval()
    tokens = torch.randint(1, 12, (3, 8))
    logits = lm(tokens)
    assert logits.shape == (3, 8, 12)
    for t in range(8):
        changed = tokens.clone()
        changed[:, t] = changed[:, t] % 11 + 1  # another real token
        after = lm(changed)
        assert torch.equal(after[:, :t], logits[:, :t])  # bit-identical before the change
        assert not torch.allclose(after[:, t], logits[:, t])
    # Right padding: the real positions' logits are the same as without it.
    padded = torch.cat([tokens, torch.zeros(3, 2, dtype=torch.int64)], 1)
    torch.testing.assert_close(lm(padded)[:, :8], logits)
    with pytest.raises(ll.LifelongError, match="longer than the language model's 10"):
        lm(torch.ones(1, 11, dtype=torch.int64))


def test_generation_stops_at_the_end_token_and_pads_after_it():
    torch.manual_seed(0)
    lm = TransformerLM(6, d_model=8, layers=1, heads=2, max_length=30).eval()
    with torch.no_grad():  # make token 5 (the end) the only likely one after token 3
        lm.embed.weight[5] = lm.embed.weight[3] * 50
    out = lm.generate(torch.full((4, 1), 3), max_new=20, top_k=2, generator=torch.Generator().manual_seed(0), end=5)
    assert out.shape[1] <= 21 and out[:, 0].eq(3).all() and (out == 5).any()
    for row in out.tolist():  # padding only after the end token
        end = row.index(5) + 1 if 5 in row else len(row)
        assert 0 not in row[:end] and set(row[end:]) <= {0}


def test_generation_with_the_key_value_cache_samples_what_full_passes_sample():
    torch.manual_seed(1)
    lm = TransformerLM(9, d_model=16, layers=2, heads=2, max_length=8).eval()
    prefix = torch.tensor([[3, 4], [5, 6], [7, 8]])
    cached = lm.generate(prefix, max_new=10, top_k=4, generator=torch.Generator().manual_seed(0))
    g, tokens = torch.Generator().manual_seed(0), prefix
    while tokens.shape[1] < 8:  # the whole sequence through the model at every step
        logits = lm(tokens)[:, -1]
        logits[:, 0] = float("-inf")
        values, ids = logits.topk(4, dim=1)
        tokens = torch.cat([tokens, ids.gather(1, torch.multinomial(values.softmax(1), 1, generator=g))], 1)
    assert torch.equal(cached, tokens)  # max_length 8 stops it after 6 new tokens


def test_a_packed_sample_becomes_LAMOLs_token_sequences(stream):
    s = stream()
    tokens = Tokens(s.vocabulary, s.class_names, len(s))
    # Every answer is one token: "office" (a test-only answer) has its own, after the words.
    assert "office" not in s.vocabulary and tokens.names[tokens.answers[s.class_names.index("office")]] == "office"
    x, y = s[1].train_x, s[1].train_y  # task 2's two questions: 2 and 3 story sentences
    qa, lengths = tokens.qa(x)
    first = "sandra went to the garden . sandra took the football there . where is the football ? <ans>".split()
    second = first[:12] + "sandra moved to the bathroom . where is the football ? <ans>".split()
    assert tokens.words(qa[0, : lengths[0]].tolist()) == first
    assert tokens.words(qa[1, : lengths[1]].tolist()) == second
    assert lengths.tolist() == [len(first), len(second)] and qa[0, len(first) :].eq(0).all()
    seq, seq_lengths = tokens.lm(x, y, torch.tensor([1, 1]))
    assert tokens.words(seq[0, : seq_lengths[0]].tolist()) == ["<gen:1>", *first, "garden", "<eos>"]
    assert tokens.words(seq[1, : seq_lengths[1]].tolist()) == ["<gen:1>", *second, "bathroom", "<eos>"]


def by_hand(tokens, s, x, y):
    """QA input and LM sequence of each sample from its words (babi.decode, babi.to_words), not the tensors."""
    story, question = babi.unpack(x)
    encoded = babi.Encoded(story, question, y, torch.zeros_like(y), torch.zeros(story.shape[:2], dtype=torch.bool))
    out = []
    for ex in babi.decode(encoded, vocab_of(s)):
        words = babi.to_words(ex)
        qa = [tokens.id[w] for w in words[:-1]] + [tokens.ans]
        out.append((qa, qa + [tokens.id[words[-1]], tokens.eos]))
    return out


def vocab_of(s):
    return babi.Vocabulary(tuple(s.vocabulary), tuple(s.class_names))


@pytest.mark.parametrize("chunk", [2, 16])  # sequences per pass: several chunks of sorted lengths, or one
def test_QA_logits_and_both_losses_against_the_language_model_run_sample_by_sample(stream, monkeypatch, chunk):
    monkeypatch.setattr(lamol_tokens, "CHUNK", chunk)
    s = stream("task")
    model = qa_model(s).eval()
    x, y = torch.cat([s[0].train_x, s[1].train_x]), torch.cat([s[0].train_y, s[1].train_y])
    task = torch.tensor([0, 0, 0, 1, 1])
    answers = model.tokens.answers
    qa_logits, qa_terms, lm_terms, n_tokens = [], [], 0.0, 0
    mask = s.train_masks([1])[1]  # task 2's own answers only
    for (qa, seq), target, k in zip(by_hand(model.tokens, s, x, y), y, task, strict=True):
        logits = model.lm(torch.tensor([qa]))[0, -1, answers]  # next token after <ans>, answer tokens only
        qa_logits.append(logits)
        qa_terms.append(-F.log_softmax(logits + mask, 0)[target])
        seq = [int(model.tokens.gen[k]), *seq]
        logp = F.log_softmax(model.lm(torch.tensor([seq[:-1]]))[0], 1)
        lm_terms += -logp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])].sum()
        n_tokens += len(seq) - 1
    torch.testing.assert_close(model(x), torch.stack(qa_logits))
    qa_loss, lm_loss = model.losses(x, y, task, mask)
    torch.testing.assert_close(qa_loss, torch.stack(qa_terms).mean())
    torch.testing.assert_close(lm_loss, lm_terms / n_tokens)
    assert n_tokens == sum(len(seq) for _, seq in by_hand(model.tokens, s, x, y))  # every token after <gen:k>


def test_sequences_parse_back_into_the_samples_they_came_from(stream):
    s = stream()
    tokens = Tokens(s.vocabulary, s.class_names, len(s))
    x, y = torch.cat([s[0].train_x, s[1].train_x]), torch.cat([s[0].train_y, s[1].train_y])
    seq, lengths = tokens.lm(x, y, torch.zeros_like(y))
    examples = [tokens.example(row[1:n], task=0) for row, n in zip(seq.tolist(), lengths.tolist(), strict=True)]
    encoded = babi.encode(examples, vocab_of(s), s.input_shape[0] - 1, s.input_shape[1])
    assert torch.equal(babi.pack(encoded.story, encoded.question), x) and torch.equal(encoded.answer, y)
    ids = tokens.id
    good = [ids[w] for w in "mary went to the kitchen . where is mary ?".split()] + [tokens.ans, ids["kitchen"]]
    assert tokens.example(good + [tokens.eos, 7, 7], 0).story == (("mary", "went", "to", "the", "kitchen"),)
    assert tokens.example(good, 0) == "no end"
    assert tokens.example(good[:-2] + [ids["kitchen"], tokens.eos], 0) == "malformed"  # no <ans>
    assert tokens.example(good[:-1] + [ids["the"], tokens.eos], 0) == "answer"
    assert tokens.example([tokens.dot, *good, tokens.eos], 0) == "malformed"  # an empty sentence
    assert tokens.example([int(tokens.gen[1]), *good, tokens.eos], 0) == "malformed"


def test_generated_samples_are_counted_and_packed_like_real_ones(stream):
    s = stream()
    method = LAMOL(gen_ratio=3.0, d_model=16, heads=2)
    torch.manual_seed(0)
    model = method.prepare(memn2n(s), s)
    method.after_task(s[0], model)
    method.before_task(s[1], model)  # an untrained model: its samples mostly do not parse
    (entry,) = method.history
    assert entry["task"] == "qa1" and entry["during"] == "qa2" and entry["generated"] == 6  # ceil(3.0 * 2)
    assert entry["parsed"] + sum(entry["dropped"].values()) == 6 and len(method.pool["y"]) == entry["parsed"]
    assert math.isclose(entry["parse_share"], entry["parsed"] / 6)
    assert method.pool["x"].shape[1:] == s[0].train_x.shape[1:]


def test_what_the_generator_writes_is_parsed_and_packed_exactly_like_the_real_samples(stream, monkeypatch):
    s = stream()
    method = LAMOL(d_model=16, heads=2)
    model = method.prepare(memn2n(s), s)
    tokens = method.tokens
    real, _ = tokens.lm(s[0].train_x, s[0].train_y, torch.zeros_like(s[0].train_y))  # task 1's 3 samples
    broken = real[:2].clone()
    broken[0, real[0].tolist().index(tokens.eos)] = tokens.dot  # no <eos>
    broken[1, 3] = tokens.ask  # a "?" inside the story
    written = torch.cat([real, broken])
    monkeypatch.setattr(model.lm, "generate", lambda prefix, *args: written)
    method.after_task(s[0], model)
    method.before_task(s[1], model)
    assert torch.equal(method.pool["x"], s[0].train_x) and torch.equal(method.pool["y"], s[0].train_y)
    (entry,) = method.history
    assert (entry["generated"], entry["parsed"], entry["dropped"]) == (5, 3, {"no end": 1, "malformed": 1})
    assert entry["examples"][0] == "mary moved to the bathroom . john went to the hallway . where is mary ? bathroom"


def test_real_replay_keeps_real_samples_of_the_earlier_task(stream):
    s = stream()
    method = LAMOL(real_replay=True, gen_ratio=1.0, d_model=16, heads=2)
    at_task(method, memn2n(s), s, 1)
    pool = method.pool
    assert len(pool["y"]) == 2 and pool["task"].eq(0).all()  # ceil(1.0 * 2 questions of task 2)
    for x, y in zip(pool["x"], pool["y"], strict=True):
        row = (s[0].train_x == x).flatten(1).all(1).nonzero().flatten()
        assert len(row) == 1 and s[0].train_y[row] == y
    assert method.facts()["real_replay"] == [{"task": "qa2", "replayed": 2}]
    # Over an epoch (batches of 1 new sample, 2 in the task), each pooled sample is mixed in exactly once.
    picked = torch.cat([method._replayed(1) for _ in range(2)])
    assert sorted(picked.tolist()) == [0, 1]


def test_fit_end_to_end_learns_and_remembers_in_words(stream, tmp_path):
    s = stream()
    method = LAMOL(gen_ratio=1.0, d_model=32, heads=2)
    r = ll.fit(s, memn2n(s), method, iterations=150, batch_size=3, lr=3e-3, optimizer="adam", seed=0)
    assert r.R.shape == (3, 2) and ((r.R >= 0) & (r.R <= 1)).all()
    assert r.losses[0][-1] < r.losses[0][0] / 10  # task 1 learned (one batch an epoch: 150 epochs)
    (entry,) = r.facts["pseudo_samples"]
    assert entry["generated"] == 2 and entry["parsed"] >= 1 and entry["parse_share"] == entry["parsed"] / 2
    assert [c["stored_bytes"] for c in r.capacity] == [0, 0]  # no data kept between tasks
    for text in entry["examples"]:  # what it remembers of task 1 reads as a task-1 sample
        assert text.startswith("mary") and " where is " in text and text.split()[-1] in s.class_names
    report = write_report([r], tmp_path).read_text()  # the report shows them
    section = report[report.index("### lamol: pseudo-samples") :]
    share = f"{100 * entry['parsed'] / 2:.1f}"
    assert f"| qa2 | qa1 | 2 | {entry['parsed']} | {share} |" in section
    assert f"[qa1, before qa2] {entry['examples'][0]}" in section


def test_task_incremental_with_replay_runs_with_the_masks(stream):
    s = stream("task")
    r = ll.fit(s, memn2n(s), LAMOL(real_replay=True, d_model=16, heads=2), iterations=4, optimizer="adam", lr=1e-3)
    assert r.R.shape == (3, 2) and r.facts["real_replay"][0]["replayed"] == 1


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"lm_weight": -1.0}, "^lamol: lm_weight must be >= 0"),
        ({"gen_ratio": 0.0}, "^lamol: gen_ratio must be > 0"),
        ({"gen_ratio": float("nan")}, "^lamol: gen_ratio must be a finite number"),
        ({"top_k": 0}, "^lamol: top_k must be >= 1"),
        ({"d_model": 30, "heads": 4}, "^lamol: d_model 30 must be a multiple of heads 4"),
        ({"real_replay": "yes"}, "^lamol: real_replay must be True or False"),
    ],
)
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(ll.LifelongError, match=message) as e:
        LAMOL(**settings)
    assert "\n" not in str(e.value)


def test_an_image_stream_is_refused():
    s = ll.benchmarks.split("synthetic", n_tasks=2, scenario="task")
    with pytest.raises(ll.LifelongError, match="^lamol needs a text stream of questions; use benchmark babi$"):
        LAMOL().prepare(ll.models.MLP(s.input_size, [4], s.n_classes), s)


def test_the_other_methods_train_LAMOLs_network_from_the_command_line(tmp_path, monkeypatch, capsys):
    from lifelong.cli import main
    from lifelong.experiment import build_model

    folder = published_tasks(tmp_path, monkeypatch, ((1, STORIES, TEST_1), (2, TASK_2, TEST_2)))
    s = ll.benchmarks.babi(n_tasks=2, data_dir=folder)
    model = build_model(s, {"model": "transformer"})
    assert isinstance(model, LamolQA) and model.lm.embed.weight.shape[1] == lamol_tokens.SIZES["d_model"]
    qa, _ = model.tokens.qa(s.tasks[0].test_x)
    assert model.lm.max_length >= qa.shape[1] + 2 and model(s.tasks[0].test_x).shape == (len(qa), s.n_classes)
    args = "run --benchmark babi --tasks 2 --model transformer --method finetune,replay --iterations 3"
    code = main([*args.split(), "--data-dir", str(folder), "--report", "no", "--store", str(tmp_path / "r.db")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "transformer d 128, 2 layers" in out and "replay" in out
    assert main(["run", "--benchmark", "split-synthetic", "--model", "transformer", "--report", "no"]) == 2
    err = capsys.readouterr().err
    assert "transformer reads text (a babi benchmark), not split-synthetic; use --model mlp" in err

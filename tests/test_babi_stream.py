"""bAbI tasks as a stream: the same fit(), methods, store and command line as images, with the memory network."""

import pytest
import torch
from test_babi_data import STORIES, published_tasks

import lifelong as ll
from lifelong.cli import main
from lifelong.data.datasets import babi
from lifelong.results import Store

TASK_2 = (  # a second task sharing the answer "bathroom" with task 1 and adding "garden"
    "1 Sandra went to the garden.\n"
    "2 Sandra took the football there.\n"
    "3 Where is the football? \tgarden\t2 1\n"
    "4 Sandra moved to the bathroom.\n"
    "5 Where is the football? \tbathroom\t4 2\n"
)
TEST_1 = "1 John moved to the bathroom.\n2 Where is John? \tbathroom\t1\n"
TEST_2 = "1 Mary went to the garden.\n2 Mary got the football there.\n3 Where is the football? \tgarden\t2 1\n"


@pytest.fixture
def data(tmp_path, monkeypatch):
    """Two small published tasks in <tmp>/en; no environment folder, no network."""
    return published_tasks(tmp_path, monkeypatch, ((1, STORIES, TEST_1), (2, TASK_2, TEST_2)))


def test_tasks_share_one_answer_vocabulary_and_inputs_pack_story_and_question(data):
    s = ll.benchmarks.build("babi", n_tasks=2, data_dir=data)
    assert s.scenario == "domain" and len(s) == 2 and s[0].train_x.dtype == torch.int64
    answers = s.class_names
    assert sorted(answers) == ["bathroom", "garden", "hallway", "kitchen"]
    # "bathroom" answers a question of each task: one unit, the same label in both.
    assert s[0].train_y[0] == s[1].train_y[1] == answers.index("bathroom")
    assert set(s[1].classes) == {answers.index("garden"), answers.index("bathroom")}
    # The first question of task 2 ("where is the football", after two sentences, newest first).
    story, question = babi.unpack(s[1].train_x[:1])
    words = {i: w for i, w in enumerate(s.vocabulary)}
    assert [words[i] for i in question[0].tolist() if i] == ["where", "is", "the", "football"]
    assert [words[i] for i in story[0, 0].tolist() if i] == ["sandra", "took", "the", "football", "there"]
    assert [words[i] for i in story[0, 1].tolist() if i] == ["sandra", "went", "to", "the", "garden"]
    assert story[0, 2:].eq(0).all()  # the rest of the memory is padding


def test_order_subset_and_sentence_cap(data):
    s = ll.benchmarks.build("babi", n_tasks=2, task_order=[1, 0], samples_per_task=1, sentences=1, data_dir=data)
    assert [t.name for t in s] == ["qa2", "qa1"]
    assert [len(t.train_y) for t in s] == [1, 1] and len(s[1].test_y) == 1
    assert s.input_shape[0] == 2  # one story sentence, then the question
    with pytest.raises(ll.LifelongError, match="bAbI has tasks 1 to 20"):
        ll.benchmarks.build("babi", n_tasks=21, data_dir=data)
    with pytest.raises(ll.LifelongError, match="^sentences must be a whole number"):
        ll.benchmarks.build("babi", n_tasks=1, sentences=0, data_dir=data)


def test_the_command_line_runs_methods_on_bAbI_with_the_memory_network(data, tmp_path, capsys):
    args = ["run", "--benchmark", "babi", "--tasks", "2", "--data-dir", data, "--epochs", "2", "--quiet"]
    code = main([*args, "--method", "finetune,ewc,replay,joint", "--store", str(tmp_path / "r.db"), "--report", "no"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("finetune", "ewc", "replay", "joint"):
        assert name in out
    store = Store(tmp_path / "r.db")
    runs = store.runs()
    assert len(runs) == 4 and all(r["status"] == "finished" for r in runs)
    assert store.result(runs[0]["id"]).R.shape == (3, 2)
    assert store.result(runs[0]["id"]).config["model"] is None  # the default: memn2n for text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--benchmark", "babi", "--model", "mlp"], "an MLP cannot read babi's text; use --model memn2n"),
        (["--benchmark", "split-digits", "--model", "memn2n"], "memn2n reads text"),
        (["--benchmark", "babi", "--embedding", "0"], "must be a whole number >= 1"),
    ],
)
def test_a_model_that_cannot_read_the_data_is_refused_in_one_line(data, tmp_path, capsys, args, message):
    code = main(["run", *args, "--tasks", "1", "--data-dir", data, "--store", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r.db").exists()  # refused before anything was recorded


def test_tied_answers_read_the_last_output_embedding_of_each_answer_word(data):
    from lifelong.experiment import build_model

    s = ll.benchmarks.build("babi", n_tasks=2, data_dir=data)
    m = build_model(s, {"embedding": 8, "hops": 2, "tie_answers": True})
    words = [s.vocabulary.index(label) for label in s.class_names]  # every label here is a word
    assert torch.equal(m.answer_matrix(), m.embeddings[-1].weight[words])
    untied = build_model(s, {"embedding": 8, "hops": 2})
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in m.parameters()) == 8 * len(words)


def test_the_memory_options_of_a_config_reach_the_model(data):
    from lifelong.experiment import build_model

    s = ll.benchmarks.build("babi", n_tasks=2, data_dir=data)
    built = {pe: build_model(s, {"position_encoding": pe}) for pe in (None, "paper", "authors", "none")}
    assert [m.position_encoding for m in built.values()] == ["paper", "paper", "authors", False]
    assert build_model(s, {}).empty_slots == "masked"
    assert build_model(s, {"empty_slots": "attended"}).empty_slots == "attended"

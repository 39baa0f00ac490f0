"""The bAbI data layer on small hand-written files: parsing, encoding, finding and verifying files, errors."""

import dataclasses
import gzip
import hashlib
import io
import tarfile
import urllib.error
from pathlib import Path

import pytest
import torch

from lifelong.data.datasets import babi
from lifelong.errors import LifelongError, LifelongWarning

# Two stories (the ID 1 on the 7th line starts the second): questions are not story sentences, so line 6's
# supporting fact 4 is the third sentence that question sees.
STORIES = (
    "1 Mary moved to the bathroom.\n"
    "2 John went to the hallway.\n"
    "3 Where is Mary? \tbathroom\t1\n"
    "4 Daniel went back to the hallway.\n"
    "5 Sandra moved to the garden.\n"
    "6 Where is Daniel? \thallway\t4\n"
    "1 Mary got the milk there.\n"
    "2 Mary went to the kitchen.\n"
    "3 Where is the milk? \tkitchen\t2 1\n"
)
LISTS = (  # task 8: the answer is a comma-separated list, kept as one label
    "1 Mary took the apple.\n2 Mary got the milk there.\n3 What is Mary carrying? \tapple,milk\t1 2\n"
)
PATHS = (  # task 19: the answer is a path, kept as one label
    "1 The office is north of the kitchen.\n"
    "2 The garden is west of the office.\n"
    "3 How do you go from the kitchen to the garden? \tn,w\t1 2\n"
)
URLOPEN = urllib.request.urlopen  # the real one, before any test replaces it
TEST = "1 Bill moved to the bathroom.\n2 Where is Bill? \tbathroom\t1\n"  # "bill" is not in STORIES


def words(text):
    return tuple(text.split())


def test_stories_questions_and_supporting_facts():
    examples = babi.parse(STORIES.splitlines(), task=1)
    assert len(examples) == 3
    first, second, third = examples
    assert first.story == (words("mary moved to the bathroom"), words("john went to the hallway"))
    assert first.question == words("where is mary") and first.answer == "bathroom"
    assert first.supporting == (0,) and first.task == 1
    # The second question sees all four sentences of its story but not the first question.
    assert len(second.story) == 4 and words("where is mary") not in second.story
    assert second.story[2] == words("daniel went back to the hallway") and second.supporting == (2,)
    # ID 1 restarts: the third question sees only the second story, its supporting facts in file order.
    assert third.story == (words("mary got the milk there"), words("mary went to the kitchen"))
    assert third.supporting == (1, 0) and third.answer == "kitchen"


def test_multi_word_answers_are_one_label():
    lists = babi.parse(LISTS.splitlines(), task=8)[0]
    paths = babi.parse(PATHS.splitlines(), task=19)[0]
    assert lists.answer == "apple,milk" and lists.supporting == (0, 1)
    assert paths.answer == "n,w" and paths.question[-1] == "garden"
    vocab = babi.Vocabulary.build([lists, paths])
    assert vocab.answers == ("apple,milk", "n,w")  # task order: task 8's labels, then task 19's
    assert "n,w" in vocab.words and "apple,milk" in vocab.words  # one token each for a language model
    encoded = babi.encode([lists, paths], vocab, sentences=2, words=10)
    assert encoded.answer.tolist() == [0, 1]


@pytest.mark.parametrize(
    "text, why",
    [
        ("1 Mary went home.\n3 John went home.\n", "ID 3 follows 1"),
        ("2 Mary went home.\n", "ID 2 follows 0"),
        ("1 Mary went home.\n2 Where is Mary?\thome\t2\n", "supporting IDs '2'"),  # its own line
        ("1 Where is Mary?\thome\t\n2 Where is John?\thome\t1\n", "supporting IDs '1'"),  # a question
        ("1 Mary went home.\nx John went home.\n", "expected 'ID text'"),
        ("1 Mary went home.\n2 Where is Mary?\thome\t1\textra\n", "fields"),
        ("1 Mary went home.\n2 Where is Mary?\t\t1\n", "one-word answer"),
    ],
)
def test_malformed_lines_name_the_line(text, why):
    with pytest.raises(LifelongError, match=why) as e:
        babi.parse(text.splitlines(), task=1, source="qa1.txt")
    assert str(e.value).startswith("qa1.txt line ") and "\n" not in str(e.value)


def test_memory_keeps_the_most_recent_sentences_newest_first():
    lines = [f"{i} Mary went to room{i}." for i in range(1, 6)] + ["6 Where is Mary?\troom5\t5 1"]
    ex = babi.parse(lines, task=1)[0]
    vocab = babi.Vocabulary.build([ex])
    enc = babi.encode([ex], vocab, sentences=3, words=4)
    assert enc.story.shape == (1, 3, 4) and enc.story.dtype == torch.int64
    # Slot 0 is the newest sentence (room5), slot 2 the third most recent (room3); room1 and room2 are gone.
    rooms = [vocab.words[int(enc.story[0, slot, 3])] for slot in range(3)]
    assert rooms == ["room5", "room4", "room3"]
    assert enc.supporting[0].tolist() == [True, False, False]  # fact 1 fell out of the memory
    recent = ex.recent(3)
    assert recent.story == ex.story[2:] and recent.supporting == (2,)


def test_padding_is_zero_and_only_padding_is_zero():
    ex = babi.parse(["1 Mary went home.", "2 Where is Mary?\thome\t1"], task=1)[0]
    vocab = babi.Vocabulary.build([ex])
    assert vocab.words[:2] == ("<pad>", "<unk>")
    enc = babi.encode([ex], vocab, sentences=3, words=5)
    expected_sentence = [vocab.word_id(w) for w in ("mary", "went", "home")] + [0, 0]
    assert enc.story[0].tolist() == [expected_sentence, [0] * 5, [0] * 5]
    assert enc.question[0].tolist() == [vocab.word_id(w) for w in ("where", "is", "mary")] + [0, 0]
    assert all(i > 1 for i in expected_sentence[:3])  # real words never get the padding or unknown index
    with pytest.raises(LifelongError, match="has 3 words, more than the 2"):
        babi.encode([ex], vocab, sentences=3, words=2)  # nothing is cut silently


def test_encode_then_decode_gives_the_same_words():
    examples = babi.parse(STORIES.splitlines(), 1) + babi.parse(LISTS.splitlines(), 8)
    vocab = babi.Vocabulary.build(examples)
    back = babi.decode(babi.encode(examples, vocab, sentences=3, words=6), vocab)
    for original, decoded in zip(examples, back, strict=True):
        kept = original.recent(3)
        assert decoded == dataclasses.replace(kept, supporting=tuple(sorted(kept.supporting)))
    assert back[1].story == examples[1].story[1:]  # the capped example lost its oldest sentence


def test_unknown_test_words_get_the_reserved_index_and_unknown_answers_are_refused():
    vocab = babi.Vocabulary.build(babi.parse(STORIES.splitlines(), 1))
    test = babi.parse(TEST.splitlines(), 1)
    enc = babi.encode(test, vocab, sentences=2, words=5)
    assert enc.story[0, 0, 0].item() == 1 and enc.question[0, 2].item() == 1  # "bill" twice
    assert babi.decode(enc, vocab)[0].question == ("where", "is", "<unk>")
    other = dataclasses.replace(test[0], answer="cinema")
    with pytest.raises(LifelongError, match="'cinema' is not among the vocabulary's 3 answers"):
        babi.encode([other], vocab, sentences=2, words=5)
    # Answers of the test data may join the labels (they are the classes), without joining the words.
    wider = babi.Vocabulary.build(babi.parse(STORIES.splitlines(), 1), labels=[other])
    assert wider.answers == ("bathroom", "cinema", "hallway", "kitchen") and "cinema" not in wider.words


def test_flat_words_round_trip_and_malformed_samples_are_none():
    ex = babi.parse(STORIES.splitlines(), 1)[1]
    flat = babi.to_words(ex)
    assert flat[-5:] == ["where", "is", "daniel", "?", "hallway"] and flat.count(".") == 4
    assert babi.from_words(flat, task=1) == dataclasses.replace(ex, supporting=())
    assert babi.from_words(["where", "is", "mary", "?", "home"], 1).story == ()
    for bad in (
        ["mary", "went", "home", "."],  # no question
        ["mary", ".", ".", "where", "?", "home"],  # an empty sentence
        ["mary", "went", ".", "?", "home"],  # an empty question
        ["where", "is", "mary", "?"],  # no answer
        ["where", "?", "home", "home"],  # two answer words
        ["where", "<pad>", "?", "home"],
    ):
        assert babi.from_words(bad, 1) is None, bad
    assert babi.from_words(flat, 1, answers=["kitchen"]) is None


def test_pack_puts_the_question_last_and_unpack_splits_it():
    story = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    question = torch.arange(8).reshape(2, 4) + 100
    x = babi.pack(story, question)
    assert x.shape == (2, 4, 4) and torch.equal(x[:, 3], question)
    s, q = babi.unpack(x)
    assert torch.equal(s, story) and torch.equal(q, question)


# ------------------------------------------------------------------------------------- files and folders


@pytest.fixture
def env(tmp_path, monkeypatch):
    """No $LIFELONG_DATA, an empty cache in tmp, and no network (a download attempt fails at once)."""
    monkeypatch.delenv("LIFELONG_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(babi.urllib.request, "urlopen", offline)
    return tmp_path


def publish(monkeypatch, task, train, test, train_10k=None):
    """Make the given texts the 'published' files of ``task``: the loader's sums are set to theirs."""

    def digest(text):
        return None if text is None else hashlib.sha256(text.encode()).hexdigest()

    name = babi.TASKS[task][0]
    monkeypatch.setitem(babi.TASKS, task, (name, digest(train), digest(test), digest(train_10k)))


def published_tasks(tmp_path, monkeypatch, tasks) -> str:
    """Small published bAbI tasks ((number, train text, test text), ...) in <tmp>/en, with no environment
    folder and an empty cache; returns the data folder."""
    monkeypatch.delenv("LIFELONG_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for task, train, test in tasks:
        publish(monkeypatch, task, train, test)
        write(tmp_path / "en", task, "train", train)
        write(tmp_path / "en", task, "test", test)
    return str(tmp_path)


def write(folder: Path, task, split, text, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (babi.file_name(task, split) + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if gz else text.encode())
    return path


def test_both_folder_layouts_and_the_environment_variable(env, monkeypatch):
    publish(monkeypatch, 1, STORIES, TEST)
    write(env / "data" / "babi" / "en", 1, "train", STORIES)
    write(env / "data" / "babi" / "en", 1, "test", TEST)
    for data_dir in (env / "data", env / "data" / "babi"):
        d = babi.load_tasks(tasks=[1], data_dir=str(data_dir))
        assert d.folder == env / "data" / "babi" / "en" and d.tasks == (1,)
        assert len(d.train[1]) == 3 and len(d.test[1]) == 1
    monkeypatch.setenv("LIFELONG_DATA", str(env / "data"))
    d = babi.load_tasks(tasks=[1])
    # One shape for all: the longest story (4 sentences) under the cap, the longest sentence (6 words).
    assert (d.sentences, d.words) == (4, 6) and d.encode(d.test[1]).story.shape == (1, 4, 6)
    assert "bill" not in d.vocab.words  # words come from the training files only
    assert babi.load_tasks(tasks=[1], memory_size=2).sentences == 2


def test_gzip_files_of_the_10k_set(env, monkeypatch):
    publish(monkeypatch, 8, STORIES, TEST, train_10k=LISTS)  # the 10k sums are those of the text
    path = write(env / "en-10k", 8, "train", LISTS, gz=True)
    write(env / "en-10k", 8, "test", TEST, gz=True)
    d = babi.load_tasks(tasks=[8], size="10k", data_dir=str(env))
    assert d.train[8][0].answer == "apple,milk" and d.vocab.answers == ("apple,milk", "bathroom")
    assert babi.read_file(path, task=8) == d.train[8] == babi.parse(LISTS.splitlines(), task=8)


def test_a_file_without_a_published_sum_is_read_with_a_warning(env, monkeypatch):
    publish(monkeypatch, 3, STORIES, TEST, train_10k=None)  # like the 10k training file of task 3
    write(env / "en-10k", 3, "train", STORIES)
    write(env / "en-10k", 3, "test", TEST)
    with pytest.warns(LifelongWarning, match="qa3_three-supporting-facts_train.txt has no published sha256"):
        d = babi.load_tasks(tasks=[3], size="10k", data_dir=str(env))
    assert len(d.train[3]) == 3


def test_a_missing_file_is_named_with_what_to_do(env, monkeypatch):
    publish(monkeypatch, 3, STORIES, TEST)
    write(env / "en-10k", 3, "test", TEST)  # like ../shared/data/babi/en-10k: task 3's training file is absent
    with pytest.raises(LifelongError) as e:
        babi.load_tasks(tasks=[3], size="10k", data_dir=str(env))
    message = str(e.value)
    assert "\n" not in message
    assert f"{env / 'en-10k' / 'qa3_three-supporting-facts_train.txt'} is missing" in message
    assert babi.URL in message and "leave task 3 out of tasks" in message
    assert not (env / "cache").exists()  # the folder exists, so nothing is downloaded


def test_a_corrupt_file_is_refused_and_left_alone(env, monkeypatch):
    publish(monkeypatch, 1, STORIES, TEST)
    write(env / "en", 1, "train", STORIES)
    path = write(env / "en", 1, "test", TEST.replace("bathroom", "bedroom"))
    before = path.read_bytes()
    with pytest.raises(LifelongError) as e:
        babi.load_tasks(tasks=[1], data_dir=str(env))
    assert str(e.value) == (
        f"{path} is corrupt (sha256 differs from the published one); "
        f"delete it and put the original file from {babi.URL} there"
    )
    assert path.read_bytes() == before
    path.write_bytes(b"\x1f\x8bnot gzip")
    path.rename(path.with_name(path.name + ".gz"))
    with pytest.raises(LifelongError, match=r"\.txt\.gz cannot be read .*replace it with the original"):
        babi.load_tasks(tasks=[1], data_dir=str(env))


def test_a_data_dir_without_babi_files_says_where_they_go(env):
    (env / "empty").mkdir()
    with pytest.raises(LifelongError, match="has no bAbI folder en/ .*empty/en/qa1_single-supporting-fact_train"):
        babi.load_tasks(data_dir=str(env / "empty"))


def test_offline_the_download_fails_in_one_line_and_leaves_nothing(env):
    with pytest.raises(LifelongError) as e:
        babi.load_tasks(tasks=[1])
    message = str(e.value)
    assert "\n" not in message and e.value.__cause__ is None and e.value.__suppress_context__
    assert message.startswith("the bAbI files are not on this machine and could not be downloaded from ")
    assert "network is unreachable" in message and "give it as data_dir (or set LIFELONG_DATA)" in message
    assert [p.name for p in (env / "cache" / "lifelong").iterdir()] == []  # no partial download kept
    with pytest.raises(LifelongError, match="not on this machine; give their folder as data_dir"):
        babi.load_tasks(tasks=[1], download=False)


def archive(path: Path, files: dict):
    """A tar.gz laid out like the official one (``tasks_1-20_v1-2/en/...``)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{babi.ARCHIVE_ROOT}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.as_uri()


@pytest.fixture
def local_urlopen(env, monkeypatch):
    """urlopen that serves file:// URLs only (the archives these tests make), never the network."""

    def local(url, *args, **kwargs):
        assert url.startswith("file://"), url
        return URLOPEN(url, *args, **kwargs)

    monkeypatch.setattr(babi.urllib.request, "urlopen", local)


def test_download_verifies_every_file_then_caches(env, monkeypatch, local_urlopen):
    publish(monkeypatch, 1, STORIES, TEST)
    files = {f"en/{babi.file_name(1, 'train')}": STORIES, f"en/{babi.file_name(1, 'test')}": TEST}
    files["../escape.txt"] = "not a task file"  # never written: only known names are unpacked
    url = archive(env / "a.tar.gz", files)
    monkeypatch.setattr(babi, "URL", url)
    d = babi.load_tasks(tasks=[1])
    assert d.folder == env / "cache" / "lifelong" / "babi" / "en" and len(d.train[1]) == 3
    assert sorted(p.name for p in (env / "cache" / "lifelong").iterdir()) == ["babi"]  # no temporary left
    assert not (env / "cache" / "lifelong" / "escape.txt").exists()


def test_a_corrupt_download_keeps_nothing(env, monkeypatch, local_urlopen):
    publish(monkeypatch, 1, STORIES, TEST)
    url = archive(
        env / "a.tar.gz",
        {f"en/{babi.file_name(1, 'train')}": STORIES, f"en/{babi.file_name(1, 'test')}": TEST + "1 X.\n"},
    )
    with pytest.raises(LifelongError, match="qa1_single-supporting-fact_test.txt in the archive .* is corrupt"):
        babi.fetch(babi.cache_dir(), url=url)
    assert [p.name for p in (env / "cache" / "lifelong").iterdir()] == []
    (env / "b.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(LifelongError, match="is not a readable tar.gz"):
        babi.fetch(babi.cache_dir(), url=(env / "b.tar.gz").as_uri())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": "5k"}, "size must be one of 1k, 10k, not '5k'"),
        ({"tasks": [21]}, r"tasks must be distinct bAbI task numbers 1-20, not \[21\]"),
        ({"tasks": [1, 1]}, "distinct"),
        ({"memory_size": 0}, "memory_size must be a positive number of sentences"),
    ],
)
def test_bad_settings_are_refused(env, kwargs, match):
    with pytest.raises(LifelongError, match=match):
        babi.load_tasks(**kwargs)


REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "babi"


@pytest.mark.skipif(
    not (REAL / "en" / babi.file_name(1, "train")).is_file(), reason=f"the real bAbI files are not in {REAL}"
)
def test_the_real_task_1_files(env):
    d = babi.load_tasks(tasks=[1], data_dir=str(REAL))  # verifies both sha256 sums
    assert len(d.train[1]) == 1000 and len(d.test[1]) == 1000
    assert d.train[1][0].question == ("where", "is", "mary") and d.train[1][0].answer == "bathroom"
    assert d.vocab.answers == ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
    assert d.sentences == 10  # task 1's stories have at most 10 sentences

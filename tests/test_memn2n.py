"""The end-to-end memory network (Sukhbaatar et al. 2015): shapes, position and temporal encoding against
hand-computed values and a loop-by-loop reference, masking of padding, weight tying, linear start,
random noise, gradients, and a tiny task it must learn."""

import pytest
import torch
from torch.nn import functional as F

from lifelong.errors import LifelongError
from lifelong.models.memn2n import MemN2N, position_encoding, temporal_indices

torch.set_num_threads(1)

V, ANSWERS, S, W = 12, 5, 6, 4  # words (0 = padding), answer labels, memory slots, words per sentence


def stories(n=3, seed=0, sentences=(4, 2, 6)):
    """n stories with the given numbers of sentences (newest first, empty slots after them), random words with
    padding at the end of each sentence, and a question."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, S + 1, W, dtype=torch.int64)
    for i in range(n):
        for slot in range(sentences[i % len(sentences)]):
            length = int(torch.randint(2, W + 1, (1,), generator=g))
            x[i, slot, :length] = torch.randint(1, V, (length,), generator=g)
        x[i, -1, :3] = torch.randint(1, V, (3,), generator=g)
    return x


def model(**kw):
    torch.manual_seed(0)
    return MemN2N(V, ANSWERS, S, W, dim=8, **kw).eval()


def reference(m: MemN2N, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The paper's equations written out with loops, from the model's weights: logits and hop-1 attention."""
    d = m.dim
    J = m.words
    l = [[(1 - j / J) - (k / d) * (1 - 2 * j / J) for k in range(1, d + 1)] for j in range(1, J + 1)]
    l = torch.tensor(l)
    E = [e.weight.detach() for e in m.embeddings]
    T = [t.detach() for t in m.times]

    def embed(matrix, sentence):
        return sum((l[j] * matrix[int(w)] for j, w in enumerate(sentence) if w != 0), torch.zeros(d))

    logits, first = [], []
    for story in x:
        slots = [i for i in range(story.shape[0] - 1) if story[i].any()]
        u = embed(E[0], story[-1])
        for k in range(m.hops):
            mem = [embed(E[k], story[i]) + T[k][i] for i in slots]
            out = [embed(E[k + 1], story[i]) + T[k + 1][i] for i in slots]
            scores = torch.stack([u @ mi for mi in mem])
            if m.empty_slots == "attended" and not m.linear_start:  # the code's empty memories: key and value 0
                p = torch.softmax(torch.cat([scores, torch.zeros(m.sentences - len(slots))]), 0)[: len(slots)]
            else:
                p = scores if m.linear_start else torch.softmax(scores, 0)
            if k == 0:
                first.append(dict(zip(slots, p.tolist(), strict=True)))
            u = u + sum(pi * ci for pi, ci in zip(p, out, strict=True))
        logits.append(m.answer.detach() @ u)
    return torch.stack(logits), first


def test_output_shape_and_features():
    m = model()
    x = stories()
    assert m(x).shape == (3, ANSWERS)
    assert m.features(x).shape == (3, 8)
    assert m.attention(x).shape == (3, 3, S)
    assert m.input_shape == (S + 1, W) and m.n_classes == ANSWERS


def test_position_encoding_hand_computed():
    # paper: l_kj = (1 - j/J) - (k/d)(1 - 2j/J), J = 4 positions (rows), d = 2 dimensions (columns)
    expected = torch.tensor([[0.5, 0.25], [0.5, 0.5], [0.5, 0.75], [0.5, 1.0]])
    assert torch.allclose(position_encoding(4, 2), expected)
    # the authors' code: 1 + 4 (k - 3/2)(j - 5/2) / 8
    code = torch.tensor([[1.375, 0.625], [1.125, 0.875], [0.875, 1.125], [0.625, 1.375]])
    assert torch.allclose(position_encoding(4, 2, "authors"), code)
    # ... which is twice the paper's formula at (k - 1/2, j - 1/2): at j = k = 1/2, 2 (7/8 - 3/16)
    assert code[0, 0] == pytest.approx(2 * ((1 - 0.5 / 4) - (0.5 / 2) * (1 - 2 * 0.5 / 4)))


def test_forward_matches_the_papers_equations():
    x = stories()
    for linear in (False, True):
        m = model(linear_start=linear)
        logits, first = reference(m, x)
        assert torch.allclose(m(x), logits, atol=1e-5)
        p = m.attention(x)[:, 0]
        for n, weights in enumerate(first):
            for slot in range(S):
                assert p[n, slot].item() == pytest.approx(weights.get(slot, 0.0), abs=1e-5)


def test_attended_empty_slots_score_zero_like_the_authors_memories_and_ignore_padding():
    m = model(empty_slots="attended")
    x = stories()  # 4, 2 and 6 of the 6 slots hold sentences
    logits, first = reference(m, x)
    assert torch.allclose(m(x), logits, atol=1e-5)
    p = m.attention(x)[:, 0]
    for n, weights in enumerate(first):
        assert p[n].tolist() == pytest.approx([weights.get(slot, 0.0) for slot in range(S)], abs=1e-6)
    assert p[0].sum().item() < 1  # a story of 4 sentences leaves some weight to its 2 empty slots
    assert p[2].sum().item() == pytest.approx(1.0)  # a full story leaves none
    # the empty slots are counted from the memory's size, not from how far a batch was padded
    short = torch.cat([x[:2, :4], x[:2, -1:]], 1)
    assert torch.allclose(m(x[:2]), m(short), rtol=0, atol=1e-6)
    assert not torch.allclose(m(x), model()(x), atol=1e-3)  # not the masked model


def test_linear_start_attention_is_the_raw_scores_and_differs_from_softmax():
    m = model(linear_start=True)
    x = stories()
    p = m.attention(x)[:, 0]
    # hop 1 by hand: u = sum_j l_j B q_j, m_i = sum_j l_j A x_ij + T_A(i), p_i = u . m_i
    l = position_encoding(W, 8)
    A = B = m.embeddings[0].weight.detach()
    u = (l * B[x[:, -1]]).sum(1)
    mem = (l * A[x[:, :-1]]).sum(2) + m.times[0].detach()
    real = x[:, :-1].ne(0).any(-1)
    assert torch.allclose(p, torch.einsum("nsd,nd->ns", mem, u) * real, atol=1e-6)
    assert not torch.allclose(p.sum(1), torch.ones(3))  # not a distribution
    linear = m(x)
    m.linear_start = False
    soft = m.attention(x)[:, 0]
    assert torch.allclose(soft.sum(1), torch.ones(3)) and (soft >= 0).all()
    assert not torch.allclose(m(x), linear, atol=1e-3)


def test_empty_slots_get_no_attention_and_change_nothing():
    m = model()
    x = stories()  # stories of 4, 2 and 6 sentences in 6 slots
    p = m.attention(x)
    assert (p[0, :, 4:] == 0).all() and (p[1, :, 2:] == 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(3, 3))
    # the same stories with only 4 slots (the third one's two oldest sentences dropped in both)
    x[2, 4:6] = 0
    short = torch.cat([x[:, :4], x[:, -1:]], 1)
    assert torch.allclose(m(x), m(short), rtol=0, atol=1e-6)


def test_padded_words_change_nothing():
    m = model()
    x = stories(sentences=(3, 1, 2))
    narrow = x[:, :, :2].clone()  # two-word sentences: widths 2 and 4 hold the same words
    x = torch.zeros_like(x)
    x[:, :, :2] = narrow
    assert torch.allclose(m(x), m(narrow), rtol=0, atol=1e-6)
    # the padding rows of the embeddings are zero and masked: even a non-zero row 0 changes nothing
    before = m(x)
    with torch.no_grad():
        for e in m.embeddings:
            e.weight[0] = 5.0
    assert torch.allclose(m(x), before, rtol=0, atol=1e-6)


def test_temporal_encoding_sees_the_order_and_the_bag_does_not():
    x = stories(sentences=(5, 5, 5))
    reordered = x.clone()
    reordered[:, :5] = x[:, [3, 0, 4, 1, 2]]  # the same sentences in other slots
    with_time = model()
    assert not torch.allclose(with_time(x), with_time(reordered), atol=1e-4)
    without = model(temporal=False, noise=0.0)
    assert torch.allclose(without(x), without(reordered), atol=1e-6)
    # position encoding weighs words inside a sentence, not the order of sentences
    bag = model(temporal=False, position_encoding=False)
    assert torch.allclose(bag(x), bag(reordered), atol=1e-6)


def test_position_encoding_sees_word_order_and_the_bag_does_not():
    x = stories(sentences=(3, 3, 3))
    swapped = x.clone()
    swapped[:, :, [0, 1]] = x[:, :, [1, 0]]
    assert not torch.allclose(model()(x), model()(swapped), atol=1e-4)
    assert torch.allclose(model(position_encoding=False)(x), model(position_encoding=False)(swapped), atol=1e-6)


def test_adjacent_weight_tying_parameter_count():
    d, K = 8, 3
    own_w = (K + 1) * V * d + (K + 1) * S * d + ANSWERS * d  # A^1 = B, C^k = A^{k+1}; T likewise; W
    assert sum(p.numel() for p in model().parameters()) == own_w
    assert sum(p.numel() for p in model(temporal=False).parameters()) == (K + 1) * V * d + ANSWERS * d
    tied = model(answer_words=[7, 8, 9, 10, 11])  # W^T = C^K: no parameters of its own
    assert sum(p.numel() for p in tied.parameters()) == (K + 1) * V * d + (K + 1) * S * d
    assert torch.equal(tied.answer_matrix(), tied.embeddings[-1].weight[[7, 8, 9, 10, 11]])
    two = MemN2N(V, ANSWERS, S, W, dim=d, hops=2)
    assert len(two.embeddings) == 3 and len(two.times) == 3


def test_gradient_reaches_every_embedding():
    for answer_words in (None, [7, 8, 9, 10, 11]):
        m = model(answer_words=answer_words).train()
        x = stories()
        F.cross_entropy(m(x), torch.tensor([0, 1, 2])).backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        for e in m.embeddings:
            assert (e.weight.grad[0] == 0).all()  # the padding row never learns
        used = m.times[0].grad.abs().sum(1)
        assert (used[:6] > 0).all()  # the 6-sentence story uses every temporal row


def test_random_noise_only_in_training_and_reproducible():
    m = model()
    x = stories(n=6, sentences=(6, 6, 5))
    evaluated = m(x)
    quiet = model(noise=0.0)
    assert torch.equal(evaluated, quiet(x))  # eval: no noise
    quiet.train()
    assert torch.equal(quiet(x), evaluated)  # no noise, no randomness in training either
    m.train()
    torch.manual_seed(3)
    a = m(x)
    torch.manual_seed(3)
    assert torch.equal(m(x), a)
    outs = []
    for seed in range(4):
        torch.manual_seed(seed)
        outs.append(m(x))
    assert any(not torch.allclose(o, evaluated) for o in outs)
    m.eval()
    assert torch.equal(m(x), evaluated)


def test_temporal_indices_follow_the_authors_noise():
    torch.manual_seed(0)
    real = torch.zeros(200, 40, dtype=torch.bool)
    n = torch.randint(1, 31, (200,))
    for i, k in enumerate(n.tolist()):
        real[i, :k] = True
    plain = temporal_indices(real)
    assert torch.equal(plain, torch.arange(40).expand(200, 40))
    rows = temporal_indices(real, 0.1, rows=32)
    gaps = []
    for i, k in enumerate(n.tolist()):
        r = rows[i, :k]
        most = -(-k // 10)  # ceil(k / 10)
        assert (r >= torch.arange(k)).all() and (r <= torch.arange(k) + most).all()
        assert (r[1:] > r[:-1]).all() or r.max() == 31  # increasing unless clipped to the last row
        assert torch.equal(rows[i, k:], torch.arange(k, 40))  # empty slots keep their index
        gaps.append(int(r[-1]) - (k - 1))
    assert 0 < sum(gaps) and max(gaps) >= 2  # gaps happen, up to ceil(0.1 n)
    # clipping: 30 sentences, rows beyond the last temporal row (here 30) are clipped to it
    long = temporal_indices(torch.ones(50, 30, dtype=torch.bool), 0.1, rows=30)
    assert long.max() == 29 and (long[:, 0] <= 3).all()


def test_bad_inputs_are_refused_in_one_line():
    m = model()
    for bad in (
        torch.zeros(2, S + 1, W),
        torch.zeros(2, S + 2, W, dtype=torch.int64),
        torch.zeros(2, 3, dtype=torch.int64),
    ):
        with pytest.raises(LifelongError, match="MemN2N reads word indices") as e:
            m(bad)
        assert "\n" not in str(e.value)
    for word in (V, -1):  # a word index outside the vocabulary is refused, never read from another block
        with pytest.raises((RuntimeError, IndexError), match="(?i)index"):
            m(torch.full((1, S + 1, W), word))
    with pytest.raises(LifelongError, match="dim"):
        MemN2N(V, ANSWERS, S, W, dim=0)
    with pytest.raises(LifelongError, match="position_encoding"):
        MemN2N(V, ANSWERS, S, W, position_encoding="sine")
    with pytest.raises(LifelongError, match="empty_slots"):
        MemN2N(V, ANSWERS, S, W, empty_slots="kept")
    with pytest.raises(LifelongError, match="noise"):
        MemN2N(V, ANSWERS, S, W, noise=1.5)
    with pytest.raises(LifelongError, match="answer_words"):
        MemN2N(V, ANSWERS, S, W, answer_words=[0, 1, 2, 3, 4])


def where_is(n=48, seed=0):
    """'P went L' stories of 2-4 sentences and 'where is P': the answer is P's most recent place."""
    g = torch.Generator().manual_seed(seed)
    people, places, went, where, is_ = [1, 2, 3], [4, 5, 6], 7, 8, 9
    x = torch.zeros(n, 5, 3, dtype=torch.int64)
    y = torch.zeros(n, dtype=torch.int64)
    for i in range(n):
        length = int(torch.randint(2, 5, (1,), generator=g))
        who = torch.randint(0, 3, (length,), generator=g)
        where_to = torch.randint(0, 3, (length,), generator=g)
        for slot in range(length):  # slot 0 is the newest sentence
            x[i, slot] = torch.tensor([people[who[slot]], went, places[where_to[slot]]])
        asked = int(who[int(torch.randint(0, length, (1,), generator=g))])
        x[i, -1] = torch.tensor([where, is_, people[asked]])
        y[i] = where_to[(who == asked).nonzero()[0, 0]]  # the newest sentence about that person
    return x, y


def test_learns_a_single_supporting_fact_task():
    x, y = where_is()
    torch.manual_seed(0)
    m = MemN2N(10, 3, 4, 3, dim=20)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(m(x), y, reduction="sum").backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 40.0)
        opt.step()
    m.eval()
    assert (m(x).argmax(1) == y).float().mean() == 1.0


def test_one_sample_alone_gives_its_row_of_the_batch():
    m, x = model(), stories()
    batch = m(x)
    for i in range(len(x)):  # one sample takes the gather path (what torch.func transforms see)
        torch.testing.assert_close(m(x[i : i + 1])[0], batch[i], rtol=1e-5, atol=1e-6)

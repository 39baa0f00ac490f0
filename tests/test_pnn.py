"""Progressive neural networks (Rusu et al. 2016): earlier tasks' outputs are bit-identical after later
tasks (BWT = 0), the parameter count follows the closed formula, the lateral adapter's forward pass by
hand, a task not learned yet is answered by the column it will start from, and the scenario check."""

import pytest
import torch

import lifelong as ll
from lifelong.cli import main
from lifelong.methods.resources.pnn import PNN
from lifelong.results import Store


def stream():
    return ll.benchmarks.split("synthetic", n_tasks=3, scenario="task")


def mlp(s, hidden):
    torch.manual_seed(0)
    return ll.models.MLP(s.input_size, hidden, s.n_classes)


def drive(pnn, s, hidden, n_tasks):
    """prepare, then before_task and after_task of the first ``n_tasks`` tasks with no training step."""
    net = pnn.prepare(mlp(s, hidden), s)
    for task in s.tasks[:n_tasks]:
        pnn.before_task(task, net)
        pnn.after_task(task, net)
    return net


class Recording(PNN):
    """PNN that records, right after each task, the outputs of every task learned so far, and checks that
    the task's own column (weights, biases, U, V, α) was trained."""

    def prepare(self, model, stream):
        self.stream = stream
        return super().prepare(model, stream)

    def before_task(self, task, model):
        super().before_task(task, model)
        self.start = [p.detach().clone() for p in model.columns[-1].parameters()]

    def after_task(self, task, model):
        super().after_task(task, model)
        assert all(not torch.equal(p, p0) for p, p0 in zip(model.columns[-1].parameters(), self.start, strict=True))
        with torch.no_grad():
            outs = {t.id: self.predict(model, t.test_x, t) for t in self.stream.tasks[: task.id + 1]}
        self.seen = [*getattr(self, "seen", []), outs]


@pytest.mark.parametrize(
    "opts",
    [
        {"optimizer": "sgd", "momentum": 0.9},
        {"optimizer": "adam"},
        {"optimizer": "sgd", "momentum": 0.9, "reset_optimizer": False},  # new columns join the kept optimizer
    ],
)
def test_earlier_tasks_outputs_are_bit_identical_after_later_tasks(opts):
    s = stream()
    pnn = Recording()
    r = ll.fit(s, mlp(s, [8, 8]), pnn, iterations=20, lr=0.1, batch_size=10, seed=0, weight_decay=0.05, **opts)
    assert len(pnn.seen) == 3 and len(pnn.net.columns) == 3
    with torch.no_grad():
        for k, outs in enumerate(pnn.seen):
            for j, out in outs.items():  # task j's outputs now are those right after task k (j <= k)
                assert torch.equal(pnn.predict(pnn.net, s.tasks[j].test_x, s.tasks[j]), out), (j, k)
    assert r.bwt == 0 and (r.R[-1] == r.R.diagonal(-1)).all()


@pytest.mark.parametrize("width", [None, 3])
def test_parameters_after_each_task_follow_the_closed_formula(width):
    s, hidden = stream(), [6, 4]
    n = [s.input_size, *hidden, s.n_classes]  # units of layers 0 (input) .. L (output)
    own = sum(n[i - 1] * n[i] + n[i] for i in range(1, len(n)))  # W and b of one column

    def adapters(k):  # column k (k earlier columns): into layers 2..L, α, V of k·n[i-1] × w, U of w × n[i]
        ws = {i: width or n[i - 1] for i in range(2, len(n))}
        return sum(1 + k * n[i - 1] * w + w * n[i] for i, w in ws.items()) if k else 0

    pnn = PNN(adapter_width=width)
    net = pnn.prepare(mlp(s, hidden), s)
    for t, task in enumerate(s.tasks):
        pnn.before_task(task, net)
        pnn.predict(net, s.tasks[-1].test_x, s.tasks[-1])  # a task not learned yet: its column is not counted
        expected = sum(own + adapters(k) for k in range(t + 1))
        assert pnn.capacity(net)["parameters"] == expected, t
    assert expected == 3 * own + adapters(1) + adapters(2)


def test_the_lateral_adapter_computes_the_papers_formula():
    s = stream()
    pnn = PNN()
    net = drive(pnn, s, [8, 6], 3)
    cols = net.columns
    with torch.no_grad():
        for c, col in enumerate(cols[1:]):  # sizeable α, so a missing or misplaced adapter shows
            for i, a in enumerate(col.adapters):
                a.alpha.fill_(0.5 + c + 0.25 * i)
    x = s.tasks[2].test_x[:7].flatten(1)

    def own(c, i, h):  # W_i^(c) h + b_i^(c), as row vectors
        return h @ cols[c].layers[i].weight.T + cols[c].layers[i].bias

    def lateral(c, i, earlier):  # U σ(V α h^(<c)) into layer i (i >= 1) of column c
        a = cols[c].adapters[i - 1]
        return torch.relu((a.alpha * torch.cat(earlier, 1)) @ a.V.weight.T) @ a.U.weight.T

    h1 = [torch.relu(own(c, 0, x)) for c in range(3)]
    h2 = [torch.relu(own(0, 1, h1[0]))] + [torch.relu(own(c, 1, h1[c]) + lateral(c, 1, h1[:c])) for c in (1, 2)]
    logits = own(2, 2, h2[2]) + lateral(2, 2, h2[:2])  # no σ on the output layer
    assert lateral(2, 1, h1[:2]).abs().max() > 0.01 and lateral(2, 2, h2[:2]).abs().max() > 0.01  # both are live
    torch.testing.assert_close(pnn.predict(net, x, s.tasks[2]), logits)
    torch.testing.assert_close(pnn.predict(net, x, s.tasks[0]), own(0, 2, h2[0]))  # column 1: no adapters


def test_a_task_not_learned_yet_is_answered_by_the_column_it_will_start_from():
    s = stream()
    pnn = PNN()
    net = drive(pnn, s, [5, 5], 2)
    x, task = s.tasks[2].test_x, s.tasks[2]
    rng = torch.get_rng_state()
    before = pnn.predict(net, x, task)
    assert torch.equal(torch.get_rng_state(), rng)  # seeded on its own: fit()'s random stream is left alone
    assert len(net.columns) == 2 and len(list(net.parameters())) == 6 + 6 + 2 * 3  # not part of the model
    pnn.before_task(task, net)
    assert torch.equal(pnn.predict(net, x, task), before)


def test_runs_end_to_end_from_the_command_line(tmp_path, capsys):
    args = ["run", "--method", "pnn", "--benchmark", "split-synthetic", "--scenario", "task", "--tasks", "3"]
    args += ["--iterations", "10", "--adapter-width", "4", "--report", "no"]
    assert main([*args, "--store", str(tmp_path / "r.db")]) == 0
    (row,) = Store(tmp_path / "r.db").runs()
    assert row["status"] == "finished" and row["config"]["adapter_width"] == 4

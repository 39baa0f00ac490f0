"""PackNet (Mallya & Lazebnik 2018): earlier tasks' outputs are bit-identical after later tasks (BWT = 0)
under weight decay, momentum and Adam; no weight has two owners and each task keeps what the pruning
arithmetic says; pruning keeps the largest-|w| of the task's own weights per layer; retraining holds the
pruned weights at zero; bad settings and other scenarios are one-line errors; the CLI runs it."""

import pytest
import torch

import lifelong as ll
from lifelong.cli import main
from lifelong.methods.resources.ownership import Ownership, linears
from lifelong.methods.resources.packnet import PackNet
from lifelong.results import Store


def stream():
    return ll.benchmarks.split("synthetic", n_tasks=3, scenario="task")


def mlp(s, hidden=(16, 8)):
    torch.manual_seed(0)
    return ll.models.MLP(s.input_size, list(hidden), s.n_classes)


class Recording(PackNet):
    """PackNet that keeps, right after each task, every learned task's outputs and the owner tensors."""

    def prepare(self, model, stream):
        self.seen, self.owner_after, self.model = [], [], model
        return super().prepare(model, stream)

    def before_task(self, task, model):
        super().before_task(task, model)
        self.start = [lin.weight.detach().clone() for lin in linears(model)]

    def after_task(self, task, model):
        super().after_task(task, model)
        assert any(not torch.equal(lin.weight, w) for lin, w in zip(linears(model), self.start, strict=True))
        with torch.no_grad():
            self.seen.append({t.id: self.predict(model, t.test_x, t) for t in self.stream.tasks[: task.id + 1]})
        self.owner_after.append([o.clone() for o in self.owners.weight])


OPTIMIZERS = [
    {"optimizer": "sgd", "momentum": 0.9},
    {"optimizer": "adam"},
    {"optimizer": "sgd", "momentum": 0.9, "reset_optimizer": False},  # momentum carried across tasks
]


@pytest.mark.parametrize("opts", OPTIMIZERS)
def test_earlier_tasks_outputs_are_bit_identical_after_later_tasks(opts):
    s = stream()
    pn = Recording(retrain_epochs=1)
    r = ll.fit(s, mlp(s), pn, iterations=20, lr=0.05, batch_size=10, seed=0, weight_decay=0.05, **opts)
    assert len(pn.seen) == 3
    with torch.no_grad():
        for k, outs in enumerate(pn.seen):
            for j, out in outs.items():  # task j's outputs now are those right after task k (j <= k)
                assert torch.equal(pn.predict(pn.model, s.tasks[j].test_x, s.tasks[j]), out), (j, k)
    assert r.bwt == 0 and (r.R[-1] == r.R.diagonal(-1)).all()
    assert (r.R[-1] > 0.6).all()  # every task learned something in its share of the network


def test_no_weight_has_two_owners_and_each_task_keeps_its_share():
    s, hidden = stream(), (16, 8)
    pn = Recording(prune=0.5)
    r = ll.fit(s, mlp(s, hidden), pn, iterations=10, lr=0.1, batch_size=10, seed=0, weight_decay=0.01)
    sizes = [s.input_size * 16, 16 * 8]
    free = list(sizes)
    for k, owners in enumerate(pn.owner_after):
        # Task k trained every free weight and kept all but round(0.5 n) of them in each layer.
        kept = [n - round(0.5 * n) for n in free]
        assert [int((o == k + 1).sum()) for o in owners[:2]] == kept, k
        assert pn.facts()["owned_weights"][k][:2] == kept
        free = [n - m for n, m in zip(free, kept, strict=True)]
        assert [int((o == 0).sum()) for o in owners[:2]] == free
        assert r.capacity[k]["free_fraction"] == pytest.approx(sum(free) / sum(sizes))
        for later in pn.owner_after[k:]:  # what task k owns it keeps, and nobody else takes it
            for o, o_later in zip(owners, later, strict=True):
                assert torch.equal(o_later[o == k + 1], o[o == k + 1])
    # The output layer: each task owns exactly its own units' rows, never pruned.
    head = pn.owner_after[-1][-1]
    for task in s.tasks:
        rows = torch.zeros(s.n_classes, dtype=torch.bool)
        rows[list(task.classes)] = True
        assert (head[rows] == task.id + 1).all() and not (head[~rows] == task.id + 1).any()
    # Free weights are zero: released, never trained since.
    for lin, o in zip(linears(pn.model), pn.owner_after[-1], strict=True):
        assert (lin.weight[o == 0] == 0).all()


def test_default_shares_the_free_weights_among_the_tasks_left():
    s = stream()
    pn, model = PackNet(retrain_epochs=0), mlp(s, (16,))
    ll.fit(s, model, pn, iterations=5, lr=0.1, batch_size=10, seed=0)
    n = s.input_size * 16  # 1024 weights: task 1 keeps a third, task 2 half of the rest, task 3 the rest
    first = n - round(2 / 3 * n)
    second = (n - first) - round(0.5 * (n - first))
    assert pn.facts()["prune"] == pytest.approx([2 / 3, 1 / 2, 0])
    assert [w[0] for w in pn.facts()["owned_weights"]] == [first, second, n - first - second]
    assert pn.capacity(model)["free_fraction"] == 0


def test_pruning_keeps_the_largest_magnitudes_of_the_tasks_own_weights_per_layer():
    s = stream()
    model = mlp(s)
    pn = PackNet(prune=0.75, retrain_epochs=0)
    pn.prepare(model, s)
    g = torch.Generator().manual_seed(1)
    for task in s.tasks[:2]:
        pn.before_task(task, model)
        mine = [o == task.id + 1 for o in pn.owners.weight[:2]]
        with torch.no_grad():
            for lin, m in zip(linears(model)[:2], mine, strict=True):
                # The new task's weights are large, so pruning among all weights would cut the old ones.
                lin.weight[m] = torch.randn(int(m.sum()), generator=g) * 10
        before = [lin.weight.detach().clone() for lin in linears(model)]
        pn.after_task(task, model)
        for i, m in enumerate(mine):
            values = before[i][m].tolist()
            n_keep = len(values) - round(0.75 * len(values))
            by_hand = sorted(range(len(values)), key=lambda j: -abs(values[j]))[:n_keep]
            kept = (pn.owners.weight[i] == task.id + 1)[m]
            assert sorted(kept.nonzero().squeeze(1).tolist()) == sorted(by_hand), (task.id, i)
            w = linears(model)[i].weight
            assert torch.equal(w[pn.owners.weight[i] == task.id + 1], before[i][pn.owners.weight[i] == task.id + 1])
            assert (w[m & (pn.owners.weight[i] == 0)] == 0).all()  # pruned: zero and free
    # 1024 and 128 weights: task 1 keeps 256 and 32, task 2 a quarter of the 768 and 96 left; 3 units of 8 each
    assert pn.facts()["owned_weights"] == [[256, 32, 3 * 8], [192, 24, 3 * 8]]


@pytest.mark.parametrize("epochs", [0, 2])
def test_retraining_holds_the_pruned_weights_at_zero_and_trains_the_kept_ones(epochs):
    s = stream()
    model = mlp(s)
    pn = PackNet(prune=0.5, retrain_epochs=epochs, retrain_lr=0.1)
    r = ll.fit(s, model, pn, iterations=1, lr=0.1, batch_size=10, seed=0, weight_decay=0.1, momentum=0.9)
    assert r.bwt == 0
    plain, plain_model = PackNet(prune=0.5, retrain_epochs=0), mlp(s)  # the same run, no retraining
    ll.fit(s, plain_model, plain, iterations=1, lr=0.1, batch_size=10, seed=0, weight_decay=0.1, momentum=0.9)
    assert pn.facts()["owned_weights"] == plain.facts()["owned_weights"]
    for lin, o in zip(linears(model), pn.owners.weight, strict=True):
        assert (lin.weight[o == 0] == 0).all()
    kept = pn.owners.weight[0] == 1
    assert torch.equal(kept, plain.owners.weight[0] == 1)
    same = torch.equal(linears(model)[0].weight[kept], linears(plain_model)[0].weight[kept])
    assert same == (epochs == 0)


def test_a_task_not_learned_yet_is_answered_by_the_network_as_it_stands():
    s = stream()
    model = mlp(s)
    untouched = mlp(s)
    r = ll.fit(s, model, PackNet(), iterations=5, lr=0.1, batch_size=10, seed=0)
    x = s.tasks[2].test_x
    r0 = ((untouched(x) + s.eval_masks(-1)["task"][2]).argmax(1) == s.tasks[2].test_y).float().mean().item()
    assert r.R[0][2] == pytest.approx(r0)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"prune": 1.0}, r"prune must be in \[0, 1\)"),
        ({"prune": -0.1}, r"prune must be in \[0, 1\)"),
        ({"retrain_epochs": -1}, "retrain_epochs must be >= 0"),
        ({"retrain_lr": 0.0}, "retrain_lr must be a finite number > 0"),
    ],
)
def test_bad_settings_are_one_line_errors(bad, message):
    with pytest.raises(ll.LifelongError, match=message) as e:
        PackNet(**bad)
    assert "\n" not in str(e.value)


def test_a_bad_setting_from_the_command_line_names_the_flag(tmp_path, capsys):
    args = ["run", "--method", "packnet", "--benchmark", "split-synthetic", "--scenario", "task", "--prune", "1.5"]
    assert main([*args, "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "--prune must be in [0, 1)" in err and err.count("\n") == 1, err


def test_runs_end_to_end_from_the_command_line(tmp_path, capsys):
    args = ["run", "--method", "packnet", "--benchmark", "split-synthetic", "--scenario", "task", "--tasks", "3"]
    args += ["--iterations", "10", "--retrain-epochs", "1", "--weight-decay", "0.01", "--report", "no"]
    assert main([*args, "--store", str(tmp_path / "r.db")]) == 0
    (row,) = Store(tmp_path / "r.db").runs()
    assert row["status"] == "finished" and row["config"]["retrain_epochs"] == 1


def test_a_task_with_no_free_weights_left_is_warned_about_and_changes_nothing_before_it():
    s = stream()
    pn = Recording(prune=0.0)  # the first task keeps every hidden weight
    with pytest.warns(ll.errors.LifelongWarning, match="no free weights are left for task") as caught:
        r = ll.fit(s, mlp(s), pn, iterations=5, lr=0.1, batch_size=10, seed=0, weight_decay=0.05, momentum=0.9)
    assert len(caught) == 2 and all("\n" not in str(w.message) for w in caught)
    assert r.bwt == 0 and [w[:2] for w in pn.facts()["owned_weights"]] == [[1024, 128], [0, 0], [0, 0]]


def test_a_unit_never_changes_hands():
    s = stream()
    owners = Ownership(mlp(s))
    owners.claim_units(0, 2, [0, 1])
    owners.claim_units(0, 2, [1, 2])  # its own again: fine
    with pytest.raises(ValueError, match="owned by another task"):
        owners.claim_units(1, 2, [2, 3])
    assert owners.weight[2][:, 0].tolist() == [1, 1, 1] + [0] * (s.n_classes - 3)


def test_show_prints_packnet_and_cpg_facts_one_line_each():
    from lifelong.cli import _facts_lines

    assert _facts_lines({"prune": [0.8, 0.75, 0.0]}) == [
        "pruned: 80%, 75%, 0% of each task's weights (per layer, by magnitude)"
    ]
    cpg = {"goal": [0.9, 0.5], "val_accuracy": [0.95, 0.5], "sparsity": [0.8, 0.0], "units_grown": [10, 0]}
    assert _facts_lines(cpg) == [
        "per task (validation): goal 90.0% reached 95.0%, sparsity 80%, +10 units; "
        "goal 50.0% reached 50.0%, sparsity 0%, +0 units"
    ]

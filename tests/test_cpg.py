"""CPG (Hung et al. 2019): earlier tasks' outputs are bit-identical after later tasks (BWT = 0), the
network grows only when a task misses its goal, picking never changes a frozen weight, the binarised mask
and its straight-through gradient by hand, and Zhu & Gupta's cubic schedule by hand."""

import pytest
import torch

import lifelong as ll
from lifelong.cli import main
from lifelong.methods.resources.cpg import CPG, Binarize, cubic_sparsity, layers, picked_weight
from lifelong.results import Store


def stream():
    return ll.benchmarks.split("synthetic", n_tasks=3, scenario="task")


def train(s, method, hidden=8, **opts):
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [hidden], s.n_classes)
    opts = {"iterations": 20, "lr": 0.1, "batch_size": 10, "seed": 0, **opts}
    return model, ll.fit(s, model, method, **opts)


class Recording(CPG):
    """CPG that records every learned task's outputs and weights right after each task; from the second
    task on, the goal is out of reach, so the network grows while earlier tasks are kept. It also checks
    that every frozen weight's gradient is zero once after_backward has run."""

    def after_backward(self, model, task):
        super().after_backward(model, task)
        for lin, frozen in zip(layers(model), self._frozen, strict=True):
            assert not lin.weight.grad[frozen].any()
        self.checked = getattr(self, "checked", 0) + 1

    def after_task(self, task, model):
        super().after_task(task, model)
        self.goal_fraction = 2.0
        with torch.no_grad():
            outs = {t.id: self.predict(model, t.test_x, t) for t in self.stream.tasks[: task.id + 1]}
        owned = [(o == task.id + 1).clone() for o in self.owner]
        self.seen = [*getattr(self, "seen", []), (outs, owned, [lin.weight.detach().clone() for lin in layers(model)])]


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_earlier_tasks_outputs_are_bit_identical_after_later_tasks_and_growth(optimizer, momentum):
    s = stream()
    cpg = Recording(max_growths=2, grow_units=4, mask_lr=0.01)
    model, r = train(s, cpg, optimizer=optimizer, momentum=momentum, weight_decay=0.05)
    assert cpg.facts()["units_grown"] == [0, 8, 0] and model.hidden == (16,)  # grown after task 1 was kept
    assert cpg.checked > 60  # fit()'s 60 steps, and those of growing and compacting
    with torch.no_grad():
        for k, (outs, owned, weights) in enumerate(cpg.seen):
            for j, out in outs.items():  # task j's outputs now are those right after task k (j <= k)
                assert torch.equal(cpg.predict(model, s.tasks[j].test_x, s.tasks[j]), out), (j, k)
            for lin, mine, w in zip(layers(model), owned, weights, strict=True):  # its weights never moved
                rows, cols = w.shape
                assert torch.equal(lin.weight[:rows, :cols][mine], w[mine])
    assert r.bwt == 0 and (r.R[-1] == r.R.diagonal(-1)).all()


def test_grows_up_to_the_cap_only_when_the_goal_is_missed():
    s = stream()
    size = lambda h: s.input_size * h + h + h * s.n_classes + s.n_classes  # noqa: E731 (the MLP's parameters)
    missed = CPG(goal_fraction=2.0, max_growths=3, grow_units=5)  # twice the model's own accuracy: out of reach
    model, _ = train(s, missed)
    facts = missed.facts()
    assert facts["units_grown"] == [15, 0, 0] and model.hidden == (8 + 15,)
    assert all(a < g for a, g in zip(facts["val_accuracy"], facts["goal"], strict=True))
    assert missed.capacity(model)["parameters"] == size(23)

    easy = CPG(goal=0.01, max_growths=3, grow_units=5)
    model, _ = train(s, easy)
    facts = easy.facts()
    assert facts["units_grown"] == [0, 0, 0] and model.hidden == (8,)
    assert all(a >= 0.01 for a in facts["val_accuracy"]) and facts["goal"] == [0.01] * 3
    assert easy.capacity(model)["parameters"] == size(8)


def test_compacting_releases_zeroed_weights_up_to_the_highest_sparsity_that_meets_the_goal():
    s = stream()
    cpg = CPG(goal=0.01, max_sparsity=0.5, sparsity_step=0.25)  # an easy goal: every stage is kept
    model, _ = train(s, cpg)
    hidden = layers(model)[0]
    for sparsity in cpg.facts()["sparsity"]:  # of the weights each task trained: about half
        assert abs(sparsity - 0.5) < 0.01, sparsity
    free = cpg.owner[0] == 0
    assert free.any() and (hidden.weight[free] == 0).all()  # released weights are zero
    # The task-1 weights are half of all, then each task takes and halves what is free: 1/2, 1/4, 1/8 left.
    assert abs(free.float().mean().item() - 0.125) < 0.01
    none = CPG(goal=0.01, prune_epochs=0)
    train(s, none)
    assert none.facts()["sparsity"] == [0.0, 0.0, 0.0]


def test_picking_never_changes_a_frozen_weight_and_is_stored_per_task():
    s = stream()
    cpg = Recording(max_growths=0, mask_lr=0.05)
    model, _ = train(s, cpg, momentum=0.9, weight_decay=0.1)
    _, owned, weights = cpg.seen[0]  # task 1's weights, after task 1
    assert torch.equal(layers(model)[0].weight[owned[0]], weights[0][owned[0]])
    keep, _ = cpg.learned[1]  # task 2 picked some of task 1's weights and left others out
    old = owned[0]
    assert keep[0][old].any() and not keep[0][old].all()
    assert not keep[0][cpg.owner[0] == 3].any()  # nor does it use a later task's weights


def test_binarised_mask_and_straight_through_gradient_by_hand():
    w = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], requires_grad=True)
    own = torch.tensor([[True, False, False], [False, False, True]])
    old = torch.tensor([[False, True, True], [False, True, False]])  # [1][0] is free: nobody's
    scores = torch.tensor([[0.0, 0.006, 0.005], [0.9, -1.0, 0.0]], requires_grad=True)
    out = picked_weight(w, own, old, scores, threshold=0.005)
    # Own entries pass; old ones pass where the score is above 0.005 (0.005 itself does not); free: 0.
    assert torch.equal(out, torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, -6.0]]))
    g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (out * g).sum().backward()
    # Straight through: d/d(score) = g·w where the weight is old (binarisation's derivative taken as 1).
    assert torch.equal(scores.grad, torch.tensor([[0.0, -4.0, 9.0], [0.0, 25.0, 0.0]]))
    assert torch.equal(w.grad, torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 6.0]]))
    m = torch.tensor([0.004, 0.005, 0.006], requires_grad=True)
    b = Binarize.apply(m, 0.005)
    b.backward(torch.tensor([7.0, 8.0, 9.0]))
    assert torch.equal(b, torch.tensor([0.0, 0.0, 1.0])) and torch.equal(m.grad, torch.tensor([7.0, 8.0, 9.0]))


def test_cubic_schedule_by_hand():
    # s_t = s_f + (s_i - s_f)(1 - t/n)^3 (Zhu & Gupta 2017, eq. 1)
    assert cubic_sparsity(0, 10, 0.0, 0.5) == 0.0
    assert cubic_sparsity(5, 10, 0.0, 0.5) == 0.5 - 0.5 * 0.125  # 0.4375
    assert cubic_sparsity(2, 4, 0.2, 0.6) == pytest.approx(0.6 - 0.4 * 0.125)  # 0.55
    assert cubic_sparsity(10, 10, 0.1, 0.9) == 0.9 and cubic_sparsity(30, 10, 0.1, 0.9) == 0.9


@pytest.mark.parametrize(
    "settings",
    [
        {"goal": 1.5},
        {"goal": 0.0},
        {"goal_fraction": 0},
        {"holdout": 1.0},
        {"mask_lr": 0},
        {"mask_threshold": float("nan")},
        {"sparsity_step": 0},
        {"max_sparsity": 1.0},
        {"prune_lr": -1.0},
        {"grow_units": 0},
        {"max_growths": -1},
    ],
)
def test_bad_settings_are_one_line_errors(settings):
    with pytest.raises(ll.LifelongError) as e:
        CPG(**settings)
    (name,) = settings
    assert f"cpg: {name} must be" in str(e.value) and "\n" not in str(e.value)


def test_runs_end_to_end_from_the_command_line(tmp_path, capsys):
    args = ["run", "--method", "cpg", "--benchmark", "split-synthetic", "--scenario", "task", "--tasks", "3"]
    args += ["--iterations", "10", "--goal", "0.5", "--max-growths", "1", "--report", "no"]
    assert main([*args, "--store", str(tmp_path / "r.db")]) == 0
    (row,) = Store(tmp_path / "r.db").runs()
    assert row["status"] == "finished" and row["config"]["goal"] == 0.5

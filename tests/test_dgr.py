"""Deep generative replay (DGR and DGR+distill): the solver's loss against an independent computation with
a previous solver and generator whose outputs are fixed by hand, the generator's step, its learning, the
samples it records, and old classes kept in class-IL (the scenarios from the CLI: test_memory_methods.py)."""

import copy
import dataclasses
import json
import types

import pytest
import torch
import torch.nn.functional as F

import lifelong as ll
from lifelong.cli import main
from lifelong.errors import LifelongError
from lifelong.methods.memory.dgr import DGR

T = 2.0


def kd(logits, target_logits):
    """Hinton's distillation × T², computed directly; targets may have fewer units (zero-padded at the end)."""
    q = F.softmax(target_logits / T, dim=1)
    q = torch.cat([q, q.new_zeros(len(q), logits.shape[1] - q.shape[1])], dim=1)
    return -(q * F.log_softmax(logits / T, dim=1)).sum(1).mean() * T**2


def hand_made_step(scenario, distill):
    """DGR at its third task, with a previous solver and generator that give fixed outputs."""
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario=scenario)
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [16], s.n_classes)
    dgr = DGR(distill=distill, temperature=T, generator_units=8, latent=4)
    dgr.prepare(model, s)
    for task in s.tasks[:2]:
        dgr.before_task(task, model)
        dgr.after_task(task, model)
    x_hat = torch.rand(8, *s.input_shape, generator=torch.Generator().manual_seed(1))
    old_logits = torch.randn(8, s.n_classes, generator=torch.Generator().manual_seed(2)) * 3
    asked = []
    dgr.previous_generator = types.SimpleNamespace(sample=lambda n, g: asked.append(n) or x_hat[:n])
    dgr.previous_solver = lambda x: old_logits if torch.equal(x, x_hat) else None
    task = s.tasks[2]
    dgr.before_task(task, model)  # t = 3
    x, y = task.train_x[:8], task.train_y[:8]
    mask = s.train_masks([2])[2] if scenario != "domain" else None
    return s, model, dgr, x, y, mask, x_hat, old_logits, asked


@pytest.mark.parametrize("distill", [False, True])
@pytest.mark.parametrize("scenario", ["task", "class", "domain"])
def test_solver_loss_is_one_over_t_current_plus_the_rest_on_replayed_inputs_labelled_by_the_old_solver(
    scenario, distill
):
    s, model, dgr, x, y, mask, x_hat, old, asked = hand_made_step(scenario, distill)
    got = dgr.loss(model, x, y, mask)
    assert asked == [8]  # x̂ has the batch's size

    current = F.cross_entropy(model(x) if mask is None else model(x) + mask, y)
    new = model(x_hat)

    def on(new, old):  # new logits against the old solver's targets (on the same or the first units)
        return kd(new, old) if distill else F.cross_entropy(new, old.argmax(1))

    if scenario == "task":  # every previous head, labels taken within that head, averaged over heads
        heads = [list(s.tasks[k].classes) for k in (0, 1)]
        replayed = sum(on(new[:, h], old[:, h]) for h in heads) / 2
    elif scenario == "class":  # targets on the 6 classes of tasks 1-2, scored on all 9 seen so far
        assert [t.classes for t in s.tasks] == [(0, 1, 2), (3, 4, 5), (6, 7, 8)]
        seen, before = new[:, :9], old[:, :6]
        assert not torch.equal(old[:, :9].argmax(1), before.argmax(1))  # labels on all 9 would differ
        replayed = on(seen, before)
    else:  # domain-IL: all units
        replayed = on(new, old)
    assert got.item() == pytest.approx((current / 3 + replayed * 2 / 3).item(), rel=1e-5)


def test_generator_steps_on_the_batch_and_the_same_replayed_inputs_with_the_same_weights():
    s, model, dgr, x, y, mask, x_hat, old, _ = hand_made_step("class", False)
    dgr.loss(model, x, y, mask).backward()
    solver_grads = [p.grad.clone() for p in model.parameters()]
    before = copy.deepcopy(dgr.generator)
    torch.manual_seed(5)  # the VAE's reparameterisation noise, the same in both
    dgr.after_step(model, s.tasks[2])
    torch.manual_seed(5)
    (before.loss(x) / 3 + before.loss(x_hat) * 2 / 3).backward()
    for mine, theirs in zip(dgr.generator.parameters(), before.parameters(), strict=True):
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-7)
        assert not torch.equal(mine, theirs)  # and it stepped
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), solver_grads, strict=True))


def test_the_generator_learns_the_task():
    s = ll.benchmarks.split("digits", n_tasks=5, scenario="class")
    one_task = dataclasses.replace(s, tasks=s.tasks[:1])
    x = s.tasks[0].train_x
    losses = []
    for iterations in (1, 200):
        torch.manual_seed(0)
        dgr = DGR(generator_units=64, latent=8)
        ll.fit(one_task, ll.models.MLP(s.input_size, [16], s.n_classes), dgr, iterations=iterations, seed=0)
        with torch.no_grad():
            losses.append(dgr.generator.loss(x, torch.Generator().manual_seed(0)).item())
    assert losses[1] < 0.75 * losses[0], losses


def test_facts_hold_the_generators_size_and_its_samples_after_every_task():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="class")
    torch.manual_seed(0)
    dgr = DGR(generator_units=16, latent=4)
    result = ll.fit(s, ll.models.MLP(s.input_size, [16], s.n_classes), dgr, iterations=20)
    facts = json.loads(json.dumps(result.facts))  # JSON-able, as the run's record keeps it
    # 64 -> 16 -> 16 -> (mu, logvar: 4 each), 4 -> 16 -> 16 -> 64, weights and biases
    n = (64 * 16 + 16) + (16 * 16 + 16) + 2 * (16 * 4 + 4) + (4 * 16 + 16) + (16 * 16 + 16) + (16 * 64 + 64)
    assert facts["generator"] == {"parameters": n, "bytes": 4 * n}
    generated = facts["generated"]
    assert generated["input_shape"] == [8, 8] and len(generated["after_task"]) == 3
    for images in generated["after_task"]:
        assert len(images) == 8 and all(len(image) == 64 for image in images)
        assert all(isinstance(v, int) and 0 <= v <= 255 for image in images for v in image)
    assert generated["after_task"][0] != generated["after_task"][2]  # the generator changed between tasks
    # The last grid is the final generator's images from z drawn with a fixed seed: the same z every task.
    seed = torch.initial_seed() + 2
    last = (dgr.generator.sample(8, torch.Generator().manual_seed(seed)) * 255).round().int().flatten(1).tolist()
    assert generated["after_task"][2] == last


def test_inputs_outside_zero_one_are_a_one_line_error():
    s = ll.benchmarks.split("synthetic", n_tasks=2, scenario="class")
    standardised = [dataclasses.replace(t, train_x=(t.train_x - 0.5) * 4) for t in s.tasks]
    bad = dataclasses.replace(s, tasks=standardised)
    with pytest.raises(LifelongError) as error:
        ll.fit(bad, ll.models.MLP(s.input_size, [16], s.n_classes), DGR(), iterations=1)
    assert "\n" not in str(error.value) and "[0, 1]" in str(error.value), error.value


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    for bad in (["--temperature", "0"], ["--generator-lr", "-1"], ["--latent", "0"]):
        code = main(["run", "--method", "dgr", *bad, "--store", str(tmp_path / "r.db")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and bad[0] in err, err


def test_dgr_keeps_old_classes_where_finetuning_forgets_them():
    s = ll.benchmarks.split("digits", n_tasks=3, scenario="class")
    dgr = DGR(generator_units=64, latent=10, generator_lr=3e-3)  # small and quick: a few seconds on a CPU
    acc = {}
    for name, method in (("finetune", ll.methods.Finetune()), ("dgr", dgr)):
        torch.manual_seed(0)
        model = ll.models.MLP(s.input_size, [100, 100], s.n_classes)
        acc[name] = ll.fit(s, model, method, iterations=150, optimizer="adam", lr=1e-3, seed=0).acc
    assert acc["finetune"] < 0.35 and acc["dgr"] > acc["finetune"] + 0.25, acc  # finetune keeps the last task only

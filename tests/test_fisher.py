"""The four Fisher estimators (and MAS's per-sample sums) against plain Python loops over samples."""

import pytest
import torch
from torch import nn

from lifelong.errors import LifelongError
from lifelong.methods import fisher
from lifelong.models import MLP

N_IN, N_OUT, N = 12, 6, 37
TOL = 1e-6


class Scaled(nn.Module):
    """Not made of Linear layers only (a free scale parameter): the vmap path has to take it."""

    def __init__(self):
        super().__init__()
        self.body = MLP(N_IN, (9,), N_OUT)
        self.scale = nn.Parameter(torch.tensor(1.3))

    def forward(self, x):
        return self.body(x) * self.scale


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = MLP(N_IN, (10, 8), N_OUT)
    x = torch.randn(N, N_IN)
    mask = torch.full((N_OUT,), float("-inf"))
    mask[[0, 2, 3, 5]] = 0.0
    y_all = torch.randint(0, N_OUT, (N,))
    y_masked = torch.tensor([0, 2, 3, 5])[torch.randint(0, 4, (N,))]
    return model, x, mask, y_all, y_masked


def loop_grads(model, x, units, loss_of):
    """Per-sample gradients, one sample and one autograd call at a time."""
    params = dict(model.named_parameters())
    out = []
    for i in range(len(x)):
        z = model(x[i : i + 1])[0]
        z = z if units is None else z[units]
        out.append(loss_of(i, z, params))
    return out


def loop_fisher(model, x, y, mask, estimator, batch_size=5):
    units = fisher.units_of(mask)
    params = dict(model.named_parameters())
    acc = {n: torch.zeros_like(p) for n, p in params.items()}

    def col(label):  # the label's position among the allowed units
        return int(label) if units is None else int((units == label).nonzero()[0, 0])

    if estimator == "exact":
        for i in range(len(x)):
            z = model(x[i : i + 1])[0]
            z = z if units is None else z[units]
            logp = torch.log_softmax(z, -1)
            for c in range(len(z)):
                grads = torch.autograd.grad(logp[c], list(params.values()), retain_graph=True)
                for (n, _), g in zip(params.items(), grads, strict=True):
                    acc[n] += logp[c].exp().detach() * g**2
        return {n: a / len(x) for n, a in acc.items()}
    per_sample = []
    for i in range(len(x)):
        z = model(x[i : i + 1])[0]
        z = z if units is None else z[units]
        loss = -torch.log_softmax(z, -1)[col(y[i])]
        per_sample.append(torch.autograd.grad(loss, list(params.values())))
    if estimator == "batched":  # the mean of each batch's per-sample gradients, squared
        batches = [per_sample[s : s + batch_size] for s in range(0, len(x), batch_size)]
        for batch in batches:
            for k, n in enumerate(params):
                acc[n] += (sum(g[k] for g in batch) / len(batch)) ** 2
        return {n: a / len(batches) for n, a in acc.items()}
    for grads in per_sample:
        for k, n in enumerate(params):
            acc[n] += grads[k] ** 2
    return {n: a / len(x) for n, a in acc.items()}


def assert_close(got, want, tol=TOL):
    assert got.keys() == want.keys()
    for n in want:
        assert got[n].shape == want[n].shape
        assert torch.allclose(got[n], want[n], atol=tol, rtol=0), (n, (got[n] - want[n]).abs().max())


@pytest.mark.parametrize("impl", ["linear", "vmap"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("estimator", ["exact", "sampled", "empirical", "batched"])
def test_each_estimator_equals_a_per_sample_loop(setup, estimator, masked, impl):
    model, x, mask, y_all, y_masked = setup
    mask, y = (mask, y_masked) if masked else (None, y_all)
    gen = torch.Generator().manual_seed(7)
    got = fisher.diagonal_fisher(model, x, y, mask, estimator, batch_size=5, generator=gen, impl=impl)
    if estimator == "sampled":  # the same draws, then the loop on them
        y = fisher.sample_labels(model, x, mask, torch.Generator().manual_seed(7))
        assert set(y.tolist()) <= set(fisher.units_of(mask).tolist() if masked else range(N_OUT))
    want = loop_fisher(model, x, y, mask, "empirical" if estimator == "sampled" else estimator)
    assert_close(got, want)


@pytest.mark.parametrize("estimator", ["exact", "empirical"])
def test_auto_falls_back_to_vmap_for_other_models(estimator):
    torch.manual_seed(1)
    model, x = Scaled(), torch.randn(11, N_IN)
    y = torch.randint(0, N_OUT, (11,))
    got = fisher.diagonal_fisher(model, x, y, None, estimator)
    assert "scale" in got
    assert_close(got, loop_fisher(model, x, y, None, estimator))
    with pytest.raises(LifelongError):
        fisher.diagonal_fisher(model, x, y, None, estimator, impl="linear")


def test_sampled_fisher_averages_to_the_exact_one(setup):
    model, x, _, y, _ = setup
    x = x[:4]
    exact = fisher.diagonal_fisher(model, x, y[:4], None, "exact")
    many = x.repeat(4000, 1)  # E over the model's labels ≈ the mean over many draws
    sampled = fisher.diagonal_fisher(model, many, None, None, "sampled", generator=torch.Generator().manual_seed(0))
    for n in exact:
        rel = (sampled[n] - exact[n]).norm() / exact[n].norm()
        assert rel < 0.05, (n, rel)


def test_samples_estimates_on_a_subset(setup):
    model, x, _, y, _ = setup
    got = fisher.diagonal_fisher(model, x, y, None, "empirical", samples=10, generator=torch.Generator().manual_seed(3))
    keep = fisher.subsample(len(x), 10, torch.Generator().manual_seed(3), x.device)
    assert len(keep) == 10
    assert_close(got, loop_fisher(model, x[keep], y[keep], None, "empirical"))
    everything = fisher.diagonal_fisher(model, x, y, None, "empirical", samples=0)
    assert_close(everything, loop_fisher(model, x, y, None, "empirical"))


@pytest.mark.parametrize("impl", ["linear", "vmap"])
def test_mas_sums_are_per_sample_absolute_gradients(setup, impl):
    model, x, mask, _, _ = setup
    units = fisher.units_of(mask)
    got = fisher.per_sample_sums(model, x, fisher.output_norm_cotangents, units, power=1, impl=impl)
    params = dict(model.named_parameters())
    want = {n: torch.zeros_like(p) for n, p in params.items()}
    for grads in loop_grads(model, x, units, lambda i, z, p: torch.autograd.grad(z.square().sum(), list(p.values()))):
        for (n, _), g in zip(params.items(), grads, strict=True):
            want[n] += g.abs()
    assert_close(got, want, tol=1e-5)


def test_estimators_leave_the_model_and_its_gradients_alone(setup):
    model, x, _, y, _ = setup
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for estimator in fisher.ESTIMATORS:
        fisher.diagonal_fisher(model, x, y, None, estimator)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_bad_estimator_and_labels_are_user_errors(setup):
    model, x, mask, y, _ = setup
    with pytest.raises(LifelongError, match="unknown Fisher estimator"):
        fisher.diagonal_fisher(model, x, y, None, "diagonal")
    with pytest.raises(LifelongError, match="needs the true labels"):
        fisher.diagonal_fisher(model, x, None, None, "empirical")
    with pytest.raises(LifelongError, match="outside the output units"):
        fisher.diagonal_fisher(model, x, torch.ones_like(y), mask, "empirical")  # unit 1 is masked out


def test_batched_is_much_smaller_than_the_per_sample_estimators(setup):
    model, x, _, y, _ = setup
    x, y = x.repeat(8, 1), y.repeat(8)
    emp = fisher.diagonal_fisher(model, x, y, None, "empirical")
    bat = fisher.diagonal_fisher(model, x, y, None, "batched", batch_size=64)
    assert sum(b.sum() for b in bat.values()) < 0.5 * sum(e.sum() for e in emp.values())

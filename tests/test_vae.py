import math

import pytest
import torch

from lifelong.data.datasets import load
from lifelong.errors import LifelongError
from lifelong.models.vae import VAE, kl_to_standard_normal


@pytest.mark.parametrize("side", [8, 14])
def test_shapes_follow_the_input(side):
    torch.manual_seed(0)
    vae = VAE((side, side))
    x = torch.rand(5, side, side)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, 100)
    for out in (vae(x), vae.decode(mu), vae.sample(7)):
        assert out.shape[1:] == (side, side)
        assert 0 <= out.min() and out.max() <= 1
    assert vae.sample(7).shape == (7, side, side)
    assert vae.loss(x).shape == ()


def test_kl_is_zero_at_the_prior_and_half_mu_squared_off_it():
    zeros = torch.zeros(3, 4)
    assert torch.equal(kl_to_standard_normal(zeros, zeros), torch.zeros(3))
    # KL(N(mu, 1) || N(0, 1)) = mu^2 / 2 per unit; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2 per unit.
    assert torch.allclose(kl_to_standard_normal(torch.full((1, 4), 2.0), zeros), torch.tensor([8.0]))
    assert torch.allclose(kl_to_standard_normal(zeros[:1], torch.ones(1, 4)), torch.tensor([2 * (math.e - 2)]))


def test_loss_by_hand_with_weights_set_by_hand():
    # All weights 0, mu-bias 1: mu = 1, logvar = 0, so KL = 2 * 1/2 = 1 per sample over 2 latent units,
    # divided by 4 pixels; every output is sigmoid(0) = 1/2, so BCE = log 2 per pixel whatever x is.
    vae = VAE((2, 2), hidden=(3,), latent=2)
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        vae.to_mu.bias.fill_(1.0)
    x = torch.tensor([[[0.0, 1.0], [0.3, 0.9]], [[1.0, 1.0], [0.0, 0.5]]])
    assert vae.loss(x).item() == pytest.approx(math.log(2) + 1 / 4, abs=1e-6)
    recon, kl = vae.loss_terms(x)
    assert (recon.item(), kl.item()) == pytest.approx((math.log(2), 0.25), abs=1e-6)


def test_loss_equals_an_independent_computation_with_plain_tensor_ops():
    torch.manual_seed(3)
    vae = VAE((2, 3), hidden=(5, 4), latent=3)
    x = torch.rand(6, 2, 3)
    got = vae.loss(x, generator=torch.Generator().manual_seed(9))

    def lin(layer, h):
        return h @ layer.weight.T + layer.bias

    e1, e2 = vae.encoder[0], vae.encoder[2]
    d1, d2 = vae.decoder[0], vae.decoder[2]
    flat = x.reshape(6, 6)
    h = torch.relu(lin(e2, torch.relu(lin(e1, flat))))
    mu, logvar = lin(vae.to_mu, h), lin(vae.to_logvar, h)
    z = mu + torch.exp(logvar / 2) * torch.randn(6, 3, generator=torch.Generator().manual_seed(9))
    p = torch.sigmoid(lin(vae.to_pixels, torch.relu(lin(d2, torch.relu(lin(d1, z))))))
    bce = -(flat * torch.log(p) + (1 - flat) * torch.log(1 - p))  # (6 samples, 6 pixels)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1)  # (6,)
    want = bce.mean() + kl.mean() / 6
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_training_on_synthetic_lowers_the_loss_and_samples_are_images():
    torch.manual_seed(0)
    data = load("synthetic")
    vae = VAE(data.image_shape)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)

    def test_loss() -> float:
        with torch.no_grad():
            return vae.loss(data.test_x, generator=torch.Generator().manual_seed(0)).item()

    before = test_loss()
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        batch = data.train_x[torch.randint(len(data.train_x), (32,), generator=g)]
        opt.zero_grad()
        vae.loss(batch).backward()
        opt.step()
    after = test_loss()
    # The synthetic pixels are noisy, so BCE cannot reach 0: it is bounded below by the pixels' own entropy
    # (0.24). Predicting the mean training image for every input (what a VAE that ignores z would learn)
    # scores 0.66; beating it clearly shows that the decoder uses the latent code.
    x = data.test_x
    floor = -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).mean().item()
    mean_image = data.train_x.mean(0).clamp(1e-6, 1 - 1e-6).expand_as(x)
    mean_image_bce = torch.nn.functional.binary_cross_entropy(mean_image, x).item()
    assert before > mean_image_bce > after + 0.08 > floor, (before, mean_image_bce, after, floor)
    samples = vae.sample(16, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (16, 8, 8)
    assert 0 <= samples.min() and samples.max() <= 1


def test_same_seed_same_samples():
    torch.manual_seed(0)
    vae = VAE((8, 8), hidden=(20,), latent=4)
    a = vae.sample(5, generator=torch.Generator().manual_seed(7))
    b = vae.sample(5, generator=torch.Generator().manual_seed(7))
    c = vae.sample(5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not a.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"input_shape": (8, 0)}, "input_shape"),
        ({"input_shape": (8, 8), "hidden": 400}, "hidden"),
        ({"input_shape": (8, 8), "hidden": []}, "hidden"),
        ({"input_shape": (8, 8), "latent": 0}, "latent"),
        ({"input_shape": (8, 8), "latent": 2.5}, "latent"),
    ],
)
def test_bad_sizes_give_one_line_errors(kwargs, words):
    with pytest.raises(LifelongError, match=words) as err:
        VAE(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_inputs_give_one_line_errors():
    vae = VAE((8, 8), hidden=(10,), latent=2)
    with pytest.raises(LifelongError, match=r"expected inputs shaped \(N, 8, 8\)"):
        vae.loss(torch.rand(3, 7, 7))
    with pytest.raises(LifelongError, match=r"\[0, 1\]"):
        vae.loss(torch.rand(3, 8, 8) * 2)
    with pytest.raises(LifelongError, match="number of samples"):
        vae.sample(-1)

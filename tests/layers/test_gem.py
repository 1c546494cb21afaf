"""GeM pooling (Radenović et al., TPAMI 2019, eq. 2) against the formula on small maps."""

import pytest
import torch
import torch.nn.functional as F

from vpr_bench.layers.gem import GeM


def feature_map(seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """(2, 3, 5, 7) positive activations in [0.1, 1.1), as after a ReLU."""
    g = torch.Generator().manual_seed(seed)
    return (0.1 + torch.rand(2, 3, 5, 7, generator=g)).to(dtype)


@pytest.mark.parametrize("p", [3.0, 2.5, 0.5])
def test_gem_is_the_generalised_mean_of_each_channel(p):
    x = feature_map()
    expected = torch.stack(
        [torch.stack([(c.flatten() ** p).mean() ** (1 / p) for c in image]) for image in x]
    )  # (B, C), one channel at a time
    out = GeM(p=p)(x)
    assert out.shape == (2, 3)
    torch.testing.assert_close(out, expected)


def test_gem_with_p_1_is_average_pooling():
    x = feature_map(1)
    torch.testing.assert_close(GeM(p=1.0)(x), F.adaptive_avg_pool2d(x, 1).flatten(1))
    assert not torch.allclose(GeM(p=3.0)(x), x.mean(dim=(2, 3)), atol=1e-3)  # p matters


def test_gem_approaches_max_pooling_as_p_grows():
    x = feature_map(2, torch.float64)  # x^p of a large p stays in float64's range
    peak = x.amax(dim=(2, 3))
    gaps = [(peak - GeM(p=p)(x)).abs().max().item() for p in (1.0, 4.0, 16.0, 64.0, 256.0)]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0.2
    # a mean of 35 values is at least max/35: (mean x^p)^(1/p) ≥ max · 35^(-1/p), ≤ max
    out = GeM(p=256.0)(x)
    assert torch.all(out <= peak * (1 + 1e-9)) and torch.all(out >= peak * 35 ** (-1 / 256))


def test_negative_activations_are_clamped_not_nan():
    x = -feature_map(3)  # a fractional power of a negative number would be NaN
    out = GeM(p=3.0, eps=1e-6)(x)
    torch.testing.assert_close(out, torch.full((2, 3), 1e-6))


def test_p_is_a_learnable_parameter_with_a_gradient():
    gem = GeM(p=3.0)
    assert any(param is gem.p for param in gem.parameters())  # an optimiser built on the model fits it
    x = feature_map(4)
    gem(x).sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs().item() > 0
    # d/dp of (mean x^p)^(1/p), by finite differences in float64
    x64, h = x.double(), 1e-5
    gem_at = lambda p: (x64.pow(p).mean(dim=(2, 3)).pow(1 / p)).sum()  # noqa: E731
    numeric = (gem_at(3.0 + h) - gem_at(3.0 - h)) / (2 * h)
    assert gem.p.grad.item() == pytest.approx(numeric.item(), rel=1e-3)
    before = gem.p.item()
    torch.optim.SGD(gem.parameters(), lr=0.1).step()
    assert gem.p.item() != before


def test_p_can_be_fixed():
    gem = GeM(p=3.0, learnable=False)
    assert not gem.p.requires_grad
    x = feature_map(5).requires_grad_()
    gem(x).sum().backward()
    assert gem.p.grad is None and x.grad is not None

"""Registry-driven model tests: every registered model builds, runs forward/backward, and has the right shapes."""

from __future__ import annotations

import pytest
import torch

import ganmodels
from ganmodels.registry import get_spec, register


def small_config(name: str) -> dict:
    return {"dcgan": {"g_width": 8, "d_width": 8, "resolution": 16}, "mlp2d": {"g_width": 16, "d_width": 16}}.get(name, {})


@pytest.mark.parametrize("name", ganmodels.list_models())
def test_forward_backward_shapes(name):
    torch.manual_seed(0)
    gan = ganmodels.build(name, small_config(name))
    G, D = gan.G, gan.D
    z = torch.randn(4, G.z_dim)
    c = torch.randint(G.c_dim, (4,)) if G.c_dim else None
    fake = G(z, c)
    assert fake.shape == (4, *G.out_shape)
    if get_spec(name).data_kind == "image":
        assert fake.min() >= -1 and fake.max() <= 1  # tanh output range
    logits = D(fake, c)
    assert logits.shape == (4,)
    logits.sum().backward()
    for module in (G, D):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_resolutions(resolution, channels):
    gan = ganmodels.build("dcgan", g_width=4, d_width=4, resolution=resolution, channels=channels)
    out = gan.G(torch.randn(2, gan.G.z_dim))
    assert out.shape == (2, channels, resolution, resolution)
    assert gan.D(out).shape == (2,)


def test_packing_reduces_logits_and_checks_batch():
    gan = ganmodels.build("dcgan", g_width=4, d_width=4, resolution=16, pack=2)
    assert gan.D(torch.randn(6, 1, 16, 16)).shape == (3,)
    with pytest.raises(ValueError, match="divisible"):
        gan.D(torch.randn(5, 1, 16, 16))


def test_minibatch_std_sees_collapse():
    from ganmodels.models.layers import MinibatchStd

    layer = MinibatchStd(group_size=4)
    same = torch.ones(8, 3, 4, 4)
    varied = torch.randn(8, 3, 4, 4)
    assert layer(same)[:, -1].abs().max() < 1e-3  # a collapsed batch has ~0 std
    assert layer(varied)[:, -1].mean() > 0.5
    assert layer(torch.randn(8, 5)).shape == (8, 6)


def test_spectral_norm_bounds_the_layer():
    gan = ganmodels.build("dcgan", g_width=4, d_width=4, resolution=16, d_norm="spectral")
    conv = gan.D.features[0]
    for _ in range(30):  # power iterations converge in train mode
        conv(torch.randn(2, 1, 16, 16))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.weight.shape[0], -1), ord=2).item()
    assert sigma == pytest.approx(1.0, abs=0.05)


def test_registry_refuses_duplicates_and_unknown_fields():
    from ganmodels.models.dcgan import DCGANConfig

    with pytest.raises(ValueError, match="already registered"):
        register("dcgan", config=DCGANConfig, data_kind="image")(lambda cfg: None)
    with pytest.raises(ValueError, match="unknown field"):
        ganmodels.build("dcgan", {"widht": 3})
    with pytest.raises(KeyError, match="registered models"):
        ganmodels.build("nope")
    with pytest.raises(ValueError, match="resolution"):
        ganmodels.build("dcgan", resolution=48)

"""StyleGAN2's own promises: modulation/demodulation against its definition, truncation, fixed noise at
evaluation, style mixing, the path-length penalty against an independent computation, the w average."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ganmodels
from ganmodels.families import StepContext
from ganmodels.losses import get_loss
from ganmodels.models.stylegan2 import ModulatedConv2d
from ganmodels.train import TrainConfig
from tests.model_configs import SMALL


def build(**overrides):
    torch.manual_seed(0)
    return ganmodels.build("stylegan2", {**SMALL["stylegan2"], **overrides})


def test_modulated_convolution_equals_the_grouped_convolution_of_the_paper():
    """The non-fused form (scale activations, shared conv, scale outputs) against eq. 1-3 computed the way
    the reference code does: a per-sample weight w'' = demod(w * s), applied as a grouped convolution."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 7, 3, w_dim=6)
    x, w = torch.randn(4, 5, 8, 8), torch.randn(4, 6)
    styles = conv.affine(w)  # (B, I)
    weight = conv.weight[None] * conv.scale * styles[:, None, :, None, None]  # (B, O, I, k, k)
    weight = weight * (weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    grouped = F.conv2d(x.reshape(1, 20, 8, 8), weight.reshape(28, 5, 3, 3), padding=1, groups=4).reshape(4, 7, 8, 8)
    torch.testing.assert_close(conv(x, w), grouped, rtol=1e-5, atol=1e-5)


def test_truncation_pulls_towards_the_average_w():
    model = build().eval()
    G = model.G
    G.mapping.w_avg.normal_()
    z = torch.randn(6, G.z_dim)
    at_zero = G(z, truncation=0.0)
    assert torch.allclose(at_zero, at_zero[:1].expand_as(at_zero))  # psi 0: every sample is the average w's image
    ws = G.ws(z, truncation=0.5)
    torch.testing.assert_close(ws[:, 0], G.mapping.w_avg + 0.5 * (G.mapping(z) - G.mapping.w_avg))
    per_sample = G(z, truncation=torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(per_sample[1::2], at_zero[1::2])
    torch.testing.assert_close(per_sample[0::2], G(z)[0::2])


def test_noise_is_fixed_in_evaluation_and_drawn_from_the_run_in_training():
    model = build()
    G = model.G
    for layer in G.synthesis.layers:
        layer.noise_strength.data.fill_(1.0)  # make noise visible
    z = torch.randn(3, G.z_dim)
    G.eval()
    assert torch.equal(G(z), G(z))
    G.train()
    ws = G.ws(z)
    a = G.synthesis(ws, noise_gen=torch.Generator().manual_seed(1))
    b = G.synthesis(ws, noise_gen=torch.Generator().manual_seed(1))
    c = G.synthesis(ws, noise_gen=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def context(model, batch=8, seed=0, step=0, tiny=None):
    cfg = TrainConfig(batch_size=batch, seed=seed)
    return StepContext(step, cfg, torch.Generator().manual_seed(seed), torch.device("cpu"), get_loss("ns"), (), tiny)


def test_style_mixing_switches_to_the_second_latent_from_the_cutoff_on(tiny_images):
    model = build(style_mixing=1.0)
    ctx = context(model, tiny=model.training_tensors(tiny_images, torch.device("cpu")))
    z = torch.randn(4, model.G.z_dim)
    state = ctx.gen.get_state()
    ws = model._ws(ctx, z, None, update_w_avg=False)
    ctx.gen.set_state(state)
    cutoff = int(torch.randint(1, ws.shape[1], (), generator=ctx.gen))
    float(torch.rand((), generator=ctx.gen))
    z2 = torch.randn(z.shape, generator=ctx.gen)
    torch.testing.assert_close(ws[:, :cutoff], model.G.ws(z)[:, :cutoff])
    torch.testing.assert_close(ws[:, cutoff:], model.G.ws(z2)[:, cutoff:])
    none = build(style_mixing=0.0)._ws(ctx, z, None, update_w_avg=False)
    assert torch.allclose(none, none[:, :1].expand_as(none))  # one w for every layer


def test_a_batch_that_does_not_mix_keeps_its_own_latent_and_draws_the_same_numbers(tiny_images):
    """Mixing is decided on the device: a batch that does not mix still maps a second latent (so every
    step runs the same kernels and draws the same count of numbers) and keeps its first latent's w."""
    z = torch.randn(4, 8)
    after = []
    for mixing in (1.0, 1e-9):
        model = build(style_mixing=mixing)
        ctx = context(model, tiny=model.training_tensors(tiny_images, torch.device("cpu")))
        ws = model._ws(ctx, z[:, :model.G.z_dim], None, update_w_avg=False)
        after.append(torch.randn((), generator=ctx.gen))
    torch.testing.assert_close(ws, model.G.ws(z[:, :model.G.z_dim]))
    assert torch.equal(after[0], after[1])


def test_the_path_length_penalty_against_an_independent_jacobian(tiny_images):
    """|J_w^T y| by autograd on the flattened map w -> image, for each sample, compared with the family's."""
    model = build(style_mixing=0.0, pl_batch_shrink=1, pl_weight=3.0, pl_every=2)
    ctx = context(model, batch=3, tiny=model.training_tensors(tiny_images, torch.device("cpu")))
    state = ctx.gen.get_state()
    loss, logs = model._pl_loss(ctx)
    ctx.gen.set_state(state)
    z = torch.randn(3, model.G.z_dim, generator=ctx.gen)
    lengths = []
    ws = model.G.ws(z).detach()
    noise_state = ctx.gen.get_state()
    image = model.G.synthesis(ws, noise_gen=ctx.gen)
    y = torch.randn(image.shape, generator=ctx.gen) / math.sqrt(16 * 16)
    for i in range(3):
        ctx.gen.set_state(noise_state)  # the same noise for the per-sample recomputation
        w_i = ws[i:i + 1].clone().requires_grad_(True)
        full = ws.clone()
        full = torch.cat([ws[:i], w_i, ws[i + 1:]])
        (grad,) = torch.autograd.grad((model.G.synthesis(full, noise_gen=ctx.gen)[i] * y[i]).sum(), w_i)
        lengths.append(grad.square().sum(2).mean(1).sqrt())
    lengths = torch.cat(lengths)
    assert logs["pl_length"].item() == pytest.approx(lengths.mean().item(), rel=1e-4)
    pl_mean = torch.zeros(()).lerp(lengths.mean(), 0.01)
    assert loss.item() == pytest.approx(((lengths - pl_mean).square().mean() * 3.0 * 2).item(), rel=1e-3)
    assert model.family_state()["pl_mean"].item() == pytest.approx(pl_mean.item(), rel=1e-4)


def test_w_avg_moves_only_in_the_generator_phase(tiny_images):
    model = build()
    ctx = context(model, tiny=model.training_tensors(tiny_images, torch.device("cpu")))
    before = model.G.mapping.w_avg.clone()
    model.phase_loss(next(p for p in model.phases(ctx.cfg) if p.name == "D"), ctx)
    assert torch.equal(model.G.mapping.w_avg, before)
    model.phase_loss(next(p for p in model.phases(ctx.cfg) if p.name == "G"), ctx)
    assert not torch.equal(model.G.mapping.w_avg, before)
    assert [p.name for p in model.phases(ctx.cfg)] == ["D", "G", "Gpl"]

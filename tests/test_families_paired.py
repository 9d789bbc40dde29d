"""The paired family's own promises: pairs stay pairs, D judges (input, image), and G's loss is the
paper's adversarial term plus l1_weight x L1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ganmodels
from ganmodels.families import StepContext
from ganmodels.losses import get_loss
from ganmodels.train import TrainConfig
from tests.model_configs import SMALL


def context(model, data, batch=16, seed=0):
    cfg = TrainConfig(batch_size=batch, seed=seed)
    return StepContext(0, cfg, torch.Generator().manual_seed(seed), torch.device("cpu"), get_loss("ns"), (),
                       model.training_tensors(data, torch.device("cpu")))


def test_an_input_is_always_drawn_with_its_own_target(tiny_pairs):
    torch.manual_seed(0)
    model = ganmodels.build("pix2pix", SMALL["pix2pix"])
    for seed in range(3):
        a, b = model._pairs(context(model, tiny_pairs, seed=seed))
        torch.testing.assert_close(a, F.avg_pool2d(b, 2))  # tiny_pairs' inputs are their targets' block means


def test_the_generator_loss_is_adversarial_plus_weighted_l1(tiny_pairs):
    torch.manual_seed(0)
    model = ganmodels.build("pix2pix", {**SMALL["pix2pix"], "l1_weight": 7.0})
    model.D.eval()  # spectral norm's power iteration would otherwise move between the two D calls
    ctx = context(model, tiny_pairs)
    state = ctx.gen.get_state()
    loss, logs = model.phase_loss(next(p for p in model.phases(ctx.cfg) if p.name == "G"), ctx)
    ctx.gen.set_state(state)  # the same pairs again, by hand
    a, b = model._pairs(ctx)
    fake = model.G(a)
    adversarial = F.softplus(-model.D(torch.cat([F.interpolate(a, size=8, mode="bilinear"), fake], 1))).mean()
    expected = adversarial + 7.0 * (fake - b).abs().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["g_l1"].item() == pytest.approx((fake - b).abs().mean().item(), rel=1e-6)

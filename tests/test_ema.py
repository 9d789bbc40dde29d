"""The EMA generator against its formula: ema <- beta * ema + (1 - beta) * G for parameters, buffers
copied, the copy frozen and in eval mode. Models are float64 so the closed forms hold to rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganmodels.train.ema import make_ema, update_ema


def tiny_model() -> nn.Module:
    """Linear + BatchNorm (running statistics are buffers) + Linear, float64, in training mode."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double().train()


def set_params(model: nn.Module, fill) -> list[torch.Tensor]:
    """Set every parameter to fill(i, shape) and return clones of the values set."""
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(fill(i, p.shape))
    return [p.detach().clone() for p in model.parameters()]


def ramp(offset: float):
    return lambda i, shape: torch.linspace(-1.0, 1.0, shape.numel(), dtype=torch.float64).reshape(shape) * (i + 1) + offset


def assert_params(model: nn.Module, expected: list[torch.Tensor]) -> None:
    got = [p.detach() for p in model.parameters()]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_make_ema_is_a_frozen_eval_copy():
    G = tiny_model()
    ema = make_ema(G)
    assert not ema.training and all(not m.training for m in ema.modules())
    assert all(not p.requires_grad for p in ema.parameters())
    assert G.training and all(p.requires_grad for p in G.parameters())  # G itself is untouched
    for p_ema, p in zip(ema.parameters(), G.parameters()):
        assert torch.equal(p_ema, p) and p_ema.data_ptr() != p.data_ptr()  # equal values, own storage


def test_one_step_is_the_convex_combination():
    G = tiny_model()
    ema = make_ema(G)
    ema0 = set_params(ema, ramp(0.5))
    w = set_params(G, ramp(-2.0))
    update_ema(ema, G, beta=0.9)
    assert_params(ema, [0.9 * e + 0.1 * x for e, x in zip(ema0, w)])
    assert_params(G, w)  # G is read, never written


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.999])
def test_k_steps_toward_constant_weights(beta):
    # With G fixed at w: ema_k = beta^k * ema_0 + (1 - beta^k) * w.
    G = tiny_model()
    ema = make_ema(G)
    ema0 = set_params(ema, ramp(1.0))
    w = set_params(G, ramp(-1.0))
    k = 7
    for _ in range(k):
        update_ema(ema, G, beta)
    assert_params(ema, [beta**k * e + (1 - beta**k) * x for e, x in zip(ema0, w)])


def test_k_steps_with_changing_weights():
    # ema_k = beta^k * ema_0 + sum_i (1 - beta) * beta^(k - i) * w_i: each step reads G's current weights.
    beta, k = 0.8, 5
    G = tiny_model()
    ema = make_ema(G)
    expected = set_params(ema, ramp(0.0))
    for step in range(1, k + 1):
        w = set_params(G, ramp(float(step)))
        update_ema(ema, G, beta)
        expected = [beta * e + (1 - beta) * x for e, x in zip(expected, w)]
    assert_params(ema, expected)


def test_beta_zero_copies_and_beta_one_keeps():
    G = tiny_model()
    ema = make_ema(G)
    ema0 = set_params(ema, ramp(3.0))
    w = set_params(G, ramp(-3.0))
    update_ema(ema, G, beta=1.0)
    assert all(torch.equal(p, e) for p, e in zip(ema.parameters(), ema0))
    update_ema(ema, G, beta=0.0)
    assert all(torch.equal(p, x) for p, x in zip(ema.parameters(), w))
    set_params(G, ramp(7.0))  # a copy, not shared storage
    assert all(torch.equal(p, x) for p, x in zip(ema.parameters(), w))


def test_buffers_are_copied_not_averaged():
    G = tiny_model()
    ema = make_ema(G)
    G(torch.randn(16, 3, dtype=torch.float64) * 3 + 2)  # training-mode forward: BN running stats move
    bn_G, bn_ema = G[1], ema[1]
    assert not torch.equal(bn_G.running_mean, bn_ema.running_mean)
    update_ema(ema, G, beta=0.9)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(bn_ema, name), getattr(bn_G, name)), name


def test_ema_stays_frozen_and_in_eval_mode_after_updates():
    G = tiny_model()
    ema = make_ema(G)
    for _ in range(3):
        update_ema(ema, G, beta=0.99)
    assert not ema.training and all(not m.training for m in ema.modules())
    assert all(not p.requires_grad and p.grad is None for p in ema.parameters())

"""Adversarial losses and gradient penalties, in an explicit registry.

Each loss maps discriminator logits to scalar losses: ``d_loss(real, fake)`` and ``g_loss(fake)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ganmodels import draws
from ganmodels.compiled import differentiable_twice
from ganmodels.draws import Source


@dataclass(frozen=True)
class AdversarialLoss:
    name: str
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


_LOSSES: dict[str, AdversarialLoss] = {}


def register_loss(loss: AdversarialLoss) -> AdversarialLoss:
    if loss.name in _LOSSES:
        raise ValueError(f"loss {loss.name!r} is already registered")
    _LOSSES[loss.name] = loss
    return loss


def list_losses() -> list[str]:
    return sorted(_LOSSES)


def get_loss(name: str) -> AdversarialLoss:
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {list_losses()}") from None


# Non-saturating loss (Goodfellow et al. 2014, §3): G maximises log D(G(z)); softplus form is stable.
register_loss(AdversarialLoss(
    "ns",
    d_loss=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
    g_loss=lambda fake: F.softplus(-fake).mean(),
))

# Hinge loss (Lim & Ye 2017; used by SNGAN and BigGAN).
register_loss(AdversarialLoss(
    "hinge",
    d_loss=lambda real, fake: F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean(),
    g_loss=lambda fake: -fake.mean(),
))

# Wasserstein critic loss (Arjovsky et al. 2017); pair it with the gradient penalty below.
register_loss(AdversarialLoss(
    "wgan",
    d_loss=lambda real, fake: fake.mean() - real.mean(),
    g_loss=lambda fake: -fake.mean(),
))


# Least-squares GAN (Mao et al. 2017, eq. 9 with a=0, b=c=1): the loss CycleGAN trains with (§4).
register_loss(AdversarialLoss(
    "lsgan",
    d_loss=lambda real, fake: (real - 1).square().mean() + fake.square().mean(),
    g_loss=lambda fake: (fake - 1).square().mean(),
))


def r1_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 = E[||grad_x D(x)||^2] on real data (Mescheder et al. 2018, eq. 9); scale by gamma/2 outside."""
    real = real.detach().requires_grad_(True)
    with differentiable_twice():
        (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.square().reshape(grad.shape[0], -1).sum(dim=1).mean()


def gradient_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: Source = None) -> torch.Tensor:
    """WGAN-GP: E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates (Gulrajani et al. 2017, Alg. 1)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = draws.rand(shape, generator).to(real.device, real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    with differentiable_twice():
        (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.reshape(grad.shape[0], -1).norm(dim=1) - 1).square().mean()

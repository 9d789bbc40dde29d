"""Exponential moving average of generator weights (Karras et al. 2018, Yazıcı et al. 2019)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(G: nn.Module) -> nn.Module:
    return copy.deepcopy(G).eval().requires_grad_(False)


@torch.no_grad()
def update_ema(ema: nn.Module, G: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * G for parameters; buffers (BN statistics) are copied."""
    ema_params = list(ema.parameters())
    params = [p.detach() for p in G.parameters()]
    if beta == 0.0:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), G.buffers()):
        b_ema.copy_(b)

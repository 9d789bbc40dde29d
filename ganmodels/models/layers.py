"""Blocks shared by the models: normalisation choice, minibatch std, PacGAN packing."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

DNorm = Literal["spectral", "batch", "none"]


def d_layer(module: nn.Module, norm: DNorm) -> nn.Module:
    """Wrap a discriminator conv/linear with spectral normalisation when asked (Miyato et al. 2018)."""
    if norm == "spectral":
        return nn.utils.parametrizations.spectral_norm(module)
    return module


class MinibatchStd(nn.Module):
    """Append the across-group std of features as one extra channel (Karras et al. 2018, ProGAN §3).

    A collapsed generator yields batches with near-zero feature std, which D can then spot:
    an explicit anti-collapse signal. Works for (B, C, H, W) and (B, F) inputs.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = min(self.group_size, b)
        if b % g:  # fall back to one group over the whole batch when it does not divide
            g = b
        rest = x.shape[1:]
        y = x.reshape(g, b // g, *rest).float()  # (G, B/G, ...)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (B/G, ...)
        y = y.reshape(b // g, -1).mean(dim=1)  # (B/G,)
        y = y.to(x.dtype).repeat(g)  # (B,)
        shape = (b, 1, *rest[1:]) if x.dim() == 4 else (b, 1)
        return torch.cat([x, y.reshape(b, *([1] * (len(shape) - 1))).expand(shape)], dim=1)


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """PacGAN packing (Lin et al. 2018): concatenate ``m`` samples along channels, (B, C, ...) -> (B/m, mC, ...)."""
    if m == 1:
        return x
    b = x.shape[0]
    if b % m:
        raise ValueError(f"batch size {b} is not divisible by the packing degree pack={m}")
    return x.reshape(b // m, m * x.shape[1], *x.shape[2:])


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) conv weights and N(1, 0.02) batch-norm scales, as in the DCGAN paper §4."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

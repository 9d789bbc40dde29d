"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same differentiable augmentations are applied to real and fake images before D, so D cannot
memorise a small training set and G still receives gradients. All randomness comes from an explicit
``torch.Generator`` so training stays deterministic and resumable; per-image draws go through
``ganmodels.draws`` so that N data-parallel processes draw what one process draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganmodels import draws
from ganmodels.draws import Source

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}; choose from {list(POLICIES)}")
    return names


def _rand(shape: tuple[int, ...], gen: Source, like: torch.Tensor) -> torch.Tensor:
    return draws.rand(shape, gen).to(like.device, like.dtype)


def color(x: torch.Tensor, gen: Source) -> torch.Tensor:
    b = x.shape[0]
    x = x + (_rand((b, 1, 1, 1), gen, x) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand((b, 1, 1, 1), gen, x) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((b, 1, 1, 1), gen, x) + 0.5) + mean  # contrast


def translation(x: torch.Tensor, gen: Source, ratio: float = 0.125) -> torch.Tensor:
    """Shift by up to ``ratio`` of the size with zero padding, via integer index gathering."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = draws.randint(-sh, sh + 1, (b, 1, 1), gen).to(x.device)
    ty = draws.randint(-sw, sw + 1, (b, 1, 1), gen).to(x.device)
    gi, gj = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gi = torch.clamp(gi.unsqueeze(0) + tx + 1, 0, h + 1)  # (B, H, W) indices into the padded image
    gj = torch.clamp(gj.unsqueeze(0) + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # (B, C, H+2, W+2)
    idx = (gi * (w + 2) + gj).reshape(b, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.reshape(b, x.shape[1], -1).gather(2, idx).reshape_as(x)


def cutout(x: torch.Tensor, gen: Source, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of ``ratio`` of the size."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = draws.randint(0, h + (1 - ch % 2), (b, 1, 1), gen).to(x.device)
    ox = draws.randint(0, w + (1 - cw % 2), (b, 1, 1), gen).to(x.device)
    gi, gj = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((gi.unsqueeze(0) - oy + ch // 2).clamp(0, h) < ch) & ((gj.unsqueeze(0) - ox + cw // 2).clamp(0, w) < cw)
    inside &= (gi.unsqueeze(0) - oy + ch // 2 >= 0) & (gj.unsqueeze(0) - ox + cw // 2 >= 0)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], gen: Source) -> torch.Tensor:
    """Apply each op of ``policy`` to images ``x`` (B, C, H, W); identity for non-image tensors."""
    if not policy or x.dim() != 4:
        return x
    for name in policy:
        x = _OPS[name](x, gen)
    return x

"""Pix2Pix (Isola et al. 2017): a U-Net generator and a PatchGAN discriminator, side by side.

* G(a): the input, upsampled bilinearly to the target size when it is smaller (super-resolution by
  ``scale``), goes through a U-Net: strided 4x4 convolutions down to 2x2, transposed convolutions
  back up, each decoder level concatenated with the encoder level of the same size (the skips that
  carry the input's detail past the bottleneck, the paper's §3.2.1). The last layer also sees the
  upsampled input itself, so "change nothing" is easy to learn and the network spends its capacity
  on the difference. Instance normalisation without running statistics (the same computation in
  training, evaluation and ONNX) and no dropout: the eval-mode model, its export and what users run
  agree (the reference implementation keeps dropout and batch statistics at test time, a known
  source of confusion: junyanz/pytorch-CycleGAN-and-pix2pix #748, #1276, #835). Noise, if wanted,
  would be an explicit input.
* D(a, b): a PatchGAN on the channel-stacked pair: 4x4 strided convolutions with spectral norm
  (Miyato et al. 2018) down to a grid of patch logits, each judging whether its patch of b is a real
  rendering of a (the paper's §3.2.2); (N, P) logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganmodels.data.kinds import DataKind
from ganmodels.families.paired import PairedGAN, upsample_to
from ganmodels.models.layers import DNorm, d_layer, dcgan_init
from ganmodels.registry import register


@dataclass(frozen=True)
class Pix2PixConfig:
    resolution: int = 32  # target side; a power of two, 8 to 256
    scale: int = 2  # target side / input side: 1 for translation, 2 or 4 for super-resolution
    channels: int = 1
    g_width: int = 32  # channels of the U-Net's first level, doubling per level up to 8x
    d_width: int = 32
    d_norm: DNorm = "spectral"
    l1_weight: float = 100.0  # lambda of the paper's eq. 4

    def __post_init__(self):
        if self.resolution < 8 or self.resolution > 256 or self.resolution & (self.resolution - 1):
            raise ValueError(f"Pix2PixConfig.resolution must be a power of two in [8, 256], got {self.resolution}")
        if self.scale < 1 or self.resolution % self.scale:
            raise ValueError(f"Pix2PixConfig.scale must be >= 1 and divide the resolution, got {self.scale}")
        if self.channels not in (1, 3):
            raise ValueError(f"Pix2PixConfig.channels must be 1 or 3, got {self.channels}")
        if self.d_norm not in ("spectral", "none"):
            raise ValueError(f"Pix2PixConfig.d_norm must be 'spectral' or 'none', got {self.d_norm!r}")
        if self.l1_weight < 0:
            raise ValueError(f"Pix2PixConfig.l1_weight must be >= 0, got {self.l1_weight}")

    @property
    def levels(self) -> int:  # U-Net downsamplings: resolution -> 2x2
        return int(math.log2(self.resolution)) - 1


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class Generator(nn.Module):
    def __init__(self, cfg: Pix2PixConfig):
        super().__init__()
        self.scale, self.resolution = cfg.scale, cfg.resolution
        self.in_shape = (cfg.channels, cfg.resolution // cfg.scale, cfg.resolution // cfg.scale)
        self.out_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        widths = [cfg.g_width * min(2**i, 8) for i in range(cfg.levels)]  # e.g. [32, 64, 128, 256] for 32 px
        self.down = nn.ModuleList()
        c_in = cfg.channels
        for i, w in enumerate(widths):  # (B, w_i, R / 2^(i+1)): no norm on the first level (pix2pix)
            self.down.append(nn.Sequential(nn.Conv2d(c_in, w, 4, 2, 1, bias=i == 0),
                                           nn.Identity() if i == 0 else _norm(w), nn.LeakyReLU(0.2)))
            c_in = w
        self.up = nn.ModuleList()
        for i in reversed(range(cfg.levels)):  # level i: from R / 2^(i+1) to R / 2^i
            c_in = widths[i] if i == cfg.levels - 1 else 2 * widths[i]  # + the skip, below the bottleneck
            c_out = widths[i - 1] if i > 0 else cfg.g_width
            self.up.append(nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), _norm(c_out),
                                         nn.ReLU()))
        self.to_image = nn.Conv2d(cfg.g_width + cfg.channels, cfg.channels, 3, 1, 1)  # + the upsampled input
        dcgan_init(self)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        x = upsample_to(a, self.resolution)  # (B, C, R, R)
        skips, h = [], x
        for down in self.down:
            h = down(h)
            skips.append(h)
        h = skips.pop()  # the bottleneck, 2x2
        for up in self.up:
            h = up(h)
            if skips:
                h = torch.cat([h, skips.pop()], dim=1)
        return torch.tanh(self.to_image(torch.cat([h, x], dim=1)))  # (B, C, R, R) in [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, cfg: Pix2PixConfig):
        super().__init__()
        n_strided = max(1, int(math.log2(cfg.resolution)) - 2)  # down to a 4x4 grid of patches (2x2 at 8 px: 1)
        n_strided = min(n_strided, 3)  # 70x70-style receptive fields: at most three halvings
        layers: list[nn.Module] = []
        c_in = 2 * cfg.channels
        for i in range(n_strided):
            w = cfg.d_width * min(2**i, 8)
            layers += [d_layer(nn.Conv2d(c_in, w, 4, 2, 1), cfg.d_norm), nn.LeakyReLU(0.2)]
            c_in = w
        layers.append(d_layer(nn.Conv2d(c_in, 1, 3, 1, 1), cfg.d_norm))  # one logit per patch
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair).flatten(1)  # (B, P) patch logits


RECIPES = {
    # Stabilised default, tuned on digits-sr and glyphs-sr (docs/pix2pix.md): the paper's objective
    # (non-saturating GAN loss + 100 x L1) and Adam(0.5, 0.999) at 2e-4, with spectral norm in D and an
    # EMA of G's weights (outputs measured less noisy than the raw G's at the same step).
    "stabilised": {"model": {"d_norm": "spectral", "l1_weight": 100.0},
                   "train": {"loss": "ns", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999,
                             "ema_beta": 0.99}},
    # The paper's setting without spectral norm or EMA: the unstabilised reference.
    "baseline": {"model": {"d_norm": "none", "l1_weight": 100.0},
                 "train": {"loss": "ns", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "ema_beta": 0.0}},
}


@register("pix2pix", config=Pix2PixConfig, family=PairedGAN, accepts=(DataKind.PAIRED_IMAGES,),
          description="Pix2Pix: U-Net generator, PatchGAN discriminator, for paired translation and "
                      "super-resolution", recipes=RECIPES)
def build_pix2pix(cfg: Pix2PixConfig) -> PairedGAN:
    return PairedGAN("pix2pix", cfg, Generator(cfg), Discriminator(cfg))

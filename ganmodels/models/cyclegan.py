"""CycleGAN (Zhu et al. 2017): two ResNet generators and two PatchGAN discriminators, side by side.

* G: the paper's ResNet generator (Johnson et al. 2016 style, their appendix 7.2): a 7x7 convolution,
  two stride-2 downsamplings, ``n_blocks`` residual blocks, two stride-2 transposed convolutions and
  a 7x7 convolution to the image; reflection padding; instance normalisation without running
  statistics, so training, evaluation and the ONNX export compute the same thing.
* D: a PatchGAN (their appendix 7.2, the 70x70 one scaled to small images): 4x4 convolutions, the
  first without normalisation, spectral norm on all (Miyato et al. 2018) instead of instance norm in
  D, a grid of patch logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganmodels.data.kinds import DataKind
from ganmodels.families.unpaired import UnpairedGAN
from ganmodels.models.layers import DNorm, d_layer, dcgan_init
from ganmodels.registry import register


@dataclass(frozen=True)
class CycleGANConfig:
    resolution: int = 16  # a power of two, 8 to 256
    channels: int = 1
    g_width: int = 16  # channels after the first convolution, doubling twice (the paper: 64)
    n_blocks: int = 4  # residual blocks at 1/4 resolution (the paper: 6 at 128 px, 9 at 256 px)
    d_width: int = 16
    d_norm: DNorm = "spectral"
    lambda_cycle: float = 10.0  # the paper's lambda
    lambda_identity: float = 0.5  # x lambda_cycle (the paper's §5.2 uses 0.5 lambda)
    pool_size: int = 50  # stored fakes per domain (Shrivastava et al. 2017); 0 disables the pool

    def __post_init__(self):
        if self.resolution < 8 or self.resolution > 256 or self.resolution & (self.resolution - 1):
            raise ValueError(f"CycleGANConfig.resolution must be a power of two in [8, 256], got {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"CycleGANConfig.channels must be 1 or 3, got {self.channels}")
        if self.n_blocks < 1 or self.pool_size < 0:
            raise ValueError("CycleGANConfig.n_blocks must be >= 1 and pool_size >= 0")
        if self.d_norm not in ("spectral", "none"):
            raise ValueError(f"CycleGANConfig.d_norm must be 'spectral' or 'none', got {self.d_norm!r}")
        if self.lambda_cycle < 0 or self.lambda_identity < 0:
            raise ValueError("CycleGANConfig.lambda_cycle and lambda_identity must be >= 0")


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=False), _norm(width), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=False), _norm(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    def __init__(self, cfg: CycleGANConfig):
        super().__init__()
        self.in_shape = self.out_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        w = cfg.g_width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(cfg.channels, w, 7, bias=False), _norm(w), nn.ReLU()]
        for mult in (1, 2):  # (B, 2w, R/2), (B, 4w, R/4)
            layers += [nn.Conv2d(w * mult, w * mult * 2, 3, 2, 1, bias=False), _norm(w * mult * 2), nn.ReLU()]
        layers += [ResidualBlock(4 * w) for _ in range(cfg.n_blocks)]
        for mult in (4, 2):  # back to (B, w, R)
            layers += [nn.ConvTranspose2d(w * mult, w * mult // 2, 3, 2, 1, output_padding=1, bias=False),
                       _norm(w * mult // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, cfg.channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, R, R) in [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, cfg: CycleGANConfig):
        super().__init__()
        n_strided = min(3, max(1, int(math.log2(cfg.resolution)) - 2))  # down to a 4x4 grid at 16-32 px
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i in range(n_strided):
            w = cfg.d_width * min(2**i, 8)
            layers += [d_layer(nn.Conv2d(c_in, w, 4, 2, 1), cfg.d_norm), nn.LeakyReLU(0.2)]
            c_in = w
        layers.append(d_layer(nn.Conv2d(c_in, 1, 3, 1, 1), cfg.d_norm))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)  # (B, P) patch logits


RECIPES = {
    # Stabilised default for digits-bold (docs/cyclegan.md): the paper's LSGAN loss, Adam(0.5, 0.999)
    # at 2e-4, cycle 10 and identity 0.5 x 10, an image pool of 50, learning rates decaying linearly
    # over the second half; spectral norm in D and an EMA of both generators.
    "stabilised": {"model": {"d_norm": "spectral", "pool_size": 50},
                   "train": {"loss": "lsgan", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999,
                             "ema_beta": 0.99, "lr_decay_start": 0.5}},
    # The paper's setting without spectral norm, pool or EMA: the unstabilised reference.
    "baseline": {"model": {"d_norm": "none", "pool_size": 0},
                 "train": {"loss": "lsgan", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999,
                           "ema_beta": 0.0}},
}


@register("cyclegan", config=CycleGANConfig, family=UnpairedGAN, accepts=(DataKind.UNPAIRED_IMAGES,),
          description="CycleGAN: two ResNet generators and two PatchGAN discriminators for unpaired domain "
                      "and style transfer", recipes=RECIPES)
def build_cyclegan(cfg: CycleGANConfig) -> UnpairedGAN:
    return UnpairedGAN("cyclegan", cfg, Generator(cfg), Generator(cfg), Discriminator(cfg), Discriminator(cfg))

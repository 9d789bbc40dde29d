"""Class-conditional GAN: a DCGAN-shaped generator with conditional batch norm and a projection
discriminator, side by side.

* G(z, c): transposed convolutions from 4x4 to the output size, as DCGAN, with each batch norm
  made class-conditional (per-class gain and bias, de Vries et al. 2017; Miyato & Koyama 2018
  §4): the class reaches every block, not just the input.
* D(x, c): DCGAN's strided convolutions with spectral norm and a minibatch-std channel, and the
  projection head of Miyato & Koyama 2018 (eq. 3): ``logit = psi(h) + <embed(c), h>`` with ``h``
  the sum-pooled last features. Projection lets D judge "a real image of class c", which
  concatenating a one-hot label to the input does less well (their §5).

Both take ``c`` as int64 class indices ``(B,)``; ``c_dim`` is the number of classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganmodels.data.kinds import DataKind
from ganmodels.families.noise import NoiseGAN
from ganmodels.models.layers import DNorm, MinibatchStd, d_layer, dcgan_init
from ganmodels.registry import register


@dataclass(frozen=True)
class CGANConfig:
    z_dim: int = 64
    resolution: int = 32  # 16, 32 or 64
    channels: int = 1
    c_dim: int = 10  # number of classes; the pipeline sets it from the data
    g_width: int = 32
    d_width: int = 32
    d_norm: DNorm = "spectral"
    minibatch_std: bool = True

    def __post_init__(self):
        if self.resolution not in (16, 32, 64):
            raise ValueError(f"CGANConfig.resolution must be 16, 32 or 64, got {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"CGANConfig.channels must be 1 or 3, got {self.channels}")
        if self.c_dim < 2:
            raise ValueError(f"CGANConfig.c_dim must be >= 2 classes, got {self.c_dim}")
        if self.d_norm not in ("spectral", "none"):
            raise ValueError(f"CGANConfig.d_norm must be 'spectral' or 'none', got {self.d_norm!r}")

    @property
    def n_blocks(self) -> int:  # upsamplings from 4x4 to the output resolution
        return int(math.log2(self.resolution)) - 2


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose affine gain and bias are looked up per class: (B, C, H, W), (B,) -> (B, C, H, W)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)  # starts as plain batch norm; classes diverge as training needs
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.gain(c)[:, :, None, None] + self.bias(c)[:, :, None, None]


class Generator(nn.Module):
    def __init__(self, cfg: CGANConfig):
        super().__init__()
        self.z_dim, self.c_dim = cfg.z_dim, cfg.c_dim
        self.out_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        widths = [cfg.g_width * 2 ** i for i in reversed(range(cfg.n_blocks))]  # e.g. [128, 64, 32]
        self.ups = nn.ModuleList([nn.ConvTranspose2d(cfg.z_dim, widths[0], 4, 1, 0, bias=False)])  # (B, w0, 4, 4)
        self.ups.extend(nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False) for w_in, w_out in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(ConditionalBatchNorm2d(w, cfg.c_dim) for w in widths)
        self.to_image = nn.Sequential(nn.ConvTranspose2d(widths[-1], cfg.channels, 4, 2, 1), nn.Tanh())
        dcgan_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is None:
            raise ValueError("the conditional generator needs class indices c (B,)")
        h = z.reshape(z.shape[0], self.z_dim, 1, 1)
        for up, norm in zip(self.ups, self.norms):
            h = torch.relu(norm(up(h), c))
        return self.to_image(h)  # (B, C, H, W) in [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, cfg: CGANConfig):
        super().__init__()
        widths = [cfg.d_width * 2 ** i for i in range(cfg.n_blocks)]  # e.g. [32, 64, 128]
        layers: list[nn.Module] = [d_layer(nn.Conv2d(cfg.channels, widths[0], 4, 2, 1), cfg.d_norm),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [d_layer(nn.Conv2d(w_in, w_out, 4, 2, 1), cfg.d_norm), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)  # (B, w_last, 4, 4)
        self.mbstd = MinibatchStd() if cfg.minibatch_std else nn.Identity()
        width = widths[-1] + int(cfg.minibatch_std)
        self.head = d_layer(nn.Conv2d(width, 1, 4, 1, 0), cfg.d_norm)  # psi(h): the unconditional logit
        self.embed = d_layer(nn.Embedding(cfg.c_dim, width), cfg.d_norm)  # the projection's class vectors
        dcgan_init(self)
        nn.init.normal_(self.embed.parametrizations.weight.original if cfg.d_norm == "spectral" else self.embed.weight,
                        0.0, 0.02)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is None:
            raise ValueError("the projection discriminator needs class indices c (B,)")
        h = self.mbstd(self.features(x))  # (B, w, 4, 4)
        projection = (self.embed(c) * h.sum(dim=(2, 3))).sum(dim=1)  # <embed(c), sum-pooled h>: (B,)
        return self.head(h).flatten() + projection  # (B,) logits


RECIPES = {
    # Stabilised default: DCGAN's recipe for digits (hinge loss, Adam(0, 0.99), lr 4e-4, EMA 0.99,
    # spectral norm and minibatch std in D; see dcgan.py for the measurements behind each value),
    # with projection conditioning in D and conditional batch norm in G.
    "stabilised": {"model": {"d_norm": "spectral", "minibatch_std": True},
                   "train": {"loss": "hinge", "lr_g": 4e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.99,
                             "ema_beta": 0.99}},
    # No spectral norm, no minibatch std, non-saturating loss, no EMA: the unstabilised reference.
    "baseline": {"model": {"d_norm": "none", "minibatch_std": False},
                 "train": {"loss": "ns", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "ema_beta": 0.0}},
}


@register("cgan", config=CGANConfig, family=NoiseGAN, accepts=(DataKind.LABELLED_IMAGES,),
          description="class-conditional GAN (conditional batch norm G, projection D) for 16/32/64 px labelled "
                      "images", recipes=RECIPES)
def build_cgan(cfg: CGANConfig) -> NoiseGAN:
    return NoiseGAN("cgan", cfg, Generator(cfg), Discriminator(cfg))

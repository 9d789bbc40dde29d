"""MLP generator and discriminator for 2D point data (ring8/grid25 mode-collapse benchmarks).

The architecture follows the mode-collapse literature's toy setups (VEEGAN §5.1, PacGAN §5.1:
a few fully-connected ReLU layers); ``pack`` and ``minibatch_std`` are the anti-collapse options.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganmodels.data.kinds import DataKind
from ganmodels.families.noise import NoiseGAN
from ganmodels.models.layers import DNorm, MinibatchStd, d_layer, pack
from ganmodels.registry import register


@dataclass(frozen=True)
class MLP2DConfig:
    # 64-wide, 3-deep MLPs: on a 2-core CPU they train ~2x faster per step than 128-wide ones and
    # reach all ring8/grid25 modes sooner per second of training (docs/mode_collapse.md).
    z_dim: int = 2
    g_width: int = 64
    g_depth: int = 3
    d_width: int = 64
    d_depth: int = 3
    d_norm: DNorm = "none"
    minibatch_std: bool = False
    pack: int = 1
    c_dim: int = 0

    def __post_init__(self):
        if self.d_norm not in ("spectral", "none"):
            raise ValueError(f"MLP2DConfig.d_norm must be 'spectral' or 'none', got {self.d_norm!r}")
        if min(self.g_depth, self.d_depth) < 1 or self.pack < 1:
            raise ValueError("MLP2DConfig.g_depth, d_depth and pack must be >= 1")
        if self.c_dim != 0:
            raise ValueError("mlp2d is unconditional: c_dim must be 0")


class Generator(nn.Module):
    def __init__(self, cfg: MLP2DConfig):
        super().__init__()
        self.z_dim, self.c_dim, self.out_shape = cfg.z_dim, 0, (2,)
        layers: list[nn.Module] = []
        width_in = cfg.z_dim
        for _ in range(cfg.g_depth):
            layers += [nn.Linear(width_in, cfg.g_width), nn.ReLU(inplace=True)]
            width_in = cfg.g_width
        layers.append(nn.Linear(width_in, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)  # (B, 2)


class Discriminator(nn.Module):
    def __init__(self, cfg: MLP2DConfig):
        super().__init__()
        self.pack = cfg.pack
        layers: list[nn.Module] = []
        width_in = 2 * cfg.pack
        for _ in range(cfg.d_depth):
            layers += [d_layer(nn.Linear(width_in, cfg.d_width), cfg.d_norm), nn.LeakyReLU(0.2, inplace=True)]
            width_in = cfg.d_width
        self.features = nn.Sequential(*layers)
        self.mbstd = MinibatchStd() if cfg.minibatch_std else nn.Identity()
        self.head = d_layer(nn.Linear(width_in + int(cfg.minibatch_std), 1), cfg.d_norm)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.mbstd(self.features(pack(x, self.pack)))).flatten()  # (B/pack,)


RECIPES = {
    # Stabilised default, tuned on ring8/grid25 (docs/mode_collapse.md, benchmarks/mode_collapse.py):
    # * R1 on real data (Mescheder et al. 2018, eq. 9), applied lazily every 4th D step with the
    #   weight scaled by 4 (Karras et al. 2020, StyleGAN2 App. B): damps the oscillation around
    #   each mode; without it grid25 loses modes on some seeds and its reverse KL is ~20x higher.
    # * EMA of G's weights (Yazıcı et al. 2019) with a ~200-step horizon: the raw G jitters
    #   (40-50% high quality on grid25), its average sits on the modes (>90%). Longer horizons lag.
    # * minibatch std in D (Karras et al. 2018, ProGAN §3): a batch-diversity feature against collapse.
    # * no packing, no spectral norm: both left samples spread between modes at this budget (ablation).
    # * Adam lr 2e-3 for both nets (equal rates: TTUR with lr_d = 2 lr_g was slower), beta2 = 0.99.
    # * learning rates decayed linearly to 0 over the last 40% of the run: at a constant rate the
    #   grid25 high-quality share stops rising near 90% and wanders by +-3 points from one 500-step
    #   window to the next, so the last step was a lottery (84-94% over seeds); decaying, it rises
    #   to the end of the run (94-96% on the five weakest seeds of 15). Decaying from 50% of a
    #   6,000-step run cut the slow seeds' mode search short: it needs the 8,000 steps below.
    # Run-level settings of the benchmark and of params.yaml's kinds.points: batch 512, 8000 steps.
    "stabilised": {"model": {"pack": 1, "minibatch_std": True, "d_norm": "none"},
                   "train": {"loss": "ns", "lr_g": 2e-3, "lr_d": 2e-3, "beta1": 0.5, "beta2": 0.99,
                             "r1_gamma": 0.1, "reg_every": 4, "ema_beta": 0.995, "lr_decay_start": 0.6}},
    # A plain GAN as in the VEEGAN/PacGAN baselines: the same MLPs, loss and Adam settings, and none
    # of the stabilisers (no R1, no EMA, no minibatch std, no packing, no spectral norm, constant learning rates).
    "baseline": {"model": {"pack": 1, "minibatch_std": False, "d_norm": "none"},
                 "train": {"loss": "ns", "lr_g": 2e-3, "lr_d": 2e-3, "beta1": 0.5, "beta2": 0.99,
                           "r1_gamma": 0.0, "ema_beta": 0.0}},
}


@register("mlp2d", config=MLP2DConfig, family=NoiseGAN, accepts=(DataKind.POINTS,),
          description="MLP GAN for 2D point sets", recipes=RECIPES)
def build_mlp2d(cfg: MLP2DConfig) -> NoiseGAN:
    return NoiseGAN("mlp2d", cfg, Generator(cfg), Discriminator(cfg))

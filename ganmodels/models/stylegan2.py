"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), small enough for
16-32 px digits on a CPU: the mapping and synthesis networks and the residual discriminator, side by side.

Generator G(z, c, psi):
* mapping network: z (pixel-normalised; concatenated with a normalised class embedding when
  conditional) through ``mapping_layers`` fully-connected layers with a 0.01 learning-rate multiplier
  -> w; a running average ``w_avg`` (a buffer, so EMA copies and checkpoints carry it) for truncation
  ``w' = w_avg + psi (w - w_avg)`` (§ "truncation trick" of StyleGAN, Karras et al. 2019);
* synthesis network: a learned 4x4 constant, then per resolution an upsampling and a plain modulated
  3x3 convolution, each followed by per-pixel noise scaled by a learned strength, bias and leaky ReLU,
  and a ``toRGB`` 1x1 modulated convolution without demodulation whose outputs are summed across
  resolutions ("skip" architecture, §4.1 of the paper);
* weight (de)modulation (§2.2, eq. 1-3) written the non-fused way: the activations are scaled by
  the style, the convolution weight is shared across the batch, and the outputs are scaled by the
  demodulation factor ``1 / sqrt(sum (w * s)^2 + eps)``. It computes the same thing as the grouped
  convolution of the reference code but keeps the batch dimension dynamic in ONNX;
* noise: random during training (drawn from the training run's generator, handed in by the family);
  in evaluation mode fixed buffers (the reference code's ``noise_mode="const"``), so PyTorch and the
  exported graph agree exactly.

Discriminator D(x, c): residual blocks (two 3x3 convolutions and a 1x1 skip, both downsampling, summed
and divided by sqrt(2), §4.1), then a minibatch-std channel (ProGAN §3), a 3x3 convolution and two
fully-connected layers; a projection head for the class when conditional (Miyato & Koyama 2018, as
the reference code's ``cmap``). All layers use equalised learning rate (weights scaled at run time
by 1/sqrt(fan_in), ProGAN §4.1), as the paper's training relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganmodels import draws
from ganmodels.draws import Source
from ganmodels.data.kinds import DataKind
from ganmodels.families.style import StyleGAN2Family
from ganmodels.models.layers import MinibatchStd
from ganmodels.registry import register


@dataclass(frozen=True)
class StyleGAN2Config:
    resolution: int = 16  # 8 to 64, a power of two
    channels: int = 1
    z_dim: int = 64
    w_dim: int = 64
    c_dim: int = 0  # classes for a conditional model; 0 = unconditional
    mapping_layers: int = 4
    g_width: int = 64  # synthesis channels at every resolution
    d_width: int = 64
    minibatch_std: bool = True  # the paper's D has it; the baseline recipe switches it off
    mbstd_group: int = 4
    w_avg_beta: float = 0.995  # running average of w for truncation (the reference code's value)
    # Training regularisers the family applies (the reference code's defaults).
    style_mixing: float = 0.9  # probability of mixing two latents' styles in a batch
    pl_weight: float = 2.0  # path-length penalty weight; 0 switches the Gpl phase off
    pl_every: int = 4  # lazy interval of the Gpl phase
    pl_decay: float = 0.01  # running-mean rate of the path lengths
    pl_batch_shrink: int = 2  # the Gpl batch is the batch size divided by this

    def __post_init__(self):
        if self.resolution < 8 or self.resolution > 64 or self.resolution & (self.resolution - 1):
            raise ValueError(f"StyleGAN2Config.resolution must be 8, 16, 32 or 64, got {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"StyleGAN2Config.channels must be 1 or 3, got {self.channels}")
        if self.c_dim < 0 or self.c_dim == 1:
            raise ValueError(f"StyleGAN2Config.c_dim must be 0 (unconditional) or >= 2 classes, got {self.c_dim}")
        if self.mapping_layers < 1 or min(self.z_dim, self.w_dim, self.g_width, self.d_width) < 1:
            raise ValueError("StyleGAN2Config: mapping_layers, z_dim, w_dim and widths must be >= 1")
        if not 0 <= self.w_avg_beta < 1:
            raise ValueError(f"StyleGAN2Config.w_avg_beta must be in [0, 1), got {self.w_avg_beta}")
        if not 0 <= self.style_mixing <= 1 or self.pl_weight < 0 or min(self.pl_every, self.pl_batch_shrink) < 1:
            raise ValueError("StyleGAN2Config: style_mixing in [0, 1], pl_weight >= 0, pl_every and "
                             "pl_batch_shrink >= 1")

    @property
    def log2(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_ws(self) -> int:  # one w per modulated layer: conv at 4x4 + (upconv, conv) per resolution + toRGB
        return 2 * (self.log2 - 2) + 2


# -- equalised-learning-rate layers (ProGAN §4.1) ----------------------------------------------------


class EqualLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_features), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activate else out


class EqualConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, down: bool = False,
                 activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale, self.padding, self.down, self.activate = 1 / math.sqrt(in_channels * kernel**2), kernel // 2, down, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        if self.down:
            out = F.avg_pool2d(out, 2)  # the reference code's [1,3,3,1] FIR before a stride-2 conv, simplified
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activate else out


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# -- generator -----------------------------------------------------------------------------------------


class MappingNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.w_avg_beta = cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.w_avg_beta
        self.embed = EqualLinear(cfg.c_dim, cfg.w_dim) if cfg.c_dim else None
        dims = [cfg.z_dim + (cfg.w_dim if cfg.c_dim else 0)] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.Sequential(*[EqualLinear(a, b, lr_mul=0.01, activate=True) for a, b in zip(dims, dims[1:])])
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, update_w_avg: bool = False) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            if c is None:
                raise ValueError("the conditional StyleGAN2 mapping network needs class indices c (B,)")
            x = torch.cat([x, normalize_2nd_moment(self.embed(F.one_hot(c, self.c_dim).to(z.dtype)))], dim=1)
        w = self.layers(x)  # (B, w_dim)
        if update_w_avg:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return w


class ModulatedConv2d(nn.Module):
    """(B, I, H, W) and a style w (B, w_dim) -> (B, O, H, W); see the module docstring for the non-fused form."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1: an unmodulated conv
        self.scale, self.padding, self.demodulate = 1 / math.sqrt(in_channels * kernel**2), kernel // 2, demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (B, I)
        weight = self.weight * self.scale  # (O, I, k, k)
        out = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)  # modulate the activations
        if self.demodulate:  # eq. 3: the expected output std of each (sample, output channel), divided out
            d = ((weight[None] * styles[:, None, :, None, None]).square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt()  # (B, O)
            out = out * d[:, :, None, None]
        return out


class SynthesisLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.up, self.resolution = up, resolution
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_gen: Source) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w)
        if self.training and noise_gen is not None:  # fresh noise from the run's generator: exact resume
            noise = draws.randn((x.shape[0], 1, self.resolution, self.resolution), noise_gen).to(x.device)
        else:
            noise = self.noise_const  # the same noise every time: evaluation and export agree
        x = x + noise * self.noise_strength
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        width = cfg.g_width
        self.const = nn.Parameter(torch.randn(1, width, 4, 4))
        self.layers = nn.ModuleList([SynthesisLayer(width, width, cfg.w_dim, 4)])
        self.to_rgb = nn.ModuleList([ToRGB(width, cfg.channels, cfg.w_dim)])
        for res in (2**i for i in range(3, cfg.log2 + 1)):
            self.layers.extend([SynthesisLayer(width, width, cfg.w_dim, res, up=True),
                                SynthesisLayer(width, width, cfg.w_dim, res)])
            self.to_rgb.append(ToRGB(width, cfg.channels, cfg.w_dim))

    def forward(self, ws: torch.Tensor, noise_gen: Source = None) -> torch.Tensor:
        """ws (B, num_ws, w_dim): layer i takes ws[:, i]; a toRGB takes the w of the layer after it."""
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noise_gen)
        rgb = self.to_rgb[0](x, ws[:, 1])
        for block in range(1, len(self.to_rgb)):
            i = 2 * block - 1
            x = self.layers[i](x, ws[:, i], noise_gen)
            x = self.layers[i + 1](x, ws[:, i + 1], noise_gen)
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = rgb + self.to_rgb[block](x, ws[:, i + 2])
        return rgb  # (B, C, R, R), not squashed: StyleGAN2 leaves the range to the loss (clamped for use)


class Generator(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.z_dim, self.c_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.num_ws
        self.out_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    def ws(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation: torch.Tensor | float = 1.0,
           update_w_avg: bool = False) -> torch.Tensor:
        """(B, num_ws, w_dim): the mapped latents, truncated towards ``w_avg`` by ``truncation`` (a float or (B,))."""
        w = self.mapping(z, c, update_w_avg=update_w_avg)
        if torch.is_tensor(truncation):
            psi = truncation.to(w.dtype).reshape(-1, 1)  # (1 or B, 1)
            w = self.mapping.w_avg + psi * (w - self.mapping.w_avg)
        elif truncation != 1.0:  # a Python number stays one: no tensor made from the host (train.cuda_graph)
            w = self.mapping.w_avg + truncation * (w - self.mapping.w_avg)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation: torch.Tensor | float = 1.0,
                noise_gen: Source = None) -> torch.Tensor:
        return self.synthesis(self.ws(z, c, truncation), noise_gen).clamp(-1, 1)  # (B, C, R, R) in [-1, 1]


# -- discriminator ---------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv0 = EqualConv2d(width, width, 3)
        self.conv1 = EqualConv2d(width, width, 3, down=True)
        self.skip = EqualConv2d(width, width, 1, bias=False, down=True, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / math.sqrt(2)  # (B, w, H/2, W/2)


class Discriminator(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        w = cfg.d_width
        self.c_dim = cfg.c_dim
        self.from_rgb = EqualConv2d(cfg.channels, w, 1)
        self.blocks = nn.Sequential(*[ResidualBlock(w) for _ in range(cfg.log2 - 2)])  # down to 4x4
        self.mbstd = MinibatchStd(cfg.mbstd_group) if cfg.minibatch_std else nn.Identity()
        self.conv = EqualConv2d(w + int(cfg.minibatch_std), w, 3)
        self.fc = EqualLinear(w * 16, w, activate=True)
        self.out = EqualLinear(w, 1 if not cfg.c_dim else w)
        self.cmap = EqualLinear(cfg.c_dim, w) if cfg.c_dim else None  # projection of the class

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(self.mbstd(self.blocks(self.from_rgb(x))))  # (B, w, 4, 4)
        h = self.out(self.fc(h.flatten(1)))
        if self.cmap is None:
            return h.flatten()  # (B,) logits
        if c is None:
            raise ValueError("the conditional StyleGAN2 discriminator needs class indices c (B,)")
        cmap = self.cmap(F.one_hot(c, self.c_dim).to(x.dtype))
        return (h * cmap).sum(dim=1) / math.sqrt(h.shape[1])  # (B,) projection logits


RECIPES = {
    # Stabilised default for 16 px digits on a CPU (docs/stylegan2.md): the paper's objective
    # (non-saturating loss, lazy R1 every 16 steps, lazy path-length regularisation every 4), Adam
    # (0, 0.99) at 2e-3 with the lazy-regularisation momentum correction left out at this scale, style
    # mixing with probability 0.9, an EMA generator. R1 gamma follows stylegan2-ada's heuristic
    # 0.0002 * resolution^2 / batch, raised for the few-thousand-step budget.
    "stabilised": {"model": {"minibatch_std": True},
                   "train": {"loss": "ns", "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.0, "beta2": 0.99,
                             "r1_gamma": 1.0, "reg_every": 16, "ema_beta": 0.99}},
    # No R1, no minibatch std, no EMA: the unstabilised reference (the family still applies style
    # mixing and the path-length penalty, which are part of the architecture's training).
    "baseline": {"model": {"minibatch_std": False},
                 "train": {"loss": "ns", "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.0, "beta2": 0.99, "ema_beta": 0.0}},
}


@register("stylegan2", config=StyleGAN2Config, family=StyleGAN2Family, accepts=(DataKind.IMAGES,),
          description="StyleGAN2: mapping network, modulated convolutions, style mixing, path-length "
                      "regularisation, truncation; 8-64 px", recipes=RECIPES)
def build_stylegan2(cfg: StyleGAN2Config) -> StyleGAN2Family:
    return StyleGAN2Family("stylegan2", cfg, Generator(cfg), Discriminator(cfg))

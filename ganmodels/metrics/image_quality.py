"""Full-reference image quality for paired translation and super-resolution: PSNR, SSIM, L1, and the
bicubic baseline a user would otherwise reach for.

Images are ``(N, C, H, W)`` in [-1, 1] (the library's convention), so the data range is 2. Scores
are per image, then averaged over images, as super-resolution papers report them.

* PSNR = 10 log10(range^2 / MSE) per image (an exact match, MSE 0, is capped at 100 dB so that a
  mean stays finite).
* SSIM (Wang et al. 2004, "Image Quality Assessment: From Error Visibility to Structural
  Similarity", eq. 13): local statistics under a Gaussian of sigma 1.5 (11 taps, scipy's truncation
  at 3.5 sigma) with symmetric padding, K1 = 0.01, K2 = 0.03, population (co)variances, and the mean
  taken over the image minus a border of half a window (a window of 11, or the largest odd size
  that fits a small image: 7 for 8x8, 3 for 4x4). These are the conventions of
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, win_size=...)``, which the tests compare against. Channels are
  averaged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["bicubic_upsample", "l1_error", "psnr", "ssim", "ssim_window"]

DATA_RANGE = 2.0  # [-1, 1]
PSNR_CAP = 100.0


def _check(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (N, C, H, W) batches of the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    return x.double(), y.double()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """(N,) PSNR in dB of each image of ``x`` against ``y``."""
    x, y = _check(x, y)
    mse = (x - y).square().flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse.clamp_min(1e-300))).clamp(max=PSNR_CAP)


def l1_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) mean absolute error of each image (in [-1, 1] units)."""
    x, y = _check(x, y)
    return (x - y).abs().flatten(1).mean(1)


def ssim_window(sigma: float = 1.5) -> torch.Tensor:
    """The 1-D normalised Gaussian of scipy.ndimage.gaussian_filter (truncate 3.5), float64."""
    radius = int(3.5 * sigma + 0.5)
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE, win_size: int | None = None,
         sigma: float = 1.5) -> torch.Tensor:
    """(N,) mean SSIM of each image of ``x`` against ``y`` (see the module docstring for the conventions)."""
    x, y = _check(x, y)
    n, c, h, w = x.shape
    if win_size is None:
        win_size = min(11, min(h, w) if min(h, w) % 2 else min(h, w) - 1)
    if win_size < 3 or win_size % 2 == 0 or win_size > min(h, w):
        raise ValueError(f"SSIM window size must be odd, >= 3 and fit the {h}x{w} images; got {win_size}")
    g = ssim_window(sigma)
    radius = (len(g) - 1) // 2
    rows = torch.from_numpy(np.pad(np.arange(h), radius, mode="symmetric"))  # scipy's "reflect": d c b a | a b c d
    cols = torch.from_numpy(np.pad(np.arange(w), radius, mode="symmetric"))
    kernel_h = g.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous()
    kernel_w = g.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous()
    pad = (win_size - 1) // 2

    def blur(t: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> same size, separable Gaussian
        padded = t[:, :, rows][:, :, :, cols]
        return F.conv2d(F.conv2d(padded, kernel_h, groups=c), kernel_w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    inner = s[:, :, pad:h - pad, pad:w - pad]  # the border, where the window hangs over the edge, is left out
    return inner.flatten(1).mean(1)


def bicubic_upsample(inputs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The baseline: inputs resized bicubically (PyTorch's a = -0.75 kernel) to ``size``, clamped to [-1, 1];
    the inputs themselves when they already have that size (translation tasks)."""
    if tuple(inputs.shape[-2:]) == tuple(size):
        return inputs.float()
    return F.interpolate(inputs.float(), size=size, mode="bicubic", align_corners=False).clamp(-1.0, 1.0)

"""FID (Heusel et al. 2017) on in-memory images, plus generic batched feature extraction.

FID = Fréchet distance between Gaussians fitted to the 2048-d pool3 features of the TF
Inception-v3 graph (see ``inception.py``) of two image sets. Inputs are (N, C, H, W) images in
[-1, 1] with C in {1, 3}, as torch tensors or numpy arrays. The same small helpers extract features
with any network (e.g. the domain classifier), so every Fréchet-type metric here shares one path.

FID is biased upward for small N (Bińkowski et al. 2018, §3); only compare values computed with the
same sample counts.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from ganmodels.metrics.frechet import frechet_distance
from ganmodels.metrics.inception import load_fid_inception
from ganmodels.metrics.stats import FeatureStats

__all__ = ["compute_fid", "extract_features", "feature_stats", "inception_features"]

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


@torch.no_grad()
def extract_features(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: ArrayLike,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Apply ``feature_fn`` batch by batch: (N, ...) -> (N, D) float64 numpy.

    Features stay on the device until the end, so an accelerator is never made to wait for the host
    between batches (one transfer back instead of one per batch); inputs are copied from pinned memory
    without blocking. The values are the same either way (float32 features widened to float64)."""
    x = _as_tensor(inputs)
    device = torch.device(device or "cpu")
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory()
    out = []
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size].to(device, torch.float32, non_blocking=True)
        f = feature_fn(batch)
        out.append(f.reshape(f.shape[0], -1).double())
    if not out:
        raise ValueError("no inputs to extract features from (N == 0)")
    return torch.cat(out).cpu().numpy()


def inception_batch_size(device: str | torch.device | None) -> int:
    """Images per Inception forward: 50 on CPU (pytorch-fid's default; bounds the activations' memory),
    250 on an accelerator, where small batches leave it idle. In eval mode a batch's size changes no
    image's features."""
    return 50 if torch.device(device or "cpu").type == "cpu" else 250


def feature_stats(feats: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mean (D,), unbiased covariance (D, D)), float64."""
    stats = FeatureStats().update(feats)
    return stats.mean, stats.cov


def inception_features(
    images: ArrayLike,
    model: torch.nn.Module | None = None,
    *,
    weights_path: str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> (N, 2048) pool3 features (float64); ``batch_size`` defaults to
    ``inception_batch_size`` of the device."""
    if model is None:
        model = load_fid_inception(weights_path, device)
    model.eval()
    device = device or next(model.parameters()).device
    return extract_features(model, images, batch_size=batch_size or inception_batch_size(device), device=device)


def compute_fid(
    images_a: ArrayLike,
    images_b: ArrayLike,
    weights_path: str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    *,
    model: torch.nn.Module | None = None,
) -> float:
    """FID between two image sets (N, C, H, W) in [-1, 1]; raises InceptionWeightsNotFound offline.

    ``model`` lets a caller reuse a loaded ``FIDInceptionV3`` across calls.
    """
    if model is None:
        model = load_fid_inception(weights_path, device)
    mu_a, cov_a = feature_stats(inception_features(images_a, model, batch_size=batch_size, device=device))
    mu_b, cov_b = feature_stats(inception_features(images_b, model, batch_size=batch_size, device=device))
    return frechet_distance(mu_a, cov_a, mu_b, cov_b)

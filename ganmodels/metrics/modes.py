"""Mode-collapse metrics: class coverage for labelled image data, mode counts for 2D mixtures.

Direction of the KL divergences: both use KL(generated || reference), the "reverse" KL of the GAN
literature (forward KL(data || model) is what maximum likelihood minimises). This matches
* PacGAN (Lin et al. 2018, "PacGAN: The power of two samples in GANs", §5.1 and Table 1), which
  reports the reverse KL between the generated distribution over mixture modes and the true
  (uniform) one, and
* the class-histogram term KL(p_model(y) || p_data(y)) of the MODE score (Che et al. 2017, "Mode
  Regularized GANs", §4.1) for labelled images.
Under this direction a class the generator never produces adds nothing (0·log 0 = 0); collapse
shows up as mass piled on few classes: all samples on one of K equally likely classes gives
exactly log K. Missing classes are counted separately by ``class_coverage``/``modes_captured``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["class_coverage", "mode_metrics_2d"]

KL_EPS = 1e-6  # smoothing so a generated class absent from the reference stays finite


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = Σ p log(p / q) for histograms; terms with p = 0 contribute 0."""
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _histogram(labels: np.ndarray, k: int) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must lie in [0, {k - 1}], got range [{labels.min()}, {labels.max()}]")
    return np.bincount(labels.astype(np.int64), minlength=k).astype(np.float64)


def class_coverage(pred_labels, real_labels, num_classes: int, *, min_share: float = 0.1) -> dict:
    """How many classes a generator produces, judged by a classifier's predictions on its samples.

    pred_labels: (N,) predicted classes of generated samples; real_labels: (M,) labels of real data.
    A class is covered when at least ``min_share`` of its fair share of the N samples is predicted
    as it, i.e. count ≥ min_share · N / num_classes (default 10%: 20 of 2,000 samples on 10
    classes). A threshold above one sample keeps a collapsed generator from counting classes that
    appear only through the classifier's own errors (about 1-2% of predictions).

    Returns classes_covered (int), class_coverage (covered / num_classes), class_kl
    (KL(generated hist || real hist), both smoothed with KL_EPS and renormalised) and
    generated_histogram ((num_classes,) shares of generated samples).
    """
    pred = _as_numpy(pred_labels).reshape(-1)
    real = _as_numpy(real_labels).reshape(-1)
    if pred.size == 0 or real.size == 0:
        raise ValueError("class_coverage needs at least one generated and one real label")
    gen_counts = _histogram(pred, num_classes)
    real_counts = _histogram(real, num_classes)
    covered = int((gen_counts >= min_share * pred.size / num_classes).sum())
    p_gen = gen_counts / gen_counts.sum()
    p_gen_s = (p_gen + KL_EPS) / (1 + num_classes * KL_EPS)
    p_real_s = (real_counts / real_counts.sum() + KL_EPS) / (1 + num_classes * KL_EPS)
    return {
        "classes_covered": covered,
        "class_coverage": covered / num_classes,
        "class_kl": _kl(p_gen_s, p_real_s),
        "generated_histogram": p_gen,
    }


def mode_metrics_2d(samples, means, std: float, n_sigma: float = 3.0) -> dict:
    """VEEGAN/PacGAN mode metrics for 2D Gaussian mixtures with isotropic, equal-std, equal-weight modes.

    samples: (N, 2) generated points; means: (K, 2) mode centres; std: the modes' standard deviation.
    Protocol (Srivastava et al. 2017 "VEEGAN" §5.1, reused by PacGAN §5.1):
    * a sample is *high quality* when it lies within n_sigma · std (3σ) of its nearest mode;
    * a mode is *captured* when it is the nearest mode of at least one high-quality sample;
    * reverse KL = KL(p_gen || uniform) where p_gen is the share of samples whose nearest mode is
      each mode (all samples are assigned, as in PacGAN; this is finite and 0 ≤ rKL ≤ log K).
    Returns modes_captured (int), high_quality_fraction, reverse_kl.
    """
    x = _as_numpy(samples).astype(np.float64).reshape(-1, 2)
    mu = _as_numpy(means).astype(np.float64).reshape(-1, 2)
    if x.shape[0] == 0:
        raise ValueError("mode_metrics_2d needs at least one sample")
    d2 = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1)  # (N, K); K is small (≤ a few dozen)
    nearest = d2.argmin(axis=1)  # (N,)
    high_quality = np.sqrt(d2[np.arange(x.shape[0]), nearest]) <= n_sigma * std
    k = mu.shape[0]
    p_gen = np.bincount(nearest, minlength=k) / x.shape[0]
    return {
        "modes_captured": int(np.unique(nearest[high_quality]).size),
        "high_quality_fraction": float(high_quality.mean()),
        "reverse_kl": _kl(p_gen, np.full(k, 1.0 / k)),
    }

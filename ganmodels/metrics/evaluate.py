"""One call that scores a generator against a prepared data set: ``evaluate_generator``.

Samples come from ``G(z, c)`` (the project's generator interface) with a seeded ``torch.Generator``
so two evaluations of the same weights give the same numbers. The real reference is the held-out
split ``data.x_test`` by default: the domain classifier is trained on ``x_train``, and held-out
images keep its features honest (it has not fitted them) and do not reward a generator for
memorising training images. Pass ``reference="train"`` to compare with the training split.

Metric sets
* images: ``domain_fd`` (Fréchet distance in the domain classifier's feature space, NOT FID),
  ``kid``/``kid_std``, ``precision``/``recall``, ``density``/``coverage`` on the same features;
  with labels ``class_coverage``, ``classes_covered``, ``class_kl``; for conditional G also
  ``cond_accuracy`` (share of samples classified as the class they were asked for); ``fid`` only
  when the Inception weights are on this machine.
* points: ``modes_captured``, ``high_quality_fraction``, ``reverse_kl`` (when ``modes`` is given)
  and precision/recall/density/coverage on the raw 2D coordinates.

PR/DC are computed on equal-sized random subsets of real and fake rows, as both papers assume;
with the digits test split that is min(n_samples, 360) of each.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ganmodels.data.base import PreparedDataset
from ganmodels.metrics.fid import extract_features, feature_stats, inception_features
from ganmodels.metrics.frechet import frechet_distance
from ganmodels.metrics.inception import InceptionWeightsNotFound, find_inception_weights, load_fid_inception
from ganmodels.metrics.kid import kid
from ganmodels.metrics.modes import class_coverage, mode_metrics_2d
from ganmodels.metrics.prdc import density_coverage, precision_recall

__all__ = ["evaluate_generator", "sample_generator"]


def _module_device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def sample_generator(
    G: nn.Module, n: int, *, seed: int = 0, batch_size: int = 256, device: str | torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw n samples from G in eval mode -> (samples (n, ...) float32 on CPU, labels (n,) or None).

    z ~ N(0, I) and, for conditional G (``G.c_dim > 0``), labels ~ uniform over classes, both from a
    CPU ``torch.Generator`` seeded with ``seed`` (same draws on any device). G's train/eval mode is
    restored afterwards.
    """
    device = torch.device(device) if device is not None else _module_device(G)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)  # (n, z_dim)
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    labels = torch.randint(0, c_dim, (n,), generator=gen) if c_dim > 0 else None
    was_training = G.training
    G.eval()
    try:
        out = []
        for i in range(0, n, batch_size):
            c = labels[i : i + batch_size].to(device) if labels is not None else None
            out.append(G(z[i : i + batch_size].to(device), c).float().cpu())
    finally:
        G.train(was_training)
    return torch.cat(out), labels


def _equal_subsets(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    m = min(a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    pick = lambda x: x if x.shape[0] == m else x[np.sort(rng.choice(x.shape[0], m, replace=False))]  # noqa: E731
    return pick(a), pick(b)


def _prdc(real: np.ndarray, fake: np.ndarray, seed: int) -> dict[str, float]:
    real, fake = _equal_subsets(real, fake, seed)
    precision, recall = precision_recall(real, fake, k=3)
    density, coverage = density_coverage(real, fake, k=5)
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@torch.no_grad()
def _classifier_outputs(classifier: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) -> (features (N, D) float64, predicted class (N,) int64)."""
    device = _module_device(classifier)
    feats = extract_features(classifier.features, x, batch_size=batch_size, device=device)
    logits = classifier.head(torch.from_numpy(feats).float().to(device))
    return feats, logits.argmax(1).cpu().numpy()


def _domain_metrics(classifier, real, fake, real_labels, fake_labels, num_classes, batch_size, seed) -> dict[str, float]:
    was_training = classifier.training
    classifier.eval()
    try:
        real_f, _ = _classifier_outputs(classifier, real, batch_size)
        fake_f, fake_pred = _classifier_outputs(classifier, fake, batch_size)
    finally:
        classifier.train(was_training)
    out = {"domain_fd": frechet_distance(*feature_stats(real_f), *feature_stats(fake_f))}
    out["kid"], out["kid_std"] = kid(real_f, fake_f, subset_size=1000, num_subsets=100, seed=seed)
    out.update(_prdc(real_f, fake_f, seed))
    if real_labels is not None and num_classes > 0:
        cov = class_coverage(fake_pred, real_labels, num_classes)
        out.update({k: float(cov[k]) for k in ("class_coverage", "classes_covered", "class_kl")})
    if fake_labels is not None:
        out["cond_accuracy"] = float((fake_pred == fake_labels.numpy()).mean())
    return out


def _fid_or_none(real, fake, inception_weights, device, batch_size) -> float | None:
    """FID, or None when no weights were asked for and none are installed (offline machines)."""
    try:
        path = find_inception_weights(inception_weights)
    except InceptionWeightsNotFound:
        if inception_weights is not None:
            raise  # an explicit path that is wrong is an error, not a silent skip
        return None
    model = load_fid_inception(path, device)
    real_f = inception_features(real, model, batch_size=min(batch_size, 50), device=device)
    fake_f = inception_features(fake, model, batch_size=min(batch_size, 50), device=device)
    return frechet_distance(*feature_stats(real_f), *feature_stats(fake_f))


def evaluate_generator(
    G: nn.Module,
    data: PreparedDataset,
    *,
    n_samples: int = 2000,
    classifier: nn.Module | None = None,
    inception_weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    batch_size: int = 256,
    modes: tuple | None = None,
    reference: str = "test",
) -> dict[str, float]:
    """Score G against ``data`` (see the module docstring for the metric set); flat float dict.

    classifier: a trained ``DomainClassifier`` (``train_domain_classifier``) for image data; ignored
      for points. inception_weights: path of the pytorch-fid weights; None searches the usual places
      and leaves ``fid`` out when absent. modes: ``(means (K, 2), std)`` of a 2D mixture.
    """
    if reference not in ("test", "train"):
        raise ValueError(f"reference must be 'test' or 'train', got {reference!r}")
    real = data.x_test if reference == "test" else data.x_train
    real_labels = data.y_test if reference == "test" else data.y_train
    fake, fake_labels = sample_generator(G, n_samples, seed=seed, batch_size=batch_size, device=device)
    if tuple(fake.shape[1:]) != tuple(real.shape[1:]):
        raise ValueError(f"generator output shape {tuple(fake.shape[1:])} does not match the data's {tuple(real.shape[1:])}")
    if data.kind == "points":
        return _point_metrics(real, fake, modes, seed)
    return _image_metrics(G, data, real, real_labels, fake, fake_labels, classifier, inception_weights, device, seed, batch_size)


def _point_metrics(real: torch.Tensor, fake: torch.Tensor, modes: tuple | None, seed: int) -> dict[str, float]:
    out = _prdc(real.double().numpy(), fake.double().numpy(), seed)
    if modes is not None:
        means, std = modes
        out.update({k: float(v) for k, v in mode_metrics_2d(fake, means, std).items()})
    return out


def _image_metrics(G, data, real, real_labels, fake, fake_labels, classifier, inception_weights, device, seed, batch_size) -> dict[str, float]:
    out: dict[str, float] = {}
    if classifier is not None:
        real_labels = real_labels.numpy() if real_labels is not None else None
        out.update(_domain_metrics(classifier, real, fake, real_labels, fake_labels, data.num_classes, batch_size, seed))
    fid_device = device if device is not None else _module_device(G)
    fid = _fid_or_none(real, fake, inception_weights, fid_device, batch_size)
    if fid is not None:
        out["fid"] = fid
    if not out:
        raise ValueError(
            "no image metric can be computed: pass classifier= (see train_domain_classifier) for the offline "
            "domain metrics, or install the FID Inception weights (see InceptionWeightsNotFound's message)"
        )
    return out

"""Scoring a trained model against a prepared data set: ``evaluate_model`` (any family) and
``evaluate_generator`` (a bare ``G(z, c)``).

The family decides how it is sampled or applied (``GANFamily.evaluation_samples``); this module
compares what it produced with the real reference. Samples are drawn with a seeded generator, so
two evaluations of the same weights give the same numbers. The real reference is the held-out
split ``data.x_test`` by default: the domain classifier is trained on ``x_train``, and held-out
images keep its features honest (it has not fitted them) and do not reward a generator for
memorising training images. Pass ``reference="train"`` to compare with the training split.

Which metrics a run produces is declared in ``ganmodels.metrics.registry`` (by data kind, for
conditional models, with Inception weights or a known 2D mixture); ``evaluate_model`` returns
exactly those.
* labelled images (with a domain classifier): ``domain_fd`` (Fréchet distance in the domain
  classifier's feature space, NOT FID), ``kid``/``kid_std``, ``precision``/``recall``,
  ``density``/``coverage`` on the same features, ``class_coverage``, ``classes_covered``,
  ``class_kl``; for conditional models also ``cond_accuracy`` (samples classified as the class
  they were asked for), ``intra_fd`` (per-class domain FD, averaged) and ``cas`` (Classification
  Accuracy Score); ``classifier_accuracy`` when given; and, whatever the reference, the
  memorisation metrics against the training split: ``authenticity`` (Alaa et al. 2022) and
  ``data_copying_ct`` (the C_T test of Meehan et al. 2020, the test split as its held-out sample);
* images: ``fid`` only when the Inception weights are on this machine;
* points: ``modes_captured``, ``modes_fraction``, ``high_quality_fraction``, ``reverse_kl``
  (when ``modes`` is given) and precision/recall/density/coverage on the raw 2D coordinates;
* two domains (CycleGAN), each direction on the held-out images: ``cycle_l1_a``/``_b``; with the
  known truth ``psnr_a2b``/``ssim_a2b``/``psnr_b2a``/``ssim_b2a`` and the do-nothing baseline
  ``psnr_identity_a2b``; with labels and a domain classifier ``domain_fd_a2b``/``_b2a`` (vs the real
  other domain) and ``class_preservation_a2b``/``_b2a``; always ``style_transfer_a2b``/``_b2a``, the
  share of translations a style classifier (real A vs real B, ``train_style_classifier``; trained
  here when none is passed) puts in the target domain, and its held-out ``style_classifier_accuracy``;
* paired images (translation, super-resolution), on the held-out pairs: ``psnr``, ``ssim``, ``l1``
  of the outputs against the targets, the same for the bicubic baseline (``psnr_bicubic``,
  ``ssim_bicubic``) and ``psnr_gain_over_bicubic``; with class labels and a domain classifier
  (trained on the real targets) also ``domain_fd`` of outputs vs targets, ``class_preservation``
  and ``classifier_accuracy``.

PR/DC are computed on equal-sized random subsets of real and fake rows, as both papers assume;
with the digits test split that is min(n_samples, 360) of each.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ganmodels.data.base import PreparedDataset
from ganmodels.data.kinds import DataKind
from ganmodels.families.base import EvalSamples, GANFamily
from ganmodels.families.noise import balanced_labels, sample_generator
from ganmodels.inference import eval_mode, module_device
from ganmodels.metrics.classifier import STYLE_A, STYLE_B, train_style_classifier
from ganmodels.metrics.fid import extract_features, feature_stats, inception_batch_size, inception_features
from ganmodels.metrics.frechet import frechet_distance
from ganmodels.metrics.image_quality import bicubic_upsample, l1_error, psnr, ssim
from ganmodels.metrics.inception import InceptionWeightsNotFound, find_inception_weights, load_fid_inception
from ganmodels.metrics.kid import kid
from ganmodels.metrics.memorisation import authenticity, data_copying_test
from ganmodels.metrics.modes import class_coverage, mode_metrics_2d
from ganmodels.metrics.prdc import density_coverage, precision_recall

__all__ = ["evaluate_generator", "evaluate_model", "intra_class_fd", "sample_generator", "score_samples"]


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
    device = module_device(classifier)
    feats = extract_features(classifier.features, x, batch_size=batch_size, device=device)
    logits = classifier.head(torch.from_numpy(feats).float().to(device))
    return feats, logits.argmax(1).cpu().numpy()


def _domain_metrics(classifier, splits: dict[str, torch.Tensor], reference: str, fake, real_labels, fake_labels,
                    num_classes, batch_size, seed) -> dict[str, float]:
    """splits: {"train": x_train, "test": x_test}; reference: the split the quality metrics compare with."""
    with eval_mode(classifier):
        # Each split's features once: the reference split serves the quality metrics, both serve memorisation.
        split_f = {name: _classifier_outputs(classifier, x, batch_size)[0] for name, x in splits.items()}
        fake_f, fake_pred = _classifier_outputs(classifier, fake, batch_size)
    real_f = split_f[reference]
    out = {"domain_fd": frechet_distance(*feature_stats(real_f), *feature_stats(fake_f))}
    out.update(_memorisation(split_f["train"], split_f["test"], fake_f, seed))
    out["kid"], out["kid_std"] = kid(real_f, fake_f, subset_size=1000, num_subsets=100, seed=seed)
    out.update(_prdc(real_f, fake_f, seed))
    if real_labels is not None and num_classes > 0:
        cov = class_coverage(fake_pred, real_labels, num_classes)
        out.update({k: float(cov[k]) for k in ("class_coverage", "classes_covered", "class_kl")})
    if fake_labels is not None:
        asked = fake_labels.numpy()
        out["cond_accuracy"] = float((fake_pred == asked).mean())
        if real_labels is not None:
            out["intra_fd"] = intra_class_fd(real_f, real_labels, fake_f, asked, num_classes)
    return out


# C_T's partition: 10 k-means cells of the training features. On the digits (1,438 train / 359 test
# images) that leaves ~36 held-out samples per cell for each Mann-Whitney comparison, and the
# default 2,000 generated samples put ~200 in a cell, far above the 20 a cell needs to count
# (ganmodels.metrics.memorisation). Fewer training rows than cells: one cell per row.
DATA_COPYING_CELLS = 10


def _memorisation(train_f: np.ndarray, test_f: np.ndarray, fake_f: np.ndarray, seed: int) -> dict[str, float]:
    """Authenticity and C_T of the generated features against the training split, C_T's held-out
    sample being the test split (ganmodels.metrics.memorisation)."""
    cells = min(DATA_COPYING_CELLS, len(train_f))
    return {"authenticity": authenticity(train_f, fake_f),
            "data_copying_ct": data_copying_test(train_f, test_f, fake_f, n_cells=cells, seed=seed).c_t}


def intra_class_fd(real_features: np.ndarray, real_labels: np.ndarray, fake_features: np.ndarray,
                   fake_labels: np.ndarray, num_classes: int) -> float:
    """Mean over classes of the Fréchet distance between real and generated features of that class
    (the intra-class FID of Miyato & Koyama 2018, §5, here in the domain feature space).

    A conditional generator that draws good images of the wrong class scores a low overall FD but a
    high intra-class FD. Each class needs at least two real and two generated samples; classes
    without them are refused (an evaluation too small to judge a class must not look good).
    """
    values = []
    for k in range(num_classes):
        real_k, fake_k = real_features[real_labels == k], fake_features[fake_labels == k]
        if len(real_k) < 2 or len(fake_k) < 2:
            raise ValueError(f"intra-class FD needs >= 2 real and >= 2 generated samples of class {k}; got "
                             f"{len(real_k)} and {len(fake_k)} (draw more samples)")
        values.append(frechet_distance(*feature_stats(real_k), *feature_stats(fake_k)))
    return float(np.mean(values))


def classification_accuracy_score(fake: torch.Tensor, fake_labels: torch.Tensor, data: PreparedDataset, *,
                                  epochs: int, seed: int) -> float:
    """CAS (Ravuri & Vinyals 2019): train the domain classifier's architecture on generated labelled
    samples only, report its accuracy on the real held-out split. A generator that ignores its class
    input, or covers a class badly, cannot teach a classifier that class."""
    from ganmodels.metrics.classifier import train_domain_classifier

    _, accuracy = train_domain_classifier(fake, fake_labels, data.x_test, data.y_test, data.num_classes,
                                          epochs=epochs, seed=seed)
    return float(accuracy)


def _fid_or_none(real, fake, inception_weights, device, batch_size) -> float | None:
    """FID, or None when no weights were asked for and none are installed (offline machines)."""
    try:
        path = find_inception_weights(inception_weights)
    except InceptionWeightsNotFound:
        if inception_weights is not None:
            raise  # an explicit path that is wrong is an error, not a silent skip
        return None
    model = load_fid_inception(path, device)
    batch_size = min(batch_size, inception_batch_size(device))
    real_f = inception_features(real, model, batch_size=batch_size, device=device)
    fake_f = inception_features(fake, model, batch_size=batch_size, device=device)
    return frechet_distance(*feature_stats(real_f), *feature_stats(fake_f))


def evaluate_model(model: GANFamily, data: PreparedDataset, *, n_samples: int = 2000, seed: int = 0,
                   batch_size: int = 256, device: str | torch.device | None = None,
                   sample_options: dict | None = None, **options) -> dict[str, float]:
    """Score a trained model (its inference network, EMA weights when loaded so) against ``data``.

    The family draws ``n_samples`` samples (or applies the model to the held-out inputs), with
    ``sample_options`` (StyleGAN2's ``truncation``); ``options`` are ``score_samples``'s (classifier,
    classifier_accuracy, inception_weights, modes, reference, cas_epochs).
    """
    samples = model.evaluation_samples(n_samples, seed=seed, batch_size=batch_size, device=device, data=data,
                                       **(sample_options or {}))
    return score_samples(samples, data, model=model.generator, seed=seed, batch_size=batch_size, device=device,
                         **options)


def evaluate_generator(G: nn.Module, data: PreparedDataset, *, n_samples: int = 2000, seed: int = 0,
                       batch_size: int = 256, device: str | torch.device | None = None, **options) -> dict[str, float]:
    """``evaluate_model`` for a bare noise generator ``G(z, c)``; a conditional one is asked for the
    classes in turn (balanced). ``options`` as for ``score_samples``."""
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    labels = balanced_labels(n_samples, c_dim) if c_dim else None
    fake, labels = sample_generator(G, n_samples, seed=seed, batch_size=batch_size, device=device, labels=labels)
    return score_samples(EvalSamples(fake, labels), data, model=G, seed=seed, batch_size=batch_size, device=device,
                         **options)


def score_samples(
    samples: EvalSamples,
    data: PreparedDataset,
    *,
    model: nn.Module | None = None,
    classifier: nn.Module | None = None,
    classifier_accuracy: float | None = None,
    inception_weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    batch_size: int = 256,
    modes: tuple | None = None,
    reference: str = "test",
    cas_epochs: int = 8,
    style_classifier: tuple[nn.Module, float] | None = None,
) -> dict[str, float]:
    """The metrics of generated ``samples`` against the real reference split of ``data`` (flat float dict).

    classifier: a trained ``DomainClassifier`` (``train_domain_classifier``) for labelled images and
      labelled pairs; ignored for points. classifier_accuracy: its held-out accuracy, reported.
    inception_weights: path of the pytorch-fid weights; None searches the usual places and leaves
      ``fid`` out when absent. modes: ``(means (K, 2), std)`` of a 2D mixture. reference: "test" (the
      held-out split) or "train". cas_epochs: epochs of the CAS classifier (conditional models).
    style_classifier: two-domain data: ``(model, held-out accuracy)`` from ``train_style_classifier``;
      None trains one on ``data`` (seeded by ``seed``).
    """
    if reference not in ("test", "train"):
        raise ValueError(f"reference must be 'test' or 'train', got {reference!r}")
    if data.data_kind is DataKind.PAIRED_IMAGES:
        return _paired_metrics(samples, data, classifier, classifier_accuracy, batch_size)
    if data.data_kind is DataKind.UNPAIRED_IMAGES:
        return _unpaired_metrics(samples, data, classifier, classifier_accuracy, style_classifier, batch_size, seed)
    real = data.x_test if reference == "test" else data.x_train
    real_labels = data.y_test if reference == "test" else data.y_train
    fake, fake_labels = samples.fake, samples.labels
    if tuple(fake.shape[1:]) != tuple(real.shape[1:]):
        raise ValueError(f"generator output shape {tuple(fake.shape[1:])} does not match the data's {tuple(real.shape[1:])}")
    if data.kind == "points":
        return _point_metrics(real, fake, modes, seed)
    out: dict[str, float] = {}
    if classifier is not None and data.num_classes:
        labels = real_labels.numpy() if real_labels is not None else None
        splits = {"train": data.x_train, "test": data.x_test}
        out.update(_domain_metrics(classifier, splits, reference, fake, labels, fake_labels, data.num_classes,
                                   batch_size, seed))
        if fake_labels is not None:
            out["cas"] = classification_accuracy_score(fake, fake_labels, data, epochs=cas_epochs, seed=seed)
        if classifier_accuracy is not None:
            out["classifier_accuracy"] = float(classifier_accuracy)
    fid_device = device if device is not None else (module_device(model) if model is not None else "cpu")
    fid = _fid_or_none(real, fake, inception_weights, fid_device, batch_size)
    if fid is not None:
        out["fid"] = fid
    if not out:
        raise ValueError(
            "no image metric can be computed: pass classifier= (see train_domain_classifier) for the offline "
            "domain metrics of labelled images, or install the FID Inception weights (see "
            "InceptionWeightsNotFound's message)"
        )
    return out


def _point_metrics(real: torch.Tensor, fake: torch.Tensor, modes: tuple | None, seed: int) -> dict[str, float]:
    out = _prdc(real.double().numpy(), fake.double().numpy(), seed)
    if modes is not None:
        means, std = modes
        out.update({k: float(v) for k, v in mode_metrics_2d(fake, means, std).items()})
        out["modes_fraction"] = out["modes_captured"] / len(means)
    return out


def _paired_metrics(samples: EvalSamples, data: PreparedDataset, classifier: nn.Module | None,
                    classifier_accuracy: float | None, batch_size: int) -> dict[str, float]:
    """Outputs against their targets on the held-out pairs, and against the bicubic baseline."""
    outputs, inputs, targets = samples.fake, samples.extra["inputs"], samples.extra["targets"]
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} do not match the targets {tuple(targets.shape)}")
    baseline = bicubic_upsample(inputs, tuple(targets.shape[-2:]))
    out = {"psnr": float(psnr(outputs, targets).mean()), "ssim": float(ssim(outputs, targets).mean()),
           "l1": float(l1_error(outputs, targets).mean()),
           "psnr_bicubic": float(psnr(baseline, targets).mean()), "ssim_bicubic": float(ssim(baseline, targets).mean())}
    out["psnr_gain_over_bicubic"] = out["psnr"] - out["psnr_bicubic"]
    if classifier is not None and samples.labels is not None:
        with eval_mode(classifier):
            real_f, _ = _classifier_outputs(classifier, targets, batch_size)
            fake_f, fake_pred = _classifier_outputs(classifier, outputs, batch_size)
        out["domain_fd"] = frechet_distance(*feature_stats(real_f), *feature_stats(fake_f))
        out["class_preservation"] = float((fake_pred == samples.labels.numpy()).mean())
        if classifier_accuracy is not None:
            out["classifier_accuracy"] = float(classifier_accuracy)
    return out


def _unpaired_metrics(samples: EvalSamples, data: PreparedDataset, classifier: nn.Module | None,
                      classifier_accuracy: float | None, style: tuple[nn.Module, float] | None, batch_size: int,
                      seed: int) -> dict[str, float]:
    """Both directions of a two-domain model (see the module docstring)."""
    x = samples.extra
    style_classifier, style_accuracy = style if style is not None else train_style_classifier(data, seed=seed)
    with eval_mode(style_classifier):
        _, to_b = _classifier_outputs(style_classifier, x["a2b"], batch_size)
        _, to_a = _classifier_outputs(style_classifier, x["b2a"], batch_size)
    out = {"cycle_l1_a": float(l1_error(x["a2b2a"], x["inputs_a"]).mean()),
           "cycle_l1_b": float(l1_error(x["b2a2b"], x["inputs_b"]).mean())}
    if "truth_a2b" in x and "truth_b2a" in x:
        out.update(psnr_a2b=float(psnr(x["a2b"], x["truth_a2b"]).mean()), ssim_a2b=float(ssim(x["a2b"], x["truth_a2b"]).mean()),
                   psnr_b2a=float(psnr(x["b2a"], x["truth_b2a"]).mean()), ssim_b2a=float(ssim(x["b2a"], x["truth_b2a"]).mean()),
                   psnr_identity_a2b=float(psnr(x["inputs_a"], x["truth_a2b"]).mean()))
    out.update(style_transfer_a2b=float((to_b == STYLE_B).mean()), style_transfer_b2a=float((to_a == STYLE_A).mean()),
               style_classifier_accuracy=float(style_accuracy))
    if classifier is not None and samples.labels is not None and "labels_b" in x:
        with eval_mode(classifier):
            features = {key: _classifier_outputs(classifier, x[key], batch_size)
                        for key in ("inputs_a", "inputs_b", "a2b", "b2a")}
        for direction, translated, real_other, labels in (("a2b", "a2b", "inputs_b", samples.labels),
                                                          ("b2a", "b2a", "inputs_a", x["labels_b"])):
            fake_f, fake_pred = features[translated]
            out[f"domain_fd_{direction}"] = frechet_distance(*feature_stats(features[real_other][0]),
                                                             *feature_stats(fake_f))
            out[f"class_preservation_{direction}"] = float((fake_pred == labels.numpy()).mean())
        if classifier_accuracy is not None:
            out["classifier_accuracy"] = float(classifier_accuracy)
    return out

"""Explicit metric registry: what each evaluation number is, which way is better, and when it exists.

Gates (``params.yaml`` ``gates: {metric: {min: x} | {max: x}}``) and the champion/challenger rule
read this registry: a gate on a metric the run will not produce is refused before training, and
the primary metric's direction decides which of two versions is better. ``evaluate_model``
returns exactly the metrics ``produced_metrics`` promises (a test holds it to that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

from ganmodels.data.kinds import DataKind

Direction = Literal["lower", "higher", "none"]
Need = Literal["", "inception", "modes", "labels", "truth"]

_IMAGES = frozenset({DataKind.IMAGES, DataKind.LABELLED_IMAGES})
_LABELLED = frozenset({DataKind.LABELLED_IMAGES})
_POINTS = frozenset({DataKind.POINTS})
_PAIRED = frozenset({DataKind.PAIRED_IMAGES})
_UNPAIRED = frozenset({DataKind.UNPAIRED_IMAGES})


@dataclass(frozen=True)
class MetricSpec:
    """name: the key in the metrics dict. direction: which way is better ("none": not a quality
    score, e.g. a standard error; such a metric cannot be gated). kinds: data kinds it is computed
    for. conditional: only for class-conditional generators. needs: a reference that must be
    present ("inception": the FID weights; "modes": a known 2D mixture). primary_rank: candidates
    for the primary metric, lowest rank first (None: never primary)."""

    name: str
    direction: Direction
    kinds: frozenset[DataKind]
    description: str
    conditional: bool = False
    needs: Need = ""
    primary_rank: int | None = None

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "lower"


_METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    if spec.name in _METRICS:
        raise ValueError(f"metric {spec.name!r} is already registered")
    _METRICS[spec.name] = spec
    return spec


def list_metrics() -> list[str]:
    return sorted(_METRICS)


def get_metric(name: str) -> MetricSpec:
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered metrics: {', '.join(list_metrics())}") from None


def produced_metrics(kind: DataKind, *, conditional: bool = False, available: Iterable[str] = ()) -> list[str]:
    """The metrics an evaluation of a model on ``kind`` data produces.

    available: the references present on this run: "inception" (FID weights found), "modes" (the
    data is a known 2D mixture), "labels" (paired or two-domain images with class labels), "truth" (a
    two-domain set that knows its true translations).
    """
    have = set(available) | {""} | ({"labels"} if kind is DataKind.LABELLED_IMAGES else set())
    return sorted(m.name for m in _METRICS.values()
                  if kind.satisfies(m.kinds) and (conditional or not m.conditional) and m.needs in have)


def primary_metric(produced: Iterable[str]) -> str | None:
    """The produced metric with the lowest ``primary_rank`` (FID before the offline domain FD), or None."""
    ranked = [(_METRICS[n].primary_rank, n) for n in produced if n in _METRICS and _METRICS[n].primary_rank is not None]
    return min(ranked)[1] if ranked else None


for _spec in (
    MetricSpec("fid", "lower", _IMAGES, "Fréchet Inception Distance (pytorch-fid weights, local file only)",
               needs="inception", primary_rank=0),
    MetricSpec("domain_fd", "lower", _LABELLED | _PAIRED,
               "Fréchet distance in the domain classifier's feature space (not FID); paired data: outputs vs "
               "real targets", needs="labels", primary_rank=1),
    MetricSpec("kid", "lower", _LABELLED, "Kernel Inception-style distance on the domain features"),
    MetricSpec("kid_std", "none", _LABELLED, "standard deviation of the KID estimate over subsets"),
    MetricSpec("precision", "higher", _LABELLED | _POINTS, "share of samples on the real manifold (k-NN, k=3)"),
    MetricSpec("recall", "higher", _LABELLED | _POINTS, "share of real data covered by samples (k-NN, k=3)"),
    MetricSpec("density", "higher", _LABELLED | _POINTS, "density of samples in real k-NN balls (k=5)"),
    MetricSpec("coverage", "higher", _LABELLED | _POINTS, "share of real k-NN balls holding a sample (k=5)"),
    MetricSpec("class_coverage", "higher", _LABELLED, "share of classes produced (classifier's predictions)"),
    MetricSpec("classes_covered", "higher", _LABELLED, "number of classes produced"),
    MetricSpec("class_kl", "lower", _LABELLED, "KL(generated class histogram || real class histogram)"),
    MetricSpec("authenticity", "higher", _LABELLED, "share of samples further from their nearest training sample "
               "than that sample is from its own training neighbour (Alaa et al. 2022); a copier scores 0"),
    MetricSpec("data_copying_ct", "higher", _LABELLED, "data-copying test C_T (Meehan et al. 2020): per k-means cell, "
               "Mann-Whitney Z of generated vs held-out distances to the training set, averaged; << 0: copying, "
               "~0: like unseen data, > 0: further than unseen data (underfitting)"),
    MetricSpec("classifier_accuracy", "higher", _LABELLED | _PAIRED | _UNPAIRED,
               "held-out accuracy of the domain classifier behind the domain metrics", needs="labels"),
    MetricSpec("cond_accuracy", "higher", _LABELLED,
               "share of samples the domain classifier assigns to the class they were asked for", conditional=True),
    MetricSpec("intra_fd", "lower", _LABELLED, "mean over classes of the per-class domain FD", conditional=True),
    MetricSpec("cas", "higher", _LABELLED, "Classification Accuracy Score: a classifier trained on generated "
               "labelled samples only, tested on the real held-out split (Ravuri & Vinyals 2019)", conditional=True),
    MetricSpec("modes_captured", "higher", _POINTS, "mixture modes with at least one high-quality sample",
               needs="modes"),
    MetricSpec("modes_fraction", "higher", _POINTS, "modes captured / modes", needs="modes"),
    MetricSpec("high_quality_fraction", "higher", _POINTS, "share of samples within 3 std of a mode", needs="modes"),
    MetricSpec("reverse_kl", "lower", _POINTS, "KL(generated mode histogram || uniform)", needs="modes",
               primary_rank=2),
    MetricSpec("psnr_gain_over_bicubic", "higher", _PAIRED, "PSNR of the outputs minus that of the bicubic "
               "upsampled inputs (the inputs themselves for same-size translation), dB, held-out pairs",
               primary_rank=0),
    MetricSpec("psnr", "higher", _PAIRED, "PSNR of the outputs against the targets, dB, mean over held-out pairs"),
    MetricSpec("ssim", "higher", _PAIRED, "SSIM of the outputs against the targets (Wang et al. 2004)"),
    MetricSpec("l1", "lower", _PAIRED, "mean absolute error of the outputs, in [-1, 1] units"),
    MetricSpec("psnr_bicubic", "none", _PAIRED, "PSNR of the bicubic baseline (measured in the same run)"),
    MetricSpec("ssim_bicubic", "none", _PAIRED, "SSIM of the bicubic baseline"),
    MetricSpec("class_preservation", "higher", _PAIRED, "share of outputs the domain classifier (trained on the "
               "real targets) assigns to their pair's class", needs="labels"),
    # Two domains (CycleGAN), each direction: a2b translates held-out A images, b2a held-out B images.
    MetricSpec("psnr_a2b", "higher", _UNPAIRED, "PSNR of A -> B translations against their known B-style truth, dB",
               needs="truth", primary_rank=0),
    MetricSpec("ssim_a2b", "higher", _UNPAIRED, "SSIM of A -> B translations against their truth", needs="truth"),
    MetricSpec("psnr_b2a", "higher", _UNPAIRED, "PSNR of B -> A translations against their known A-style truth, dB",
               needs="truth"),
    MetricSpec("ssim_b2a", "higher", _UNPAIRED, "SSIM of B -> A translations against their truth", needs="truth"),
    MetricSpec("psnr_identity_a2b", "none", _UNPAIRED, "PSNR of the A inputs themselves against the truth: the "
               "do-nothing baseline", needs="truth"),
    MetricSpec("domain_fd_a2b", "lower", _UNPAIRED, "domain FD of A -> B translations vs real held-out B images",
               needs="labels", primary_rank=1),
    MetricSpec("domain_fd_b2a", "lower", _UNPAIRED, "domain FD of B -> A translations vs real held-out A images",
               needs="labels"),
    MetricSpec("class_preservation_a2b", "higher", _UNPAIRED, "share of A -> B translations the domain classifier "
               "assigns to their input's class", needs="labels"),
    MetricSpec("class_preservation_b2a", "higher", _UNPAIRED, "share of B -> A translations keeping their class",
               needs="labels"),
    MetricSpec("style_transfer_a2b", "higher", _UNPAIRED, "share of A -> B translations the style classifier "
               "(trained on real A vs real B images) assigns to domain B"),
    MetricSpec("style_transfer_b2a", "higher", _UNPAIRED, "share of B -> A translations the style classifier "
               "assigns to domain A"),
    MetricSpec("style_classifier_accuracy", "higher", _UNPAIRED, "held-out accuracy of the style classifier "
               "(real A vs real B) behind style_transfer_*"),
    MetricSpec("cycle_l1_a", "lower", _UNPAIRED, "mean |G_BA(G_AB(a)) - a| on held-out A images (the cycle)",
               primary_rank=3),
    MetricSpec("cycle_l1_b", "lower", _UNPAIRED, "mean |G_AB(G_BA(b)) - b| on held-out B images"),
):
    register_metric(_spec)

"""Mode-collapse monitoring while training: ``ModeMonitor`` scores the generator every few steps.

Every ``every`` steps the monitor draws ``n_samples`` points from ``trainer.generator`` (the EMA
copy when EMA is on) with a fixed seed, so successive evaluations differ only by the weights, and
computes the mode metrics the final evaluation uses (``ganmodels.metrics``):

* 2D mixtures (``modes=(means (K, 2), std)``): ``modes_captured``, ``modes_fraction`` (= captured / K),
  ``high_quality_fraction`` and ``reverse_kl`` (VEEGAN/PacGAN protocol, ``mode_metrics_2d``);
* labelled images (a trained ``DomainClassifier``): ``classes_covered``, ``class_coverage`` and
  ``class_kl`` (``class_coverage`` on the classifier's predictions);
* with real reference samples: ``precision`` and ``recall`` (Kynkäänniemi et al. 2019, k = 3) on
  raw coordinates for points, on the classifier's features for images.

Each evaluation is kept in ``history`` and handed to ``log_fn(step, metrics)`` (the pipeline logs it
to MLflow). With ``early_stop`` on, a collapse seen on ``patience`` consecutive evaluations from step
``warmup`` on makes the monitor call ``trainer.request_stop(reason)``: a long run stops as soon as
it is clearly failing instead of burning its budget (the pipeline never registers such a model).

Sampling uses its own seeded ``torch.Generator`` and the metrics are plain numpy, so a monitored
run trains exactly like an unmonitored one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from ganmodels.families.noise import sample_generator
from ganmodels.inference import eval_mode
from ganmodels.metrics.fid import extract_features
from ganmodels.metrics.modes import class_coverage, mode_metrics_2d
from ganmodels.metrics.prdc import precision_recall
from ganmodels.train.callbacks import Callback

if TYPE_CHECKING:
    from ganmodels.data.base import PreparedDataset
    from ganmodels.train.trainer import Trainer

__all__ = ["ModeMonitor", "MonitorConfig", "collapse_reasons"]

PR_K = 3  # k of the k-NN balls for precision/recall, as in Kynkäänniemi et al. 2019


@dataclass(frozen=True)
class MonitorConfig:
    """When to score the generator while training, and what counts as collapse.

    every: evaluate after every ``every``-th step; 0 switches monitoring off. n_samples: generated samples per evaluation
      (500 takes milliseconds for 2D points). seed: seed of the latent draws (the same every time).
    early_stop: stop training when collapse is seen on ``patience`` consecutive evaluations at
      steps >= ``warmup`` (before ``warmup`` a young generator's blur is not collapse).
    Collapse criteria; ``None`` disables one; any enabled one that fails is a collapse:
      min_class_coverage: labelled images, share of classes produced (``class_coverage``) below it;
      max_class_kl: labelled images, ``class_kl`` above it (all mass on one of 10 classes: log 10);
      min_modes_fraction: 2D mixtures, ``modes_captured / K`` below it;
      max_reverse_kl: 2D mixtures, ``reverse_kl`` above it (all mass on one of K modes: log K).
    The defaults flag gross collapse only (fewer than half of the classes or modes) because
    stopping a run is costly; tighten them per data set.
    """

    every: int = 500
    n_samples: int = 500
    seed: int = 0
    early_stop: bool = False
    patience: int = 3
    warmup: int = 0
    min_class_coverage: float | None = 0.5
    max_class_kl: float | None = None
    min_modes_fraction: float | None = 0.5
    max_reverse_kl: float | None = None

    def __post_init__(self):
        errors = []
        if self.every < 0:
            errors.append(f"every must be >= 1, or 0 for off (got {self.every})")
        if self.n_samples <= PR_K:
            errors.append(f"n_samples must be > {PR_K} (got {self.n_samples})")
        if self.patience < 1:
            errors.append(f"patience must be >= 1 (got {self.patience})")
        if self.warmup < 0:
            errors.append(f"warmup must be >= 0 (got {self.warmup})")
        for name in ("min_class_coverage", "min_modes_fraction"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                errors.append(f"{name} must be in [0, 1] or None (got {value})")
        for name in ("max_class_kl", "max_reverse_kl"):
            value = getattr(self, name)
            if value is not None and value < 0:
                errors.append(f"{name} must be >= 0 or None (got {value})")
        if errors:
            raise ValueError("invalid monitor config: " + "; ".join(errors))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def collapse_reasons(metrics: dict[str, float], cfg: MonitorConfig) -> list[str]:
    """The collapse criteria of ``cfg`` that ``metrics`` fail, as readable phrases (empty: healthy).

    Criteria whose metric was not computed (e.g. class metrics on 2D data) are skipped.
    """
    reasons = []

    def below(key: str, limit: float | None, shown: str) -> None:
        if limit is not None and key in metrics and metrics[key] < limit:
            reasons.append(f"{shown} < {limit:g}")

    def above(key: str, limit: float | None, shown: str) -> None:
        if limit is not None and key in metrics and metrics[key] > limit:
            reasons.append(f"{shown} > {limit:g}")

    if "class_coverage" in metrics:
        shown = f"class_coverage {metrics['class_coverage']:.3g} ({metrics['classes_covered']:.0f} classes)"
        below("class_coverage", cfg.min_class_coverage, shown)
        above("class_kl", cfg.max_class_kl, f"class_kl {metrics['class_kl']:.3g}")
    if "modes_fraction" in metrics:
        shown = f"modes_fraction {metrics['modes_fraction']:.3g} ({metrics['modes_captured']:.0f} modes captured)"
        below("modes_fraction", cfg.min_modes_fraction, shown)
        above("reverse_kl", cfg.max_reverse_kl, f"reverse_kl {metrics['reverse_kl']:.3g}")
    return reasons


class ModeMonitor(Callback):
    """Scores ``trainer.generator`` every ``cfg.every`` steps; optionally stops a collapsing run.

    modes: ``(means (K, 2), std)`` of a 2D mixture (``ganmodels.data.mixture_spec``).
    classifier: a trained ``DomainClassifier`` (``features``/``head``) for labelled images;
      ``num_classes`` is then required.
    real: real samples, (M, 2) points or (M, C, H, W) images, for precision/recall; at most
      ``n_samples`` of them are used (a seeded subset). real_labels: (M,) labels, the reference
      class histogram of ``class_kl`` (uniform over ``num_classes`` when omitted).
    log_fn: called as ``log_fn(step, metrics)`` after each evaluation.

    ``history`` holds ``(step, metrics)`` pairs, metrics a dict of floats; ``stop_reason`` is the
    reason handed to ``request_stop`` ("" while none).
    """

    def __init__(self, cfg: MonitorConfig | None = None, *, modes: tuple | None = None,
                 classifier: nn.Module | None = None, num_classes: int | None = None, real=None,
                 real_labels=None, log_fn: Callable[[int, dict[str, float]], None] | None = None):
        self.cfg = cfg or MonitorConfig()
        if modes is None and classifier is None:
            raise ValueError("ModeMonitor needs modes=(means, std) for 2D mixtures or classifier= for "
                             "labelled images; without either there is no mode metric to watch")
        if classifier is not None and not (num_classes and num_classes > 1):
            raise ValueError(f"ModeMonitor with a classifier needs num_classes >= 2 (got {num_classes!r})")
        self.modes = None if modes is None else (np.asarray(modes[0], dtype=np.float64).reshape(-1, 2), float(modes[1]))
        self.classifier, self.num_classes, self.log_fn = classifier, num_classes, log_fn
        self.real_labels = self._reference_labels(real_labels)
        self.real_features = self._reference_features(real)
        self.history: list[tuple[int, dict[str, float]]] = []
        self.stop_reason = ""
        self._streak: list[int] = []  # steps of the current run of consecutive collapsed evaluations

    @classmethod
    def for_data(cls, data: "PreparedDataset", cfg: MonitorConfig | None = None, *, modes: tuple | None = None,
                 classifier: nn.Module | None = None,
                 log_fn: Callable[[int, dict[str, float]], None] | None = None) -> "ModeMonitor":
        """A monitor referenced on ``data``'s held-out split (as ``evaluate_generator`` does).

        For the registered 2D mixtures (``ring8``, ``grid25``) ``modes`` defaults to their
        ``mixture_spec``; image data needs ``classifier``.
        """
        if modes is None and data.kind == "points":
            from ganmodels.data import DataError, mixture_spec

            try:
                modes = mixture_spec(data.name)
            except DataError:
                pass  # not a known mixture: the constructor says what is missing
        return cls(cfg, modes=modes, classifier=classifier, num_classes=data.num_classes or None,
                   real=data.x_test, real_labels=data.y_test, log_fn=log_fn)

    # -- callback hooks ------------------------------------------------------------------------
    def needs_live_state(self, trainer: "Trainer", step: int) -> bool:
        return bool(self.cfg.every) and step % self.cfg.every == 0

    def on_step_end(self, trainer: "Trainer", step: int, logs: dict[str, float]) -> None:
        if not self.needs_live_state(trainer, step):
            return
        metrics = self.evaluate(trainer.generator)
        self.history.append((step, metrics))
        if self.log_fn is not None:
            self.log_fn(step, metrics)
        reason = self._check_collapse(step, metrics)
        if reason and self.cfg.early_stop and not self.stop_reason:
            self.stop_reason = reason
            trainer.request_stop(reason)

    # -- metrics -------------------------------------------------------------------------------
    def evaluate(self, G: nn.Module) -> dict[str, float]:
        """Mode metrics of ``n_samples`` seeded samples of ``G`` (its train/eval mode is restored)."""
        fake, _ = sample_generator(G, self.cfg.n_samples, seed=self.cfg.seed)  # (N, ...) on CPU
        metrics: dict[str, float] = {}
        if self.modes is not None:
            means, std = self.modes
            m = mode_metrics_2d(fake, means, std)
            metrics.update({k: float(v) for k, v in m.items()})
            metrics["modes_fraction"] = m["modes_captured"] / len(means)
        if self.classifier is not None:
            fake_features, pred = self._classify(fake)
            cov = class_coverage(pred, self._class_reference(), self.num_classes)
            metrics.update({k: float(cov[k]) for k in ("classes_covered", "class_coverage", "class_kl")})
        else:
            fake_features = fake.reshape(len(fake), -1).double().numpy()
        if self.real_features is not None:
            m = min(len(self.real_features), len(fake_features))
            precision, recall = precision_recall(self.real_features[:m], fake_features[:m], k=PR_K)
            metrics.update({"precision": float(precision), "recall": float(recall)})
        return metrics

    def _check_collapse(self, step: int, metrics: dict[str, float]) -> str:
        """Track consecutive collapsed evaluations; the stop reason once there are ``patience`` of them."""
        reasons = collapse_reasons(metrics, self.cfg) if step >= self.cfg.warmup else []
        self._streak = self._streak + [step] if reasons else []
        if len(self._streak) < self.cfg.patience:
            return ""
        steps = ", ".join(str(s) for s in self._streak[-self.cfg.patience:])
        return (f"mode collapse: {'; '.join(reasons)} on {self.cfg.patience} consecutive evaluation(s) "
                f"(steps {steps}; {self.cfg.n_samples} samples each)")

    @torch.no_grad()
    def _classify(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(N, C, H, W) -> (classifier features (N, D) float64, predicted class (N,))."""
        clf = self.classifier
        device = next(clf.parameters()).device
        with eval_mode(clf):
            feats = extract_features(clf.features, x, device=device)
            pred = clf.head(torch.from_numpy(feats).float().to(device)).argmax(1).cpu().numpy()
        return feats, pred

    def _class_reference(self) -> np.ndarray:
        if self.real_labels is not None:
            return self.real_labels
        return np.arange(self.num_classes)  # uniform reference histogram

    def _reference_labels(self, real_labels) -> np.ndarray | None:
        if real_labels is None or self.classifier is None:
            return None
        labels = real_labels.cpu().numpy() if isinstance(real_labels, torch.Tensor) else np.asarray(real_labels)
        return labels.reshape(-1).astype(np.int64)

    def _reference_features(self, real) -> np.ndarray | None:
        """Features of a seeded subset of at most ``n_samples`` real rows, computed once."""
        if real is None:
            return None
        real = real if isinstance(real, torch.Tensor) else torch.as_tensor(np.asarray(real))
        if len(real) <= PR_K:
            raise ValueError(f"ModeMonitor needs more than {PR_K} real samples for precision/recall, got {len(real)}")
        if len(real) > self.cfg.n_samples:
            gen = torch.Generator().manual_seed(self.cfg.seed)
            real = real[torch.randperm(len(real), generator=gen)[: self.cfg.n_samples].sort().values]
        if self.classifier is not None:
            return self._classify(real.float())[0]
        return real.reshape(len(real), -1).double().numpy()

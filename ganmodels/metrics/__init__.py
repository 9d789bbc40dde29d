"""Generator metrics: Fréchet distances (FID and the offline domain FD), KID, precision/recall,
density/coverage, mode-collapse and memorisation measures, plus ``evaluate_generator`` tying them together.

Pure numpy/PyTorch; importing this package loads no weights and touches no files.
"""

from ganmodels.metrics.classifier import (ClassifierConfig, DomainClassifier, train_domain_classifier,
                                         train_style_classifier)
from ganmodels.metrics.evaluate import evaluate_generator, evaluate_model, intra_class_fd, sample_generator, score_samples
from ganmodels.metrics.fid import (compute_fid, extract_features, feature_stats, inception_batch_size,
                                  inception_features)
from ganmodels.metrics.frechet import frechet_distance
from ganmodels.metrics.inception import FIDInceptionV3, InceptionWeightsNotFound, find_inception_weights, load_fid_inception
from ganmodels.metrics.kid import kid
from ganmodels.metrics.memorisation import DataCopyingTest, authenticity, data_copying_test, mann_whitney_z
from ganmodels.metrics.modes import class_coverage, mode_metrics_2d
from ganmodels.metrics.prdc import density_coverage, precision_recall
from ganmodels.metrics.registry import MetricSpec, get_metric, list_metrics, primary_metric, produced_metrics
from ganmodels.metrics.stats import FeatureStats

__all__ = [
    "ClassifierConfig",
    "DataCopyingTest",
    "DomainClassifier",
    "FIDInceptionV3",
    "FeatureStats",
    "InceptionWeightsNotFound",
    "MetricSpec",
    "authenticity",
    "class_coverage",
    "compute_fid",
    "data_copying_test",
    "density_coverage",
    "evaluate_generator",
    "evaluate_model",
    "get_metric",
    "intra_class_fd",
    "list_metrics",
    "primary_metric",
    "produced_metrics",
    "extract_features",
    "feature_stats",
    "find_inception_weights",
    "frechet_distance",
    "inception_batch_size",
    "inception_features",
    "kid",
    "load_fid_inception",
    "mann_whitney_z",
    "mode_metrics_2d",
    "precision_recall",
    "sample_generator",
    "score_samples",
    "train_domain_classifier",
    "train_style_classifier",
]

"""Training: config, trainer, checkpoints, EMA and callbacks."""

from ganmodels.train.callbacks import Callback, LossHistory, RollbackEvent
from ganmodels.train.checkpoint import load_checkpoint, load_generator, load_model, save_checkpoint
from ganmodels.train.config import GuardConfig, TrainConfig
from ganmodels.train.trainer import (DivergenceDetected, ResumeError, Trainer, TrainingDiverged, TrainResult,
                                     resolve_device, seed_everything)

__all__ = [
    "Callback", "DivergenceDetected", "GuardConfig", "LossHistory", "ResumeError", "RollbackEvent", "TrainConfig",
    "Trainer", "TrainResult", "TrainingDiverged", "load_checkpoint", "load_generator", "load_model",
    "resolve_device", "save_checkpoint", "seed_everything",
]

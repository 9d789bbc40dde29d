"""Training callbacks: the trainer calls these hooks; pipelines log what they receive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ganmodels.train.trainer import Trainer, TrainResult


@dataclass(frozen=True)
class RollbackEvent:
    step: int  # step at which divergence was detected
    restored_step: int  # step of the checkpoint training went back to
    reason: str
    rollbacks: int  # rollbacks so far, this one included
    lr_scale: float  # learning-rate multiplier now in force


class Callback:
    """Base class; override the hooks you need. ``logs`` hold plain Python floats.

    ``on_step_end`` is called for every step, in order, but on a GPU (``TrainConfig.sync_every`` > 1)
    a batch of steps reaches it together at the next sync point, when the trainer is already past
    them. A callback that reads or changes the model or the trainer at a step (samples, evaluations,
    a checkpoint or a stop) returns True from ``needs_live_state`` for that step: the step then
    becomes a sync point, and ``on_step_end`` runs while the trainer is at it.
    """

    def needs_live_state(self, trainer: "Trainer", step: int) -> bool:
        return False

    def on_train_start(self, trainer: "Trainer") -> None: ...

    def on_step_end(self, trainer: "Trainer", step: int, logs: dict[str, float]) -> None: ...

    def on_checkpoint(self, trainer: "Trainer", path: Path) -> None: ...

    def on_rollback(self, trainer: "Trainer", event: RollbackEvent) -> None: ...

    def on_train_end(self, trainer: "Trainer", result: "TrainResult") -> None: ...


class LossHistory(Callback):
    """Keeps every ``log_every``-th step's logs in memory (for curves and tests)."""

    def __init__(self, log_every: int = 1):
        self.log_every = log_every
        self.steps: list[int] = []
        self.logs: list[dict[str, float]] = []

    def on_step_end(self, trainer, step, logs):
        if step % self.log_every == 0:
            self.steps.append(step)
            self.logs.append(dict(logs))

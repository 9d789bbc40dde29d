"""The trainer owns what every model family shares: the loop, the device, the divergence guard and
rollback, EMA, checkpoints, exact resume and callbacks.

The family (``ganmodels.families``) owns what differs: its named networks and optimiser groups,
how training inputs are drawn, and the phases of a step. The trainer runs each phase as one
update: the family computes the loss, the trainer does backward, checks the loss and gradient
norm, and only then steps the optimiser, so a bad update is never applied.

All randomness of a step (batch indices, noise, augmentation, penalties) comes from one explicit
CPU ``torch.Generator`` whose state is checkpointed, so on CPU a run is bitwise reproducible and
``N steps == N/2 steps + resume + N/2 steps``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import torch
from torch import nn

from ganmodels.augment import parse_policy
from ganmodels.data.base import PreparedDataset
from ganmodels.families.base import GANFamily, Phase, StepContext
from ganmodels.losses import get_loss
from ganmodels.train.callbacks import Callback, RollbackEvent
from ganmodels.train.checkpoint import load_checkpoint, save_checkpoint
from ganmodels.train import distributed
from ganmodels.train.config import TrainConfig
from ganmodels.train.ema import make_ema, update_ema

log = logging.getLogger(__name__)

# Train-config fields a resumed run may change: how long it runs and where/how often it saves.
# Anything else (losses, learning rates, EMA, regularisers, seed) would make the resumed run a
# different run than the one whose checkpoint it continues.
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "checkpoint_seconds", "device"})


class DivergenceDetected(Exception):
    """A step produced a non-finite or runaway loss or gradient, or the state became non-finite;
    the offending update was not applied (or not kept)."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"step {step}: {reason}")
        self.step, self.reason = step, reason


class TrainingDiverged(RuntimeError):
    """Training kept diverging after the allowed rollbacks; the run must fail (and never register)."""

    def __init__(self, step: int, reason: str, rollbacks: int):
        super().__init__(f"training diverged at step {step} after {rollbacks} rollback(s): {reason}")
        self.step, self.reason, self.rollbacks = step, reason, rollbacks


class ResumeError(ValueError):
    """A checkpoint cannot be resumed by this trainer (missing, or written by a different run)."""


@dataclass
class TrainResult:
    steps: int
    logs: dict[str, float]
    rollbacks: int
    stopped_early: bool
    stop_reason: str
    checkpoint: Path | None
    seconds: float
    events: list[RollbackEvent] = field(default_factory=list)
    resumed_from: int | None = None  # the checkpoint step training continued from, if any


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device=auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed the global RNGs used when models are built (weight init, spectral-norm vectors)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, model: GANFamily, data: PreparedDataset, cfg: TrainConfig, *,
                 workdir: str | Path | None = None, callbacks: Iterable[Callback] = (),
                 data_info: dict | None = None):
        if not isinstance(model, GANFamily):
            raise TypeError(f"Trainer needs a model family instance (ganmodels.build(...)), got {type(model).__name__}")
        self.model, self.data, self.cfg = model, data, cfg
        self.workdir = Path(workdir) if workdir is not None else None
        self.callbacks = list(callbacks)
        self.data_info = data_info or {"name": data.name, "hash": data.data_hash, "config": dict(data.config)}
        self.device = resolve_device(cfg.device)
        self.use_amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        self.loss = get_loss(cfg.loss)
        self.augment = parse_policy(cfg.diffaugment)
        model.check_data(data)
        self.phases: tuple[Phase, ...] = model.phases(cfg)

        image = data.kind == "image"
        fmt = torch.channels_last if (image and self.device.type == "cuda") else torch.contiguous_format
        model.to(self.device, memory_format=fmt) if image else model.to(self.device)
        self.networks: dict[str, nn.Module] = {name: net.train() for name, net in model.networks().items()}
        # Data-parallel when torch.distributed is up (torchrun): see ganmodels.train.distributed.
        self.process = distributed.current()
        if self.process.world > 1:
            if cfg.batch_size % self.process.world:
                raise ValueError(f"train.batch_size={cfg.batch_size} must be divisible by the {self.process.world} "
                                 "training processes (the global batch is split evenly)")
            for net in self.networks.values():
                distributed.sync_batchnorm(net, self.device)
            distributed.broadcast(self.networks.values())
        self.ema: dict[str, nn.Module] = ({name: make_ema(self.networks[name]) for name in model.ema_networks}
                                          if cfg.ema_beta > 0 else {})
        self.tensors = model.training_tensors(data, self.device, fmt)
        self.groups = model.optimisers(cfg)
        self.optimisers = {name: torch.optim.Adam(self._parameters(group.networks), lr=group.lr, betas=group.betas)
                           for name, group in self.groups.items()}
        self._check_phases()
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.lr_scale = 1.0
        self.rollbacks = 0
        self._stop_reason = ""
        self._last_good: dict | None = None
        self._last_checkpoint_time = time.monotonic()

    # -- public API -------------------------------------------------------------------------
    @property
    def generator(self) -> nn.Module:
        """The network to evaluate and export: the EMA copy of the family's inference network when enabled."""
        name = self.model.inference_network
        return self.ema.get(name, self.networks[name])

    @property
    def checkpoint_path(self) -> Path | None:
        return self.workdir / "checkpoints" / "last.pt" if self.workdir else None

    def request_stop(self, reason: str) -> None:
        """Callbacks call this to end training after the current step (e.g. persistent collapse)."""
        self._stop_reason = reason

    def fit(self, steps: int | None = None, *, resume: bool | Literal["auto"] = False) -> TrainResult:
        """Train until ``steps`` total steps (default ``cfg.steps``).

        resume: True continues from the workdir checkpoint and raises ``ResumeError`` when there is
        none; ``"auto"`` continues when one exists and otherwise starts fresh (logged); False
        always starts from this trainer's current state.
        """
        total = self.cfg.steps if steps is None else steps
        resumed_from = self._resume(resume)
        t0 = time.perf_counter()
        events: list[RollbackEvent] = []
        self._remember_good(check=False)  # the starting point: the initial weights or the checkpoint read
        for cb in self.callbacks:
            cb.on_train_start(self)
        logs: dict[str, float] = {}
        while True:
            try:
                logs = self._run_until(total, logs)
                path = self._checkpoint()
                break
            except DivergenceDetected as div:
                events.append(self._rollback(div))
        result = TrainResult(self.step, logs, self.rollbacks, bool(self._stop_reason), self._stop_reason, path,
                             time.perf_counter() - t0, events, resumed_from)
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    def _run_until(self, total: int, logs: dict[str, float]) -> dict[str, float]:
        while self.step < total and not self._stop_reason:
            if self.cfg.lr_decay_start < 1.0:
                self._apply_lr()  # the schedule is a function of the step: exact on resume
            logs = self.train_step()
            self.step += 1
            for cb in self.callbacks:
                cb.on_step_end(self, self.step, logs)
            due = self._checkpoint_due()
            if self.process.world > 1:  # a stop or a time-based checkpoint on one process is one on all
                stop, due = distributed.agree(bool(self._stop_reason), due)
                if stop and not self._stop_reason:
                    self._stop_reason = "stopped by another training process"
            if due and self.step < total:
                self._checkpoint()
        return logs

    def _resume(self, resume: bool | Literal["auto"]) -> int | None:
        if resume not in (True, False, "auto"):
            raise ValueError(f"resume must be True, False or 'auto', got {resume!r}")
        if not resume:
            return None
        path = self.checkpoint_path
        if path is None or not path.is_file():
            where = path if path is not None else "(no workdir given)"
            if resume == "auto":
                log.info("no checkpoint at %s: training starts from step 0", where)
                return None
            raise ResumeError(f"cannot resume: no checkpoint at {where}; train without resume to start a new run")
        self.load_state_dict(load_checkpoint(path, self.device))
        log.info("resumed from %s at step %d", path, self.step)
        return self.step

    # -- one step ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        logs: dict[str, float] = {}
        ctx = StepContext(self.step, self.cfg, self.gen, self.device, self.loss, self.augment, self.tensors,
                          self._autocast, self.process.rank, self.process.world)
        for phase in self.phases:
            if self.step % phase.every:
                continue
            for _ in range(phase.repeat):
                loss, extra = self.model.phase_loss(phase, ctx)
                logs.update(self._to_floats(self._update(phase, loss, extra)))
        if self.process.world > 1:  # running means a step updates from its own rows (w_avg)
            distributed.average_buffers(self.networks.values(), self.process.world)
        if self.ema:
            beta = 0.0 if self.step < self.cfg.ema_start else self.cfg.ema_beta
            for name, ema in self.ema.items():
                update_ema(ema, self.networks[name], beta)
        return logs

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _update(self, phase: Phase, loss: torch.Tensor, extra: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Backward, check, then step. The check runs before ``opt.step()``: a bad update is never applied.

        Data-parallel: gradients and the logged numbers are first averaged over the processes, so all
        of them check the same numbers and take the same decision."""
        opt = self.optimisers[phase.optimiser]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        numbers = {f"{phase.log_prefix}_loss": loss.detach(), **{k: v.detach() for k, v in extra.items()}}
        params = [p for group in opt.param_groups for p in group["params"]]
        if self.process.world > 1:
            numbers = distributed.average(params, numbers, self.process.world)
        if self.cfg.guard.enabled:
            grads = [p.grad for p in params if p.grad is not None]
            numbers[f"{phase.log_prefix}_grad_norm"] = torch.nn.utils.get_total_norm(grads)
            checked = (f"{phase.log_prefix}_loss", f"{phase.log_prefix}_grad_norm")
            self._guard({k: float(numbers[k]) for k in checked})  # one host sync per update
        opt.step()
        return numbers

    def _guard(self, values: dict[str, float]) -> None:
        g = self.cfg.guard
        for key, value in values.items():
            limit = g.grad_norm_limit if key.endswith("grad_norm") else g.loss_limit
            if not math.isfinite(value):
                raise DivergenceDetected(self.step, f"{key} is {value}")
            if abs(value) > limit:
                raise DivergenceDetected(self.step, f"{key}={value:.4g} exceeds the limit {limit:g}")

    @staticmethod
    def _to_floats(numbers: dict[str, torch.Tensor]) -> dict[str, float]:
        keys = list(numbers)
        values = torch.stack([numbers[k].float().reshape(()) for k in keys]).tolist()
        return dict(zip(keys, values))

    # -- divergence recovery -----------------------------------------------------------------
    def _remember_good(self, check: bool = True) -> None:
        """Snapshot the state as the rollback target; a non-finite state never becomes one."""
        state = _to_cpu(self.state_dict())
        if check:
            bad = _non_finite(state)
            if bad:
                raise DivergenceDetected(self.step, f"non-finite values in {bad} at checkpoint time")
        self._last_good = state

    def _rollback(self, div: DivergenceDetected) -> RollbackEvent:
        g = self.cfg.guard
        if not g.enabled or self.rollbacks >= g.max_rollbacks or self._last_good is None:
            raise TrainingDiverged(div.step, div.reason, self.rollbacks) from div
        rollbacks, lr_scale = self.rollbacks + 1, self.lr_scale * g.lr_decay
        self.load_state_dict(copy.deepcopy(self._last_good))
        self.rollbacks, self.lr_scale = rollbacks, lr_scale
        self._apply_lr()
        # A different noise stream after a rollback, so the same bad batch is not replayed verbatim.
        self.gen.manual_seed(self.cfg.seed + 7919 * rollbacks + self.step)
        event = RollbackEvent(div.step, self.step, div.reason, rollbacks, lr_scale)
        for cb in self.callbacks:
            cb.on_rollback(self, event)
        return event

    def _schedule(self) -> float:
        """The learning-rate factor of the current step: 1, then linear to 0 from ``lr_decay_start``."""
        start = self.cfg.lr_decay_start * self.cfg.steps
        if self.cfg.lr_decay_start >= 1.0 or self.step <= start:
            return 1.0
        return max(0.0, 1.0 - (self.step - start) / max(1.0, self.cfg.steps - start))

    def _apply_lr(self) -> None:
        for name, opt in self.optimisers.items():
            for group in opt.param_groups:
                group["lr"] = self.groups[name].lr * self.lr_scale * self._schedule()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.name,
            "family": self.model.family,
            "model_config": self.model.config_dict(),
            "train_config": self.cfg.to_dict(),
            "data": self.data_info,
            "step": self.step,
            "networks": {name: net.state_dict() for name, net in self.networks.items()},
            "ema": {name: ema.state_dict() for name, ema in self.ema.items()},
            "optimisers": {name: opt.state_dict() for name, opt in self.optimisers.items()},
            "family_state": self.model.family_state(),
            "rng": {"trainer": self.gen.get_state(), "torch": torch.get_rng_state()},
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "stop_reason": self._stop_reason,
        }

    def load_state_dict(self, state: dict) -> None:
        self._check_resumable(state)
        for name, net in self.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, ema in self.ema.items():
            saved = state["ema"].get(name)
            ema.load_state_dict(saved if saved is not None else state["networks"][name])
        for name, opt in self.optimisers.items():
            opt.load_state_dict(state["optimisers"][name])
        self.model.load_family_state(state.get("family_state") or {})
        self.gen.set_state(state["rng"]["trainer"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.step = int(state["step"])
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self._stop_reason = str(state.get("stop_reason", ""))
        self._apply_lr()

    def _check_resumable(self, state: dict) -> None:
        fix = "use a fresh workdir, or resume with the run's own settings"
        if state["model"] != self.model.name or state["model_config"] != self.model.config_dict():
            raise ResumeError(f"checkpoint holds model {state['model']!r} with another config; it cannot resume "
                              f"this {self.model.name!r} run ({fix})")
        changed = sorted(k for k in set(state["train_config"]) | set(self.cfg.to_dict())
                         if k not in RESUMABLE_CHANGES and state["train_config"].get(k) != self.cfg.to_dict().get(k))
        if changed:
            raise ResumeError(f"checkpoint was trained with other train settings ({', '.join(changed)}); {fix}")
        saved_hash, this_hash = (state.get("data") or {}).get("hash"), self.data_info.get("hash")
        if saved_hash and this_hash and saved_hash != this_hash:
            raise ResumeError(f"checkpoint was trained on data version {saved_hash[:12]} but this run's data is "
                              f"{this_hash[:12]}; {fix}")
        missing = sorted(set(self.networks) - set(state["networks"])) + sorted(set(self.optimisers) -
                                                                              set(state["optimisers"]))
        if missing:
            raise ResumeError(f"checkpoint lacks {missing}; it was written by another model family")

    def _checkpoint_due(self) -> bool:
        """Every ``checkpoint_every`` steps, and also after ``checkpoint_seconds`` of wall time (when > 0)."""
        if self.step % self.cfg.checkpoint_every == 0:
            return True
        seconds = self.cfg.checkpoint_seconds
        return seconds > 0 and time.monotonic() - self._last_checkpoint_time >= seconds

    def checkpoint(self) -> Path | None:
        """Write the current state now (e.g. when a signal asks the run to stop between steps); the
        state between two steps is always complete, so resuming from it is exact."""
        return self._checkpoint()

    def _checkpoint(self) -> Path | None:
        self._last_checkpoint_time = time.monotonic()
        self._remember_good()
        if self.checkpoint_path is None or not self.process.main:  # every process holds the same state
            return None
        path = save_checkpoint(self._last_good, self.checkpoint_path)
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)
        return path

    # -- set-up checks ---------------------------------------------------------------------------
    def _parameters(self, names: tuple[str, ...]) -> list[nn.Parameter]:
        unknown = sorted(set(names) - set(self.networks))
        if unknown:
            raise ValueError(f"family {self.model.family!r} names networks {unknown} it does not have")
        return [p for name in names for p in self.networks[name].parameters()]

    def _check_phases(self) -> None:
        for phase in self.phases:
            if phase.optimiser not in self.optimisers:
                raise ValueError(f"phase {phase.name!r} steps optimiser {phase.optimiser!r}, which family "
                                 f"{self.model.family!r} does not define ({sorted(self.optimisers)})")


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _non_finite(state: dict) -> list[str]:
    """Names of the floating-point tensors of networks, EMA and optimiser states holding NaN or inf."""
    bad: list[str] = []

    def visit(obj, name: str) -> None:
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
                bad.append(name)
        elif isinstance(obj, dict):
            for key, value in obj.items():
                visit(value, f"{name}.{key}")

    for section in ("networks", "ema", "optimisers"):
        visit(state.get(section) or {}, section)
    return bad[:5]

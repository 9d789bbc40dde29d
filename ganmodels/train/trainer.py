"""The trainer owns what every model family shares: the loop, the device, the divergence guard and
rollback, EMA, checkpoints, exact resume and callbacks.

The family (``ganmodels.families``) owns what differs: its named networks and optimiser groups,
how training inputs are drawn, and the phases of a step. The trainer runs each phase as one
update: the family computes the loss, the trainer does backward, checks the loss and gradient
norm, and only then steps the optimiser, so a bad update is never applied.

All randomness of a step (batch indices, noise, augmentation, penalties) comes from explicit
``torch.Generator``s whose states are checkpointed, so on CPU a run is bitwise reproducible and
``N steps == N/2 steps + resume + N/2 steps``. Per-sample tensors are drawn on the training device
(``device_gen``); the few scalar decisions that steer Python control flow (style-mixing, image pools)
come from the CPU ``gen``. On CPU both are one generator.

Host syncs: on CUDA a step queues its kernels and returns; the step's numbers (losses, gradient
norms) stay on the device and are read every ``sync_every`` steps, where the guard checks them and
the callbacks receive them (``_sync``). A callback that reads or changes the model at a step says so
with ``Callback.needs_live_state``, and that step becomes a sync point. With ``train.cuda_graph`` the
whole step is captured in a CUDA graph once per step pattern and replayed (``ganmodels.train.graphs``).
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

from ganmodels import compiled
from ganmodels.augment import parse_policy
from ganmodels.data.base import PreparedDataset
from ganmodels.families.base import GANFamily, Phase, StepContext
from ganmodels.losses import get_loss
from ganmodels.train.callbacks import Callback, RollbackEvent
from ganmodels.train.checkpoint import load_checkpoint, save_checkpoint
from ganmodels.train import distributed, graphs
from ganmodels.train.config import TrainConfig
from ganmodels.train.ema import make_ema, update_ema

log = logging.getLogger(__name__)

# Train-config fields a resumed run may change: how long it runs and where/how often it saves.
# Anything else (losses, learning rates, EMA, regularisers, seed) would make the resumed run a
# different run than the one whose checkpoint it continues.
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "checkpoint_seconds", "device", "sync_every",
                               "memory_format"})

# Steps between host reads of the step's numbers on an accelerator (``TrainConfig.sync_every=0``): long
# enough that the host stays ahead of the device, short enough that a divergence wastes little work.
DEVICE_SYNC_EVERY = 50


# The guard's values of a step, in update order: (key, 0-d tensor on the device).
Checks = list[tuple[str, torch.Tensor]]


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
        self.use_amp = bool(cfg.amp)  # off unless asked for: see TrainConfig.amp
        self.loss = get_loss(cfg.loss)
        self.augment = parse_policy(cfg.diffaugment)
        model.check_data(data)
        self.phases: tuple[Phase, ...] = model.phases(cfg)

        image = data.kind == "image"
        fmt = _memory_format(cfg.memory_format, self.device) if image else torch.contiguous_format
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
        self.compiled = self._compile() if cfg.compile else False
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.device_gen = _device_generator(self.gen, self.device, cfg.seed)
        self.sync_every = cfg.sync_every or (1 if self.device.type == "cpu" else DEVICE_SYNC_EVERY)
        self.graphs = self._graphs() if cfg.cuda_graph else None
        # A captured step reads the learning rate from device memory (the schedule and a rollback change
        # it); kept there for the whole run, also if a capture fails, so its numbers do not depend on that.
        self._lr_tensors: dict[tuple[str, int], torch.Tensor] | None = {} if self.graphs is not None else None
        impl = {**_adam_impl(cfg.optimizer_impl, self.device),
                **({"capturable": True} if self.graphs is not None and self.device.type == "cuda" else {})}
        self.optimisers = {name: torch.optim.Adam(self._parameters(group.networks), lr=group.lr, betas=group.betas,
                                                  **impl)
                           for name, group in self.groups.items()}
        self._check_phases()
        # Steps run since the last sync: (step index, its logged numbers and the guard's checks, on the device).
        self._pending: list[tuple[int, dict[str, torch.Tensor], Checks]] = []
        self.step = 0
        self.lr_scale = 1.0
        self.rollbacks = 0
        self._stop_reason = ""
        self._last_good: dict | None = None
        self._last_checkpoint_time = time.monotonic()
        self._layouts: dict[tuple, dict[str, list[str]]] = {}
        if self.graphs is not None:
            self._apply_lr()  # the rates into device memory before anything is captured

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
            self._pending.append((self.step, *(self._step() if self.graphs is None else self._graphed_step())))
            self.step += 1
            due = self._checkpoint_due()
            # A checkpoint is a sync point: no unchecked update reaches it or the rollback target.
            sync = (due or self.step % self.sync_every == 0 or self.step >= total
                    or any(cb.needs_live_state(self, self.step) for cb in self.callbacks))
            if self.process.world > 1:  # every process syncs (and checkpoints) at the same steps
                sync, due = distributed.agree(sync, due)
            if not sync:
                continue
            logs = self._sync()
            if self.process.world > 1:  # a stop on one process is a stop on all
                (stop,) = distributed.agree(bool(self._stop_reason))
                if stop and not self._stop_reason:
                    self._stop_reason = "stopped by another training process"
            if due and self.step < total:
                self._checkpoint()
        return self._sync() if self._pending else logs

    def _sync(self) -> dict[str, float]:
        """Read the pending steps' numbers in one host transfer, check them with the guard, then hand
        each step's logs to the callbacks in order. Returns the last step's logs.

        All pending steps are checked before any callback runs, so a callback that checkpoints sees a
        state whose every update was checked. A bad value raises ``DivergenceDetected`` at its step,
        after the steps before it reached the callbacks; the later ones are dropped (a rollback follows)."""
        pending, self._pending = self._pending, []
        flat = [t.float().reshape(()) for _, numbers, checks in pending
                for t in [*numbers.values(), *(value for _, value in checks)]]
        values = iter(torch.stack(flat).tolist() if flat else [])
        steps = [(index, {k: next(values) for k in numbers}, [(k, next(values)) for k, _ in checks])
                 for index, numbers, checks in pending]
        bad: DivergenceDetected | None = None
        if self.sync_every > 1:  # with 1, ``_update`` checked each update before applying it
            for i, (index, _, checks) in enumerate(steps):
                try:
                    for key, value in checks:  # every update's, in order (a phase may repeat: d_steps)
                        self._guard(index, {key: value})
                except DivergenceDetected as div:
                    bad, steps = div, steps[:i]
                    break
        for index, logs, _ in steps:
            for cb in self.callbacks:
                cb.on_step_end(self, index + 1, logs)
        if bad is not None:
            raise bad
        return steps[-1][1] if steps else {}

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
        """One step (``self.step`` is not advanced), checked by the guard; its numbers as floats."""
        numbers, checks = self._step()
        for key, value in checks:
            self._guard(self.step, {key: float(value)})
        return self._to_floats(numbers)

    def _step(self, step: int | None = None) -> tuple[dict[str, torch.Tensor], Checks]:
        """Run one step; -> (its logged numbers, still on the device; the guard's deferred checks, empty
        with ``sync_every == 1``, where the guard checked each update before applying it).

        ``step`` (default ``self.step``) makes the step's Python decisions: which phases run, whether
        the penalties are due, whether EMA copies or averages. A captured step keeps those of its capture."""
        step = self.step if step is None else step
        numbers: dict[str, torch.Tensor] = {}
        checks: Checks = []
        ctx = StepContext(step, self.cfg, self.gen, self.device, self.loss, self.augment, self.tensors,
                          self._autocast, self.process.rank, self.process.world, self.device_gen)
        for phase in self.phases:
            if step % phase.every:
                continue
            for _ in range(phase.repeat):
                with self._trains_only(phase.optimiser):
                    loss, extra = self.model.phase_loss(phase, ctx)
                    numbers.update(self._update(phase, loss, extra, checks))
        if self.process.world > 1:  # running means a step updates from its own rows (w_avg)
            distributed.average_buffers(self.networks.values(), self.process.world)
        if self.ema:
            beta = 0.0 if step < self.cfg.ema_start else self.cfg.ema_beta
            for name, ema in self.ema.items():
                update_ema(ema, self.networks[name], beta)
        return numbers, checks

    @contextlib.contextmanager
    def _trains_only(self, optimiser: str):
        """In a captured step, the other optimisers' parameters take no gradient in this phase
        (stylegan2-ada's ``requires_grad_`` per phase). Otherwise a G phase that runs before D's (CycleGAN)
        adds D's weight gradients to the ``.grad`` tensors D's update in the previous step left: memory the
        previous replay made, which a graph must not hold (train.cuda_graph). Uncaptured runs still
        compute those gradients (and discard them): skipping them there too left the default digits run
        the same to the last digit and was not measurably faster on a 2-core CPU; not yet measured on a GPU."""
        if self.graphs is None:
            yield
            return
        frozen = [p for name, opt in self.optimisers.items() if name != optimiser
                  for group in opt.param_groups for p in group["params"] if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def _step_pattern(self) -> tuple:
        """The Python decisions ``_step`` makes at this step: steps with equal patterns run the same kernels."""
        return (tuple(self.step % phase.every == 0 for phase in self.phases),
                self.step % self.cfg.reg_every == 0, self.step < self.cfg.ema_start)

    def _graphed_step(self) -> tuple[dict[str, torch.Tensor], Checks]:
        """``_step`` through the step graphs: the same numbers, from one graph replay per step once captured."""
        assert self.graphs is not None
        key, step, layout = self._step_pattern(), self.step, {}

        def run() -> torch.Tensor:  # the step's numbers in one tensor, the graph's output
            numbers, checks = self._step(step)
            layout["numbers"], layout["checks"] = list(numbers), [k for k, _ in checks]
            return torch.stack([t.detach().float().reshape(()) for t in [*numbers.values(), *(v for _, v in checks)]])

        try:
            flat = self.graphs.run(key, run)
        except graphs.CaptureFailed as e:
            log.warning("train.cuda_graph: the step could not be captured (%s); training runs uncaptured", e)
            self.graphs = None
            return self._step()
        if layout:  # ``run`` ran (a warm-up or the capture); a replay's numbers are laid out as at its capture
            self._layouts[key] = dict(layout)
        names = self._layouts[key]
        n = len(names["numbers"])
        numbers = {k: flat[i] for i, k in enumerate(names["numbers"])}
        return numbers, [(k, flat[n + i]) for i, k in enumerate(names["checks"])]

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _update(self, phase: Phase, loss: torch.Tensor, extra: dict[str, torch.Tensor],
                checks: Checks) -> dict[str, torch.Tensor]:
        """Backward, check, then step. With ``sync_every == 1`` the check runs before ``opt.step()``: a bad
        update is never applied. Otherwise the values to check are added to ``checks`` for ``_sync``.

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
            keys = (f"{phase.log_prefix}_loss", f"{phase.log_prefix}_grad_norm")
            if self.sync_every == 1:
                self._guard(self.step, {k: float(numbers[k]) for k in keys})  # one host sync per update
            else:
                checks.extend((k, numbers[k]) for k in keys)
        opt.step()
        return numbers

    def _guard(self, step: int, values: dict[str, float]) -> None:
        g = self.cfg.guard
        for key, value in values.items():
            limit = g.grad_norm_limit if key.endswith("grad_norm") else g.loss_limit
            if not math.isfinite(value):
                raise DivergenceDetected(step, f"{key} is {value}")
            if abs(value) > limit:
                raise DivergenceDetected(step, f"{key}={value:.4g} exceeds the limit {limit:g}")

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
        self._pending = []  # steps after the divergence: undone by the rollback
        self.load_state_dict(copy.deepcopy(self._last_good))
        self.rollbacks, self.lr_scale = rollbacks, lr_scale
        self._apply_lr()
        # A different noise stream after a rollback, so the same bad batch is not replayed verbatim.
        for gen in dict.fromkeys((self.gen, self.device_gen)):  # one generator on CPU
            gen.manual_seed(self.cfg.seed + 7919 * rollbacks + self.step)
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
            for i, group in enumerate(opt.param_groups):
                lr = self.groups[name].lr * self.lr_scale * self._schedule()
                if self._lr_tensors is None:
                    group["lr"] = lr
                else:  # the same tensor throughout: a captured update reads it where the capture found it
                    rate = self._lr_tensors.setdefault((name, i), torch.zeros((), device=self.device))
                    group["lr"] = rate.fill_(lr)

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
            "rng": {"trainer": self.gen.get_state(), "torch": torch.get_rng_state(),
                    **({"device": self.device_gen.get_state()} if self.device_gen is not self.gen else {})},
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "stop_reason": self._stop_reason,
        }

    def load_state_dict(self, state: dict) -> None:
        self._check_resumable(state)
        if self.graphs is not None:  # the load replaces tensors the graphs hold (the optimisers' state)
            self.graphs.reset()
        for name, net in self.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, ema in self.ema.items():
            saved = state["ema"].get(name)
            ema.load_state_dict(saved if saved is not None else state["networks"][name])
        for name, opt in self.optimisers.items():
            _load_optimiser(opt, state["optimisers"][name])
        self.model.load_family_state(state.get("family_state") or {})
        self.gen.set_state(state["rng"]["trainer"].cpu())
        if self.device_gen is not self.gen:
            # A checkpoint from a CPU run carries no device state: continue from its seed's stream.
            saved = state["rng"].get("device")
            if saved is None:
                self.device_gen.manual_seed(self.cfg.seed + int(state["step"]))
            else:
                self.device_gen.set_state(saved.cpu())
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

    def _compile(self) -> bool:
        """``train.compile``: compile the family's step modules in place, or say why not and train uncompiled."""
        reason = compiled.unavailable(self.device)
        if reason:
            log.warning("train.compile: %s; training runs uncompiled", reason)
            return False
        compiled.compile_modules(self.model.step_modules(), self.device)
        return True

    def _graphs(self) -> graphs.StepGraphs | None:
        """``train.cuda_graph``: the step graphs, or None (with the reason logged) where a step cannot be captured."""
        reason = graphs.unavailable(self.device, sync_every=self.sync_every, world=self.process.world,
                                    amp=self.use_amp, compile=self.compiled,
                                    family_reason=self.model.capture_blocker(self.cfg))
        if reason:
            log.warning("train.cuda_graph: %s; training runs uncaptured", reason)
            return None
        return graphs.StepGraphs(self.device, (self.device_gen,))  # the CPU generator is not drawn from in a captured step

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


def _device_generator(gen: torch.Generator, device: torch.device, seed: int) -> torch.Generator:
    """The generator of per-sample draws. On CPU it is ``gen`` itself (one stream, as ever); elsewhere one on
    the device, so no step copies random numbers from the host (checkpointed as ``rng.device``)."""
    return gen if device.type == "cpu" else torch.Generator(device).manual_seed(seed)


def _memory_format(name: str, device: torch.device) -> torch.memory_format:
    """``TrainConfig.memory_format`` for image networks and batches."""
    if name == "auto":  # cuDNN's NHWC kernels on a GPU; on CPU the published numbers were made contiguous
        name = "channels_last" if device.type == "cuda" else "contiguous"
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def _adam_impl(name: str, device: torch.device) -> dict[str, bool]:
    """``TrainConfig.optimizer_impl`` as torch.optim.Adam keyword arguments."""
    if name == "auto":  # fused where torch has the kernel and it was measured faster (docs/performance.md)
        return {"fused": True} if device.type in ("cpu", "cuda") else {}
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[name]


def _load_optimiser(opt: torch.optim.Optimizer, saved: dict) -> None:
    """``opt.load_state_dict`` keeping this run's implementation (fused, foreach, capturable): torch would
    take the checkpoint's, and a run resumed on another device (``train.device`` may change) needs its own
    (a capturable optimiser steps only on an accelerator; where ``step`` is kept follows these flags)."""
    flags = {key: opt.defaults[key] for key in ("foreach", "fused", "capturable") if key in opt.defaults}
    opt.load_state_dict({**saved, "param_groups": [{**group, **flags} for group in saved["param_groups"]]})


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

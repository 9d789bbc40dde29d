"""The trainer owns the loop, the device, checkpoints, EMA, the divergence guard and callbacks.

The model family supplies the forward passes (``G(z, c)``, ``D(x, c)``); the trainer runs the
alternating updates. All randomness of a step (batch indices, noise, augmentation, penalties) comes
from one explicit CPU ``torch.Generator`` whose state is checkpointed, so on CPU a run is bitwise
reproducible and ``N steps == N/2 steps + resume + N/2 steps``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ganmodels.augment import diff_augment, parse_policy
from ganmodels.data.base import PreparedDataset
from ganmodels.losses import get_loss, gradient_penalty, r1_penalty
from ganmodels.train.callbacks import Callback, RollbackEvent
from ganmodels.train.checkpoint import load_checkpoint, save_checkpoint
from ganmodels.train.config import TrainConfig
from ganmodels.train.ema import make_ema, update_ema


class DivergenceDetected(Exception):
    """A step produced a non-finite or runaway loss or gradient; its update was not applied."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"step {step}: {reason}")
        self.step, self.reason = step, reason


class TrainingDiverged(RuntimeError):
    """Training kept diverging after the allowed rollbacks; the run must fail (and never register)."""

    def __init__(self, step: int, reason: str, rollbacks: int):
        super().__init__(f"training diverged at step {step} after {rollbacks} rollback(s): {reason}")
        self.step, self.reason, self.rollbacks = step, reason, rollbacks


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
    def __init__(self, gan: nn.Module, data: PreparedDataset, cfg: TrainConfig, *,
                 workdir: str | Path | None = None, callbacks: Iterable[Callback] = (),
                 data_info: dict | None = None):
        self.gan, self.data, self.cfg = gan, data, cfg
        self.workdir = Path(workdir) if workdir is not None else None
        self.callbacks = list(callbacks)
        self.data_info = data_info or {"name": data.name, "hash": data.data_hash, "config": dict(data.config)}
        self.device = resolve_device(cfg.device)
        self.use_amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        self.loss = get_loss(cfg.loss)
        self.augment = parse_policy(cfg.diffaugment)
        self._check_compatible()

        image = data.kind == "image"
        fmt = torch.channels_last if (image and self.device.type == "cuda") else torch.contiguous_format
        self.gan.to(self.device, memory_format=fmt) if image else self.gan.to(self.device)
        self.G, self.D = self.gan.G.train(), self.gan.D.train()
        self.G_ema = make_ema(self.G) if cfg.ema_beta > 0 else None
        self.x = data.x_train.to(self.device).contiguous(memory_format=fmt) if image else data.x_train.to(self.device)
        self.y = data.y_train.to(self.device) if (data.y_train is not None and self.G.c_dim) else None

        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.lr_scale = 1.0
        self.rollbacks = 0
        self._stop_reason = ""
        self._last_good: dict | None = None

    # -- public API -------------------------------------------------------------------------
    @property
    def generator(self) -> nn.Module:
        """The generator to evaluate and export: the EMA copy when enabled."""
        return self.G_ema if self.G_ema is not None else self.G

    @property
    def checkpoint_path(self) -> Path | None:
        return self.workdir / "checkpoints" / "last.pt" if self.workdir else None

    def request_stop(self, reason: str) -> None:
        """Callbacks call this to end training after the current step (e.g. persistent collapse)."""
        self._stop_reason = reason

    def fit(self, steps: int | None = None, *, resume: bool = False) -> TrainResult:
        """Train until ``steps`` total steps (default ``cfg.steps``); resume from the workdir checkpoint."""
        total = self.cfg.steps if steps is None else steps
        if resume and self.checkpoint_path and self.checkpoint_path.is_file():
            self.load_state_dict(load_checkpoint(self.checkpoint_path, self.device))
        t0 = time.perf_counter()
        events: list[RollbackEvent] = []
        self._remember_good()
        for cb in self.callbacks:
            cb.on_train_start(self)
        logs: dict[str, float] = {}
        while self.step < total and not self._stop_reason:
            try:
                logs = self.train_step()
            except DivergenceDetected as div:
                events.append(self._rollback(div))
                continue
            self.step += 1
            for cb in self.callbacks:
                cb.on_step_end(self, self.step, logs)
            if self.step % self.cfg.checkpoint_every == 0 and self.step < total:
                self._checkpoint()
        path = self._checkpoint()
        result = TrainResult(self.step, logs, self.rollbacks, bool(self._stop_reason), self._stop_reason, path,
                             time.perf_counter() - t0, events)
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    # -- one step ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        logs: dict[str, float] = {}
        for _ in range(self.cfg.d_steps):
            logs.update(self._d_step())
        logs.update(self._g_step())
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, 0.0 if self.step < self.cfg.ema_start else self.cfg.ema_beta)
        return logs

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(len(self.x), (self.cfg.batch_size,), generator=self.gen).to(self.device)
        return self.x[idx], (self.y[idx] if self.y is not None else None)

    def _latent(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = self.cfg.batch_size
        z = torch.randn(b, self.G.z_dim, generator=self.gen).to(self.device)
        c = torch.randint(self.G.c_dim, (b,), generator=self.gen).to(self.device) if self.G.c_dim else None
        return z, c

    def _D(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.D(diff_augment(x, self.augment, self.gen), c)

    def _d_step(self) -> dict[str, float]:
        real, c_real = self._batch()
        z, c_fake = self._latent()
        with self._autocast():
            with torch.no_grad():
                fake = self.G(z, c_fake)
            real_logits, fake_logits = self._D(real, c_real), self._D(fake, c_fake)
            loss = self.loss.d_loss(real_logits.float(), fake_logits.float())
            extra = self._d_regularisers(real, fake, c_real)
        total = loss + sum(extra.values(), torch.zeros((), device=self.device))
        numbers = self._update(self.opt_d, self.D, total, "d")
        numbers.update({"d_real": real_logits.detach().float().mean(), "d_fake": fake_logits.detach().float().mean()})
        numbers.update({k: v.detach() for k, v in extra.items()})
        return self._to_floats(numbers, loss)

    def _d_regularisers(self, real, fake, c_real) -> dict[str, torch.Tensor]:
        cfg, out = self.cfg, {}
        if self.step % cfg.reg_every:
            return out
        if cfg.r1_gamma > 0:
            out["r1"] = 0.5 * cfg.r1_gamma * cfg.reg_every * r1_penalty(lambda x: self._D(x, c_real), real)
        if cfg.gp_lambda > 0:
            out["gp"] = cfg.gp_lambda * cfg.reg_every * gradient_penalty(
                lambda x: self._D(x, c_real), real, fake, self.gen)
        return out

    def _g_step(self) -> dict[str, float]:
        z, c = self._latent()
        with self._autocast():
            fake = self.G(z, c)
            loss = self.loss.g_loss(self._D(fake, c).float())
        numbers = self._update(self.opt_g, self.G, loss, "g")
        return self._to_floats(numbers, loss, prefix="g")

    def _update(self, opt: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor, name: str) -> dict:
        """Backward, check, then step. The check runs before ``opt.step()``: a bad update is never applied."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        numbers: dict[str, torch.Tensor] = {f"{name}_loss": loss.detach()}
        if self.cfg.guard.enabled:
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            numbers[f"{name}_grad_norm"] = torch.nn.utils.get_total_norm(grads)
            self._guard({k: float(v) for k, v in numbers.items()})  # one host sync per update
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
    def _to_floats(numbers: dict[str, torch.Tensor], loss: torch.Tensor, prefix: str = "d") -> dict[str, float]:
        numbers.setdefault(f"{prefix}_loss", loss.detach())
        keys = list(numbers)
        values = torch.stack([numbers[k].float().reshape(()) for k in keys]).tolist()
        return dict(zip(keys, values))

    # -- divergence recovery -----------------------------------------------------------------
    def _remember_good(self) -> None:
        self._last_good = _to_cpu(self.state_dict())

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

    def _apply_lr(self) -> None:
        for opt, base in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * self.lr_scale

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.gan.name,
            "model_config": self.gan.config_dict(),
            "train_config": self.cfg.to_dict(),
            "data": self.data_info,
            "step": self.step,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_G": self.opt_g.state_dict(),
            "opt_D": self.opt_d.state_dict(),
            "rng": {"trainer": self.gen.get_state(), "torch": torch.get_rng_state()},
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["model"] != self.gan.name or state["model_config"] != self.gan.config_dict():
            raise ValueError(f"checkpoint holds model {state['model']!r} with another config; "
                             f"it cannot resume this {self.gan.name!r} run (use a fresh workdir)")
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None and state.get("G_ema") is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_G"])
        self.opt_d.load_state_dict(state["opt_D"])
        self.gen.set_state(state["rng"]["trainer"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.step = int(state["step"])
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self._apply_lr()

    def _checkpoint(self) -> Path | None:
        self._remember_good()
        if self.checkpoint_path is None:
            return None
        path = save_checkpoint(self._last_good, self.checkpoint_path)
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)
        return path

    def _check_compatible(self) -> None:
        kind = getattr(self.gan.G, "out_shape", None)
        if kind is not None and tuple(kind) != tuple(self.data.sample_shape):
            raise ValueError(f"model {self.gan.name!r} generates samples of shape {tuple(kind)} but data set "
                             f"{self.data.name!r} has {tuple(self.data.sample_shape)}; set the model's "
                             "resolution/channels to match the data")
        pack = getattr(self.gan.config, "pack", 1)
        if self.cfg.batch_size % pack:
            raise ValueError(f"train.batch_size={self.cfg.batch_size} must be divisible by model.pack={pack}")


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj

"""Typed training configuration, validated once when built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ganmodels.augment import parse_policy
from ganmodels.losses import list_losses


OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for-loop")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass(frozen=True)
class GuardConfig:
    """Divergence guard: when a step's loss is NaN/inf or above ``loss_limit``, or a gradient norm is
    non-finite or above ``grad_norm_limit``, the update is not applied; training rolls back to the last
    good checkpoint with learning rates multiplied by ``lr_decay``, at most ``max_rollbacks`` times."""

    enabled: bool = True
    loss_limit: float = 1e4
    grad_norm_limit: float = 1e5
    max_rollbacks: int = 3
    lr_decay: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    loss: str = "ns"  # ns | hinge | wgan
    lr_g: float = 2e-4
    lr_d: float = 2e-4  # TTUR (Heusel et al. 2017): set lr_d > lr_g
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1  # discriminator updates per generator update
    r1_gamma: float = 0.0  # R1 weight (Mescheder et al. 2018); 0 disables
    gp_lambda: float = 0.0  # WGAN-GP weight (Gulrajani et al. 2017); 0 disables
    reg_every: int = 1  # lazy regularisation interval (StyleGAN2 §B); penalty scaled by it
    ema_beta: float = 0.999  # EMA of G weights (Karras et al. 2018); 0 disables
    ema_start: int = 0  # copy G into EMA until this step, then average
    # Learning rates stay constant until this fraction of ``steps``, then decay linearly to 0 at the
    # last step (CycleGAN §7: 100 epochs constant, 100 decaying). 1.0: constant throughout.
    lr_decay_start: float = 1.0
    diffaugment: str = ""  # e.g. "color,translation,cutout" (Zhao et al. 2020)
    seed: int = 0
    checkpoint_every: int = 500  # steps between checkpoints (and resume points)
    # Also checkpoint when this many seconds passed since the last one (0: steps only), so a slow run
    # killed between step-based checkpoints loses at most this much work. Checkpoints never change
    # the numbers a run produces: a run resumed from any of them ends bitwise equal on CPU.
    checkpoint_seconds: float = 0.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # bf16 autocast. None = off: measured on an H200, it made the default digits run slower (70 s vs 45 s
    # for 3,000 steps: ~190 dtype casts per step in networks too small for bf16 matmuls to pay).
    amp: bool | None = None
    # Steps between host reads of the step's numbers (losses, the guard's checks): 1 checks every
    # update before it is applied; N > 1 keeps them on the device and reads them every N steps, so a
    # GPU never waits for the host inside a step. A bad value found then rolls back exactly as with 1
    # (same state, same continuation). 0 = auto: 1 on CPU (a read costs nothing there), 50 on CUDA.
    sync_every: int = 0
    # Adam's implementation: "fused" (one kernel per update), "foreach" (a few batched kernels),
    # "for-loop" (per parameter), or "auto": fused on CPU and CUDA (measured faster on both; on a 2-core
    # CPU it put the trainer, EMA and guard included, above a hand-written loop), torch's default elsewhere.
    optimizer_impl: str = "auto"
    # Layout of image networks and batches: "channels_last" (NHWC), "contiguous" (NCHW), or "auto":
    # channels_last on CUDA, contiguous elsewhere. A speed setting: a resumed run may change it.
    memory_format: str = "auto"
    # torch.compile the networks a step runs (ganmodels.compiled). Off by default: compiling costs about
    # 25 s on a 2-core CPU, more than it saves in the default 3,000-step digits run (docs/performance.md).
    compile: bool = False
    # Capture the whole step (forwards, backwards, Adam and EMA updates) in a CUDA graph and replay it:
    # one launch per step instead of hundreds (ganmodels.train.graphs). CUDA only; a setting or family
    # that cannot be captured trains uncaptured with a warning. Off until measured on a GPU.
    cuda_graph: bool = False
    guard: GuardConfig = field(default_factory=GuardConfig)

    def __post_init__(self):
        errors = []
        if self.steps < 0:
            errors.append(f"steps must be >= 0 (got {self.steps})")
        if self.batch_size < 2:
            errors.append(f"batch_size must be >= 2 (got {self.batch_size})")
        if self.loss not in list_losses():
            errors.append(f"loss must be one of {list_losses()} (got {self.loss!r})")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                errors.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if not 0 <= self.lr_decay_start <= 1:
            errors.append(f"lr_decay_start must be in [0, 1] (got {self.lr_decay_start})")
        if not 0 <= self.ema_beta < 1:
            errors.append(f"ema_beta must be in [0, 1) (got {self.ema_beta})")
        if min(self.d_steps, self.reg_every, self.checkpoint_every) < 1:
            errors.append("d_steps, reg_every and checkpoint_every must be >= 1")
        if self.sync_every < 0:
            errors.append(f"sync_every must be >= 0 (got {self.sync_every}; 0 picks it for the device)")
        if self.memory_format not in MEMORY_FORMATS:
            errors.append(f"memory_format must be one of {list(MEMORY_FORMATS)} (got {self.memory_format!r})")
        if self.optimizer_impl not in OPTIMIZER_IMPLS:
            errors.append(f"optimizer_impl must be one of {list(OPTIMIZER_IMPLS)} (got {self.optimizer_impl!r})")
        for name in ("compile", "cuda_graph"):
            if not isinstance(getattr(self, name), bool):
                errors.append(f"{name} must be true or false (got {getattr(self, name)!r})")
        if self.checkpoint_seconds < 0:
            errors.append(f"checkpoint_seconds must be >= 0 (got {self.checkpoint_seconds}; 0 switches it off)")
        if self.r1_gamma < 0 or self.gp_lambda < 0:
            errors.append("r1_gamma and gp_lambda must be >= 0")
        try:
            parse_policy(self.diffaugment)
        except ValueError as e:
            errors.append(f"diffaugment: {e}")
        if errors:
            raise ValueError("invalid train config: " + "; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        values = dict(values)
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ValueError(f"unknown train config field(s) {unknown}; valid fields: {sorted(valid)}")
        guard = values.pop("guard", None)
        if isinstance(guard, dict):
            gvalid = {f.name for f in dataclasses.fields(GuardConfig)}
            gunknown = sorted(set(guard) - gvalid)
            if gunknown:
                raise ValueError(f"unknown train.guard field(s) {gunknown}; valid fields: {sorted(gvalid)}")
            guard = GuardConfig(**guard)
        return cls(**values, **({"guard": guard} if guard is not None else {}))

"""The family interface: what differs between GAN families, behind one type that the trainer,
the metrics and the exporter share.

A family (after stylegan2-ada's ``loss.accumulate_gradients(phase=...)``) owns
* its named networks (``G`` and ``D``; a CycleGAN would have ``G_AB``, ``G_BA``, ``D_A``, ``D_B``)
  and the optimiser groups that update them;
* how training inputs are drawn from the data on the device (a real batch, latents, labels);
* the training step as named phases, each one loss and one optimiser update, with its own
  interval (lazy regularisation: ``Dreg`` every 16 steps) and repeat count (``d_steps``);
* how it is sampled (or applied) for evaluation;
* its export signature: the named, typed inputs and outputs of the ONNX graph.

The trainer (``ganmodels.train``) owns what every family shares: the loop, the device, the
divergence guard and rollback, EMA copies of the networks the family names, checkpoints of any
set of named networks and optimisers, exact resume and callbacks. A new family is a subclass
of ``GANFamily`` and a model file that registers a builder returning it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Literal

import torch
from torch import nn

from ganmodels.augment import diff_augment
from ganmodels.draws import Shard
from ganmodels.data.kinds import DataKind, describe
from ganmodels.losses import gradient_penalty, r1_penalty

if TYPE_CHECKING:
    from ganmodels.data.base import PreparedDataset
    from ganmodels.losses import AdversarialLoss
    from ganmodels.train.config import TrainConfig


class IncompatibleData(ValueError):
    """The data set does not suit the model (kind, sample shape or classes); the message says how to fix it."""


# -- training ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One optimiser update of a training step.

    name: the phase's name (``D``/``G``; StyleGAN2: ``Dmain``, ``Dreg``, ``Gmain``, ``Greg``).
    optimiser: the optimiser group it steps.
    log_prefix: its numbers are logged as ``<prefix>_loss`` and ``<prefix>_grad_norm``.
    every: run only on steps with ``step % every == 0`` (lazy regularisation).
    repeat: updates per step when it runs (e.g. ``d_steps`` discriminator updates).
    """

    name: str
    optimiser: str
    log_prefix: str
    every: int = 1
    repeat: int = 1


@dataclass(frozen=True)
class OptimiserGroup:
    """An Adam optimiser over the parameters of ``networks``."""

    networks: tuple[str, ...]
    lr: float
    betas: tuple[float, float]


@dataclass
class StepContext:
    """What a phase needs from the trainer: the step, the run's RNG, the device, the loss, the data."""

    step: int
    cfg: "TrainConfig"
    gen: torch.Generator  # the step's scalar draws come from here (checkpointed: exact resume)
    device: torch.device
    loss: "AdversarialLoss"
    augment: tuple[str, ...]  # DiffAugment policy (Zhao et al. 2020), applied to every D input
    tensors: dict[str, torch.Tensor | None]  # the family's training tensors, on the device
    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    rank: int = 0  # data-parallel training (ganmodels.train.distributed): this process holds rows rank::world
    world: int = 1
    # Per-sample draws are made on the training device from this generator (checkpointed too); ``gen``
    # (CPU) is for scalar draws that steer Python control flow. On CPU they are the same generator.
    device_gen: torch.Generator | None = None

    @property
    def draws(self) -> Shard:
        """Per-sample draws go through ``ganmodels.draws`` with this: N processes draw what one process draws."""
        return Shard(self.device_gen or self.gen, self.rank, self.world)

    @property
    def batch_size(self) -> int:
        """This process's share of the global batch ``cfg.batch_size``."""
        return self.cfg.batch_size // self.world

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch."""
        return self.draws.rows(x)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """The global batch from every process's rows (detached); ``x`` itself in one process."""
        from ganmodels.train.distributed import gather_rows

        return gather_rows(x, self.world)

    def mean_all(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of ``x`` over all processes (detached): for state every process must keep equal."""
        from ganmodels.train.distributed import mean_all

        return mean_all(x, self.world)

    def discriminate(self, D: nn.Module, x: torch.Tensor, *args: Any) -> torch.Tensor:
        """D on an augmented copy of ``x``: real and fake pass the same augmentation (DiffAugment §3)."""
        return D(diff_augment(x, self.augment, self.draws), *args)

    def d_penalties(self, D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                    fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """R1 (Mescheder et al. 2018) and the WGAN-GP penalty on ``D``'s input, when configured, every
        ``reg_every`` steps and scaled by that interval (lazy regularisation, StyleGAN2 App. B)."""
        cfg, out = self.cfg, {}
        if self.step % cfg.reg_every:
            return out
        if cfg.r1_gamma > 0:
            out["r1"] = 0.5 * cfg.r1_gamma * cfg.reg_every * r1_penalty(D, real)
        if cfg.gp_lambda > 0:
            out["gp"] = cfg.gp_lambda * cfg.reg_every * gradient_penalty(D, real, fake, self.draws)
        return out


# -- evaluation and export -----------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a generator; ``shape`` excludes the (dynamic) batch dimension.

    dtype float32 inputs are drawn N(0, 1) for checks and examples (uniformly in [-1, 1] when
    ``bounded``: images); int64 inputs uniformly in ``[0, high)``.
    """

    name: str
    dtype: Literal["float32", "int64"]
    shape: tuple[int, ...]
    high: int | None = None
    bounded: bool = False

    def draw(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """A random batch of this input, drawn on the CPU (the same numbers on any device)."""
        if self.dtype == "int64":
            return torch.randint(0, int(self.high or 1), (batch, *self.shape), generator=generator, dtype=torch.int64)
        if self.bounded:
            return torch.rand(batch, *self.shape, generator=generator) * 2 - 1
        return torch.randn(batch, *self.shape, generator=generator)


@dataclass(frozen=True)
class Signature:
    """The named inputs and outputs of a family's inference network, as ONNX and MLflow see them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def example(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        return tuple(spec.draw(batch, generator) for spec in self.inputs)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Signature":
        raw = json.loads(text)
        specs = lambda items: tuple(TensorSpec(i["name"], i["dtype"], tuple(i["shape"]), i.get("high"),  # noqa: E731
                                               i.get("bounded", False)) for i in items)
        return cls(specs(raw["inputs"]), specs(raw["outputs"]))


@dataclass
class EvalSamples:
    """What evaluation compares with the real reference: generated samples and their requested classes."""

    fake: torch.Tensor  # (N, ...) float32 on the CPU
    labels: torch.Tensor | None = None  # (N,) int64: the classes asked for (conditional models)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


# -- the family base class -------------------------------------------------------------------------


class GANFamily(nn.Module):
    """Named networks trained together, and what this family does differently from the others.

    Subclasses set ``family`` and implement the abstract methods below. ``accepts`` (the data kinds
    a model trains on) is set by the model registry from the model's registration.
    """

    family: ClassVar[str] = ""
    inference_network: ClassVar[str] = "G"  # what evaluation, sampling and export run
    ema_networks: ClassVar[tuple[str, ...]] = ("G",)  # networks with an EMA copy when train.ema_beta > 0

    def __init__(self, name: str, config: Any, **networks: nn.Module):
        super().__init__()
        self.name = name
        self.config = config
        self.accepts: tuple[DataKind, ...] = ()
        for key, network in networks.items():
            self.add_module(key, network)

    # -- networks --------------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        return dict(self.named_children())

    def step_modules(self) -> dict[str, nn.Module]:
        """The modules whose forwards a training step calls, by name: what ``train.compile`` compiles.
        A family that calls parts of a network (StyleGAN2: G's mapping and synthesis) names the parts."""
        return self.networks()

    def capture_blocker(self, cfg: "TrainConfig") -> str | None:
        """Why this family's training step cannot be captured in a CUDA graph (``train.cuda_graph``), or
        None. A captured step replays its kernels only: a step that decides on the host from a random
        draw, or keeps state in Python objects, cannot be replayed."""
        return None

    @property
    def generator(self) -> nn.Module:
        return getattr(self, self.inference_network)

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    # -- data --------------------------------------------------------------------------------------
    def check_data(self, data: "PreparedDataset") -> None:
        """Raise ``IncompatibleData`` when this model cannot train on ``data``."""
        kind = data.data_kind
        if self.accepts and not kind.satisfies(self.accepts):
            raise IncompatibleData(f"model {self.name!r} trains on {describe(self.accepts)} data but data set "
                                   f"{data.name!r} holds {kind.value}; choose a model for {kind.value}")

    def training_tensors(self, data: "PreparedDataset", device: torch.device,
                         memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, torch.Tensor | None]:
        raise NotImplementedError

    # -- training ----------------------------------------------------------------------------------
    # The defaults describe the two-player game most families play: one optimiser for G (lr_g) and
    # one for D (lr_d), ``d_steps`` D updates then one G update. A family with more networks
    # (CycleGAN's two generators share "G") or regularisation phases (StyleGAN2's Greg) overrides them.
    def optimisers(self, cfg: "TrainConfig") -> dict[str, OptimiserGroup]:
        betas = (cfg.beta1, cfg.beta2)
        return {"G": OptimiserGroup(("G",), cfg.lr_g, betas), "D": OptimiserGroup(("D",), cfg.lr_d, betas)}

    def phases(self, cfg: "TrainConfig") -> tuple[Phase, ...]:
        return (Phase("D", "D", "d", repeat=cfg.d_steps), Phase("G", "G", "g"))

    def phase_losses(self) -> dict[str, Callable[[StepContext], tuple[torch.Tensor, dict[str, torch.Tensor]]]]:
        """Each phase's loss function, by phase name."""
        raise NotImplementedError

    def phase_loss(self, phase: Phase, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise in ``phase`` and extra numbers to log (detached scalars)."""
        losses = self.phase_losses()
        if phase.name not in losses:
            raise KeyError(f"family {self.family!r} has no phase {phase.name!r}; it has {sorted(losses)}")
        return losses[phase.name](ctx)

    def family_state(self) -> dict:
        """Training state beyond networks and optimisers (an image pool, a path-length mean), checkpointed."""
        return {}

    def load_family_state(self, state: dict) -> None:
        if state:
            raise ValueError(f"family {self.family!r} keeps no extra training state, got keys {sorted(state)}")

    # -- evaluation and export -------------------------------------------------------------------
    def evaluation_samples(self, n: int, *, seed: int, batch_size: int = 256,
                           device: torch.device | str | None = None, G: nn.Module | None = None,
                           data: "PreparedDataset | None" = None) -> EvalSamples:
        """``n`` samples to score: drawn from noise, or the model applied to ``data``'s held-out inputs."""
        raise NotImplementedError

    def preview_samples(self, n: int, *, seed: int = 0, G: nn.Module | None = None,
                        data: "PreparedDataset | None" = None) -> EvalSamples:
        """About ``n`` samples to look at (a sample grid); families may round ``n`` to suit their layout."""
        return self.evaluation_samples(n, seed=seed, G=G, data=data)

    def sweeps(self) -> dict[str, tuple[float, ...]]:
        """Evaluation parameters worth a curve (``evaluation_samples`` keyword -> values); none by default."""
        return {}

    def signature(self) -> Signature:
        raise NotImplementedError

    def export_module(self, G: nn.Module | None = None) -> nn.Module:
        """A module whose ``forward`` takes the signature's inputs in order and returns its output."""
        raise NotImplementedError

    def export_targets(self) -> dict[str, tuple[nn.Module, Signature]]:
        """The graphs this model exports, by file stem: one generator for most families; CycleGAN
        exports both directions."""
        return {"generator": (self.export_module(), self.signature())}

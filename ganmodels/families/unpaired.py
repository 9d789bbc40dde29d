"""The unpaired two-domain family: CycleGAN (Zhu et al. 2017, "Unpaired Image-to-Image Translation
using Cycle-Consistent Adversarial Networks").

Four networks: ``G_AB`` (A -> B), ``G_BA`` (B -> A), ``D_A`` (real A vs B -> A), ``D_B`` (real B vs A -> B),
in two optimiser groups, "G" (both generators) and "D" (both discriminators), as in the paper's code.
One step, in the paper's order:

* G phase: an A batch and an independent B batch; the adversarial loss of both translations, the
  cycle loss ``lambda_cycle * (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|)`` (§3.2) and the identity
  loss ``lambda_identity * lambda_cycle * (|G_BA(a) - a| + |G_AB(b) - b|)`` (§5.2, keeps colour and
  stroke when the input already belongs to the target domain);
* D phase: each discriminator on real images of its domain and on fakes drawn from a pool of the
  last ``pool_size`` translations (Shrivastava et al. 2017, §2.3: half the time a stored fake,
  swapped for the new one), which damps oscillation. The pool is training state: checkpointed, so
  resume stays exact.

Evaluation translates the held-out images of each domain, and back (the cycle), and hands
``ganmodels.metrics`` what it needs to score both directions. Export: two graphs, ``generator_a2b``
(input ``a``) and ``generator_b2a`` (input ``b``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ganmodels import draws
from ganmodels.data.kinds import DataKind
from ganmodels.families.base import (EvalSamples, GANFamily, IncompatibleData, OptimiserGroup, Phase, Signature,
                                     StepContext, TensorSpec)
from ganmodels.inference import apply_in_batches, eval_mode, module_device

if TYPE_CHECKING:
    from ganmodels.data.base import PreparedDataset
    from ganmodels.train.config import TrainConfig

__all__ = ["UnpairedGAN"]

DIRECTIONS = {"a2b": ("G_AB", "a"), "b2a": ("G_BA", "b")}


class UnpairedGAN(GANFamily):
    family = "unpaired"
    inference_network = "G_AB"
    ema_networks = ("G_AB", "G_BA")

    def __init__(self, name: str, config, G_AB: nn.Module, G_BA: nn.Module, D_A: nn.Module, D_B: nn.Module):
        super().__init__(name, config, G_AB=G_AB, G_BA=G_BA, D_A=D_A, D_B=D_B)
        self.pool_size = int(getattr(config, "pool_size", 50))
        self._pools = {"A": ImagePool(self.pool_size), "B": ImagePool(self.pool_size)}
        self._fakes: dict[str, torch.Tensor] = {}  # this step's G-phase fakes, for its D phase

    def step_key(self) -> tuple:
        # While a pool fills, a step stores a different number of images (its slices are Python ints).
        return tuple(pool.filled for pool in self._pools.values())

    @property
    def lambda_cycle(self) -> float:
        return float(getattr(self.config, "lambda_cycle", 10.0))

    @property
    def lambda_identity(self) -> float:
        return float(getattr(self.config, "lambda_identity", 0.5))

    # -- data ----------------------------------------------------------------------------------------
    def check_data(self, data: "PreparedDataset") -> None:
        super().check_data(data)
        if data.data_kind is not DataKind.UNPAIRED_IMAGES:
            raise IncompatibleData(f"model {self.name!r} translates between two domains; data set {data.name!r} "
                                   f"holds {data.data_kind.value}")
        shape = tuple(self.G_AB.out_shape)
        if data.sample_shape != shape or tuple(data.b_train.shape[1:]) != shape:
            raise IncompatibleData(f"model {self.name!r} maps {shape} images but data set {data.name!r} has domain A "
                                   f"{data.sample_shape} and B {tuple(data.b_train.shape[1:])}; set the model's "
                                   "resolution/channels to match the data")

    def training_tensors(self, data, device, memory_format=torch.contiguous_format):
        return {"a": data.x_train.to(device).contiguous(memory_format=memory_format),
                "b": data.b_train.to(device).contiguous(memory_format=memory_format)}

    # -- training --------------------------------------------------------------------------------------
    def optimisers(self, cfg: "TrainConfig") -> dict[str, OptimiserGroup]:
        betas = (cfg.beta1, cfg.beta2)
        return {"G": OptimiserGroup(("G_AB", "G_BA"), cfg.lr_g, betas),
                "D": OptimiserGroup(("D_A", "D_B"), cfg.lr_d, betas)}

    def phases(self, cfg: "TrainConfig") -> tuple[Phase, ...]:
        # G first: its fakes feed the D phase of the same step (through the pools).
        return (Phase("G", "G", "g"), Phase("D", "D", "d", repeat=cfg.d_steps))

    def phase_losses(self):
        return {"G": self._g_loss, "D": self._d_loss}

    def _batches(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = ctx.tensors["a"], ctx.tensors["b"]
        n = ctx.batch_size
        ia = draws.randint(0, len(a), (n,), ctx.draws).to(ctx.device)
        ib = draws.randint(0, len(b), (n,), ctx.draws).to(ctx.device)  # independent: unpaired
        return a[ia], b[ib]

    def _g_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        real_a, real_b = self._batches(ctx)
        with ctx.autocast():
            fake_b, fake_a = self.G_AB(real_a), self.G_BA(real_b)
            adversarial = (ctx.loss.g_loss(ctx.discriminate(self.D_B, fake_b).float())
                           + ctx.loss.g_loss(ctx.discriminate(self.D_A, fake_a).float()))
            cycle = (self.G_BA(fake_b) - real_a).abs().mean() + (self.G_AB(fake_a) - real_b).abs().mean()
            logs = {"g_adv": adversarial.detach(), "g_cycle": cycle.detach()}
            total = adversarial + self.lambda_cycle * cycle.float()
            if self.lambda_identity > 0:
                identity = (self.G_BA(real_a) - real_a).abs().mean() + (self.G_AB(real_b) - real_b).abs().mean()
                total = total + self.lambda_identity * self.lambda_cycle * identity.float()
                logs["g_identity"] = identity.detach()
        self._fakes = {"A": fake_a.detach(), "B": fake_b.detach()}
        return total, logs

    def _d_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        real_a, real_b = self._batches(ctx)
        fakes = self._fakes or {"A": self.G_BA(real_b).detach(), "B": self.G_AB(real_a).detach()}
        total, logs = torch.zeros((), device=ctx.device), {}
        with ctx.autocast():
            for domain, D, real in (("A", self.D_A, real_a), ("B", self.D_B, real_b)):
                # The pool holds the global batch's fakes, so every process keeps the same pool.
                fake = ctx.rows(self._pools[domain].query(ctx.gather(fakes[domain]), ctx.draws.gen))
                real_logits, fake_logits = ctx.discriminate(D, real), ctx.discriminate(D, fake)
                # LSGAN's D objective is halved in the paper's code, so D learns slower than G (§4, training details).
                total = total + 0.5 * ctx.loss.d_loss(real_logits.float(), fake_logits.float())
                penalties = ctx.d_penalties(lambda x, D=D: ctx.discriminate(D, x), real, fake)
                total = total + sum(penalties.values(), torch.zeros((), device=ctx.device))
                logs.update({f"d_{domain.lower()}_real": real_logits.detach().float().mean(),
                             f"d_{domain.lower()}_fake": fake_logits.detach().float().mean()})
                logs.update({f"{k}_{domain.lower()}": v.detach() for k, v in penalties.items()})
        self._fakes = {}
        return total, logs

    def family_state(self) -> dict:
        return {f"pool_{d}": pool.state() for d, pool in self._pools.items()}

    def load_family_state(self, state: dict) -> None:
        for d, pool in self._pools.items():
            pool.load(state.get(f"pool_{d}", torch.zeros(0)))
        self._fakes = {}

    # -- evaluation and export -------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, inputs: torch.Tensor, direction: str = "a2b", *, batch_size: int = 256,
                  device: torch.device | str | None = None, G: nn.Module | None = None) -> torch.Tensor:
        """Images of one domain (N, C, H, W) in [-1, 1] -> the other domain, float32 on the CPU."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
        G = G if G is not None else getattr(self, DIRECTIONS[direction][0])
        device = torch.device(device) if device is not None else module_device(G)
        with eval_mode(G):
            return apply_in_batches(G, inputs, batch_size=batch_size, device=device,
                                    out_shape=lambda: tuple(self.G_AB.out_shape))

    def evaluation_samples(self, n, *, seed, batch_size=256, device=None, G=None, data=None) -> EvalSamples:
        """Both directions and both cycles on the first ``n`` held-out images of each domain."""
        if data is None:
            raise ValueError(f"family {self.family!r} is evaluated on held-out images: pass data=")
        a, b = data.x_test[:n], data.b_test[:n]
        kw = {"batch_size": batch_size, "device": device}
        a2b = self.translate(a, "a2b", G=G, **kw)
        b2a = self.translate(b, "b2a", **kw)
        extra = {"inputs_a": a, "a2b": a2b, "a2b2a": self.translate(a2b, "b2a", **kw),
                 "inputs_b": b, "b2a": b2a, "b2a2b": self.translate(b2a, "a2b", G=G, **kw)}
        for key, truth in (("truth_a2b", data.truth_a2b_test), ("truth_b2a", data.truth_b2a_test)):
            if truth is not None:
                extra[key] = truth[:n]
        for key, labels in (("labels_b", data.yb_test),):
            if labels is not None:
                extra[key] = labels[:n]
        return EvalSamples(a2b, data.y_test[:n] if data.y_test is not None else None, extra)

    def preview_samples(self, n, *, seed=0, G=None, data=None) -> EvalSamples:
        return self.evaluation_samples(min(n, 8), seed=seed, G=G, data=data)

    def export_targets(self) -> dict[str, tuple[nn.Module, Signature]]:
        shape = tuple(self.G_AB.out_shape)
        return {f"generator_{d}": (getattr(self, net), Signature((TensorSpec(x, "float32", shape, bounded=True),),
                                                                 (TensorSpec("image", "float32", shape),)))
                for d, (net, x) in DIRECTIONS.items()}

    def signature(self) -> Signature:
        return self.export_targets()["generator_a2b"][1]

    def export_module(self, G: nn.Module | None = None) -> nn.Module:
        return G if G is not None else self.G_AB


class ImagePool:
    """The history of generated images that D sees (Shrivastava et al. 2017; CycleGAN §4 keeps 50).

    Per image: while the pool fills, store it and use it; then with probability 1/2 use it as it is,
    else use a random stored image and store this one in its place. Kept on the training device and
    decided there, without a host read or a host draw, so a captured step (train.cuda_graph) replays it.
    A batch is handled at once: an image that swaps gets its slot's content from before the batch, and
    when two images of a batch pick the same slot the later one is stored (in a loop over the images
    the later one would also get the earlier one back). The draws come from the run's generator on the
    device, for the whole batch in every process, so data-parallel processes keep equal pools.
    """

    def __init__(self, size: int):
        self.size, self.filled = size, 0
        self.images: torch.Tensor | None = None  # (size + 1, C, H, W); the last row takes ignored writes

    def query(self, fakes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return fakes
        fakes = fakes.detach()
        if self.images is None:
            self.images = fakes.new_zeros((self.size + 1, *fakes.shape[1:]))
        elif self.images.device != fakes.device:  # loaded from a checkpoint, before any capture
            self.images = self.images.to(fakes.device)
        stored = min(self.size - self.filled, len(fakes))  # a Python int: part of the step key
        if stored:
            self.images[self.filled:self.filled + stored] = fakes[:stored]
            self.filled += stored
        rest = fakes[stored:]
        if not len(rest):
            return fakes
        n = len(rest)
        swap = torch.rand((n,), generator=gen, device=gen.device).to(fakes.device) >= 0.5
        slot = torch.randint(self.size, (n,), generator=gen, device=gen.device).to(fakes.device)
        used = torch.where(swap[:, None, None, None], self.images[slot].to(fakes.dtype), rest)
        # Exactly one write per slot, by the batch's last image that swaps into it: the others write to
        # the spare row, so the stored images never depend on the order of a scatter.
        later = torch.ones(n, n, dtype=torch.bool, device=fakes.device).triu(1)
        overwritten = (later & (slot[:, None] == slot[None, :]) & swap[None, :]).any(1)
        target = torch.where(swap & ~overwritten, slot, self.size)
        self.images.index_put_((target,), rest.to(self.images.dtype))
        return torch.cat([fakes[:stored], used])

    def state(self) -> torch.Tensor:
        """The stored images (filled, C, H, W) on the CPU: the checkpoint's ``pool_A`` / ``pool_B``."""
        if self.images is None or not self.filled:
            return torch.zeros(0)
        return self.images[:self.filled].detach().cpu().clone()

    def load(self, images: torch.Tensor) -> None:
        self.filled = len(images)
        if not self.filled:
            self.images = None
            return
        if self.filled > self.size:
            raise ValueError(f"the checkpoint's image pool holds {self.filled} images, more than model.pool_size="
                             f"{self.size}; resume with the pool size it was trained with")
        self.images = images.new_zeros((self.size + 1, *images.shape[1:]))
        self.images[:self.filled] = images

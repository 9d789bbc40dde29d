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
        self._pools: dict[str, list[torch.Tensor]] = {"A": [], "B": []}
        self._fakes: dict[str, torch.Tensor] = {}  # this step's G-phase fakes, for its D phase

    def capture_blocker(self, cfg) -> str | None:
        if self.pool_size:
            return (f"the image pool (model.pool_size={self.pool_size}) is kept and sampled on the host; "
                    "set model.pool_size: 0 or train.cuda_graph: false")
        return None

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
                fake = ctx.rows(self._query_pool(domain, ctx.gather(fakes[domain]), ctx.gen))
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

    def _query_pool(self, domain: str, fakes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Per image: while the pool fills, store it and use it; then with probability 1/2 use it as it is,
        else swap it for a random stored one (which is used instead). Draws come from the run's RNG."""
        if self.pool_size == 0:
            return fakes
        pool, out = self._pools[domain], []
        for image in fakes:
            image = image.unsqueeze(0).detach()
            if len(pool) < self.pool_size:
                pool.append(image.cpu())
                out.append(image)
            elif torch.rand((), generator=gen).item() < 0.5:
                out.append(image)
            else:
                k = int(torch.randint(len(pool), (), generator=gen))
                out.append(pool[k].to(image.device))
                pool[k] = image.cpu()
        return torch.cat(out)

    def family_state(self) -> dict:
        return {f"pool_{d}": torch.cat(p) if p else torch.zeros(0) for d, p in self._pools.items()}

    def load_family_state(self, state: dict) -> None:
        self._pools = {d: list(state.get(f"pool_{d}", torch.zeros(0)).split(1)) for d in ("A", "B")}
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

"""The StyleGAN2 family: the noise family with StyleGAN2's training (Karras et al. 2020) and its truncation.

What it adds to ``NoiseGAN`` (stylegan2-ada-pytorch's ``StyleGAN2Loss`` phases, in our trainer):
* style mixing regularisation (StyleGAN §3.1): with probability ``style_mixing``, a batch's latents
  switch to a second latent's w from a random layer on, so no layer relies on its neighbours' styles;
* ``Gpl``, a generator-side phase every ``pl_every`` steps: the path-length penalty (§3.2, eq. 4),
  ``(|J_w^T y| - a)^2`` for random image-space directions y, with ``a`` a running mean of the lengths
  (``pl_mean``, training state: checkpointed, so resume is exact), weighted by ``pl_weight *
  pl_every`` (lazy regularisation, App. B) on a batch ``pl_batch_shrink`` times smaller;
* ``w_avg`` tracked by the mapping network in the G phase, for truncation;
* noise inputs drawn from the run's generator in training and fixed in evaluation and export.

Sampling and export take a truncation ``psi`` (w' = w_avg + psi (w - w_avg)); the ONNX graph has the
per-sample input ``psi`` (N,) next to ``z`` (and ``c``): 1 is the untruncated model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from ganmodels import draws
from ganmodels.families.base import EvalSamples, Phase, Signature, StepContext, TensorSpec
from ganmodels.families.noise import NoiseGAN, balanced_labels, noise_signature, sample_generator

if TYPE_CHECKING:
    from ganmodels.train.config import TrainConfig

__all__ = ["StyleCall", "StyleGAN2Family"]


class StyleGAN2Family(NoiseGAN):
    family = "stylegan2"

    def __init__(self, name: str, config, G: nn.Module, D: nn.Module):
        super().__init__(name, config, G, D)
        self.pl_mean = torch.zeros(())

    def step_modules(self) -> dict[str, nn.Module]:
        # Not the synthesis network: the path-length penalty differentiates it twice, which compiled
        # graphs cannot be, and each layer draws its noise from the run's generator inside the forward,
        # which splits it into one graph per layer instance, past torch.compile's recompile limit.
        return {"G.mapping": self.G.mapping, "D": self.D}

    def _cfg(self, key: str, default):
        return getattr(self.config, key, default)

    # -- training --------------------------------------------------------------------------------------
    def phases(self, cfg: "TrainConfig") -> tuple[Phase, ...]:
        phases = super().phases(cfg)
        pl_every = int(self._cfg("pl_every", 4))
        if self._cfg("pl_weight", 2.0) > 0:
            phases += (Phase("Gpl", "G", "g_pl", every=pl_every),)
        return phases

    def phase_losses(self):
        return {**super().phase_losses(), "Gpl": self._pl_loss}

    def _ws(self, ctx: StepContext, z: torch.Tensor, c: torch.Tensor | None, update_w_avg: bool) -> torch.Tensor:
        """(B, num_ws, w_dim), with style mixing: from a random layer on, a second latent's w.

        Decided on the device, not the host: the cutoff is drawn there and set past the last layer when
        this batch does not mix, and the second latent is always mapped (stylegan2-ada does the same). A
        host decision would read a tensor each step, which a captured step (train.cuda_graph) cannot.
        """
        ws = self.G.ws(z, c, update_w_avg=update_w_avg)
        mixing = float(self._cfg("style_mixing", 0.9))
        if mixing > 0:
            num_ws = ws.shape[1]
            cutoff = draws.randint(1, num_ws, (), ctx.draws)
            cutoff = torch.where(draws.rand((), ctx.draws) < mixing, cutoff, num_ws).to(ws.device)
            ws2 = self.G.ws(draws.randn(z.shape, ctx.draws).to(z.device), c)
            layer = torch.arange(num_ws, device=ws.device)[None, :, None]
            ws = torch.where(layer < cutoff, ws, ws2)
        return ws

    def _generate(self, ctx: StepContext, z: torch.Tensor, c: torch.Tensor | None, phase: str) -> torch.Tensor:
        ws = self._ws(ctx, z, c, update_w_avg=phase == "G")
        return self.G.synthesis(ws, noise_gen=ctx.draws)  # unclamped: the loss sees the raw output

    def _pl_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = max(1, ctx.cfg.batch_size // int(self._cfg("pl_batch_shrink", 2)))
        if batch % ctx.world:
            raise ValueError(f"the path-length batch ({batch}: train.batch_size / model.pl_batch_shrink) must be "
                             f"divisible by the {ctx.world} training processes")
        batch //= ctx.world  # this process's rows
        z = draws.randn((batch, self.G.z_dim), ctx.draws).to(ctx.device)
        c = draws.randint(0, self.G.c_dim, (batch,), ctx.draws).to(ctx.device) if self.conditional else None
        with ctx.autocast():
            ws = self._ws(ctx, z, c, update_w_avg=False)
            images = self.G.synthesis(ws, noise_gen=ctx.draws)
            h, w = images.shape[-2:]
            directions = draws.randn(images.shape, ctx.draws).to(images.device) / math.sqrt(h * w)
            (grads,) = torch.autograd.grad((images * directions).sum(), ws, create_graph=True)
        lengths = grads.float().square().sum(2).mean(1).sqrt()  # (B,) |J^T y| per sample
        # The mean over all processes' rows: every process keeps the same running mean. Updated in place
        # (moved to the device once, before any capture): a captured step keeps writing the tensor it read.
        if self.pl_mean.device != lengths.device:
            self.pl_mean = self.pl_mean.to(lengths.device)
        self.pl_mean.lerp_(ctx.mean_all(lengths.mean().detach()), float(self._cfg("pl_decay", 0.01)))
        penalty = (lengths - self.pl_mean).square().mean()
        weight = float(self._cfg("pl_weight", 2.0)) * int(self._cfg("pl_every", 4))
        return penalty * weight, {"pl_length": lengths.mean().detach(), "pl_penalty": penalty.detach()}

    def family_state(self) -> dict:
        return {"pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_family_state(self, state: dict) -> None:
        self.pl_mean = state.get("pl_mean", torch.zeros(())).clone()

    # -- evaluation and export -------------------------------------------------------------------------
    def sample(self, n: int, *, seed: int = 0, labels: Sequence[int] | torch.Tensor | None = None,
               batch_size: int = 256, device: torch.device | str | None = None, G: nn.Module | None = None,
               truncation: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As ``NoiseGAN.sample``, with truncation ``psi`` (1: none; smaller trades diversity for fidelity)."""
        G = G if G is not None else self.generator
        if labels is not None and not self.conditional:
            raise ValueError(f"model {self.name!r} is unconditional: it takes no class labels")
        chosen = balanced_labels(n, G.c_dim, labels) if self.conditional else None
        return sample_generator(G, n, seed=seed, batch_size=batch_size, device=device, labels=chosen,
                                call_kwargs={"truncation": truncation} if truncation != 1.0 else None)

    def evaluation_samples(self, n, *, seed, batch_size=256, device=None, G=None, data=None,
                           truncation: float = 1.0) -> EvalSamples:
        fake, labels = self.sample(n, seed=seed, batch_size=batch_size, device=device, G=G, truncation=truncation)
        return EvalSamples(fake, labels)

    def sweeps(self) -> dict[str, tuple[float, ...]]:
        """Evaluation parameters worth a curve: quality vs diversity against the truncation psi."""
        return {"truncation": (0.5, 0.7, 0.85, 1.0)}

    def signature(self) -> Signature:
        base = noise_signature(self.generator)
        return Signature((*base.inputs, TensorSpec("psi", "float32", (), bounded=True)), base.outputs)

    def export_module(self, G: nn.Module | None = None) -> nn.Module:
        return StyleCall(G if G is not None else self.generator, conditional=self.conditional)


class StyleCall(nn.Module):
    """The exported call: ``(z, psi)`` or ``(z, c, psi)``, psi (N,) the truncation of each sample."""

    def __init__(self, G: nn.Module, conditional: bool):
        super().__init__()
        self.G, self.conditional = G, conditional
        self.training = False

    def forward(self, z: torch.Tensor, second: torch.Tensor, third: torch.Tensor | None = None) -> torch.Tensor:
        c, psi = (second, third) if self.conditional else (None, second)  # fixed arity: torch.export needs it
        return self.G(z, c, truncation=psi)

"""The paired image-to-image family: ``G(a)`` against ``D(a, b)`` on (input, target) pairs
(pix2pix: Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks").

* D phase: the conditional discriminator sees the input with the real target and with the
  generator's output, ``D(a, b)`` vs ``D(a, G(a))``, patch by patch; R1 / WGAN-GP on the real pairs
  when configured, as for the noise family.
* G phase: fool D on ``(a, G(a))`` plus ``l1_weight * |G(a) - b|`` (the paper's eq. 4, lambda = 100):
  the L1 term gets the low frequencies right, the adversarial term the sharpness L1 alone blurs.

Inputs may be smaller than targets (super-resolution by ``G.scale``); D then sees the input
upsampled to the target size. A pair's input and target are drawn with the same index, and pass
through D's augmentation together (channel-stacked), so augmentation never breaks the pairing.

Evaluation applies ``G`` to the held-out inputs (``evaluation_samples``): the outputs, the inputs and
the targets go to ``ganmodels.metrics``, which scores them against each other and against the
bicubic baseline. Export: one input ``a`` float32 (N, C, h, w) in [-1, 1], output ``image``
(N, C, H, W), dynamic N.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ganmodels import draws
from ganmodels.data.kinds import DataKind
from ganmodels.families.base import EvalSamples, GANFamily, IncompatibleData, Signature, StepContext, TensorSpec
from ganmodels.inference import apply_in_batches, eval_mode, module_device

if TYPE_CHECKING:
    from ganmodels.data.base import PreparedDataset

__all__ = ["PairedGAN", "upsample_to"]


def upsample_to(a: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of inputs (N, C, h, w) to (N, C, size, size); the identity when already that size."""
    if a.shape[-1] == size and a.shape[-2] == size:
        return a
    return F.interpolate(a, size=(size, size), mode="bilinear", align_corners=False)


class PairedGAN(GANFamily):
    family = "paired"

    def __init__(self, name: str, config, G: nn.Module, D: nn.Module):
        super().__init__(name, config, G=G, D=D)

    @property
    def l1_weight(self) -> float:
        return float(getattr(self.config, "l1_weight", 100.0))

    # -- data ----------------------------------------------------------------------------------------
    def check_data(self, data: "PreparedDataset") -> None:
        super().check_data(data)
        if data.data_kind is not DataKind.PAIRED_IMAGES:
            raise IncompatibleData(f"model {self.name!r} translates paired images; data set {data.name!r} holds "
                                   f"{data.data_kind.value}")
        expected_in, expected_out = tuple(self.G.in_shape), tuple(self.G.out_shape)
        if data.input_shape != expected_in or data.sample_shape != expected_out:
            raise IncompatibleData(f"model {self.name!r} maps {expected_in} inputs to {expected_out} outputs but data "
                                   f"set {data.name!r} pairs {data.input_shape} inputs with {data.sample_shape} "
                                   "targets; set the model's resolution/scale/channels to match the data")

    def training_tensors(self, data, device, memory_format=torch.contiguous_format):
        return {"a": data.a_train.to(device).contiguous(memory_format=memory_format),
                "b": data.x_train.to(device).contiguous(memory_format=memory_format)}

    # -- training --------------------------------------------------------------------------------------
    def phase_losses(self):
        return {"D": self._d_loss, "G": self._g_loss}

    def _pairs(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = ctx.tensors["a"], ctx.tensors["b"]
        idx = draws.randint(0, len(a), (ctx.batch_size,), ctx.draws).to(ctx.device)
        return a[idx], b[idx]  # the same rows: a pair stays a pair

    def _stack(self, a: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(input upsampled to the target size, image) stacked on channels: what D judges."""
        return torch.cat([upsample_to(a, image.shape[-1]), image], dim=1)

    def _d_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a, b = self._pairs(ctx)
        with ctx.autocast():
            with torch.no_grad():
                fake = self.G(a)
            real_pair, fake_pair = self._stack(a, b), self._stack(a, fake)
            real_logits = ctx.discriminate(self.D, real_pair)
            fake_logits = ctx.discriminate(self.D, fake_pair)
            loss = ctx.loss.d_loss(real_logits.float(), fake_logits.float())
            penalties = ctx.d_penalties(lambda x: ctx.discriminate(self.D, x), real_pair, fake_pair)
        total = loss + sum(penalties.values(), torch.zeros((), device=ctx.device))
        logs = {"d_real": real_logits.detach().float().mean(), "d_fake": fake_logits.detach().float().mean()}
        logs.update({k: v.detach() for k, v in penalties.items()})
        return total, logs

    def _g_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a, b = self._pairs(ctx)
        with ctx.autocast():
            fake = self.G(a)
            adversarial = ctx.loss.g_loss(ctx.discriminate(self.D, self._stack(a, fake)).float())
            l1 = (fake.float() - b.float()).abs().mean()
        return adversarial + self.l1_weight * l1, {"g_adv": adversarial.detach(), "g_l1": l1.detach()}

    # -- evaluation and export -------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, inputs: torch.Tensor, *, batch_size: int = 256, device: torch.device | str | None = None,
                  G: nn.Module | None = None) -> torch.Tensor:
        """``G`` in eval mode on inputs (N, C, h, w) in [-1, 1] -> outputs (N, C, H, W) float32 on the CPU."""
        G = G if G is not None else self.generator
        device = torch.device(device) if device is not None else module_device(G)
        with eval_mode(G):
            return apply_in_batches(G, inputs, batch_size=batch_size, device=device,
                                    out_shape=lambda: tuple(self.G.out_shape))

    def evaluation_samples(self, n, *, seed, batch_size=256, device=None, G=None, data=None) -> EvalSamples:
        """The held-out pairs translated (the first ``n`` of them; ``seed`` is unused: G is deterministic)."""
        if data is None:
            raise ValueError(f"family {self.family!r} is evaluated on held-out pairs: pass data=")
        inputs, targets = data.a_test[:n], data.x_test[:n]
        labels = data.y_test[:n] if data.y_test is not None else None
        outputs = self.translate(inputs, batch_size=batch_size, device=device, G=G)
        return EvalSamples(outputs, labels, {"inputs": inputs, "targets": targets})

    def preview_samples(self, n, *, seed=0, G=None, data=None) -> EvalSamples:
        return self.evaluation_samples(min(n, 8), seed=seed, G=G, data=data)

    def signature(self) -> Signature:
        return Signature((TensorSpec("a", "float32", tuple(self.G.in_shape), bounded=True),),
                         (TensorSpec("image", "float32", tuple(self.G.out_shape)),))

    def export_module(self, G: nn.Module | None = None) -> nn.Module:
        return G if G is not None else self.generator

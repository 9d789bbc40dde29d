"""The noise-to-sample family: ``G(z, c)`` against ``D(x, c)``, unconditional (``c`` is None) or
class-conditional (``G.c_dim`` classes).

DCGAN, the 2D MLP GAN and the conditional GAN are all this family: they differ in their networks
and recipes, not in how they train. One step is the classic alternation (Goodfellow et al. 2014,
Alg. 1): ``d_steps`` discriminator updates, then one generator update.

* D phase: a real batch (with its labels for a conditional model), fakes from fresh latents with
  uniformly drawn classes, the adversarial loss on both, plus R1 (Mescheder et al. 2018) or the
  WGAN-GP penalty every ``reg_every`` steps, scaled by that interval (lazy regularisation,
  StyleGAN2 App. B).
* G phase: fakes from fresh latents, the generator's adversarial loss.

Every random draw comes from the trainer's generator in a fixed order (batch indices, noise,
classes, augmentation, penalty interpolates), so a run is bitwise reproducible on CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from ganmodels import draws
from ganmodels.families.base import EvalSamples, GANFamily, IncompatibleData, Phase, Signature, StepContext, TensorSpec
from ganmodels.inference import eval_mode, module_device

if TYPE_CHECKING:
    from ganmodels.data.base import PreparedDataset
    from ganmodels.train.config import TrainConfig

__all__ = ["NoiseGAN", "NoiseCall", "balanced_labels", "generate", "noise_signature", "sample_generator", "slerp"]


class NoiseGAN(GANFamily):
    family = "noise"

    def __init__(self, name: str, config, G: nn.Module, D: nn.Module):
        super().__init__(name, config, G=G, D=D)

    @property
    def conditional(self) -> bool:
        return int(getattr(self.G, "c_dim", 0) or 0) > 0

    # -- data ----------------------------------------------------------------------------------------
    def check_data(self, data: "PreparedDataset") -> None:
        super().check_data(data)
        out_shape = getattr(self.G, "out_shape", None)
        if out_shape is not None and tuple(out_shape) != tuple(data.sample_shape):
            raise IncompatibleData(f"model {self.name!r} generates samples of shape {tuple(out_shape)} but data set "
                                   f"{data.name!r} has {tuple(data.sample_shape)}; set the model's "
                                   "resolution/channels to match the data")
        if self.conditional and data.num_classes != self.G.c_dim:
            raise IncompatibleData(f"model {self.name!r} is conditioned on {self.G.c_dim} classes but data set "
                                   f"{data.name!r} has {data.num_classes}; set model.c_dim={data.num_classes}")

    def training_tensors(self, data, device, memory_format=torch.contiguous_format):
        x = data.x_train.to(device)
        if x.dim() == 4:
            x = x.contiguous(memory_format=memory_format)
        y = data.y_train.to(device) if (self.conditional and data.y_train is not None) else None
        return {"x": x, "y": y}

    # -- training --------------------------------------------------------------------------------------
    def phases(self, cfg: "TrainConfig") -> tuple[Phase, ...]:
        pack = getattr(self.config, "pack", 1)
        if cfg.batch_size % pack:
            raise ValueError(f"train.batch_size={cfg.batch_size} must be divisible by model.pack={pack}")
        return super().phases(cfg)

    def phase_losses(self):
        return {"D": self._d_loss, "G": self._g_loss}

    def _real_batch(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = ctx.tensors["x"], ctx.tensors["y"]
        idx = draws.randint(0, len(x), (ctx.batch_size,), ctx.draws).to(ctx.device)
        return x[idx], (y[idx] if y is not None else None)

    def _latents(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = ctx.batch_size
        z = draws.randn((b, self.G.z_dim), ctx.draws).to(ctx.device)
        c = draws.randint(0, self.G.c_dim, (b,), ctx.draws).to(ctx.device) if self.conditional else None
        return z, c

    def _d_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        real, c_real = self._real_batch(ctx)
        z, c_fake = self._latents(ctx)
        with ctx.autocast():
            with torch.no_grad():
                fake = self._generate(ctx, z, c_fake, phase="D")
            real_logits = ctx.discriminate(self.D, real, c_real)
            fake_logits = ctx.discriminate(self.D, fake, c_fake)
            loss = ctx.loss.d_loss(real_logits.float(), fake_logits.float())
            penalties = ctx.d_penalties(lambda x: ctx.discriminate(self.D, x, c_real), real, fake)
        total = loss + sum(penalties.values(), torch.zeros((), device=ctx.device))
        logs = {"d_real": real_logits.detach().float().mean(), "d_fake": fake_logits.detach().float().mean()}
        logs.update({k: v.detach() for k, v in penalties.items()})
        return total, logs

    def _g_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z, c = self._latents(ctx)
        with ctx.autocast():
            fake = self._generate(ctx, z, c, phase="G")
            loss = ctx.loss.g_loss(ctx.discriminate(self.D, fake, c).float())
        return loss, {}

    def _generate(self, ctx: StepContext, z: torch.Tensor, c: torch.Tensor | None, phase: str) -> torch.Tensor:
        """The training-time generator call (StyleGAN2 adds style mixing and noise from the run's RNG)."""
        return self.G(z, c)

    # -- evaluation and export -------------------------------------------------------------------------
    def sample(self, n: int, *, seed: int = 0, labels: Sequence[int] | torch.Tensor | None = None,
               batch_size: int = 256, device: torch.device | str | None = None,
               G: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` samples; a conditional model draws the classes in turn (balanced) unless ``labels``
        gives them (one class index per sample, or a list of classes to cycle through)."""
        G = G if G is not None else self.generator
        if not self.conditional:
            if labels is not None:
                raise ValueError(f"model {self.name!r} is unconditional: it takes no class labels")
            return sample_generator(G, n, seed=seed, batch_size=batch_size, device=device)
        return sample_generator(G, n, seed=seed, batch_size=batch_size, device=device,
                                labels=balanced_labels(n, G.c_dim, labels))

    def evaluation_samples(self, n, *, seed, batch_size=256, device=None, G=None, data=None) -> EvalSamples:
        fake, labels = self.sample(n, seed=seed, batch_size=batch_size, device=device, G=G)
        return EvalSamples(fake, labels)

    def preview_samples(self, n: int, *, seed: int = 0, G: nn.Module | None = None, data=None) -> EvalSamples:
        """Conditional models: 8 samples per class, so the grid has one full row per class."""
        if self.conditional:
            n = 8 * self.G.c_dim
        return self.evaluation_samples(n, seed=seed, G=G)

    def interpolate(self, rows: int = 8, steps: int = 10, *, seed: int = 0, batch_size: int = 256,
                    device: torch.device | str | None = None,
                    G: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A walk through latent space per row: G at ``steps`` evenly spaced points of the great circle
        from one latent to another -> samples (rows, steps, ...) float32 on the CPU and, for a
        conditional model, the class held along each row (rows,), the classes in turn.

        The endpoints z0, z1 (rows, z_dim) are drawn N(0, I) from a CPU generator seeded with ``seed``,
        z0 first; ``slerp`` joins them. A smooth walk shows a generator that learnt a continuous
        latent space; abrupt jumps or one image along a whole row show memorised or collapsed modes
        (Radford et al. 2016, "Unsupervised Representation Learning with DCGANs", §6.1).
        """
        if rows < 1 or steps < 2:
            raise ValueError(f"interpolate needs rows >= 1 and steps >= 2, got rows={rows}, steps={steps}")
        G = G if G is not None else self.generator
        gen = torch.Generator().manual_seed(seed)
        z0 = torch.randn(rows, G.z_dim, generator=gen)
        z1 = torch.randn(rows, G.z_dim, generator=gen)
        z = slerp(z0, z1, torch.linspace(0, 1, steps)).reshape(rows * steps, G.z_dim)
        labels = balanced_labels(rows, G.c_dim) if self.conditional else None
        c = labels.repeat_interleave(steps) if labels is not None else None  # (rows * steps,)
        out = generate(G, z, c, batch_size=batch_size, device=device)
        return out.reshape(rows, steps, *out.shape[1:]), labels

    def signature(self) -> Signature:
        return noise_signature(self.generator)

    def export_module(self, G: nn.Module | None = None) -> nn.Module:
        G = G if G is not None else self.generator
        return NoiseCall(G, conditional=self.conditional)


# -- helpers shared with bare generators (export of any G(z, c), metrics, the monitor) -------------------


def noise_signature(G: nn.Module) -> Signature:
    """``z`` float32 (N, z_dim) [+ ``c`` int64 (N,)] -> ``image`` (N, C, H, W) or ``points`` (N, 2)."""
    try:
        z_dim, c_dim = int(G.z_dim), int(G.c_dim)
    except AttributeError as err:
        raise TypeError(f"{type(G).__name__} does not follow the generator interface (needs z_dim and c_dim): "
                        f"{err}") from None
    inputs = [TensorSpec("z", "float32", (z_dim,))]
    if c_dim > 0:
        inputs.append(TensorSpec("c", "int64", (), high=c_dim))
    out_shape = getattr(G, "out_shape", None)
    if out_shape is None:  # a bare module: run it once to learn its output shape
        with torch.no_grad():
            example = tuple(s.draw(2, torch.Generator().manual_seed(0)).to(module_device(G)) for s in inputs)
            out_shape = tuple(NoiseCall(G, c_dim > 0).eval_call(*example).shape[1:])
    name = "points" if len(out_shape) == 1 else "image"
    return Signature(tuple(inputs), (TensorSpec(name, "float32", tuple(int(d) for d in out_shape)),))


class NoiseCall(nn.Module):
    """Fixes the exported call to ``(z)`` or ``(z, c)`` whatever extra arguments ``G.forward`` takes."""

    def __init__(self, G: nn.Module, conditional: bool):
        super().__init__()
        self.G = G
        self.conditional = conditional
        self.training = False  # only the wrapper's own flag: .eval() would also switch G, for good

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.G(z, c if self.conditional else None)

    def eval_call(self, *inputs: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.G):
            return self(*inputs)


def balanced_labels(n: int, c_dim: int, classes: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """(n,) int64 class indices: 0, 1, ..., c_dim-1, 0, ... in turn, or cycling through ``classes``;
    ``n`` indices given explicitly are used as they are."""
    chosen = torch.arange(c_dim) if classes is None else torch.as_tensor(classes, dtype=torch.int64).reshape(-1)
    if len(chosen) == 0:
        raise ValueError("at least one class is needed")
    if chosen.min() < 0 or chosen.max() >= c_dim:
        raise ValueError(f"class indices must lie in [0, {c_dim}), got {sorted(set(chosen.tolist()))}")
    if classes is not None and len(chosen) == n:
        return chosen.clone()
    return chosen[torch.arange(n) % len(chosen)]


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985) of latents (N, D) and (N, D) at fractions t (T,) -> (N, T, D).

    Why not a straight line: Gaussian latents in D dimensions lie near the sphere of radius sqrt(D), and
    the midpoint of two of them has norm about sqrt(D / 2), where the generator was never trained
    (White 2016, "Sampling Generative Networks", §2.3). Nearly parallel endpoints fall back to the line.
    """
    cos = (torch.nn.functional.normalize(z0, dim=1) * torch.nn.functional.normalize(z1, dim=1)).sum(1)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))[:, None]  # (N, 1): the angle between the endpoints
    sin_omega = torch.sin(omega)
    t = t.to(z0.dtype)[None, :]  # (1, T)
    parallel = sin_omega < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin_omega), sin_omega)
    w0 = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe)  # (N, T)
    w1 = torch.where(parallel, t, torch.sin(t * omega) / safe)
    return w0[..., None] * z0[:, None, :] + w1[..., None] * z1[:, None, :]


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, *, batch_size: int = 256,
             device: str | torch.device | None = None, call_kwargs: dict | None = None) -> torch.Tensor:
    """``G(z, c)`` in eval mode, in batches -> samples (N, ...) float32 on the CPU; G's mode is restored.
    ``call_kwargs`` go to every call (StyleGAN2's ``truncation``)."""
    device = torch.device(device) if device is not None else module_device(G)
    with eval_mode(G):
        out = []
        for i in range(0, len(z), batch_size):
            c = labels[i : i + batch_size].to(device) if labels is not None else None
            out.append(G(z[i : i + batch_size].to(device), c, **(call_kwargs or {})).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def sample_generator(
    G: nn.Module, n: int, *, seed: int = 0, batch_size: int = 256, device: str | torch.device | None = None,
    labels: torch.Tensor | None = None, call_kwargs: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw n samples from ``G(z, c)`` in eval mode -> (samples (n, ...) float32 on CPU, labels (n,) or None).

    z ~ N(0, I) from a CPU ``torch.Generator`` seeded with ``seed`` (the same draws on any device).
    For conditional G (``G.c_dim > 0``) the classes are ``labels`` when given, else drawn uniformly
    from the same generator after z. G's train/eval mode is restored afterwards. ``call_kwargs`` go to
    every ``G`` call (StyleGAN2's ``truncation``).
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)  # (n, z_dim)
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    if c_dim > 0 and labels is None:
        labels = torch.randint(0, c_dim, (n,), generator=gen)
    elif c_dim == 0:
        labels = None
    return generate(G, z, labels, batch_size=batch_size, device=device, call_kwargs=call_kwargs), labels

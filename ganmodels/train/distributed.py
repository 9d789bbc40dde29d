"""Data-parallel training over ``torch.distributed``, one process per device, launched by ``torchrun``.

    torchrun --standalone --nproc-per-node 2 my_train.py     # my_train.py: init_from_env(), then Trainer(...).fit()

What the trainer does when a process group is up (``Trainer`` reads it from ``torch.distributed``):

* The global batch stays ``train.batch_size``: each of N processes draws the same global batch from
  the run's generator and keeps every N-th row (``ganmodels.draws``), so N processes see exactly the
  samples, latents and augmentations one process sees.
* After each backward, the gradients of the optimiser's parameters and the numbers the step logs
  are averaged across processes in one ``all_reduce`` of a flat buffer: what DDP's reducer computes,
  and the mean of per-process mean losses is the global mean loss. Every process then takes the
  same guard decision (a rollback on one is a rollback on all) and the same optimiser step.
  Why not the ``DistributedDataParallel`` wrapper: a GAN step runs a network several times before
  one backward (D on real, on fake, on the R1 input), differentiates twice (R1, path length) with
  ``autograd.grad(create_graph=True)``, which DDP's reducer does not support, and runs G in D's phase
  without gradients. NVlabs' stylegan3 training loop averages gradients this way for the same reasons.
* Batch norm computes its statistics over the global batch: ``nn.SyncBatchNorm`` on CUDA; on CPU,
  where torch's refuses CPU tensors, ``GlobalBatchNorm2d`` below (the same statistics through a
  differentiable ``all_reduce``).
* Floating-point buffers that a step updates from its own rows (StyleGAN2's ``w_avg``) are averaged
  after every step; these updates are running means, so the average is the single-process value.
  Family state of the same kind (the path-length mean) goes through ``StepContext.mean_all``, and
  CycleGAN's image pools hold the gathered global batch (``StepContext.gather``): every process keeps
  identical state, so rank 0's checkpoint is the whole run's and resumes on any number of processes.
* Decisions that could differ between processes are agreed (a max over processes): whether a step is
  a sync point or a time-based checkpoint, every step; a callback's stop request or a signal, at each
  sync point. Only rank 0 writes checkpoints; run callbacks (logging, sample grids, the collapse
  monitor) on rank 0 only.

With CPU draws and gloo, N processes reproduce one process's weights to float rounding (the order
of the sums differs), which ``tests/test_distributed.py`` checks for every model family.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["GlobalBatchNorm2d", "Process", "agree", "average", "average_buffers", "broadcast", "current",
           "gather_rows", "init_from_env", "mean_all", "sync_batchnorm"]


@dataclass(frozen=True)
class Process:
    """This process's place in the group: rank 0 of 1 without ``torch.distributed``."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def current() -> Process:
    if dist.is_available() and dist.is_initialized():
        return Process(dist.get_rank(), dist.get_world_size())
    return Process()


def init_from_env(device: str = "auto", timeout_s: float = 300.0) -> Process:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT``):
    NCCL for CUDA devices, gloo otherwise. Without those variables (or with one process) it does nothing.

    ``timeout_s`` bounds how long a collective waits for a process that died (gloo); torchrun also
    stops the others as soon as one exits with an error.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return current()
    if dist.is_initialized():
        return current()
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return current()


# -- collectives the trainer uses --------------------------------------------------------------------


def average(params: list[nn.Parameter], numbers: dict[str, torch.Tensor], world: int) -> dict[str, torch.Tensor]:
    """Average the parameters' gradients and the scalar ``numbers`` over all processes, in one all_reduce.

    Returns the averaged numbers; the gradients are replaced in place.
    """
    grads = [p.grad for p in params if p.grad is not None]
    keys = list(numbers)
    scalars = [numbers[k].detach().float().reshape(1) for k in keys]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + scalars)
    dist.all_reduce(flat)
    flat /= world
    parts = flat.split([g.numel() for g in grads] + [1] * len(keys))
    for g, part in zip(grads, parts):
        g.copy_(part.view_as(g))
    return {k: part.reshape(()) for k, part in zip(keys, parts[len(grads):])}


def average_buffers(networks, world: int) -> None:
    """Average every floating-point buffer of ``networks`` over all processes (one all_reduce)."""
    buffers = [b for net in networks for b in net.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)
    flat /= world
    for b, part in zip(buffers, flat.split([b.numel() for b in buffers])):
        b.copy_(part.view_as(b))


def broadcast(networks) -> None:
    """Rank 0's parameters and buffers on every process (as DDP does at construction)."""
    with torch.no_grad():
        for net in networks:
            for t in [*net.parameters(), *net.buffers()]:
                dist.broadcast(t.data, src=0)


def _collective_device() -> torch.device:
    """Where a tensor made for a collective must live: NCCL reduces only CUDA tensors, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree(*flags: bool) -> tuple[bool, ...]:
    """Each flag true on every process when it is true on any (a max over processes)."""
    t = torch.tensor([int(f) for f in flags], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def mean_all(x: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of ``x`` over all processes (no gradient)."""
    if world == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / world


def gather_rows(x: torch.Tensor, world: int) -> torch.Tensor:
    """The global batch from every process's interleaved rows (the inverse of ``Shard.rows``), no gradient."""
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.stack(parts, dim=1).reshape(x.shape[0] * world, *x.shape[1:])


# -- batch norm over the global batch --------------------------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes, differentiable: the gradient of a sum every process uses is the sum of their
    gradients. (torch.distributed.nn.functional.all_reduce does the same but is deprecated.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics cover the global batch of all processes.

    The per-channel sums are combined by an all_reduce whose backward all-reduces the gradient
    (``_AllReduceSum``), so every process gets the gradient of the global batch's normalisation.
    Evaluation (running statistics) and its state dict are plain batch norm's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        count = x.numel() // channels * dist.get_world_size()
        xf = x.float()
        sums = _AllReduceSum.apply(torch.cat([xf.sum(dim=(0, 2, 3)), xf.square().sum(dim=(0, 2, 3))]))
        mean = sums[:channels] / count
        var = (sums[channels:] / count - mean.square()).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * count / max(count - 1, 1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by one with global-batch statistics, keeping its
    parameters and buffers (the same objects, so optimisers and state-dict keys are unchanged)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats, device=device)
            new._parameters, new._buffers = child._parameters, child._buffers
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child, device)
    return module

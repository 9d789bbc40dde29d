"""Running a network for evaluation: in eval mode (its own mode restored after), in batches, on its device.

Every evaluation path (sampling, translation, the monitor's and the metrics' classifiers) goes through these,
so that none can leave a network in eval mode in the middle of training, where EMA or batch statistics
would then silently change.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (the CPU for a module without parameters)."""
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module.eval()`` inside the block; every submodule's own mode is restored on the way out, even after
    an error (``module.train(was)`` would overwrite submodules that were deliberately in another mode)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def apply_in_batches(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, *, batch_size: int,
                     device: torch.device, out_shape: Callable[[], tuple[int, ...]] = tuple) -> torch.Tensor:
    """``fn`` on ``inputs`` in batches moved to ``device`` -> float32 outputs on the CPU, concatenated.
    For no inputs: an empty (0, *out_shape()) tensor; ``out_shape`` is only called then, so that a
    network without a declared output shape still runs."""
    out = [fn(inputs[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, *out_shape())

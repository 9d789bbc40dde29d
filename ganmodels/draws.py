"""Per-sample random draws that do not depend on how a batch is split across processes.

Every per-sample random number of a training step comes from the run's ``torch.Generator`` on the
training device (checkpointed, so resume is exact); draws are made on that device. Under
data-parallel training (``ganmodels.train.distributed``) each of N processes holds every N-th row
of the global batch. If each drew its own rows' numbers, N processes
would draw other numbers than one process does, and a 2-process run could never reproduce a
single-process one. So a per-sample draw is made for the whole global batch, from the same generator
state on every process, and each keeps its rows: N processes together use exactly the numbers one
process uses, and their generators stay in step.

Rows are interleaved (rank r holds rows r, r+N, r+2N, ...), not contiguous: minibatch-std groups
(``MinibatchStd``: rows i, i+B/G, i+2B/G, ...) then stay the same groups on every process.

``source`` is a ``Shard`` (a generator and this process's place), a plain ``torch.Generator`` (one
process) or None (torch's global generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch


@dataclass(frozen=True)
class Shard:
    """The run's generator and this process's rows of a global batch: rank r of ``world`` holds rows r::world."""

    gen: torch.Generator
    rank: int = 0
    world: int = 1

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch ``x``."""
        return x if self.world == 1 else x[self.rank::self.world].contiguous()


Source = Union[Shard, torch.Generator, None]


def _draw(fn: Callable[..., torch.Tensor], shape: Sequence[int], source: Source) -> torch.Tensor:
    shape = tuple(shape)
    gen = source.gen if isinstance(source, Shard) else source
    device = gen.device if gen is not None else None  # drawn where the generator lives: no host copy
    if not isinstance(source, Shard) or source.world == 1 or not shape:  # a scalar is shared by every process
        return fn(shape, generator=gen, device=device)
    return source.rows(fn((shape[0] * source.world, *shape[1:]), generator=gen, device=device))


def rand(shape: Sequence[int], source: Source) -> torch.Tensor:
    """Uniform [0, 1) of ``shape`` (this process's rows), on the generator's device."""
    return _draw(torch.rand, shape, source)


def randn(shape: Sequence[int], source: Source) -> torch.Tensor:
    """Standard normal of ``shape`` (this process's rows), on the generator's device."""
    return _draw(torch.randn, shape, source)


def randint(low: int, high: int, shape: Sequence[int], source: Source) -> torch.Tensor:
    """Integers in [low, high) of ``shape`` (this process's rows), int64 on the generator's device."""
    return _draw(lambda s, **kw: torch.randint(low, high, s, **kw), shape, source)

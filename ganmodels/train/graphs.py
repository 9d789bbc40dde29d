"""``train.cuda_graph``: the whole training step captured in a CUDA graph and replayed.

A small GAN on a GPU is launch-bound: a step is hundreds of kernels of a few microseconds each, and
the host's ~10 us per launch, not the GPU, sets the pace. A CUDA graph records the step's kernels once
(every phase's forward, backward and optimiser update, and the EMA update) and replays them with one
launch. That needs a step with no host work in it, which the trainer provides with ``sync_every > 1``:
the losses and the guard's values stay on the device until the next sync; random draws come from a
generator on the device (graph-safe: each replay advances its offset); Adam runs with
``capturable=True`` and its learning rate in device memory, so the schedule and a rollback's smaller
rate reach the replayed update.

A graph replays the Python decisions made when it was captured: which phases run (lazy
regularisation's ``every``), whether the penalties are due (``reg_every``) and whether EMA copies or
averages (``ema_start``). So there is one graph per *step pattern* (the tuple of those decisions),
each captured after ``WARMUP`` eager steps of that pattern (lazy initialisation: optimiser state,
cuBLAS/cuDNN workspaces, must not happen inside a capture). Loading a state (resume, rollback) drops
every graph: the optimisers' state tensors are replaced by the load, and a graph holds their addresses.

A family whose step cannot be captured (CycleGAN's image pool is kept and sampled on the host) says so
through ``GANFamily.capture_blocker``; those runs, and every setting a graph cannot hold (``sync_every == 1``,
data-parallel, bf16 autocast, ``train.compile``, a CPU device), train uncaptured with a warning that
names the reason and the fix.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Callable, Hashable

import torch

# Eager runs of a step pattern before it is captured. PyTorch's CUDA-graph notes ask for a few warm-up
# iterations (on a side stream) so that lazy initialisation is not captured; 2 covers Adam's state.
WARMUP = 2


def unavailable(device: torch.device, *, sync_every: int, world: int, amp: bool, compile: bool,
                family_reason: str | None) -> str | None:
    """Why the step cannot be captured with these settings, or None when it can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (train.device resolves to {device.type!r})"
    if family_reason:
        return family_reason
    if sync_every == 1:
        return "train.sync_every=1 reads every update on the host inside the step; set it to 0 (auto) or > 1"
    if world > 1:
        return "data-parallel steps exchange gradients between processes; capture is single-process only"
    if amp:
        return "bf16 autocast (train.amp) is not captured (CUDA graphs need its cast cache off); set train.amp: false"
    if compile:
        return "train.compile and train.cuda_graph do not combine; choose one (cuda_graph captures more)"
    return None


class CaptureFailed(RuntimeError):
    """torch could not capture the step (an op that needs the host, or one CUDA graphs do not support)."""


class CUDAStepGraph:
    """One captured step: ``capture(fn)`` records ``fn`` without running it, ``replay()`` runs it and
    returns its output tensor (overwritten by the next replay)."""

    def __init__(self, device: torch.device, generators: tuple[torch.Generator, ...]):
        self.device, self.generators = device, generators
        self.graph = torch.cuda.CUDAGraph()
        self.output: torch.Tensor | None = None

    def capture(self, fn: Callable[[], torch.Tensor]) -> None:
        with warnings.catch_warnings():
            # torch < 2.14 needs a user generator registered before capture; later versions register
            # it on first use and warn that the call is deprecated.
            warnings.simplefilter("ignore")
            for gen in self.generators if hasattr(self.graph, "register_generator_state") else ():
                self.graph.register_generator_state(gen)
        # thread_local: CUDA calls of other threads (a metrics logger) must not invalidate this capture.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = fn()

    def replay(self) -> torch.Tensor:
        self.graph.replay()
        assert self.output is not None
        return self.output


def warm_up(fn: Callable[[], torch.Tensor], device: torch.device,
            side: "torch.cuda.Stream | None" = None) -> torch.Tensor:
    """Run ``fn`` eagerly on a side stream, as PyTorch's notes ask of the iterations before a capture."""
    if device.type != "cuda":
        return fn()
    main = torch.cuda.current_stream(device)
    side = side or torch.cuda.Stream(device)
    side.wait_stream(main)  # also orders this warm-up after the main stream's use of the last one's output
    with torch.cuda.stream(side):
        out = fn()
    main.wait_stream(side)
    return out.clone()  # made on the main stream, after the side stream's work


class StepGraphs:
    """The run's captured steps, one per step pattern.

    ``run(key, fn)`` returns the numbers ``fn`` computes for this step as a tensor the caller owns:
    from an eager run of ``fn`` while the pattern ``key`` warms up, then from replays of its graph.
    ``fn`` must hold every Python decision of the step fixed (they are frozen at capture).
    """

    def __init__(self, device: torch.device, generators: tuple[torch.Generator, ...],
                 warmup: int | None = None):
        self.device, self.warmup = device, WARMUP if warmup is None else warmup
        self.graph_factory = lambda: CUDAStepGraph(device, generators)
        self.graphs: dict[Hashable, object] = {}
        self.seen: Counter = Counter()
        self.captures = 0  # graphs captured over the run (for tests and logs): rises again after a reset
        self.side_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def run(self, key: Hashable, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        graph = self.graphs.get(key)
        if graph is None:
            if self.seen[key] < self.warmup:
                self.seen[key] += 1
                return warm_up(fn, self.device, self.side_stream)
            graph = self.graph_factory()
            try:
                graph.capture(fn)
            except Exception as e:  # nothing ran: a capture records kernels without executing them
                raise CaptureFailed(f"{type(e).__name__}: {e}") from e
            self.graphs[key] = graph
            self.captures += 1
        # The graph's output is overwritten by its next replay; the caller keeps steps until a sync.
        return graph.replay().clone()

    def reset(self) -> None:
        """Drop every graph (after a state load replaced the tensors they hold); patterns warm up again."""
        self.graphs.clear()
        self.seen.clear()

"""Steps per second of ``Trainer`` against a plain hand-written PyTorch loop on the same DCGAN.

Both sides train the same ``ganmodels.build("dcgan", ...)`` G/D (the stabilised recipe's model at
``resolution``), with the same loss, batch, Adam settings and device, on the digits data. What
differs is only what the trainer adds around the two updates:

* ``trainer``: as the product runs it -- EMA generator and divergence guard ON;
* ``trainer-bare``: EMA and guard OFF (the loop machinery alone);
* ``hand-written``: one D step (real + detached fake) and one G step, nothing else;
* ``hand-graphed`` (CUDA only): the same step drawing on the GPU, with capturable fused Adam, captured
  whole in one CUDA graph and replayed: the upper reference for what a step of these networks can cost.

DiffAugment and R1 are switched off on both sides: they are per-recipe costs the hand-written
loop would pay identically, not trainer overhead. Each variant is warmed up, then the variants
are timed in alternation ``repeats`` times (so drifting background load hits all of them alike);
medians are reported, and the ratio trainer / hand-written (>= ~0.95 means no measurable overhead).

    .venv/bin/python -m benchmarks.train_throughput [--steps 100] [--batch 64] [--resolution 16]
        [--device cpu] [--repeats 5] [--threads 1] [--sync-every 0] [--optimizer-impl auto] [--compile]
        [--cuda-graph] [--memory-format auto]

With ``--compile`` both trainer variants run with ``train.compile`` (the hand-written loop stays eager,
as a user writes it); the one-off compile time is taken in the warm-up and printed apart. With
``--cuda-graph`` they run with ``train.cuda_graph`` (the warm-up covers the captures);
``--memory-format`` sets the trainer's ``train.memory_format`` (the hand-written loops stay contiguous).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ganmodels  # noqa: E402
from ganmodels.data import DataConfig, PreparedDataset, load_dataset  # noqa: E402
from ganmodels.train import GuardConfig, Trainer, TrainConfig, resolve_device, seed_everything  # noqa: E402

VARIANTS = ("trainer", "trainer-bare", "hand-written")
GRAPHED = "hand-graphed"  # CUDA only


def _train_config(steps: int, batch: int, device: str, *, ema_and_guard: bool, sync_every: int = 0,
                  optimizer_impl: str = "auto", compile: bool = False, cuda_graph: bool = False,
                  memory_format: str = "auto") -> TrainConfig:
    recipe = ganmodels.get_recipe("dcgan", "stabilised")["train"]
    values = {**recipe, "diffaugment": "", "r1_gamma": 0.0, "gp_lambda": 0.0, "sync_every": sync_every,
              "optimizer_impl": optimizer_impl, "compile": compile, "cuda_graph": cuda_graph,
              "memory_format": memory_format}
    if not ema_and_guard:
        values.update(ema_beta=0.0, guard=GuardConfig(enabled=False))
    # checkpoint_every > any step count timed here: the periodic in-memory snapshot is not per-step work.
    return TrainConfig(**values, steps=steps, batch_size=batch, device=device, seed=0, checkpoint_every=10**9)


def _build_gan(resolution: int):
    seed_everything(0)
    return ganmodels.build("dcgan", {**ganmodels.get_recipe("dcgan", "stabilised")["model"], "resolution": resolution})


def trainer_runner(data: PreparedDataset, cfg: TrainConfig, resolution: int) -> Callable[[int], None]:
    """-> ``advance(n)``: run n more steps through ``Trainer.fit``, as a user would."""
    trainer = Trainer(_build_gan(resolution), data, cfg)

    def advance(n: int) -> None:
        trainer.fit(trainer.step + n)

    return advance


def _d_loss(name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if name == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if name == "ns":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    raise ValueError(f"the hand-written loop implements the 'hinge' and 'ns' losses, not {name!r}")


def _g_loss(name: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if name == "hinge" else F.softplus(-fake).mean()


def _hand_step(data: PreparedDataset, cfg: TrainConfig, resolution: int, gen: torch.Generator,
               **adam) -> Callable[[], None]:
    """The textbook alternating step on the same G/D, loss and optimisers; draws come from ``gen``."""
    device = resolve_device(cfg.device)
    gan = _build_gan(resolution).to(device)
    G, D = gan.G.train(), gan.D.train()
    x = data.x_train.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), **adam)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), **adam)
    b = cfg.batch_size

    def step() -> None:
        real = x[torch.randint(len(x), (b,), generator=gen, device=gen.device).to(device)]
        z = torch.randn(b, G.z_dim, generator=gen, device=gen.device).to(device)
        with torch.no_grad():
            fake = G(z)
        d_loss = _d_loss(cfg.loss, D(real), D(fake))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        z = torch.randn(b, G.z_dim, generator=gen, device=gen.device).to(device)
        g_loss = _g_loss(cfg.loss, D(G(z)))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

    return step


def hand_written_runner(data: PreparedDataset, cfg: TrainConfig, resolution: int) -> Callable[[int], None]:
    """-> ``advance(n)``: the textbook loop, as most GAN code is written (draws on the CPU, torch's Adam)."""
    step = _hand_step(data, cfg, resolution, torch.Generator().manual_seed(cfg.seed))

    def advance(n: int) -> None:
        for _ in range(n):
            step()

    return advance


def hand_graphed_runner(data: PreparedDataset, cfg: TrainConfig, resolution: int) -> Callable[[int], None]:
    """-> ``advance(n)``: the same step drawing on the GPU with capturable fused Adam, warmed up on a side
    stream, captured once in a CUDA graph and replayed (PyTorch's whole-network capture recipe)."""
    device = resolve_device(cfg.device)
    if device.type != "cuda":
        raise ValueError("the CUDA-graph reference needs a CUDA device")
    gen = torch.Generator(device).manual_seed(cfg.seed)
    step = _hand_step(data, cfg, resolution, gen, fused=True, capturable=True)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with warnings.catch_warnings():  # needed before torch 2.14, deprecated (registered on first use) after
        warnings.simplefilter("ignore")
        if hasattr(graph, "register_generator_state"):
            graph.register_generator_state(gen)
    with torch.cuda.graph(graph):
        step()

    def advance(n: int) -> None:
        for _ in range(n):
            graph.replay()

    return advance


def _timed(advance: Callable[[int], None], steps: int, device: torch.device) -> float:
    """Steps per second of ``advance(steps)``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    advance(steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - start)


def run(steps: int = 100, batch: int = 64, resolution: int = 16, device: str = "cpu", *, repeats: int = 5,
        warmup: int = 20, data: PreparedDataset | None = None, sync_every: int = 0,
        optimizer_impl: str = "auto", compile: bool = False, cuda_graph: bool = False,
        memory_format: str = "auto") -> dict:
    """Median steps/s per variant over ``repeats`` alternating timings of ``steps`` steps each.

    Returns ``{"config": {...}, "<variant>": {"median": s/s, "all": [...]}, "ratio": trainer/hand-written,
    "ratio_bare": trainer-bare/hand-written, "paired_ratio": median of per-round ratios, ...}``; on CUDA also
    ``"ratio_graphed"``: trainer / hand-graphed.
    """
    data = data if data is not None else load_dataset(DataConfig(name="digits", resolution=resolution))
    dev = resolve_device(device)
    trainer_opts = {"sync_every": sync_every, "optimizer_impl": optimizer_impl, "compile": compile,
                    "cuda_graph": cuda_graph, "memory_format": memory_format}
    runners = {
        "trainer": trainer_runner(data, _train_config(steps, batch, device, ema_and_guard=True, **trainer_opts),
                                  resolution),
        "trainer-bare": trainer_runner(data, _train_config(steps, batch, device, ema_and_guard=False, **trainer_opts),
                                       resolution),
        "hand-written": hand_written_runner(data, _train_config(steps, batch, device, ema_and_guard=False), resolution),
    }
    if dev.type == "cuda":
        runners[GRAPHED] = hand_graphed_runner(data, _train_config(steps, batch, device, ema_and_guard=False),
                                               resolution)
    variants = tuple(runners)
    warmup_seconds = {}
    for name, advance in runners.items():
        start = time.perf_counter()
        advance(warmup)  # with --compile, the trainer variants compile here
        warmup_seconds[name] = time.perf_counter() - start
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(repeats):
        order = variants if round_ % 2 == 0 else tuple(reversed(variants))  # no variant always runs first
        for name in order:
            rates[name].append(_timed(runners[name], steps, dev))
    out: dict = {"config": {"steps": steps, "batch": batch, "resolution": resolution, "device": str(dev),
                            "repeats": repeats, "threads": torch.get_num_threads(), **trainer_opts}}
    for name, values in rates.items():
        out[name] = {"median": statistics.median(values), "all": values, "warmup_seconds": warmup_seconds[name]}
    hand = out["hand-written"]["median"]
    out["ratio"] = out["trainer"]["median"] / hand
    out["ratio_bare"] = out["trainer-bare"]["median"] / hand
    out["paired_ratio"] = statistics.median(t / h for t, h in zip(rates["trainer"], rates["hand-written"]))
    out["paired_ratio_bare"] = statistics.median(t / h for t, h in zip(rates["trainer-bare"], rates["hand-written"]))
    if GRAPHED in rates:
        out["ratio_graphed"] = out["trainer"]["median"] / out[GRAPHED]["median"]
        out["ratio_graphed_eager"] = out[GRAPHED]["median"] / hand
    return out


def format_result(r: dict) -> str:
    c = r["config"]
    lines = [f"Trainer vs hand-written loop: DCGAN {c['resolution']}px, batch {c['batch']}, {c['device']}, "
             f"{c['threads']} thread(s), median of {c['repeats']} x {c['steps']} steps; trainer sync_every="
             f"{c['sync_every'] or 'auto'}, optimizer_impl={c['optimizer_impl']}, compile={c['compile']}, "
             f"cuda_graph={c['cuda_graph']}, memory_format={c['memory_format']}",
             "| variant | steps/s (median) | all runs | warm-up s |", "|---|---|---|---|"]
    for name in (*VARIANTS, GRAPHED):
        if name not in r:
            continue
        runs = ", ".join(f"{v:.1f}" for v in r[name]["all"])
        lines.append(f"| {name} | {r[name]['median']:.2f} | {runs} | {r[name]['warmup_seconds']:.1f} |")
    lines.append(f"ratio trainer (EMA + guard) / hand-written: {r['ratio']:.3f} (paired median {r['paired_ratio']:.3f})")
    lines.append(f"ratio trainer-bare / hand-written:          {r['ratio_bare']:.3f} "
                 f"(paired median {r['paired_ratio_bare']:.3f})")
    if "ratio_graphed" in r:
        lines.append(f"ratio trainer / hand-graphed:               {r['ratio_graphed']:.3f}")
        lines.append(f"ratio hand-graphed / hand-written:          {r['ratio_graphed_eager']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sync-every", type=int, default=0, help="the trainer's train.sync_every (0: auto)")
    parser.add_argument("--optimizer-impl", default="auto", help="the trainer's train.optimizer_impl")
    parser.add_argument("--compile", action="store_true", help="the trainer's train.compile")
    parser.add_argument("--cuda-graph", action="store_true", help="the trainer's train.cuda_graph")
    parser.add_argument("--memory-format", default="auto", help="the trainer's train.memory_format")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(format_result(run(args.steps, args.batch, args.resolution, args.device, repeats=args.repeats,
                            sync_every=args.sync_every, optimizer_impl=args.optimizer_impl, compile=args.compile,
                            cuda_graph=args.cuda_graph, memory_format=args.memory_format)))


if __name__ == "__main__":
    main()

"""Cost of one Adam update per implementation (``train.optimizer_impl``) on a model's real parameters.

The trainer's step is forwards, backwards and the two Adam updates; on a shared machine the whole
step's time moves by +-20% between seconds, more than the few percent the optimiser decides. Timing
the update alone, in short alternating rounds, separates it: what is measured here is exactly what
``optimizer_impl`` changes. Parameters and gradients are the model's shapes (random values: Adam's
cost does not depend on them); one optimiser over G and D, as the trainer's two together.

    .venv/bin/python -m benchmarks.adam_impl [--model dcgan] [--resolution 16] [--device cpu]
        [--updates 200] [--repeats 15] [--threads 1]

Prints the median milliseconds per update of each implementation and its ratio to the for-loop one.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ganmodels  # noqa: E402
from ganmodels.train import TrainConfig, resolve_device  # noqa: E402
from ganmodels.train.trainer import _adam_impl  # noqa: E402

IMPLS = ("for-loop", "foreach", "fused")


def run(model: str = "dcgan", resolution: int = 16, device: str = "cpu", *, updates: int = 200,
        repeats: int = 15) -> dict:
    """-> {"config": {...}, impl: {"median_ms": ..., "all_ms": [...]}, ..., "auto": the impl auto picks}."""
    dev = resolve_device(device)
    recipe = ganmodels.get_recipe(model, "stabilised")
    fields = {f.name for f in dataclasses.fields(ganmodels.get_spec(model).config_cls)}
    sized = {"resolution": resolution} if "resolution" in fields else {}  # not the 2D point models
    gan = ganmodels.build(model, {**recipe["model"], **sized}).to(dev)
    params = [p for p in gan.parameters() if p.requires_grad]
    cfg = TrainConfig(**recipe["train"])
    optimisers = {}
    for impl in IMPLS:
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for p in copies:
            p.grad = torch.randn_like(p)
        optimisers[impl] = torch.optim.Adam(copies, lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), **_adam_impl(impl, dev))
        for _ in range(5):  # the state tensors are made on the first step
            optimisers[impl].step()
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for round_ in range(repeats):
        for impl in IMPLS if round_ % 2 == 0 else reversed(IMPLS):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            for _ in range(updates):
                optimisers[impl].step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times[impl].append((time.perf_counter() - start) / updates * 1e3)
    auto = _adam_impl("auto", dev)
    out: dict = {"config": {"model": model, "resolution": resolution if sized else None, "device": str(dev),
                            "updates": updates, "repeats": repeats, "threads": torch.get_num_threads(),
                            "tensors": len(params), "parameters": sum(p.numel() for p in params)},
                 "auto": next((impl for impl in IMPLS if _adam_impl(impl, dev) == auto), "torch's default")}
    for impl, values in times.items():
        out[impl] = {"median_ms": statistics.median(values), "all_ms": values}
    return out


def format_result(r: dict) -> str:
    c = r["config"]
    base = r["for-loop"]["median_ms"]
    size = f" {c['resolution']}px" if c["resolution"] else ""
    lines = [f"Adam update, {c['model']}{size} G and D ({c['tensors']} tensors, {c['parameters']:,} "
             f"parameters), {c['device']}, {c['threads']} thread(s), median of {c['repeats']} x {c['updates']} updates; "
             f"optimizer_impl auto = {r['auto']}",
             "| implementation | ms per update (median) | for-loop / this |", "|---|---|---|"]
    for impl in IMPLS:
        lines.append(f"| {impl} | {r[impl]['median_ms']:.3f} | {base / r[impl]['median_ms']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dcgan")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(format_result(run(args.model, args.resolution, args.device, updates=args.updates, repeats=args.repeats)))


if __name__ == "__main__":
    main()

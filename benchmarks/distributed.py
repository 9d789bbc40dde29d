"""Data-parallel training (torchrun, gloo on the CPU) against one process: speed, and how close the weights end.

Trains the pipeline's default model (DCGAN, stabilised recipe, digits at 16 px, batch 64) for
``--steps`` steps four ways, all with one intra-op thread per process unless stated:

* ``1 process`` (the reference);
* ``1 process, 2 threads``: the same computation summed in another order, the float-rounding noise
  floor this GAN amplifies step by step;
* ``2 processes`` and ``2 processes, resumed``: ``torchrun --nproc-per-node 2`` at the same global
  batch, straight through and stopped halfway then resumed from the checkpoint.

Prints steps/s and the largest weight difference from the reference (G and D, after the last step) as
a markdown table; ``--out`` writes the numbers as JSON. Asserts nothing. On a 2-core CPU two processes
compete for the cores the one-process run had for itself; the speed-up is for machines with a device
(or a core pool) per process.

    .venv/bin/python -m benchmarks.distributed [--steps 200] [--out d.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(out: Path, steps: int, *, threads: int = 1, until: int | None = None, workdir: Path | None = None,
          resume: bool = False) -> None:
    """Runs in a fresh process: under torchrun it joins the group and trains its share."""
    import torch

    sys.path.insert(0, str(ROOT))
    import ganmodels
    from ganmodels.data import DataConfig, load_dataset
    from ganmodels.train import TrainConfig, Trainer, seed_everything
    from ganmodels.train.distributed import init_from_env

    torch.set_num_threads(threads)
    process = init_from_env("cpu")
    data = load_dataset(DataConfig(name="digits", resolution=16))
    recipe = ganmodels.get_recipe("dcgan")
    seed_everything(0)
    model = ganmodels.build("dcgan", {**recipe["model"], "resolution": 16, "channels": 1})
    cfg = TrainConfig(**recipe["train"], steps=steps, batch_size=64, seed=0, device="cpu",
                      checkpoint_every=max(1, steps // 2))
    trainer = Trainer(model, data, cfg, workdir=workdir)
    start = time.perf_counter()
    result = trainer.fit(until, resume=resume)
    seconds = time.perf_counter() - start
    if process.main:
        torch.save({"networks": {k: v.state_dict() for k, v in trainer.networks.items()},
                    "seconds": seconds, "steps": result.steps - (result.resumed_from or 0)}, out)
    if process.world > 1:
        torch.distributed.destroy_process_group()


def launch(args: list[str], nproc: int = 1) -> None:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                if nproc > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    subprocess.run([*launcher, "-m", "benchmarks.distributed", "--worker", *args], cwd=ROOT, env=env, check=True,
                   capture_output=True)


def max_difference(a: dict, b: dict) -> float:
    return max(float((value - b["networks"][net][key]).abs().max()) for net, sd in a["networks"].items()
               for key, value in sd.items() if value.is_floating_point())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--until", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        train(Path(args.file), args.steps, threads=args.threads, until=args.until,
              workdir=Path(args.workdir) if args.workdir else None, resume=args.resume)
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        common = ["--steps", str(args.steps)]
        launch([*common, "--file", str(t / "one.pt")])
        launch([*common, "--file", str(t / "threads.pt"), "--threads", "2"])
        launch([*common, "--file", str(t / "two.pt")], nproc=2)
        launch([*common, "--file", str(t / "half.pt"), "--until", str(args.steps // 2), "--workdir", str(t / "w")],
               nproc=2)
        launch([*common, "--file", str(t / "resumed.pt"), "--workdir", str(t / "w"), "--resume"], nproc=2)
        results = {name: torch.load(t / f"{name}.pt", weights_only=False)
                   for name in ("one", "threads", "two", "resumed")}
    labels = {"one": "1 process", "threads": "1 process, 2 threads", "two": "2 processes",
              "resumed": "2 processes, resumed"}
    rows = [{"config": labels[name], "steps_per_s": round(r["steps"] / r["seconds"], 2),
             "max_weight_diff": max_difference(r, results["one"])} for name, r in results.items()]
    print(f"DCGAN (stabilised), digits 16 px, global batch 64, {args.steps} steps, gloo on the CPU")
    print("| config | steps/s | max weight difference from 1 process |\n|---|---|---|")
    for row in rows:
        print(f"| {row['config']} | {row['steps_per_s']} | {row['max_weight_diff']:.2g} |")
    resume_diff = max_difference(results["resumed"], results["two"])
    print(f"2 processes resumed vs straight through: max weight difference {resume_diff:.2g}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "steps": args.steps, "resume_diff": resume_diff},
                                             indent=2))


if __name__ == "__main__":
    main()

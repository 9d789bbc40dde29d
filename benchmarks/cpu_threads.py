"""How training degrades on a shared CPU: intra-op threads and OpenMP's wait policy, idle and under load.

The pipeline's default DCGAN (16 px, batch 64, the stabilised recipe) trains ``--steps`` steps in a fresh
process for each setting, once on an idle machine and once while ``--busy`` other processes each keep a
core busy (a pure-Python spin loop, as another job on a CI runner would). Settings:

* ``threads=N, wait=active``: torch's default OpenMP behaviour (worker threads spin after each region);
* ``threads=N, wait=passive``: ``OMP_WAIT_POLICY=PASSIVE`` (workers sleep instead of spinning);
* ``threads=1``: no intra-op workers at all.

Each process pins its thread count before any work (the OpenMP policy is read when libgomp starts, so it
is set in the child's environment, never changed in a running process). Settings run in alternation
``--repeats`` times so drifting background load hits all alike; medians are reported with the ratio
loaded / idle (2.0 is the fair share with one of two cores taken). Asserts nothing.

    .venv/bin/python -m benchmarks.cpu_threads [--steps 300] [--repeats 3] [--busy 1] [--out t.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _settings(cores: int) -> list[dict]:
    many = max(2, cores)
    return [{"threads": 1, "wait": "passive"},
            {"threads": many, "wait": "active"},
            {"threads": many, "wait": "passive"}]


def _label(s: dict) -> str:
    return "threads=1" if s["threads"] == 1 else f"threads={s['threads']}, wait={s['wait']}"


def worker(steps: int, threads: int) -> None:
    """Runs in the child: train ``steps`` steps after a warm-up and print the seconds they took."""
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    import ganmodels
    from ganmodels.data import DataConfig, load_dataset
    from ganmodels.train import Callback, TrainConfig, Trainer, seed_everything

    class Clock(Callback):  # times the steps after the first 20 (allocator and autograd warm-up)
        start = end = None

        def on_step_end(self, trainer, step, logs):
            if step == 20:
                self.start = time.perf_counter()
            self.end = time.perf_counter()

    data = load_dataset(DataConfig(name="digits", resolution=16))
    recipe = ganmodels.get_recipe("dcgan")
    seed_everything(0)
    model = ganmodels.build("dcgan", {**recipe["model"], "resolution": 16, "channels": 1})
    clock = Clock()
    cfg = TrainConfig(**recipe["train"], steps=steps + 20, batch_size=64, seed=0, device="cpu")
    Trainer(model, data, cfg, callbacks=[clock]).fit()
    print(json.dumps({"seconds": clock.end - clock.start}))


def _measure(setting: dict, steps: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": setting["wait"].upper(), "OMP_NUM_THREADS": str(setting["threads"])}
    out = subprocess.run([sys.executable, "-m", "benchmarks.cpu_threads", "--worker", "--steps", str(steps),
                          "--threads", str(setting["threads"])], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return steps / json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def _spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=1, help="cores kept busy by other processes under load")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.steps, args.threads)
        return
    cores = os.cpu_count() or 1
    settings = _settings(cores)
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for condition in ("idle", "loaded"):
            spinners = _spinners(args.busy) if condition == "loaded" else []
            try:
                for s in settings:
                    rates.setdefault((_label(s), condition), []).append(_measure(s, args.steps))
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    rows = []
    for s in settings:
        idle = statistics.median(rates[(_label(s), "idle")])
        loaded = statistics.median(rates[(_label(s), "loaded")])
        rows.append({"setting": _label(s), "idle_steps_per_s": round(idle, 1), "loaded_steps_per_s": round(loaded, 1),
                     "slowdown": round(idle / loaded, 2)})
    print(f"{cores} cores, {args.busy} kept busy under load; DCGAN 16 px batch 64, median of {args.repeats} x "
          f"{args.steps} steps")
    print("| setting | idle steps/s | loaded steps/s | loaded slowdown |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['idle_steps_per_s']} | {r['loaded_steps_per_s']} | {r['slowdown']}x |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "args": vars(args), "cores": cores}, indent=2))


if __name__ == "__main__":
    main()

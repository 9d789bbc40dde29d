"""Does synthetic data help? A conditional GAN trained on a small labelled subset of the digits,
and a classifier trained with and without its samples.

For each fraction of the digits train split (10% and 25%, stratified, drawn per seed) and each seed:
1. train the cGAN (``cgan``, its stabilised recipe at the pipeline's default run settings: 16 px,
   batch 64, 3,000 steps) on that subset only;
2. train the same classifier, for the same number of optimisation steps, on
   (a) the real subset alone,
   (b) the real subset plus ``--synthetic`` cGAN samples (classes in turn, so balanced),
   (c) the cGAN samples alone (TSTR: train on synthetic, test on real; the Classification
       Accuracy Score of Ravuri & Vinyals 2019);
3. test each classifier on the real held-out test split (360 digits, never seen by the cGAN).
A row "full" trains (a) on the whole train split, for scale.

The classifier is the domain classifier's small CNN (``ganmodels.metrics.classifier``) with its
random-shift augmentation, trained for a fixed number of steps whatever the set size, so the arms
differ only in their data. Prints a markdown table of mean ± std over the seeds and the paired gain
of (b) over (a); ``--out`` also writes every number as JSON. Asserts nothing.

    .venv/bin/python -m benchmarks.augmentation [--fractions 0.1 0.25] [--seeds 0 1 2 3 4] [--out aug.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ganmodels  # noqa: E402
from ganmodels.data import DataConfig, PreparedDataset, load_dataset  # noqa: E402
from ganmodels.metrics import train_domain_classifier  # noqa: E402
from ganmodels.train import TrainConfig, Trainer, seed_everything  # noqa: E402

RESOLUTION, BATCH, GAN_STEPS = 16, 64, 3000  # params.yaml's default run
CLASSIFIER_STEPS = 600  # optimisation steps of every classifier (batch 64): converged on the full split
ARMS = ("real", "real+synthetic", "synthetic")


def stratified_subset(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of ``fraction`` of each class (at least 2 per class), drawn with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for k in sorted(set(y.tolist())):
        members = torch.nonzero(y == k).flatten()
        n = max(2, round(fraction * len(members)))
        picked.append(members[torch.randperm(len(members), generator=gen)[:n]])
    return torch.cat(picked).sort().values


def train_cgan(subset: PreparedDataset, seed: int, steps: int) -> torch.nn.Module:
    recipe = ganmodels.get_recipe("cgan")
    seed_everything(seed)
    model = ganmodels.build("cgan", {**recipe["model"], "resolution": RESOLUTION, "channels": 1,
                                     "c_dim": subset.num_classes})
    trainer = Trainer(model, subset, TrainConfig(**recipe["train"], steps=steps, batch_size=BATCH, seed=seed,
                                                 device="cpu"))
    trainer.fit()
    model.G.load_state_dict(trainer.generator.state_dict())  # the EMA weights, as the pipeline registers them
    return model


def classifier_accuracy(x: torch.Tensor, y: torch.Tensor, data: PreparedDataset, seed: int) -> float:
    epochs = max(1, math.ceil(CLASSIFIER_STEPS * BATCH / len(x)))
    _, accuracy = train_domain_classifier(x, y, data.x_test, data.y_test, data.num_classes, epochs=epochs, seed=seed,
                                          batch_size=BATCH)
    return float(accuracy)


def run_one(data: PreparedDataset, fraction: float, seed: int, n_synthetic: int, gan_steps: int) -> dict:
    idx = stratified_subset(data.y_train, fraction, seed)
    subset = PreparedDataset(f"digits-{fraction:g}", "image", data.x_train[idx], data.x_test, data.y_train[idx],
                             data.y_test, data.class_names, data.config)
    t0 = time.perf_counter()
    model = train_cgan(subset, seed, gan_steps)
    gan_seconds = time.perf_counter() - t0
    fake, labels = model.sample(n_synthetic, seed=10_000 + seed)
    fake = fake.clamp(-1, 1)
    real_x, real_y = subset.x_train, subset.y_train
    return {
        "fraction": fraction, "seed": seed, "n_real": len(idx), "n_synthetic": n_synthetic,
        "gan_seconds": round(gan_seconds, 1),
        "real": classifier_accuracy(real_x, real_y, data, seed),
        "real+synthetic": classifier_accuracy(torch.cat([real_x, fake]), torch.cat([real_y, labels]), data, seed),
        "synthetic": classifier_accuracy(fake, labels, data, seed),
    }


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def table(rows: list[dict], full: list[float]) -> str:
    lines = ["| train split used | real images | (a) real | (b) real + cGAN | (c) cGAN only (TSTR) | "
             "gain (b) − (a), paired | (b) > (a) |", "|---|---|---|---|---|---|---|"]
    for fraction in sorted({r["fraction"] for r in rows}):
        group = [r for r in rows if r["fraction"] == fraction]
        gains = [r["real+synthetic"] - r["real"] for r in group]
        wins = sum(g > 0 for g in gains)
        lines.append(f"| {100 * fraction:g}% | {group[0]['n_real']} | {mean_std([r['real'] for r in group])} | "
                     f"{mean_std([r['real+synthetic'] for r in group])} | {mean_std([r['synthetic'] for r in group])}"
                     f" | {mean_std(gains)} points | {wins} of {len(group)} seeds |")
    if full:
        lines.append(f"| 100% (reference) | 1437 | {mean_std(full)} | | | | |")
    return "\n".join(lines) + "\n(test accuracy in %, mean ± std over seeds; 360 held-out digits)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--synthetic", type=int, default=1000, help="cGAN samples for arms (b) and (c)")
    parser.add_argument("--gan-steps", type=int, default=GAN_STEPS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write every number as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(name="digits", resolution=RESOLUTION))
    rows = []
    for fraction in args.fractions:
        for seed in args.seeds:
            rows.append(run_one(data, fraction, seed, args.synthetic, args.gan_steps))
            print(json.dumps(rows[-1]), flush=True)
    full = [classifier_accuracy(data.x_train, data.y_train, data, seed) for seed in args.seeds]
    print(table(rows, full))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "full_real": full, "settings": vars(args),
                                              "classifier_steps": CLASSIFIER_STEPS, "gan_steps": args.gan_steps},
                                             indent=2))


if __name__ == "__main__":
    main()

"""Sample quality of the default DCGAN run on digits, against a collapse-prone configuration.

Each configuration trains from scratch on each seed (the product's default run: DCGAN on sklearn's
8×8 digits upsampled to 16×16, CPU) and is scored by ``evaluate_generator`` with a domain
classifier trained once on the digits train split; the reference is the held-out test split. The
gates the product applies are ``class_coverage >= 1.0`` (all 10 digits) and ``class_kl <= 0.05``.

* ``stabilised``: ``RECIPES["stabilised"]`` of ``ganmodels/models/dcgan.py`` at the run-level
  settings below (``DEFAULT_RUN``) -- the configuration ``ganpipe run`` should use.
* ``collapse-prone``: the original DCGAN recipe (``RECIPES["baseline"]``, same network widths) with a
  one-dimensional latent, the generator's learning rate raised 25x (5e-3) and beta1 = 0.9; it
  collapses onto about half of the digits within the same budget (see docs/digits_quality.md).

Prints a markdown table (one row per configuration and seed) and the mean ± std per configuration.
Asserts nothing.

    .venv/bin/python -m benchmarks.digits_quality [--seeds 0 1 2] [--steps 3000] [--threads 1] [--device cpu]
        [--cuda-graph]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ganmodels  # noqa: E402
from ganmodels.data import DataConfig, PreparedDataset, load_dataset  # noqa: E402
from ganmodels.metrics import evaluate_generator, train_domain_classifier  # noqa: E402
from ganmodels.train import Trainer, TrainConfig, seed_everything  # noqa: E402

# Evaluation settings shared by every row, mirroring pipelines.config.EvalConfig's defaults.
N_SAMPLES = 2000
CLASSIFIER_EPOCHS = 8
CLASSIFIER_SEED = 0
EVAL_SEED = 1234
METRICS = ("classes_covered", "class_kl", "domain_fd", "precision", "recall")


@dataclass(frozen=True)
class DigitsRun:
    """One configuration: a model recipe plus model/train overrides, and the run-level settings."""

    recipe: str  # a key of dcgan's RECIPES
    resolution: int = 16
    steps: int = 3000
    batch_size: int = 64
    model: dict = field(default_factory=dict)  # on top of the recipe's model overrides
    train: dict = field(default_factory=dict)  # on top of the recipe's train overrides

    def model_config(self) -> dict:
        return {**ganmodels.get_recipe("dcgan", self.recipe)["model"], **self.model, "resolution": self.resolution}

    def train_config(self, seed: int, steps: int | None = None, device: str = "cpu", **extra) -> TrainConfig:
        values = {**ganmodels.get_recipe("dcgan", self.recipe)["train"], **self.train, **extra}
        return TrainConfig(**values, steps=self.steps if steps is None else steps, batch_size=self.batch_size,
                           seed=seed, device=device)


# The default run: the stabilised recipe at 16 px (digits are 8x8 natively: 32 px would cost ~4x
# per step to model upsampling blur), batch 64, 3,000 steps (~100 s on one CPU thread).
DEFAULT_RUN = DigitsRun(recipe="stabilised", resolution=16, steps=3000, batch_size=64)

# Collapse-prone, as model/train overrides on top of RECIPES["baseline"]: a 1-d latent (G can only
# trace a curve through image space) driven by a generator learning rate 25x the DCGAN value with
# heavy momentum, so G keeps jumping to wherever D is currently weakest. The baseline recipe alone,
# or only a high lr_g, recovers all 10 classes by 3,000 steps (class_kl 0.04-0.30); this does not.
COLLAPSE_PRONE_OVERRIDES = {"model": {"z_dim": 1},
                            "train": {"lr_g": 5e-3, "beta1": 0.9}}
COLLAPSE_PRONE_RUN = DigitsRun(recipe="baseline", resolution=16, steps=3000, batch_size=64,
                               model=COLLAPSE_PRONE_OVERRIDES["model"], train=COLLAPSE_PRONE_OVERRIDES["train"])

CONFIGS = {"stabilised": DEFAULT_RUN, "collapse-prone": COLLAPSE_PRONE_RUN}


def load_digits(resolution: int) -> PreparedDataset:
    return load_dataset(DataConfig(name="digits", resolution=resolution))


def train_classifier(data: PreparedDataset) -> torch.nn.Module:
    classifier, accuracy = train_domain_classifier(data.x_train, data.y_train, data.x_test, data.y_test,
                                                   data.num_classes, epochs=CLASSIFIER_EPOCHS, seed=CLASSIFIER_SEED)
    if accuracy < 0.9:
        raise RuntimeError(f"domain classifier held-out accuracy {accuracy:.3f} < 0.9: its metrics mean nothing")
    return classifier


def train_and_evaluate(run: DigitsRun, data: PreparedDataset, classifier: torch.nn.Module, seed: int,
                       steps: int | None = None, device: str = "cpu", **train) -> dict[str, float]:
    """Train ``run`` on ``seed`` and score its (EMA) generator; -> metrics plus ``train_s`` and ``rollbacks``."""
    seed_everything(seed)
    gan = ganmodels.build("dcgan", run.model_config())
    trainer = Trainer(gan, data, run.train_config(seed, steps, device, **train))
    result = trainer.fit()
    metrics = evaluate_generator(trainer.generator.cpu(), data, n_samples=N_SAMPLES, classifier=classifier,
                                 seed=EVAL_SEED)
    return {**metrics, "train_s": result.seconds, "rollbacks": result.rollbacks}


def format_table(rows: list[dict]) -> str:
    lines = ["| config | seed | classes covered | class_kl | domain_fd | precision | recall | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['seed']} | {r['classes_covered']:.0f}/10 | {r['class_kl']:.4f} | "
                     f"{r['domain_fd']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['train_s']:.1f} |")
    return "\n".join(lines)


def format_summary(rows: list[dict]) -> str:
    lines = ["| config | classes covered | class_kl | domain_fd | precision | recall | train s | passes gates |",
             "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["config"] for r in rows):
        group = [r for r in rows if r["config"] == name]
        cells = [_mean_std([r[k] for r in group]) for k in (*METRICS, "train_s")]
        passed = sum(r["classes_covered"] == 10 and r["class_kl"] <= 0.05 for r in group)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {passed}/{len(group)} |")
    return "\n".join(lines)


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3g} ± {std:.2g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="override every configuration's steps")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (the product: run.threads, default 1)")
    parser.add_argument("--device", default="cpu", help="training device (cpu | cuda); scoring runs on CPU")
    parser.add_argument("--cuda-graph", action="store_true", help="train with train.cuda_graph (CUDA only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data_by_resolution: dict[int, tuple[PreparedDataset, torch.nn.Module]] = {}
    rows = []
    for name in args.configs:
        run = CONFIGS[name]
        if run.resolution not in data_by_resolution:
            data = load_digits(run.resolution)
            data_by_resolution[run.resolution] = (data, train_classifier(data))
        data, classifier = data_by_resolution[run.resolution]
        for seed in args.seeds:
            start = time.perf_counter()
            metrics = train_and_evaluate(run, data, classifier, seed, args.steps, args.device,
                                         **({"cuda_graph": True} if args.cuda_graph else {}))
            row = {"config": name, "seed": seed, **metrics}
            rows.append(row)
            print(f"# {name} seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(format_table(rows))
    print()
    print(format_summary(rows))


if __name__ == "__main__":
    main()

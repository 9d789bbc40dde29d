"""Calibration of the gates on a labelled image set: the memorisation gates (``authenticity``,
``data_copying_ct``) on digits, and every gate of a data set with its own (``--dataset fashion-mnist``).

Every row is scored the way ``ganpipe run`` scores a model on that data set (``params.yaml`` resolved
for it: its resolution, 2,000 samples, its domain classifier's epochs, evaluation seed 1234) and
judged by the gates ``params.yaml`` ships for it:

* ``memoriser``: training images verbatim, drawn with replacement (what the gates must reject);
* ``near-copies``: training images plus Gaussian pixel noise of std 0.1 (on [-1, 1]), clamped;
* ``half-memoriser``: half training images, half held-out images;
* ``held-out real``: the test split replayed (what the gates must accept; C_T's held-out sample is
  then the same images, so only authenticity says much here);
* ``fresh real``: a random half of the test split (one row per ``--split-seeds``) is C_T's held-out
  sample and the other half is replayed as the "generated" set, so C_T compares two independent
  real samples (with 179 replayed images its class histogram is coarse: only the memorisation
  gates mean much for these rows);
* ``dcgan``/``cgan``: the default runs (stabilised recipe, 16 px, batch 64, 3,000 steps, CPU) trained
  per seed, scored by their EMA generators, the models the gates must accept.

Prints a markdown table and the failed gates of each row. Asserts nothing. ``--classifier-seed``
trains the domain classifier with another seed (the real rows' spread over classifiers:
``--dcgan-seeds --cgan-seeds --classifier-seed 0``, then 1, 2, ...).

    .venv/bin/python -m benchmarks.memorisation [--dcgan-seeds 0 1 2] [--cgan-seeds 0 1 2] [--split-seeds 0]
        [--classifier-seed 1234] [--threads 1] [--dataset fashion-mnist --set data.root=PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ganmodels  # noqa: E402
from ganmodels.data import PreparedDataset, load_dataset  # noqa: E402
from ganmodels.metrics import evaluate_generator, train_domain_classifier  # noqa: E402
from ganmodels.train import Trainer, TrainConfig, seed_everything  # noqa: E402
from pipelines.config import load_run_config  # noqa: E402
from pipelines.gates import evaluate_gates  # noqa: E402

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
BATCH, STEPS = 64, 3000  # params.yaml's default run
COLUMNS = ("authenticity", "data_copying_ct", "domain_fd", "precision", "recall", "class_coverage", "class_kl",
           "cond_accuracy")


class Replay(torch.nn.Module):
    """A 'generator' that returns rows of ``x`` picked by z (with replacement), plus optional pixel noise."""

    def __init__(self, x: torch.Tensor, noise: float = 0.0):
        super().__init__()
        self.x, self.noise, self.z_dim, self.c_dim = x, noise, 4, 0
        self.gen = torch.Generator().manual_seed(0)  # the pixel noise: one seeded stream, drawn in call order

    def forward(self, z, c=None):
        out = self.x[(z[:, 0].abs() * 1e4).long() % len(self.x)]
        if not self.noise:
            return out
        return (out + self.noise * torch.randn(out.shape, generator=self.gen)).clamp(-1, 1)


def train_default(model_name: str, data: PreparedDataset, seed: int, steps: int) -> torch.nn.Module:
    """The default run of ``model_name`` (its stabilised recipe) on ``data``; -> the EMA generator."""
    recipe = ganmodels.get_recipe(model_name)
    seed_everything(seed)
    extra = {"c_dim": data.num_classes} if model_name == "cgan" else {}
    gan = ganmodels.build(model_name, {**recipe["model"], "resolution": data.sample_shape[-1], "channels": 1, **extra})
    trainer = Trainer(gan, data, TrainConfig(**recipe["train"], steps=steps, batch_size=BATCH, seed=seed, device="cpu"))
    trainer.fit()
    return trainer.generator


def score(name: str, G, data: PreparedDataset, classifier, gates_model: str, run: dict) -> dict:
    cfg = load_run_config(PARAMS, model=gates_model, **run)
    metrics = evaluate_generator(G, data, n_samples=cfg.eval.n_samples, classifier=classifier, seed=cfg.eval.seed,
                                 cas_epochs=cfg.eval.cas_epochs)
    report = evaluate_gates(metrics, cfg.gates)
    return {"row": name, **metrics, "failed": ", ".join(report.failed) or "none"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dcgan-seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--cgan-seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--split-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--classifier-seed", type=int, default=None, help="default: eval.seed (1234)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dataset", default="digits", help="a labelled image set (default: digits)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="params.yaml override, as for ganpipe run (e.g. data.root=PATH)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    run = {"dataset": args.dataset, "overrides": args.set}
    cfg = load_run_config(PARAMS, **run)
    start = time.perf_counter()
    data = load_dataset(cfg.data)
    classifier, accuracy = train_domain_classifier(data.x_train, data.y_train, data.x_test, data.y_test,
                                                   data.num_classes, epochs=cfg.eval.classifier_epochs,
                                                   seed=cfg.eval.seed if args.classifier_seed is None
                                                   else args.classifier_seed)
    print(f"# {args.dataset} at {cfg.data.resolution} px: domain classifier ({cfg.eval.classifier_epochs} epochs) "
          f"held-out accuracy {accuracy:.3f}, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    mixed = torch.cat([data.x_train[: len(data.x_test)], data.x_test])
    rows = [score("memoriser", Replay(data.x_train), data, classifier, "dcgan", run),
            score("near-copies (noise 0.1)", Replay(data.x_train, noise=0.1), data, classifier, "dcgan", run),
            score("half-memoriser", Replay(mixed), data, classifier, "dcgan", run),
            score("held-out real", Replay(data.x_test), data, classifier, "dcgan", run)]
    for split_seed in args.split_seeds:
        perm = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(split_seed))
        half_ref, half_gen = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        half_data = PreparedDataset(data.name, data.kind, data.x_train, data.x_test[half_ref], data.y_train,
                                    data.y_test[half_ref], class_names=data.class_names)
        rows.append(score(f"fresh real (test halves, split {split_seed})", Replay(data.x_test[half_gen]), half_data,
                          classifier, "dcgan", run))
    for model_name, seeds in (("dcgan", args.dcgan_seeds), ("cgan", args.cgan_seeds)):
        for seed in seeds:
            start = time.perf_counter()
            G = train_default(model_name, data, seed, args.steps)
            rows.append(score(f"{model_name} seed {seed}", G, data, classifier, model_name, run))
            print(f"# {model_name} seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    print("| row | " + " | ".join(COLUMNS) + " | failed gates |")
    print("|---|" + "---|" * (len(COLUMNS) + 1))
    for r in rows:
        print(f"| {r['row']} | " + " | ".join(f"{r[c]:.3f}" if c in r else "—" for c in COLUMNS)
              + f" | {r['failed']} |")


if __name__ == "__main__":
    main()

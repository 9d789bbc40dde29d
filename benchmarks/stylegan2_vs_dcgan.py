"""StyleGAN2 against the DCGAN default on digits: equal steps and equal wall-clock time, several seeds.

Both train on scikit-learn's digits at ``--resolution`` (default 32 px) with their stabilised recipes
and the pipeline's model settings (``models.stylegan2`` in params.yaml for StyleGAN2; DCGAN's
defaults), each at its pipeline batch size (32 and 64):

* ``stylegan2``: ``--steps`` steps; its wall-clock time T is measured per seed;
* ``dcgan, equal steps``: the same number of steps;
* ``dcgan, equal time``: as many steps as fit in T (a callback stops training at T).

All are scored like the pipeline scores them (``evaluate_model``: 2,000 samples, the domain classifier
trained once on the digits at this resolution, the held-out split as reference): domain FD (not FID),
precision/recall, density/coverage, classes covered and class KL. Prints a markdown table (mean ± std
over seeds); ``--out`` writes every number as JSON. Asserts nothing.

    .venv/bin/python -m benchmarks.stylegan2_vs_dcgan [--seeds 0 1 2] [--steps 2000] [--resolution 32] [--out s.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ganmodels  # noqa: E402
from ganmodels.data import DataConfig, load_dataset  # noqa: E402
from ganmodels.metrics import evaluate_model, train_domain_classifier  # noqa: E402
from ganmodels.train import Callback, TrainConfig, Trainer, seed_everything  # noqa: E402

STYLEGAN2 = {"model": {"g_width": 32, "d_width": 32, "mapping_layers": 2}, "batch_size": 32}  # params.yaml
DCGAN = {"model": {}, "batch_size": 64}
METRICS = ("domain_fd", "precision", "recall", "density", "coverage", "classes_covered", "class_kl")


class TimeLimit(Callback):
    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, 0.0

    def on_train_start(self, trainer):
        self.start = time.perf_counter()

    def on_step_end(self, trainer, step, logs):
        if time.perf_counter() - self.start >= self.seconds:
            trainer.request_stop(f"time budget of {self.seconds:.0f} s")


def run(name: str, settings: dict, data, seed: int, steps: int, limit: float | None = None):
    recipe = ganmodels.get_recipe(name)
    seed_everything(seed)
    model = ganmodels.build(name, {**recipe["model"], **settings["model"], "resolution": data.sample_shape[-1],
                                   "channels": data.sample_shape[0]})
    cfg = TrainConfig(**recipe["train"], steps=steps, batch_size=settings["batch_size"], seed=seed, device="cpu")
    trainer = Trainer(model, data, cfg, callbacks=[TimeLimit(limit)] if limit else [])
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    model.G.load_state_dict(trainer.generator.state_dict())  # the EMA generator, as the pipeline registers it
    return model.eval(), result.steps, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(name="digits", resolution=args.resolution))
    classifier, accuracy = train_domain_classifier(data.x_train, data.y_train, data.x_test, data.y_test, 10,
                                                   epochs=8, seed=1234)
    rows = []
    for seed in args.seeds:
        model, steps, seconds = run("stylegan2", STYLEGAN2, data, seed, args.steps)
        runs = [("stylegan2", model, steps, seconds)]
        runs.append(("dcgan, equal steps", *run("dcgan", DCGAN, data, seed, args.steps)))
        runs.append(("dcgan, equal time", *run("dcgan", DCGAN, data, seed, 10**7, limit=seconds)))
        for name, model, steps, secs in runs:
            metrics = evaluate_model(model, data, classifier=classifier, seed=1234)
            rows.append({"config": name, "seed": seed, "steps": steps, "train_seconds": round(secs, 1),
                         **{k: round(metrics[k], 4) for k in METRICS}})
            print(json.dumps(rows[-1]), flush=True)
    fmt = lambda vs: f"{statistics.mean(vs):.3g} ± {statistics.stdev(vs) if len(vs) > 1 else 0:.2g}"  # noqa: E731
    lines = ["| config | steps | train s | domain FD | precision | recall | density | coverage | classes | class KL |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["config"] for r in rows):
        g = [r for r in rows if r["config"] == name]
        lines.append(f"| {name} | {statistics.mean(r['steps'] for r in g):.0f} | "
                     f"{statistics.mean(r['train_seconds'] for r in g):.0f} | "
                     + " | ".join(fmt([r[m] for r in g]) for m in METRICS) + " |")
    print(f"digits at {args.resolution} px, domain classifier held-out accuracy {accuracy:.3f}")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "args": vars(args), "classifier_accuracy": accuracy},
                                             indent=2))


if __name__ == "__main__":
    main()

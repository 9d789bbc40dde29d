"""Pix2Pix super-resolution against bicubic upsampling, and on a font it never saw.

Trains ``pix2pix`` with the pipeline's default settings (the stabilised recipe; ``models.pix2pix`` in
params.yaml: 16-wide networks, batch 32, 2,000 steps) and scores the held-out pairs with the same
metrics the pipeline gates on (``ganmodels.metrics``: PSNR, SSIM, L1, and the bicubic baseline of the
same inputs):

* ``digits-sr`` (4x4 -> 8x8) and ``glyphs-sr`` (16x16 -> 32x32), on each seed;
* ``glyphs-sr, unseen font``: trained on the glyphs of every face but the Computer Modern family
  (cmr10, cmss10, cmtt10, cmb10, cmti10: 5 of 21 faces, never seen in training) and scored on all of
  that family's glyphs, drawn the same way.

Prints a markdown table (mean ± std over seeds); ``--out`` writes every number as JSON. Asserts nothing.

    .venv/bin/python -m benchmarks.pix2pix_sr [--seeds 0 1 2] [--out sr.json]
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
from ganmodels.data import DataConfig, PreparedDataset, SourceData, load_dataset, prepare  # noqa: E402
from ganmodels.data.sources.glyphs import CHARACTERS, glyph_faces, render_glyphs  # noqa: E402
from ganmodels.metrics import evaluate_model  # noqa: E402
from ganmodels.train import TrainConfig, Trainer, seed_everything  # noqa: E402

# params.yaml's models.pix2pix section (a test keeps the two equal).
MODEL = {"g_width": 16, "d_width": 16}
TRAIN = {"steps": 2000, "batch_size": 32}
HELD_OUT_FACES = ("cmr10", "cmss10", "cmtt10", "cmb10", "cmti10")
METRICS = ("psnr", "psnr_bicubic", "psnr_gain_over_bicubic", "ssim", "ssim_bicubic", "l1")


def glyph_pairs(faces: tuple[str, ...], test_fraction: float) -> PreparedDataset:
    images, labels, ids = render_glyphs(faces)
    source = SourceData("glyphs-sr", "image", images, labels, ids, (0.0, 255.0), list(CHARACTERS), derive=("sr", 2))
    return prepare(source, DataConfig(name="glyphs-sr", resolution=None, test_fraction=test_fraction))


def train(data: PreparedDataset, seed: int) -> tuple[ganmodels.families.GANFamily, float]:
    recipe = ganmodels.get_recipe("pix2pix")
    seed_everything(seed)
    side = data.sample_shape[-1]
    model = ganmodels.build("pix2pix", {**recipe["model"], **MODEL, "resolution": side,
                                        "scale": side // data.input_shape[-1], "channels": data.sample_shape[0]})
    trainer = Trainer(model, data, TrainConfig(**recipe["train"], **TRAIN, seed=seed, device="cpu"))
    start = time.perf_counter()
    trainer.fit()
    model.G.load_state_dict(trainer.generator.state_dict())  # the EMA weights, as the pipeline registers them
    return model.eval(), time.perf_counter() - start


def score(model, data: PreparedDataset) -> dict[str, float]:
    metrics = evaluate_model(model, data)
    return {k: round(metrics[k], 4) for k in METRICS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seen_faces = tuple(f for f in glyph_faces() if f not in HELD_OUT_FACES)
    digits = load_dataset(DataConfig(name="digits-sr", resolution=None))
    glyphs = load_dataset(DataConfig(name="glyphs-sr", resolution=None))
    seen = glyph_pairs(seen_faces, 0.2)
    unseen = glyph_pairs(HELD_OUT_FACES, 0.5)
    unseen_all = PreparedDataset("glyphs-sr-unseen-font", "image", unseen.x_train, torch.cat([unseen.x_train,
                                 unseen.x_test]), unseen.y_train, torch.cat([unseen.y_train, unseen.y_test]),
                                 unseen.class_names, unseen.config, unseen.a_train,
                                 torch.cat([unseen.a_train, unseen.a_test]))
    rows = []
    for seed in args.seeds:
        for name, data, test in (("digits-sr", digits, digits), ("glyphs-sr", glyphs, glyphs),
                                 ("glyphs-sr, unseen font", seen, unseen_all)):
            model, seconds = train(data, seed)
            rows.append({"task": name, "seed": seed, "train_seconds": round(seconds, 1), "n_test": len(test.x_test),
                         **score(model, test)})
            print(json.dumps(rows[-1]), flush=True)
    lines = ["| task | held-out pairs | bicubic PSNR | pix2pix PSNR | gain (dB) | bicubic SSIM | pix2pix SSIM | "
             "train s |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda values: f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0:.2f}"  # noqa: E731
    for task in dict.fromkeys(r["task"] for r in rows):
        group = [r for r in rows if r["task"] == task]
        lines.append(f"| {task} | {group[0]['n_test']} | {fmt([r['psnr_bicubic'] for r in group])} | "
                     f"{fmt([r['psnr'] for r in group])} | {fmt([r['psnr_gain_over_bicubic'] for r in group])} | "
                     f"{fmt([r['ssim_bicubic'] for r in group])} | {fmt([r['ssim'] for r in group])} | "
                     f"{statistics.mean(r['train_seconds'] for r in group):.0f} |")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "model": MODEL, "train": TRAIN,
                                              "held_out_faces": HELD_OUT_FACES}, indent=2))


if __name__ == "__main__":
    main()

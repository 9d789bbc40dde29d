"""CycleGAN on glyphs-fonts: DejaVu Sans glyphs <-> other glyphs in DejaVu Serif, over seeds.

Trains ``cyclegan`` exactly as ``ganpipe run --dataset glyphs-fonts`` does (``models.cyclegan`` in
params.yaml: the stabilised recipe, batch 16, 1,500 steps, through ``benchmarks.cyclegan_bold.train``)
and scores it with the pipeline's own evaluation (``evaluate_model``, the character and style
classifiers at ``datasets.glyphs-fonts.eval.classifier_epochs`` and eval seed 1234): the style scores
(share of translations the sans-vs-serif classifier puts in the target family), the characters kept,
PSNR/SSIM against the true other-family drawing and the do-nothing baseline. Prints a markdown table
(mean ± std over seeds); ``--out`` writes every number as JSON. Asserts nothing.

    .venv/bin/python -m benchmarks.cyclegan_fonts [--seeds 0 1 2] [--out fonts.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cyclegan_bold import train  # noqa: E402
from ganmodels.data import DataConfig, load_dataset  # noqa: E402
from ganmodels.metrics import evaluate_model, train_domain_classifier, train_style_classifier  # noqa: E402

CLASSIFIER_EPOCHS, EVAL_SEED = 64, 1234  # params.yaml: datasets.glyphs-fonts.eval.classifier_epochs, eval.seed
COLUMNS = ("style_transfer_a2b", "style_transfer_b2a", "class_preservation_a2b", "class_preservation_b2a",
           "psnr_a2b", "psnr_b2a", "ssim_a2b")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(name="glyphs-fonts", resolution=16))
    characters = train_domain_classifier(torch.cat([data.x_train, data.b_train]),
                                         torch.cat([data.y_train, data.yb_train]),
                                         torch.cat([data.x_test, data.b_test]), torch.cat([data.y_test, data.yb_test]),
                                         data.num_classes, epochs=CLASSIFIER_EPOCHS, seed=EVAL_SEED)
    style = train_style_classifier(data, epochs=CLASSIFIER_EPOCHS, seed=EVAL_SEED)
    rows = []
    for seed in args.seeds:
        model, seconds = train(data, "stabilised", seed)
        metrics = evaluate_model(model, data, classifier=characters[0], classifier_accuracy=characters[1],
                                 style_classifier=style, seed=EVAL_SEED)
        rows.append({"seed": seed, "train_seconds": round(seconds, 1), **{k: round(v, 4) for k, v in metrics.items()}})
        print(json.dumps(rows[-1]), flush=True)
    fmt = lambda vs: f"{statistics.mean(vs):.2f} ± {statistics.stdev(vs) if len(vs) > 1 else 0:.2f}"  # noqa: E731
    lines = ["| " + " | ".join(("", *COLUMNS, "train s")) + " |", "|---" * (len(COLUMNS) + 2) + "|",
             "| cyclegan | " + " | ".join(fmt([r[k] for r in rows]) for k in COLUMNS)
             + f" | {statistics.mean(r['train_seconds'] for r in rows):.0f} |",
             f"| do nothing (the input) | {rows[0]['psnr_identity_a2b']:.2f} dB A→B against the truth |",
             f"| classifiers | characters {characters[1]:.3f}, style {style[1]:.3f} held-out accuracy |"]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "character_accuracy": characters[1],
                                              "style_accuracy": style[1]}, indent=2))


if __name__ == "__main__":
    main()

"""The pipeline's stage functions: one owner for each step, shared by the Prefect flow and ``dvc.yaml``.

Each stage reads paths, calls ``ganmodels``, writes its outputs atomically and returns a small dict
of plain values (paths, hashes, numbers). No MLflow or Prefect here: the flow logs what these
return, and ``python -m pipelines.stages <stage>`` runs the same code under ``dvc repro``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import torch

import ganmodels
from ganmodels.data import DataError, PreparedDataset, mixture_spec, prepare, read_source
from ganmodels.io import atomic_write
from ganmodels.train import Callback, Trainer, load_generator, seed_everything
from pipelines.artifacts import save_loss_curves, save_samples
from pipelines.config import RunConfig, load_run_config, model_config_for
from pipelines.gates import evaluate_gates

CACHE_DIR = Path(os.environ.get("GANPIPE_CACHE", ".cache"))


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Atomic JSON write (temp file + rename)."""
    path = Path(path)
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
    return path


# -- validate + prepare ----------------------------------------------------------------------


def validate_stage(cfg: RunConfig, out_dir: str | os.PathLike) -> dict:
    """Great Expectations checks on the raw source; raises ``DataValidationError`` on failure."""
    from pipelines.validation import ValidationConfig, validate_or_raise

    report = validate_or_raise(read_source(cfg.data), out_dir, ValidationConfig.from_dict(cfg.validation))
    return {"success": report.success, "n_samples": report.n_samples, "docs": str(report.docs_path),
            "summary": str(report.summary_path)}


def prepare_stage(cfg: RunConfig, out_path: str | os.PathLike) -> dict:
    """Read, resize, scale and split the data set; save it and return its content hash (the data version)."""
    data = prepare(read_source(cfg.data), cfg.data)
    data_hash = data.save(out_path)
    return {"path": str(out_path), "data_hash": data_hash, "n_train": len(data.x_train), "n_test": len(data.x_test),
            "sample_shape": list(data.sample_shape), "num_classes": data.num_classes, "kind": data.kind}


# -- train ------------------------------------------------------------------------------------


class LossCSV(Callback):
    """Per-step losses to a CSV (DVC plots read it); written to a temp name and renamed at the end."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []

    def on_step_end(self, trainer, step, logs):
        self.rows.append({"step": step, **logs})

    def on_train_end(self, trainer, result):
        if not self.rows:
            return
        keys = ["step"] + sorted({k for r in self.rows for k in r} - {"step"})
        with atomic_write(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


class SampleGrids(Callback):
    """Every ``every`` steps, a grid of samples from fixed latents, so grids are comparable across steps."""

    def __init__(self, out_dir: Path, every: int, n: int = 64, on_image: Callable[[Path, int], None] | None = None,
                 real: torch.Tensor | None = None):
        self.out_dir, self.every, self.n, self.on_image, self.real = out_dir, every, n, on_image, real
        self.paths: list[Path] = []

    def on_step_end(self, trainer, step, logs):
        if step % self.every == 0:
            self._save(trainer, step)

    def _save(self, trainer, step: int) -> None:
        from ganmodels.metrics.evaluate import sample_generator

        samples, _ = sample_generator(trainer.generator, self.n, seed=0)
        path = save_samples(samples, self.out_dir / f"step_{step:06d}.png", real=self.real)
        self.paths.append(path)
        if self.on_image:
            self.on_image(path, step)


def train_stage(cfg: RunConfig, data_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                callbacks: Iterable[Callback] = (), on_image: Callable[[Path, int], None] | None = None,
                on_metrics: Callable[[int, dict], None] | None = None, resume: bool = False) -> dict:
    """Train the configured model on the prepared data; raises ``TrainingDiverged`` when it cannot recover."""
    out_dir = Path(out_dir)
    data = PreparedDataset.load(data_path)
    seed_everything(cfg.seed)
    gan = ganmodels.build(cfg.model, model_config_for(cfg, data.sample_shape))
    every = cfg.tracking.sample_every or max(1, cfg.train.steps // 4)
    real_points = data.x_test[:1000] if data.kind == "points" else None
    losses = LossCSV(out_dir / "losses.csv")
    grids = SampleGrids(out_dir / "samples", every, n=64 if data.kind == "image" else 1000, on_image=on_image,
                        real=real_points)
    extra = list(callbacks) + _monitor_callbacks(cfg, data, on_metrics)
    trainer = Trainer(gan, data, cfg.train, workdir=out_dir, callbacks=[losses, grids, *extra],
                      data_info={"name": data.name, "hash": data.data_hash, "path": str(data_path)})
    result = trainer.fit(resume=resume)
    curves = save_loss_curves(losses.path, out_dir / "loss_curves.png") if losses.rows else None
    return {"checkpoint": str(result.checkpoint), "steps": result.steps, "seconds": round(result.seconds, 2),
            "rollbacks": result.rollbacks, "stopped_early": result.stopped_early, "stop_reason": result.stop_reason,
            "final_losses": result.logs, "losses_csv": str(losses.path),
            "loss_curves": str(curves) if curves else None, "sample_grids": [str(p) for p in grids.paths],
            "device": str(trainer.device), "parameters_G": sum(p.numel() for p in gan.G.parameters())}


def _monitor_callbacks(cfg: RunConfig, data: PreparedDataset,
                       log_fn: Callable[[int, dict], None] | None) -> list[Callback]:
    """A ``ModeMonitor`` when the data has modes to watch: 2D mixtures, or labelled images (domain classifier)."""
    if cfg.monitor.every <= 0:
        return []
    from ganmodels.train.monitor import ModeMonitor

    modes = classifier = None
    if data.kind == "points":
        try:
            modes = mixture_spec(data.name)
        except DataError:  # user point sets have no known modes
            return []
    elif data.num_classes:
        classifier, _ = domain_classifier(cfg, data)  # cached: the evaluate stage reuses it
    else:
        return []
    return [ModeMonitor.for_data(data, cfg.monitor, modes=modes, classifier=classifier, log_fn=log_fn)]


# -- evaluate ---------------------------------------------------------------------------------


def domain_classifier(cfg: RunConfig, data: PreparedDataset):
    """The offline domain classifier for this data version, trained once and cached by data hash."""
    from ganmodels.metrics import DomainClassifier, train_domain_classifier

    key = hashlib.sha256(f"{data.data_hash}:{cfg.eval.classifier_epochs}:{cfg.eval.seed}".encode()).hexdigest()[:16]
    path = CACHE_DIR / "classifiers" / f"{data.name}-{key}.pt"
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        return DomainClassifier.load(path), float(state["test_accuracy"])
    model, accuracy = train_domain_classifier(data.x_train, data.y_train, data.x_test, data.y_test, data.num_classes,
                                              epochs=cfg.eval.classifier_epochs, seed=cfg.eval.seed)
    model.save(path, test_accuracy=accuracy, data_hash=data.data_hash)
    return model, accuracy


class EvaluationError(RuntimeError):
    """The evaluation itself cannot be trusted (e.g. a weak domain classifier)."""


def primary_metric_for(cfg: RunConfig, metrics: dict[str, float]) -> str:
    if cfg.eval.primary_metric != "auto":
        return cfg.eval.primary_metric
    if cfg.data_kind == "points":
        return "reverse_kl"
    return "fid" if "fid" in metrics else "domain_fd"


def evaluate_stage(cfg: RunConfig, data_path: str | os.PathLike, checkpoint: str | os.PathLike,
                   out_dir: str | os.PathLike) -> dict:
    """Score the trained generator and judge it against the gates; writes metrics.json and gates.json."""
    from ganmodels.metrics import evaluate_generator
    from ganmodels.metrics.evaluate import sample_generator

    out_dir = Path(out_dir)
    data = PreparedDataset.load(data_path)
    G = load_generator(checkpoint)
    classifier, accuracy, modes = None, None, None
    if data.kind == "points":
        modes = mixture_spec(data.name)
    elif data.num_classes:
        classifier, accuracy = domain_classifier(cfg, data)
        if accuracy < cfg.eval.min_classifier_accuracy:
            raise EvaluationError(
                f"domain classifier reaches only {accuracy:.3f} held-out accuracy on {data.name} (needs "
                f">= {cfg.eval.min_classifier_accuracy}); raise eval.classifier_epochs or use FID with Inception weights")
    metrics = evaluate_generator(G, data, n_samples=cfg.eval.n_samples, classifier=classifier,
                                 inception_weights=cfg.eval.inception_weights, seed=cfg.eval.seed, modes=modes)
    if accuracy is not None:
        metrics["classifier_accuracy"] = accuracy
    primary = primary_metric_for(cfg, metrics)
    num_modes = len(modes[0]) if modes is not None else 0
    gates = evaluate_gates(metrics, cfg.gates, kind=data.kind, primary_metric=primary, num_modes=num_modes,
                           labelled=data.num_classes > 0)
    samples, _ = sample_generator(G, 64 if data.kind == "image" else 2500, seed=cfg.eval.seed)
    grid = save_samples(samples, out_dir / "samples.png", real=data.x_test if data.kind == "points" else None)
    write_json({k: float(v) for k, v in metrics.items()}, out_dir / "metrics.json")
    write_json({"primary_metric": primary, **gates.to_dict()}, out_dir / "gates.json")
    return {"metrics": metrics, "primary_metric": primary, "primary_value": metrics.get(primary),
            "gates": gates.to_dict(), "passed": gates.passed, "failed_gates": gates.failed,
            "samples": str(grid), "data_hash": data.data_hash}


# -- export -----------------------------------------------------------------------------------


def export_stage(cfg: RunConfig, checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """ONNX with a dynamic batch, checked against PyTorch in onnxruntime; raises ``OnnxMismatchError``."""
    from ganmodels.export import check_onnx, export_onnx

    out_dir = Path(out_dir)
    G = load_generator(checkpoint)
    path = export_onnx(G, out_dir / "generator.onnx", opset=cfg.export.opset)
    check = check_onnx(path, G, atol=cfg.export.atol)
    write_json(check, out_dir / "onnx_check.json")
    return {"onnx": str(path), **check}


# -- command line for dvc.yaml -----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages", description=__doc__)
    parser.add_argument("stage", choices=["prepare", "train", "evaluate", "export"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/prepared/dataset.pt")
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args(argv)
    from pipelines.cli import run_guarded
    from pipelines.settings import setup_environment

    setup_environment()

    def run() -> dict:
        cfg = load_run_config(args.params)
        art = Path(args.artifacts)
        if args.stage == "prepare":
            validate_stage(cfg, art / "validation")
            return prepare_stage(cfg, args.data)
        checkpoint = art / "train" / "checkpoints" / "last.pt"
        if args.stage == "train":
            return train_stage(cfg, args.data, art / "train")
        if args.stage == "evaluate":
            return evaluate_stage(cfg, args.data, checkpoint, art / "eval")
        return export_stage(cfg, checkpoint, art / "export")

    return run_guarded(lambda: print(json.dumps(run(), indent=2, default=str)))


if __name__ == "__main__":
    sys.exit(main())

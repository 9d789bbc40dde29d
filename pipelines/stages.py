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

from dataclasses import dataclass

import torch

import ganmodels
from ganmodels.data import DataError, DataKind, PreparedDataset, mixture_spec, prepare, read_source
from ganmodels.io import atomic_write
from ganmodels.train import Callback, Trainer, distributed, load_checkpoint, load_model, seed_everything
from pipelines.artifacts import (PREVIEW_SAMPLES, save_cycle_strips, save_loss_curves, save_samples, save_strips,
                                 save_sweep)
from pipelines.config import RunConfig, load_run_config, model_config_for
from pipelines.errors import EvaluationError
from pipelines.gates import evaluate_gates, failed_early_stop

CACHE_DIR = Path(os.environ.get("GANPIPE_CACHE", ".cache"))


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Atomic JSON write (temp file + rename)."""
    path = Path(path)
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Atomic text write (temp file + rename)."""
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write(text)
    return path


# -- validate + prepare ----------------------------------------------------------------------


def validate_stage(cfg: RunConfig, out_dir: str | os.PathLike) -> dict:
    """Great Expectations checks on the raw source; raises ``DataValidationError`` on failure."""
    from pipelines.validation import validate_or_raise

    report = validate_or_raise(read_source(cfg.data), out_dir, cfg.validation)
    return {"success": report.success, "n_samples": report.n_samples, "docs": str(report.docs_path),
            "summary": str(report.summary_path)}


def prepare_stage(cfg: RunConfig, out_path: str | os.PathLike) -> dict:
    """Read, resize, scale and split the data set; save it and return its content hash (the data version)."""
    source = read_source(cfg.data)
    data = prepare(source, cfg.data)
    if data.data_kind is not cfg.data_kind:  # the reader disagrees with what the data set declared
        raise DataError(f"data set {cfg.dataset!r} was declared {cfg.data_kind.value} but its reader produced "
                        f"{data.data_kind.value}; fix the data set's registration (or its files)")
    data_hash = data.save(out_path)
    return {"path": str(out_path), "data_hash": data_hash, "n_train": len(data.x_train), "n_test": len(data.x_test),
            "sample_shape": list(data.sample_shape), "num_classes": data.num_classes, "kind": data.data_kind.value,
            "class_names": list(data.class_names or []), "origin": source.origin}


# -- train ------------------------------------------------------------------------------------


class LossCSV(Callback):
    """Per-step losses to a CSV (DVC plots read it); written atomically at every checkpoint and at the end.

    Written with each checkpoint so that a resumed run finds the rows up to its checkpoint's step and
    continues the file instead of starting a new one at the resume step.
    """

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []

    def on_train_start(self, trainer):
        if trainer.step and self.path.is_file():  # resumed: keep the rows up to the checkpoint's step
            with open(self.path, newline="") as f:
                self.rows = [{k: (int(v) if k == "step" else float(v)) for k, v in row.items() if v != ""}
                             for row in csv.DictReader(f)]
            self.rows = [r for r in self.rows if r["step"] <= trainer.step]

    def on_step_end(self, trainer, step, logs):
        self.rows.append({"step": step, **logs})

    def on_checkpoint(self, trainer, path):
        self._write()

    def on_train_end(self, trainer, result):
        self._write()

    def _write(self):
        if not self.rows:
            return
        keys = ["step"] + sorted({k for r in self.rows for k in r} - {"step"})
        with atomic_write(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


class SampleGrids(Callback):
    """Every ``every`` steps, a grid of samples from fixed latents, so grids are comparable across steps."""

    def __init__(self, out_dir: Path, every: int, data: PreparedDataset,
                 on_image: Callable[[Path, int], None] | None = None):
        self.out_dir, self.every, self.data, self.on_image = out_dir, every, data, on_image
        self.paths: list[Path] = []

    def needs_live_state(self, trainer, step):
        return step % self.every == 0

    def on_step_end(self, trainer, step, logs):
        if self.needs_live_state(trainer, step):
            path = save_preview(trainer.model, self.data, self.out_dir / f"step_{step:06d}.png", G=trainer.generator)
            self.paths.append(path)
            if self.on_image:
                self.on_image(path, step)


def save_preview(model, data: PreparedDataset, path: Path, *, seed: int = 0, G=None) -> Path:
    """The model's samples as a picture: an image grid (one row per class for conditional models), a
    scatter over the real points, or input | bicubic | output | target strips for paired data."""
    samples = model.preview_samples(PREVIEW_SAMPLES[data.kind], seed=seed, G=G, data=data)
    if "targets" in samples.extra:
        return save_strips(samples.extra["inputs"], samples.fake, samples.extra["targets"], path)
    if "a2b2a" in samples.extra:
        x = samples.extra
        return save_cycle_strips((x["inputs_a"], x["a2b"], x["a2b2a"]), (x["inputs_b"], x["b2a"], x["b2a2b"]), path)
    return save_samples(samples.fake, path, real=data.x_test[:1000], labels=samples.labels)


def train_stage(cfg: RunConfig, data_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                callbacks: Iterable[Callback] = (), on_image: Callable[[Path, int], None] | None = None,
                on_metrics: Callable[[int, dict], None] | None = None, resume: bool | str = False) -> dict:
    """Train the configured model on the prepared data; raises ``TrainingDiverged`` when it cannot recover."""
    out_dir = Path(out_dir)
    data = PreparedDataset.load(data_path)
    seed_everything(cfg.seed)
    model = ganmodels.build(cfg.model, model_config_for(cfg, data.sample_shape, data.num_classes, data.input_shape))
    every = cfg.tracking.sample_every or max(1, cfg.train.steps // 4)
    losses = LossCSV(out_dir / "losses.csv")
    grids = SampleGrids(out_dir / "samples", every, data, on_image=on_image)
    # One of N data-parallel processes (pipelines.training) other than rank 0 only trains: the files,
    # samples and collapse monitor are rank 0's (its stop requests reach every process).
    main = distributed.current().main
    # Trains (and caches) the domain classifier: a weak one fails before training.
    refs = references(cfg, data) if main else References()
    # The caller's callbacks last: one of them may stop the run at the end of a step (a signal), after
    # every other callback has seen that step.
    extra = _monitor_callbacks(cfg, data, refs, on_metrics) + list(callbacks) if main else list(callbacks)
    trainer = Trainer(model, data, cfg.train, workdir=out_dir, callbacks=[losses, grids, *extra] if main else extra,
                      data_info={"name": data.name, "hash": data.data_hash, "path": str(data_path)})
    result = trainer.fit(resume=resume)
    curves = save_loss_curves(losses.path, out_dir / "loss_curves.png") if losses.rows else None
    return {"checkpoint": str(result.checkpoint), "steps": result.steps, "seconds": round(result.seconds, 2),
            "rollbacks": result.rollbacks, "stopped_early": result.stopped_early, "stop_reason": result.stop_reason,
            "resumed_from": result.resumed_from, "final_losses": result.logs, "losses_csv": str(losses.path),
            "loss_curves": str(curves) if curves else None, "sample_grids": [str(p) for p in grids.paths],
            "device": str(trainer.device), "parameters_G": sum(p.numel() for p in trainer.generator.parameters())}


@dataclass
class References:
    """What the data offers to measure a model against: a domain classifier (labelled images), the
    modes of a known 2D mixture, and a style classifier with its held-out accuracy (two domains)."""

    classifier: torch.nn.Module | None = None
    classifier_accuracy: float | None = None
    modes: tuple | None = None
    style_classifier: tuple[torch.nn.Module, float] | None = None


def references(cfg: RunConfig, data: PreparedDataset) -> References:
    """The references of ``data``; raises ``EvaluationError`` when its domain classifier is too weak to trust."""
    refs = References()
    try:
        refs.modes = mixture_spec(data.name)
    except DataError:  # not a known mixture (user point sets, images)
        pass
    if data.kind == "image" and data.num_classes:  # labelled images, or labelled pairs (a classifier of the targets)
        refs.classifier, refs.classifier_accuracy = domain_classifier(cfg, data)
        if refs.classifier_accuracy < cfg.eval.min_classifier_accuracy:
            raise EvaluationError(
                f"the domain classifier behind the offline metrics reaches only {refs.classifier_accuracy:.3f} "
                f"held-out accuracy on {data.name} (eval.min_classifier_accuracy is "
                f"{cfg.eval.min_classifier_accuracy}); raise eval.classifier_epochs, or install the FID Inception "
                "weights. Checked before training, so no training time was spent")
    if data.data_kind is DataKind.UNPAIRED_IMAGES:
        refs.style_classifier = style_classifier(cfg, data)
        gated = sorted(name for name in cfg.gates if name.startswith("style_transfer_"))
        accuracy = refs.style_classifier[1]
        if gated and accuracy < cfg.eval.min_classifier_accuracy:
            raise EvaluationError(
                f"the style classifier behind gates {gated} tells the real domains of {data.name} apart only "
                f"{accuracy:.3f} of the time (eval.min_classifier_accuracy is {cfg.eval.min_classifier_accuracy}); "
                "raise eval.classifier_epochs or drop those gates. Checked before training, so no training time "
                "was spent")
    return refs


# The mode-collapse monitor watches noise generators' class or mode coverage while they train.
MONITORED_KINDS = (DataKind.LABELLED_IMAGES, DataKind.POINTS)


def _monitor_callbacks(cfg: RunConfig, data: PreparedDataset, refs: References,
                       log_fn: Callable[[int, dict], None] | None) -> list[Callback]:
    """A ``ModeMonitor`` when the data has modes to watch: a known 2D mixture, or labelled images."""
    if cfg.monitor.every <= 0 or data.data_kind not in MONITORED_KINDS:
        return []
    from ganmodels.train.monitor import ModeMonitor

    if refs.modes is None and refs.classifier is None:
        return []
    return [ModeMonitor.for_data(data, cfg.monitor, modes=refs.modes, classifier=refs.classifier, log_fn=log_fn)]


# -- evaluate ---------------------------------------------------------------------------------


def domain_classifier(cfg: RunConfig, data: PreparedDataset):
    """The offline domain classifier for this data version, trained once and cached by data hash.

    It learns the classes from the real images of every domain the data has (both domains of
    unpaired data, so that it judges translations into either).
    """
    from ganmodels.metrics import train_domain_classifier

    def train():
        x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
        if data.b_train is not None:
            x_train, y_train = torch.cat([x_train, data.b_train]), torch.cat([y_train, data.yb_train])
            x_test, y_test = torch.cat([x_test, data.b_test]), torch.cat([y_test, data.yb_test])
        return train_domain_classifier(x_train, y_train, x_test, y_test, data.num_classes,
                                       epochs=cfg.eval.classifier_epochs, seed=cfg.eval.seed)

    return _cached_classifier(cfg, data, "", train)


def style_classifier(cfg: RunConfig, data: PreparedDataset):
    """The style classifier of two-domain data (real A vs real B), trained once and cached by data hash."""
    from ganmodels.metrics import train_style_classifier

    return _cached_classifier(cfg, data, "style", lambda: train_style_classifier(
        data, epochs=cfg.eval.classifier_epochs, seed=cfg.eval.seed))


def _cached_classifier(cfg: RunConfig, data: PreparedDataset, role: str, train: Callable[[], tuple]):
    """(model, held-out accuracy): loaded from the cache when this data version, epochs and seed trained
    it before, else ``train()`` and cached."""
    from ganmodels.metrics import DomainClassifier

    tag = f":{role}" if role else ""  # the domain classifier keeps the key it always had
    key = hashlib.sha256(f"{data.data_hash}:{cfg.eval.classifier_epochs}:{cfg.eval.seed}{tag}".encode()).hexdigest()[:16]
    path = CACHE_DIR / "classifiers" / f"{data.name}{'-' + role if role else ''}-{key}.pt"
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        return DomainClassifier.load(path), float(state["test_accuracy"])
    model, accuracy = train()
    model.save(path, test_accuracy=accuracy, data_hash=data.data_hash)
    return model, accuracy


def evaluate_stage(cfg: RunConfig, data_path: str | os.PathLike, checkpoint: str | os.PathLike,
                   out_dir: str | os.PathLike) -> dict:
    """Score the trained model and judge it against the gates; writes metrics.json and gates.json.

    A run the collapse monitor stopped early fails here too (gate ``early_stop``, read from the
    checkpoint), so the Prefect flow and ``dvc repro`` reject the same runs.
    """
    from ganmodels.metrics import evaluate_model

    out_dir = Path(out_dir)
    data = PreparedDataset.load(data_path)
    model = load_model(checkpoint)
    refs = references(cfg, data)
    metrics = _score(cfg, model, data, refs)
    gates = evaluate_gates(metrics, cfg.gates)
    failed = {**gates.failed, **failed_early_stop(str(load_checkpoint(checkpoint).get("stop_reason", "")))}
    grid = save_preview(model, data, out_dir / "samples.png", seed=cfg.eval.seed)
    sweeps = {}
    for option, values in model.sweeps().items():  # e.g. StyleGAN2's quality/diversity trade-off against psi
        sweeps[option] = {str(v): evaluate_model(model, data, n_samples=min(cfg.eval.n_samples, 1000),
                                                 classifier=refs.classifier, modes=refs.modes, seed=cfg.eval.seed,
                                                 cas_epochs=cfg.eval.cas_epochs, sample_options={option: v})
                          for v in values}
        write_json(sweeps[option], out_dir / f"{option}_sweep.json")
        save_sweep(sweeps[option], option, out_dir / f"{option}_sweep.png")
    primary = cfg.primary_metric
    write_json({k: float(v) for k, v in metrics.items()}, out_dir / "metrics.json")
    write_json({"primary_metric": primary, **gates.to_dict(), "passed": not failed, "failed": failed},
               out_dir / "gates.json")
    return {"metrics": metrics, "primary_metric": primary, "primary_value": metrics.get(primary),
            "gates": gates.to_dict(), "passed": not failed, "failed_gates": failed,
            "samples": str(grid), "data_hash": data.data_hash, "sweeps": sweeps}


def score_stage(cfg: RunConfig, data_path: str | os.PathLike, checkpoint: str | os.PathLike) -> dict[str, float]:
    """The metrics of a trained model (e.g. the registered champion) on ``data_path``'s reference set, with
    the same evaluation settings ``evaluate_stage`` uses, so two models scored this way compare."""
    data = PreparedDataset.load(data_path)
    model = load_model(checkpoint)
    return {k: float(v) for k, v in _score(cfg, model, data, references(cfg, data)).items()}


def _score(cfg: RunConfig, model, data: PreparedDataset, refs: References) -> dict:
    """The run's metrics with its evaluation settings: one place, so a challenger and a re-scored champion
    are always measured alike."""
    from ganmodels.metrics import evaluate_model

    return evaluate_model(model, data, n_samples=cfg.eval.n_samples, classifier=refs.classifier,
                          classifier_accuracy=refs.classifier_accuracy, inception_weights=cfg.eval.inception_weights,
                          seed=cfg.eval.seed, modes=refs.modes, cas_epochs=cfg.eval.cas_epochs,
                          style_classifier=refs.style_classifier)


# -- export -----------------------------------------------------------------------------------


def export_stage(cfg: RunConfig, checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """ONNX with a dynamic batch, checked against PyTorch in onnxruntime; raises ``OnnxMismatchError``."""
    from ganmodels.export import check_onnx, export_onnx

    out_dir = Path(out_dir)
    model = load_model(checkpoint)
    checks = {}
    for target in model.export_targets():  # one graph per generator: CycleGAN exports both directions
        path = export_onnx(model, out_dir / f"{target}.onnx", opset=cfg.export.opset, target=target)
        checks[target] = {"onnx": str(path), **check_onnx(path, model, atol=cfg.export.atol, target=target)}
    first = next(iter(checks.values()))
    result = {**first, "max_abs_diff": max(c["max_abs_diff"] for c in checks.values()),
              "files": {t: c["onnx"] for t, c in checks.items()}, "targets": checks}
    write_json(result, out_dir / "onnx_check.json")
    return result


# -- command line for dvc.yaml -----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages", description=__doc__)
    parser.add_argument("stage", choices=["prepare", "train", "evaluate", "export"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/prepared/dataset.pt")
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args(argv)
    from pipelines.errors import run_guarded
    from pipelines.settings import apply_threads, setup_environment

    setup_environment()

    def run() -> dict:
        cfg = load_run_config(args.params)
        apply_threads(cfg.threads)
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

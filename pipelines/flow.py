"""The Prefect flow ``training_pipeline``: validate → prepare → train → evaluate → gate → export → register.

Tasks are thin: each calls one stage function from ``pipelines.stages`` (the same code ``dvc repro``
runs) and logs what it returns to MLflow. Export runs before registration on purpose: a model whose
ONNX file does not reproduce PyTorch's output fails the run, and a failed run never registers.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task

from pipelines import stages
from pipelines.config import RunConfig, load_run_config, run_config_from_dict
from pipelines.errors import GateRejected
from pipelines.settings import apply_threads, setup_environment

__all__ = ["ENTRY_POINT", "GateRejected", "RunContext", "load_summary", "training_pipeline"]

ENTRY_POINT = "pipelines/flow.py:training_pipeline"  # as prefect.yaml's deployments name it


@dataclass(frozen=True)
class RunContext:
    project_dir: str
    run_dir: str
    run_id: str
    progress: bool


def _logger(ctx: RunContext, cfg: RunConfig):
    from mlflow import MlflowClient

    from pipelines.tracking import RunLogger, tracking_uri

    return RunLogger(MlflowClient(tracking_uri(cfg, Path(ctx.project_dir))), ctx.run_id)


@task(name="validate-data")
def validate_task(cfg: dict, ctx: RunContext) -> dict:
    config = run_config_from_dict(cfg)
    out = Path(ctx.run_dir) / "validation"
    try:
        return stages.validate_stage(config, out)
    finally:  # the report and Data Docs are logged whether validation passed or not
        _logger(ctx, config).log_artifact(out, "validation")


@task(name="prepare-data")
def prepare_task(cfg: dict, ctx: RunContext) -> dict:
    config = run_config_from_dict(cfg)
    result = stages.prepare_stage(config, Path(ctx.run_dir) / "data" / "dataset.pt")
    run = _logger(ctx, config)
    run.log_params({"data.hash": result["data_hash"], "data.n_train": result["n_train"],
                    "data.n_test": result["n_test"]})
    run.set_tags({"ganpipe.data_version": result["data_hash"]})
    run.log_dataset(config.data_name, result["data_hash"], result["origin"],
                    {k: result[k] for k in ("kind", "n_train", "n_test", "sample_shape", "num_classes")})
    return result


@task(name="train")
def train_task(cfg: dict, ctx: RunContext, data_path: str) -> dict:
    from pipelines.progress import ProgressBar
    from pipelines.tracking import MlflowLossLogger

    config = run_config_from_dict(cfg)
    run = _logger(ctx, config)
    callbacks = [MlflowLossLogger(run)]
    if ctx.progress:
        callbacks.append(ProgressBar(config.train.steps, f"training {config.model} on {config.dataset}"))
    out = Path(ctx.run_dir) / "train"
    result = stages.train_stage(config, data_path, out, callbacks=callbacks,
                                on_image=lambda path, step: run.log_artifact(path, "samples"),
                                on_metrics=lambda step, m: run.log_metrics({f"monitor.{k}": v for k, v in m.items()},
                                                                           step=step))
    for key in ("losses_csv", "loss_curves"):
        if result.get(key):
            run.log_artifact(result[key], "training")
    run.log_metrics({"train_seconds": result["seconds"], "rollbacks": result["rollbacks"]})
    run.set_tags({"ganpipe.device": result["device"], "ganpipe.stopped_early": result["stopped_early"],
                  **({"ganpipe.stop_reason": result["stop_reason"]} if result["stop_reason"] else {})})
    return result


@task(name="evaluate")
def evaluate_task(cfg: dict, ctx: RunContext, data_path: str, checkpoint: str) -> dict:
    config = run_config_from_dict(cfg)
    out = Path(ctx.run_dir) / "eval"
    result = stages.evaluate_stage(config, data_path, checkpoint, out)
    run = _logger(ctx, config)
    run.log_metrics(result["metrics"])
    run.log_artifact(out, "evaluation")
    return result


@task(name="export-onnx")
def export_task(cfg: dict, ctx: RunContext, checkpoint: str) -> dict:
    config = run_config_from_dict(cfg)
    result = stages.export_stage(config, checkpoint, Path(ctx.run_dir) / "export")
    run = _logger(ctx, config)
    run.log_metrics({"onnx_max_abs_diff": result["max_abs_diff"]})
    for path in result["files"].values():
        run.log_artifact(path, "onnx")
    return result


@task(name="register", retries=2, retry_delay_seconds=3)
def register_task(cfg: dict, ctx: RunContext, checkpoint: str, evaluation: dict) -> dict:
    from ganmodels.metrics import get_metric
    from pipelines.locks import store_lock
    from pipelines.registry import promote
    from pipelines.tracking import log_generator, tracking_uri

    config = run_config_from_dict(cfg)
    run = _logger(ctx, config)
    model_uri = log_generator(run, checkpoint)
    primary = evaluation["primary_metric"]
    # Read champion, compare, move alias: a compare-and-set only while no other run can do the same.
    with store_lock(tracking_uri(config, Path(ctx.project_dir)), ctx.project_dir):
        decision = promote(run.client, config.registered_name, run.run_id, model_uri, evaluation["metrics"], primary,
                           lower_is_better=get_metric(primary).lower_is_better)
    return {"model_uri": model_uri, "model_name": decision.model_name, "version": decision.version,
            "aliases": decision.aliases, "reason": decision.reason,
            "previous_champion_version": decision.previous_champion_version}


@task(name="reject")
def reject_task(cfg: dict, ctx: RunContext, failed_gates: dict) -> None:
    from pipelines.registry import record_rejection

    config = run_config_from_dict(cfg)
    record_rejection(_logger(ctx, config).client, ctx.run_id, failed_gates)


@task(name="model-card")
def report_task(cfg: dict, ctx: RunContext, summary: dict) -> str:
    """The run's model card (``report.html``), logged to the run; its summary becomes the run's description
    and, when registered, the version's."""
    from pipelines import card

    config = run_config_from_dict(cfg)
    run = _logger(ctx, config)
    card.save_card_pictures(summary, run.metric_histories("monitor."), seed=config.eval.seed)
    validation = Path(ctx.run_dir) / card.VALIDATION_SUMMARY
    lineage = card.Lineage(git_commit=summary["git_commit"], params=cfg,
                           validation=json.loads(validation.read_text()) if validation.is_file() else None)
    path = card.write_model_card(summary, lineage)
    run.log_artifact(path)
    description = card.summary_markdown(summary, lineage)
    run.set_tags({"mlflow.note.content": description})  # the run page's Description
    registry = summary.get("registry") or {}
    if registry.get("registered"):
        run.client.update_model_version(registry["model_name"], registry["version"], description=description)
    return str(path)


@flow(name="training_pipeline", log_prints=True)
def training_pipeline(model: str | None = None, dataset: str | None = None, preset: str | None = None,
                      overrides: list[str] | None = None, params_path: str | None = "params.yaml",
                      project_dir: str | None = None, progress: bool = False, entry_point: str = ENTRY_POINT) -> dict:
    """Train, gate and register one GAN. Returns the run summary (also written to ``<run_dir>/summary.json``).

    entry_point: what started the run, MLflow's ``mlflow.source.name`` (``ganpipe run`` from the CLI).
    """
    root = setup_environment(project_dir)
    params = None if params_path is None else (root / params_path if not Path(params_path).is_absolute()
                                               else Path(params_path))
    cfg = load_run_config(params, model=model, dataset=dataset, preset=preset, overrides=overrides or [])
    apply_threads(cfg.threads)
    run_name = f"{cfg.model}-{Path(cfg.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    from ganmodels.io import writable_dir

    run_dir = writable_dir(root / "runs" / run_name)  # an unwritable run directory fails now (exit 9)
    stages.write_json(cfg.to_dict(), run_dir / "config.json")

    from pipelines.tracking import RunLogger, git_commit, tracking_uri

    commit = git_commit(root)
    run = RunLogger.start(cfg, root, run_name, commit=commit, source=entry_point)
    run.log_artifact(run_dir / "config.json")
    ctx = RunContext(str(root), str(run_dir), run.run_id, progress)
    summary = {"status": "running", "run_name": run_name, "run_dir": str(run_dir), "mlflow_run_id": run.run_id,
               "experiment_id": run.experiment_id, "tracking_uri": tracking_uri(cfg, root), "git_commit": commit,
               "model": cfg.model, "dataset": cfg.dataset, "preset": cfg.preset,
               "registered_model": cfg.registered_name}
    config = cfg.to_dict()
    try:
        summary["validation"] = validate_task(config, ctx)
        prepared = prepare_task(config, ctx)
        summary["data"] = prepared
        trained = train_task(config, ctx, prepared["path"])
        summary["training"] = {k: trained[k] for k in ("steps", "seconds", "rollbacks", "stopped_early",
                                                       "stop_reason", "checkpoint", "device")}
        evaluation = evaluate_task(config, ctx, prepared["path"], trained["checkpoint"])
        summary["evaluation"] = {k: evaluation[k] for k in ("metrics", "primary_metric", "primary_value", "gates",
                                                             "samples")}
        summary["failed_gates"] = evaluation["failed_gates"]  # with early_stop when the monitor ended training
        if summary["failed_gates"]:
            reject_task(config, ctx, summary["failed_gates"])
            summary["status"] = "rejected"
            summary["registry"] = {"registered": False, "reason": "failed gates: " + ", ".join(summary["failed_gates"])}
            _finish(run, summary, "FINISHED", config, ctx)
            raise GateRejected(summary)
        summary["export"] = export_task(config, ctx, trained["checkpoint"])
        summary["registry"] = {"registered": True, **register_task(config, ctx, trained["checkpoint"], evaluation)}
        summary["status"] = "registered"
        _finish(run, summary, "FINISHED", config, ctx)
        return summary
    except GateRejected:
        raise
    except BaseException as e:
        summary["status"] = "failed"
        summary["error"] = f"{type(e).__name__}: {e}"
        _finish(run, summary, "FAILED", config, ctx, error=e)
        raise


def _finish(run, summary: dict, status: str, config: dict, ctx: RunContext,
            error: BaseException | None = None) -> None:
    """Model card, summary.json and the run's final tags and status, whatever the outcome.

    A run that failed still gets its card (what it got to, and why it stopped); an error while
    writing the card or talking to MLflow never masks the run's own error.
    """
    tags = {"ganpipe.status": summary["status"]}
    if error is not None:
        tags["ganpipe.error"] = summary["error"]
        tags["ganpipe.error_type"] = type(error).__name__
    path = Path(summary["run_dir"]) / "summary.json"
    try:
        summary["report"] = report_task(config, ctx, summary)
    except Exception as card_error:
        if error is None:
            raise
        print(f"ganpipe: no model card for this failed run: {type(card_error).__name__}: {card_error}",
              file=sys.stderr)
    try:
        if error is not None:  # the terminal gets one line (pipelines.errors.run_guarded); the log keeps it all
            summary["error_log"] = str(_write_error_log(Path(summary["run_dir"]), error))
        stages.write_json(summary, path)
    except OSError:  # a full disk must not mask the run's own error
        if error is None:
            raise
    try:
        run.set_tags(tags)
        run.log_artifact(path)
        run.end(status)
    except Exception:  # never mask the run's own error with a tracking error
        if error is None:
            raise


def _write_error_log(run_dir: Path, error: BaseException) -> Path:
    import traceback

    from ganmodels.io import atomic_write

    path = run_dir / "error.log"
    with atomic_write(path, "w") as f:
        f.write("".join(traceback.format_exception(error)))
    return path


def load_summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())

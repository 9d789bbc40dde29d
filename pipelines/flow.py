"""The Prefect flow ``training_pipeline``: validate → prepare → train → evaluate → gate → export → register.

Tasks are thin: each calls one stage function from ``pipelines.stages`` (the same code ``dvc repro``
runs) and logs what it returns to MLflow. Export runs before registration on purpose: a model whose
ONNX file does not reproduce PyTorch's output fails the run, and a failed run never registers.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import flow, task

from pipelines import stages
from pipelines.config import RunConfig, load_run_config, run_config_from_dict
from pipelines.errors import GateRejected
from pipelines.settings import apply_threads, setup_environment

__all__ = ["ENTRY_POINT", "GateRejected", "RunContext", "load_summary", "scheduled_pipeline", "training_pipeline"]

ENTRY_POINT = "pipelines/flow.py:training_pipeline"  # as prefect.yaml's deployments name it
PREFECT_FLOW_RUN = "prefect.flow-run."  # a Prefect event's resource id for a flow run: + its id


@dataclass(frozen=True)
class RunContext:
    project_dir: str
    run_dir: str
    run_id: str
    progress: bool
    nproc: int = 1  # training processes (torchrun) for this attempt


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
def prepare_task(cfg: dict, ctx: RunContext, record: dict | None = None) -> dict:
    """Prepare the data; on resume, into a side file first, so a changed data set is refused before it
    replaces the prepared data the run's checkpoint was trained on."""
    from pipelines.interrupt import kill_point
    from pipelines.runstate import RunRecord, check_same_data

    config = run_config_from_dict(cfg)
    final = Path(ctx.run_dir) / "data" / "dataset.pt"
    if record is None:
        result = stages.prepare_stage(config, final)
    else:
        staged = final.with_name("dataset.resume.pt")
        result = stages.prepare_stage(config, staged)
        try:
            check_same_data(RunRecord(**record), result["data_hash"])
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        os.replace(staged, final)
        result["path"] = str(final)
    kill_point("prepare")
    run = _logger(ctx, config)
    run.log_params({"data.hash": result["data_hash"], "data.n_train": result["n_train"],
                    "data.n_test": result["n_test"]})
    run.set_tags({"ganpipe.data_version": result["data_hash"]})
    run.log_dataset(config.data_name, result["data_hash"], result["origin"],
                    {k: result[k] for k in ("kind", "n_train", "n_test", "sample_shape", "num_classes")})
    return result


@task(name="train")
def train_task(cfg: dict, ctx: RunContext, data_path: str) -> dict:
    from pipelines.training import train

    config = run_config_from_dict(cfg)
    return train(config, _logger(ctx, config), data_path, Path(ctx.run_dir) / "train", nproc=ctx.nproc,
                 progress=ctx.progress, project_dir=ctx.project_dir)


@task(name="evaluate")
def evaluate_task(cfg: dict, ctx: RunContext, data_path: str, checkpoint: str) -> dict:
    from pipelines.interrupt import kill_point

    kill_point("evaluate")
    config = run_config_from_dict(cfg)
    out = Path(ctx.run_dir) / "eval"
    result = stages.evaluate_stage(config, data_path, checkpoint, out)
    run = _logger(ctx, config)
    run.log_metrics(result["metrics"])
    run.log_artifact(out, "evaluation")
    return result


@task(name="export-onnx")
def export_task(cfg: dict, ctx: RunContext, checkpoint: str) -> dict:
    from pipelines.interrupt import kill_point

    kill_point("export")
    config = run_config_from_dict(cfg)
    result = stages.export_stage(config, checkpoint, Path(ctx.run_dir) / "export")
    run = _logger(ctx, config)
    run.log_metrics({"onnx_max_abs_diff": result["max_abs_diff"]})
    for path in result["files"].values():
        run.log_artifact(path, "onnx")
    return result


@task(name="register", retries=2, retry_delay_seconds=3)
def register_task(cfg: dict, ctx: RunContext, checkpoint: str, evaluation: dict, fingerprint: dict,
                  rescore: dict | None = None) -> dict:
    """Idempotent per run: a resumed run reuses the generator it already logged and the version it
    already registered (``promote`` finds it by run id), so a kill anywhere here costs no duplicate."""
    from ganmodels.metrics import get_metric
    from pipelines.interrupt import kill_point
    from pipelines.locks import store_lock
    from pipelines.registry import ChampionRescore, promote
    from pipelines.tracking import log_generator, logged_generator, tracking_uri

    config = run_config_from_dict(cfg)
    run = _logger(ctx, config)
    model_uri = logged_generator(run) or log_generator(run, checkpoint)
    kill_point("register.model_logged")
    primary = evaluation["primary_metric"]
    # Read champion, compare, move alias: a compare-and-set only while no other run can do the same.
    with store_lock(tracking_uri(config, Path(ctx.project_dir)), ctx.project_dir):
        decision = promote(run.client, config.registered_name, run.run_id, model_uri, evaluation["metrics"], primary,
                           lower_is_better=get_metric(primary).lower_is_better, fingerprint=fingerprint,
                           champion_rescore=ChampionRescore(**rescore) if rescore else None)
    return {"model_uri": model_uri, "model_name": decision.model_name, "version": decision.version,
            "aliases": decision.aliases, "reason": decision.reason,
            "previous_champion_version": decision.previous_champion_version,
            **({"champion_rescore": rescore} if rescore else {})}


@task(name="rescore-champion")
def rescore_task(cfg: dict, ctx: RunContext, data_path: str, data_version: str) -> dict | None:
    """The champion's primary metric on this run's reference set, when the champion was scored on other data.

    Without this, a champion scored on last month's test split would be compared with a challenger
    scored on this month's: the decision would reflect the data, not the models.
    """
    from pipelines.registry import CHAMPION, version_by_alias
    from pipelines.tracking import download_version_checkpoint

    config = run_config_from_dict(cfg)
    run = _logger(ctx, config)
    try:
        champion = version_by_alias(run.client, config.registered_name, CHAMPION)
    except Exception:  # no registered model of this name yet
        return None
    if champion is None or champion.run_id == ctx.run_id:
        return None
    own_data = champion.tags.get("ganpipe.data_version", "")
    if own_data == data_version:
        return None
    primary = config.primary_metric
    with download_version_checkpoint(run.client, config.registered_name, champion.version) as checkpoint:
        metrics = stages.score_stage(config, data_path, checkpoint)
    if primary not in metrics:
        return None
    original = champion.tags.get(f"metric.{primary}")
    return {"version": str(champion.version), "value": float(metrics[primary]), "data_version": data_version,
            "original_value": float(original) if original is not None else None, "original_data_version": own_data}


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
                      project_dir: str | None = None, progress: bool = False, entry_point: str = ENTRY_POINT,
                      resume: str | None = None, force: bool = False, nproc: int | None = None) -> dict:
    """Train, gate and register one GAN. Returns the run summary (also written to ``<run_dir>/summary.json``).

    entry_point: what started the run, MLflow's ``mlflow.source.name`` (``ganpipe run`` from the CLI).
    resume: a run name under runs/, ``latest``, or ``auto`` (the run this Prefect flow run started
      before it was retried, else a new run): continue that run from its last checkpoint, in the same
      MLflow run, with the configuration it was started with (model, dataset, preset and overrides
      given here must be empty). Refused (``ResumeRefused``, exit 2) when its resolved config, the code
      or the data changed since.
    force: train and register even when a registered version has this run's data version, code
      version and params hash (otherwise the run reports "up to date" and trains nothing).
    nproc: training processes for this attempt (default ``run.nproc``); a resumed run may use another
      number: the checkpoint does not depend on it.
    """
    from pipelines.interrupt import RunInterrupted, stop_on_signals
    from pipelines.runstate import FINISHED, RunRecord, code_version, params_hash

    root = setup_environment(project_dir)
    request = {"model": model, "dataset": dataset, "preset": preset, "overrides": list(overrides or []),
               "params_path": params_path, "force": force}
    record, run_dir = _resumed_record(root, resume, request)
    resuming = record is not None  # resume="auto" on a first attempt starts a new run
    if resuming:
        request = record.request
        force = force or bool(request.get("force"))  # a forced run stays forced when it is resumed
    params_path = request["params_path"]
    params = None if params_path is None else (root / params_path if not Path(params_path).is_absolute()
                                               else Path(params_path))
    cfg = load_run_config(params, model=request["model"], dataset=request["dataset"], preset=request["preset"],
                          overrides=request["overrides"])
    apply_threads(cfg.threads)
    from pipelines.training import check_processes

    check_processes(cfg, nproc or cfg.nproc)  # before a run is started: a bad count is bad input (exit 2)
    config = cfg.to_dict()
    code = code_version()

    from pipelines.tracking import RunLogger, git_commit, tracking_uri

    commit = git_commit(root)
    if record is not None:
        from pipelines.runstate import check_unchanged

        check_unchanged(record, config, code)
        previous = _previous_summary(run_dir)
        if previous.get("status") in FINISHED:  # nothing left to do: report what it ended with
            if previous["status"] == "rejected":
                raise GateRejected(previous)
            return previous
        run_name = record.run_name
        flow_run_id = _prefect_flow_run_id()
        ids = record.extra.setdefault("prefect_flow_run_ids", [])
        if flow_run_id and flow_run_id not in ids:  # a crash of this attempt must find the run too
            ids.append(flow_run_id)
        record.save(run_dir)
        run = RunLogger.reopen(cfg, root, record.mlflow_run_id)
    else:
        run_name = f"{cfg.model}-{Path(cfg.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        from ganmodels.io import writable_dir

        run_dir = writable_dir(root / "runs" / run_name)  # an unwritable run directory fails now (exit 9)
        stages.write_text(cfg.to_json(), run_dir / "config.json")
        run = RunLogger.start(cfg, root, run_name, commit=commit, source=entry_point)
        record = RunRecord(run_name, run.run_id, request, config, code, params_hash(config), started=time.time(),
                           extra={"prefect_flow_run_ids": [i for i in [_prefect_flow_run_id()] if i]})
        record.save(run_dir)
        run.log_artifact(run_dir / "config.json")
    ctx = RunContext(str(root), str(run_dir), run.run_id, progress, nproc or cfg.nproc)
    summary = {"status": "running", "run_name": run_name, "run_dir": str(run_dir), "mlflow_run_id": run.run_id,
               "experiment_id": run.experiment_id, "tracking_uri": tracking_uri(cfg, root), "git_commit": commit,
               "model": cfg.model, "dataset": cfg.dataset, "preset": cfg.preset,
               "registered_model": cfg.registered_name, "code_version": code, "params_hash": record.params_hash,
               "resume_command": f"ganpipe run --resume {run_name}"}
    if resuming:
        summary["resumed"] = True
    run.set_tags({"ganpipe.code_version": code, "ganpipe.params_hash": record.params_hash})
    try:
        with stop_on_signals():
            return _stages(config, ctx, run, summary, record, run_dir, resumed=resuming, force=force)
    except GateRejected:
        raise
    except RunInterrupted as stop:
        stop.hint = f"checkpoint kept; resume with: ganpipe run --resume {run_name}"
        summary["status"] = "interrupted"
        summary["error"] = f"{stop}; {stop.hint}"
        _finish(run, summary, "KILLED", config, ctx, error=stop, card=False)
        raise
    except BaseException as e:
        summary["status"] = "failed"
        summary["error"] = f"{type(e).__name__}: {e}"
        _finish(run, summary, "FAILED", config, ctx, error=e)
        raise


def _stages(config: dict, ctx: RunContext, run, summary: dict, record, run_dir: Path, *, resumed: bool,
            force: bool) -> dict:
    """validate → prepare → (up to date?) → train → evaluate → gate → export → (re-score champion) → register."""
    from pipelines.interrupt import kill_point
    from pipelines.registry import up_to_date_version

    cfg = run_config_from_dict(config)
    summary["validation"] = validate_task(config, ctx)
    prepared = prepare_task(config, ctx, record=asdict(record) if resumed else None)
    summary["data"] = prepared
    record.data_version = prepared["data_hash"]
    record.save(run_dir)
    fingerprint = {"ganpipe.data_version": prepared["data_hash"], "ganpipe.code_version": record.code_version,
                   "ganpipe.params_hash": record.params_hash}
    current = None if force else up_to_date_version(run.client, cfg.registered_name, fingerprint,
                                                    exclude_run_id=ctx.run_id)
    if current is not None:
        summary["status"] = "up_to_date"
        summary["registry"] = {"registered": False, "up_to_date": True, "version": str(current.version),
                               "reason": f"up to date: {cfg.registered_name} v{current.version} was trained "
                                         "on the same data version, code version and params; nothing "
                                         "trained or registered (--force retrains)"}
        _finish(run, summary, "FINISHED", config, ctx, card=False)
        return summary
    trained = train_task(config, ctx, prepared["path"])
    summary["training"] = {k: trained[k] for k in ("steps", "seconds", "rollbacks", "stopped_early",
                                                   "stop_reason", "checkpoint", "device", "resumed_from")}
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
    rescore = rescore_task(config, ctx, prepared["path"], prepared["data_hash"])
    summary["registry"] = {"registered": True, **register_task(config, ctx, trained["checkpoint"], evaluation,
                                                               fingerprint, rescore)}
    summary["status"] = "registered"
    kill_point("finish")
    _finish(run, summary, "FINISHED", config, ctx)
    return summary


# Automatic resumes (a Prefect retry or crash trigger) of one run stop after this many: a run that
# crashes the same way every time must fail for a person to look at, not loop.
MAX_AUTOMATIC_RESUMES = 3


def _resumed_record(root: Path, resume: str | None, request: dict):
    """(record, run dir) of the run to continue, or (None, None) for a new run."""
    from pipelines.errors import UsageError
    from pipelines.runstate import ResumeRefused, RunRecord, find_run_dir

    if not resume:
        return None, None
    if resume == "auto" or resume.startswith(PREFECT_FLOW_RUN):
        # "auto": a Prefect retry of this flow run; "prefect.flow-run.<id>": the crash trigger in prefect.yaml
        # names the crashed flow run. Either way, the run that flow run started, if it got that far.
        wanted = _prefect_flow_run_id() if resume == "auto" else resume[len(PREFECT_FLOW_RUN):]
        for path in sorted((root / "runs").glob("*/run.json")):
            record = RunRecord.load(path.parent)
            if wanted and wanted in record.extra.get("prefect_flow_run_ids", []):
                resumes = int(record.extra.get("automatic_resumes", 0)) + 1
                if resumes > MAX_AUTOMATIC_RESUMES:
                    raise ResumeRefused(f"run {record.run_name} was resumed automatically {resumes - 1} times; "
                                        f"not again: look at runs/{record.run_name}, then `ganpipe run --resume "
                                        f"{record.run_name}` by hand")
                record.extra["automatic_resumes"] = resumes
                return record, path.parent
        return None, None
    given = [f"--{k}" for k in ("model", "dataset", "preset") if request[k]] + (["--set"] if request["overrides"]
                                                                                else [])
    if given:
        raise UsageError(f"--resume continues run {resume!r} with its own settings; drop {', '.join(given)} "
                         "(or start a new run without --resume)")
    run_dir = find_run_dir(root, resume)
    return RunRecord.load(run_dir), run_dir


def _prefect_flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # outside a flow run
        return None


def _previous_summary(run_dir: Path) -> dict:
    try:
        return load_summary(run_dir)
    except (OSError, ValueError):
        return {}


def _finish(run, summary: dict, status: str, config: dict, ctx: RunContext,
            error: BaseException | None = None, card: bool = True) -> None:
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
        if card:  # not for a run stopped by a signal (it must stop promptly) or one that trained nothing
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


# The deployments' flow (prefect.yaml): the same flow, retried by Prefect after a failure with
# ``resume="auto"``, which continues the run the failed attempt started from its last checkpoint.
# ``ganpipe run`` calls ``training_pipeline`` itself: no retries, a failure is reported at once.
scheduled_pipeline = training_pipeline.with_options(retries=2, retry_delay_seconds=60)

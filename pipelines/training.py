"""The train step of ``ganpipe run``: in this process, or on N processes started by ``torchrun`` (``--nproc N``).

One process: ``train`` runs ``stages.train_stage`` here with the run's callbacks (MLflow step metrics,
sample grids, the progress bar, checkpoint-on-signal).

N processes (``ganpipe run --nproc N``, ``run.nproc`` in params.yaml): ``train`` starts

    torchrun --standalone --nproc-per-node N -m pipelines.training <run files>

and waits. Every process trains its share of the global batch (``ganmodels.train.distributed``);
rank 0 alone logs to MLflow, writes samples, checkpoints and the result this process reads back;
evaluation, export and registration stay here, after training, so they run once. torchrun's output
goes to ``<run>/train/torchrun.log`` (a failure prints one line on the terminal, not N tracebacks).

* SIGINT/SIGTERM here are forwarded to torchrun, which passes them to every process; they finish
  the step, agree to stop, rank 0 checkpoints, and the run ends as an interrupted one-process run
  does (exit 130/143, MLflow run KILLED, the resume command printed).
* A process that dies (killed, out of memory) makes torchrun stop the others; the run fails with
  exit 10 naming the rank, registers nothing, and keeps the last checkpoint:
  ``ganpipe run --resume RUN [--nproc N]`` continues from it, on any number of processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from ganmodels.train import Callback
from pipelines import stages
from pipelines.config import RunConfig, run_config_from_dict
from pipelines.errors import RunInterrupted, TrainingProcessFailed

RESULT_FILE = "result.json"
LOG_FILE = "torchrun.log"
KILL_RANK_ENV = "GANPIPE_TEST_KILL_RANK"  # tests: which rank GANPIPE_TEST_KILL_AT applies to (default 0)


def train(config: RunConfig, run, data_path: str, out: Path, *, nproc: int = 1, progress: bool = False,
          run_id: str | None = None, project_dir: str | None = None) -> dict:
    """Train, log what training produced to ``run`` (a ``RunLogger``) and return the stage's result."""
    if nproc > 1:
        result = _launch(config, data_path, out, nproc, run_id=run_id or run.run_id,
                         project_dir=project_dir or os.getcwd())
    else:
        result = _train_here(config, run, data_path, out, progress=progress)
    for key in ("losses_csv", "loss_curves"):
        if result.get(key):
            run.log_artifact(result[key], "training")
    run.log_metrics({"train_seconds": result["seconds"], "rollbacks": result["rollbacks"]})
    run.set_tags({"ganpipe.device": result["device"], "ganpipe.nproc": nproc,
                  "ganpipe.stopped_early": result["stopped_early"],
                  **({"ganpipe.stop_reason": result["stop_reason"]} if result["stop_reason"] else {})})
    return result


def _train_here(config: RunConfig, run, data_path: str, out: Path, *, progress: bool,
                last: list[Callback] | None = None) -> dict:
    """``train_stage`` with the run's callbacks; ``last`` defaults to checkpoint-on-signal."""
    from pipelines.interrupt import CheckpointOnSignal, training_window
    from pipelines.progress import ProgressBar
    from pipelines.tracking import MlflowLossLogger

    callbacks: list[Callback] = [MlflowLossLogger(run)] if run is not None else []
    if progress:
        callbacks.append(ProgressBar(config.train.steps, f"training {config.model} on {config.dataset}"))
    callbacks += last if last is not None else [CheckpointOnSignal()]  # last: a checkpoint every callback saw
    on_image = on_metrics = None
    if run is not None:
        def on_image(path, step):
            run.log_artifact(path, "samples")

        def on_metrics(step, metrics):
            run.log_metrics({f"monitor.{k}": v for k, v in metrics.items()}, step=step)
    with training_window():
        # "auto": a resumed run continues from its last checkpoint; a new run has none and starts at step 0.
        return stages.train_stage(config, data_path, out, callbacks=callbacks, resume="auto", on_image=on_image,
                                  on_metrics=on_metrics)


# -- N processes: this side ------------------------------------------------------------------------------


def check_processes(config: RunConfig, nproc: int) -> None:
    """Refuse (exit 2, before anything runs) a process count the run cannot be split over."""
    from pipelines.errors import ConfigError

    if nproc <= 1:
        return
    batch = config.train.batch_size
    if batch % nproc:
        raise ConfigError(f"--nproc {nproc} (run.nproc): train.batch_size={batch} must be divisible by the number of "
                          f"training processes (the global batch is split evenly); choose a divisor of {batch}")
    import ganmodels

    shrink = int(getattr(ganmodels.registry.make_config(config.model, dict(config.model_overrides)),
                         "pl_batch_shrink", 0) or 0)
    if shrink and (batch // shrink) % nproc:
        raise ConfigError(f"--nproc {nproc} (run.nproc): the path-length batch train.batch_size / "
                          f"model.pl_batch_shrink = {batch // shrink} must be divisible by the number of processes")
    if _cuda(config):
        import torch

        if nproc > torch.cuda.device_count():
            raise ConfigError(f"--nproc {nproc} (run.nproc): one process per GPU, and this machine has "
                              f"{torch.cuda.device_count()}; use --nproc {torch.cuda.device_count()} or fewer")


def _launch(config: RunConfig, data_path: str, out: Path, nproc: int, *, run_id: str, project_dir: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    config_file = stages.write_text(config.to_json(), out / "run_config.json")
    result_file = out / RESULT_FILE
    result_file.unlink(missing_ok=True)
    log = out / LOG_FILE
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "pipelines.training", "--config", str(config_file), "--data", str(data_path), "--out", str(out),
           "--run-id", run_id, "--project-dir", project_dir]
    print(f"training on {nproc} processes (torchrun, {'nccl' if _cuda(config) else 'gloo'}); log: {log}",
          file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with open(log, "a") as log_file:
        # Its own session: a terminal's Ctrl-C reaches this process only, which forwards it once.
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = proc.wait()
        except RunInterrupted as stop:
            proc.send_signal(stop.signum)  # torchrun passes it to every process: finish the step, checkpoint
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        except BaseException:
            proc.kill()
            raise
    if code != 0 or not result_file.is_file():
        raise TrainingProcessFailed(_failure(log, code, nproc))
    return json.loads(result_file.read_text())


def _cuda(config: RunConfig) -> bool:
    from ganmodels.train import resolve_device

    return resolve_device(config.train.device).type == "cuda"


def _failure(log: Path, code: int, nproc: int) -> str:
    """One line on why the processes failed, from torchrun's root-cause report when it wrote one."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    cause = text[text.rfind("Root Cause"):] if "Root Cause" in text else ""
    rank = re.search(r"rank\s*:\s*(\d+)", cause)
    status = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
    what = f"training process rank {rank.group(1)}" if rank else f"one of the {nproc} training processes"
    how = ""
    if status:
        value = int(status.group(1))
        how = f" (killed by {signal.Signals(-value).name})" if value < 0 and -value in signal.valid_signals() \
            else f" (exit status {value})"
    # A process that raised: its last exception line (the others' "connection closed" follow from it).
    error = [ln.split(":", 1)[1].strip() for ln in text.splitlines()
             if rank and re.match(rf"\s*\[rank{rank.group(1)}\]:\s*[\w.]+(Error|Exception)\b", ln)]
    detail = f": {error[-1]}" if error else ""
    return f"{what} failed{how}{detail}; torchrun exited {code}; see {log}"


# -- N processes: each process (torchrun runs this module) -------------------------------------------------


class StopOnSignal(Callback):
    """A worker's SIGINT/SIGTERM (passed on by torchrun) asks the trainer to stop after this step; the
    trainer makes every process agree, and rank 0 checkpoints at the end of ``fit``."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._note)

    def _note(self, signum, frame) -> None:
        if self.signum is None:  # a repeated signal changes nothing: the step still finishes
            self.signum = signum

    def needs_live_state(self, trainer, step) -> bool:
        return self.signum is not None

    def on_step_end(self, trainer, step, logs) -> None:
        from pipelines.interrupt import kill_point

        kill_point("train.step")
        if self.signum is not None:
            trainer.request_stop(f"stopped by {signal.Signals(self.signum).name}")

    def on_checkpoint(self, trainer, path) -> None:
        from pipelines.interrupt import kill_point

        kill_point("train.checkpoint")


def worker(argv: list[str] | None = None) -> int:
    import argparse

    from pipelines.interrupt import KILL_ENV
    from pipelines.settings import apply_threads, setup_environment

    parser = argparse.ArgumentParser(prog="python -m pipelines.training", description="one data-parallel "
                                     "training process of `ganpipe run --nproc N` (started by torchrun)")
    for name in ("--config", "--data", "--out", "--run-id", "--project-dir"):
        parser.add_argument(name, required=True)
    args = parser.parse_args(argv)
    setup_environment(args.project_dir)
    stop = StopOnSignal()
    stop.install()
    from ganmodels.train.distributed import init_from_env

    config = run_config_from_dict(json.loads(Path(args.config).read_text()))
    apply_threads(config.threads)
    process = init_from_env(config.train.device)
    if process.rank != int(os.environ.get(KILL_RANK_ENV, "0")):
        os.environ.pop(KILL_ENV, None)
    run = None
    if process.main:
        from mlflow import MlflowClient

        from pipelines.tracking import RunLogger, tracking_uri

        run = RunLogger(MlflowClient(tracking_uri(config, Path(args.project_dir))), args.run_id)
    result = _train_here(config, run, args.data, Path(args.out), progress=False, last=[stop])
    if process.main:
        stages.write_json(result, Path(args.out) / RESULT_FILE)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return 128 + stop.signum if stop.signum is not None else 0


if __name__ == "__main__":
    sys.exit(worker())

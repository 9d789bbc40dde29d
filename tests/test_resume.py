"""Resume after an interruption, in process: time-based checkpoints, SIGINT/SIGTERM handled between
steps, the run record's refusals, and the registry's idempotent registration and up-to-date check.

The end-to-end versions (``ganpipe run`` killed with SIGKILL at named points, then resumed) are in
``test_resume_e2e.py``.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

import ganmodels
from ganmodels.train import Callback, TrainConfig, Trainer, load_checkpoint
from pipelines.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, RunInterrupted
from pipelines.interrupt import CheckpointOnSignal, stop_on_signals, training_window
from pipelines.runstate import ResumeRefused, RunRecord, check_same_data, check_unchanged, params_hash

SMALL_MLP = {"g_width": 32, "g_depth": 2, "d_width": 32, "d_depth": 2}


def make_trainer(data, tmp_path, callbacks=(), **train):
    torch.manual_seed(0)
    gan = ganmodels.build("mlp2d", SMALL_MLP)
    cfg = TrainConfig(**{"steps": 12, "batch_size": 32, "device": "cpu", "checkpoint_every": 1000, **train})
    return Trainer(gan, data, cfg, workdir=tmp_path, callbacks=list(callbacks))


def weights(trainer) -> dict[str, torch.Tensor]:
    state = trainer.state_dict()
    return {f"{part}.{net}.{k}": v.clone() for part in ("networks", "ema") for net, sd in state[part].items()
            for k, v in sd.items()}


class Count(Callback):
    def __init__(self):
        self.steps: list[int] = []

    def on_checkpoint(self, trainer, path):
        self.steps.append(trainer.step)


class SignalAt(Callback):
    """Sends ``signum`` to this process at the end of step ``step`` (before the last callback runs)."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_step_end(self, trainer, step, logs):
        if step == self.step:
            os.kill(os.getpid(), self.signum)


def test_checkpoint_seconds_adds_checkpoints_between_step_checkpoints(tiny_points, tmp_path):
    by_steps = Count()
    make_trainer(tiny_points, tmp_path / "a", [by_steps], checkpoint_every=5).fit()
    assert by_steps.steps == [5, 10, 12]  # every 5 steps, and the end
    by_time = Count()
    # A tiny interval: due after every step, so every step is checkpointed though checkpoint_every is 1000.
    make_trainer(tiny_points, tmp_path / "b", [by_time], checkpoint_seconds=1e-9).fit()
    assert by_time.steps == list(range(1, 12)) + [12]
    with pytest.raises(ValueError, match="checkpoint_seconds"):
        TrainConfig(checkpoint_seconds=-1)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, EXIT_INTERRUPTED)])
def test_a_signal_while_training_checkpoints_the_finished_step_and_resume_is_exact(tiny_points, tmp_path, signum,
                                                                                   code):
    reference = make_trainer(tiny_points, tmp_path / "ref")
    reference.fit()
    with stop_on_signals(), training_window():
        stopped = make_trainer(tiny_points, tmp_path / "run", [SignalAt(7, signum), CheckpointOnSignal()])
        with pytest.raises(RunInterrupted) as info:
            stopped.fit()
    assert info.value.exit_code == code == 128 + signum
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 7  # the step in progress finished, then the checkpoint, then the stop
    resumed = make_trainer(tiny_points, tmp_path / "run")
    assert resumed.fit(resume=True).resumed_from == 7
    ref, got = weights(reference), weights(resumed)
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)  # bitwise, on CPU with one thread


def test_signals_outside_training_stop_at_once_and_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match="SIGTERM"):
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # Python runs a handler between bytecodes of the main thread
                pass
    assert signal.getsignal(signal.SIGTERM) is before


def record(config: dict, data_version: str | None = "d" * 64) -> RunRecord:
    return RunRecord("dcgan-digits-x", "run-id", {"model": None, "dataset": None, "preset": "smoke", "overrides": [],
                                                   "params_path": "params.yaml"}, config, "code1", params_hash(config),
                     data_version=data_version)


def test_resume_is_refused_when_config_code_or_data_changed():
    config = {"train": {"steps": 20, "lr_g": 0.0002, "checkpoint_every": 5}, "tracking": {"experiment": "a"}}
    rec = record(config)
    # Where the run is tracked and how often it saves do not change the model: resumable.
    check_unchanged(rec, {**config, "train": {**config["train"], "checkpoint_every": 50},
                          "tracking": {"experiment": "b"}}, "code1")
    with pytest.raises(ResumeRefused, match=r"train\.lr_g: 0\.0002 -> 0\.001.*restore params\.yaml"):
        check_unchanged(rec, {**config, "train": {**config["train"], "lr_g": 0.001}}, "code1")
    with pytest.raises(ResumeRefused, match="code changed"):
        check_unchanged(rec, config, "code2")
    with pytest.raises(ResumeRefused, match="data changed"):
        check_same_data(rec, "e" * 64)
    check_same_data(record(config, data_version=None), "e" * 64)  # killed before its data version was known


def test_params_hash_ignores_tracking_and_checkpoint_frequency():
    config = {"train": {"steps": 20, "checkpoint_every": 5, "checkpoint_seconds": 600.0}, "tracking": {"x": 1}}
    same = {"train": {"steps": 20, "checkpoint_every": 7, "checkpoint_seconds": 0.0}, "tracking": {"x": 2}}
    assert params_hash(config) == params_hash(same)
    assert params_hash(config) != params_hash({**config, "train": {**config["train"], "steps": 21}})


def test_a_prefect_retry_or_crash_trigger_finds_the_run_its_flow_run_started(tmp_path, monkeypatch):
    from pipelines import flow

    rec = record({"train": {"steps": 20}})
    rec.extra = {"prefect_flow_run_ids": ["first-attempt", "resumed-attempt"]}
    run_dir = tmp_path / "runs" / rec.run_name
    rec.save(run_dir)
    request = {"model": None, "dataset": "digits", "preset": "default", "overrides": [], "params_path": "params.yaml"}
    # The crash trigger names the crashed flow run; a resumed attempt's id counts as the run's too.
    found, where = flow._resumed_record(tmp_path, "prefect.flow-run.resumed-attempt", request)
    assert (found.run_name, where) == (rec.run_name, run_dir)
    # A retry in process: resume="auto" and the same flow run id.
    monkeypatch.setattr(flow, "_prefect_flow_run_id", lambda: "first-attempt")
    assert flow._resumed_record(tmp_path, "auto", request)[0].run_name == rec.run_name
    monkeypatch.setattr(flow, "_prefect_flow_run_id", lambda: "a-new-flow-run")
    assert flow._resumed_record(tmp_path, "auto", request) == (None, None)  # its first attempt: a new run
    # A run that keeps crashing is not resumed forever.
    rec.extra["automatic_resumes"] = flow.MAX_AUTOMATIC_RESUMES
    rec.save(run_dir)
    with pytest.raises(ResumeRefused, match="resumed automatically 3 times"):
        flow._resumed_record(tmp_path, "prefect.flow-run.first-attempt", request)
    # By hand, a run's own settings only.
    with pytest.raises(Exception, match="drop --dataset"):
        flow._resumed_record(tmp_path, rec.run_name, request)
    assert flow._resumed_record(tmp_path, "latest", {**request, "dataset": None, "preset": None})[0].run_name == \
        rec.run_name


def test_resume_of_an_unknown_run_exits_2_before_anything_starts(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--resume", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "--resume no-such-run" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--resume", "latest"]) == 2
    assert "no run to resume" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()

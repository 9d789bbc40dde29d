"""End to end: ``ganpipe run`` killed (SIGKILL at named points, SIGTERM, SIGINT) and resumed, scheduled
runs that find their model up to date, and a champion re-scored when the data changed.

One module-scoped project (its own git repository, MLflow SQLite store and a real Prefect server)
with a tiny configuration: the smoke preset at 20 steps, a checkpoint every 5 steps. The reference
is a run never interrupted: every killed-and-resumed run must end with the same generator bitwise
(CPU, one thread), the same per-step losses, one MLflow run and exactly one new registered version.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from test_pipeline_e2e import BIN, NAME, Project, cli_env, explain, make_project, prefect_api, versions  # noqa: F401

TINY = ("--preset", "smoke", "--set", "train.steps=20", "--set", "train.checkpoint_every=5")
STEPS = 20
# Where the process kills itself (pipelines.interrupt.kill_point): training, evaluation, export, the
# three moments of registration, and after registration before the run is closed.
KILL_POINTS = ["train.step:12", "evaluate:1", "export:1", "register.model_logged:1", "register.version_created:1",
               "register.aliases_set:1", "finish:1"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_api) -> Project:  # noqa: F811
    root = tmp_path_factory.mktemp("resume-project")
    return make_project(root, cli_env(root, PREFECT_API_URL=prefect_api, PREFECT_HOME=str(root / ".prefect-client")))


@pytest.fixture(scope="module")
def baseline(project) -> dict:
    """The uninterrupted reference run; it registers version 1 (the champion)."""
    result, summary = project.run(*TINY, summary="baseline.json")
    assert result.returncode == 0, explain(result)
    assert summary["status"] == "registered" and summary["registry"]["version"] == "1"
    return summary


def generator_state(run_dir: str | Path) -> dict[str, torch.Tensor]:
    state = torch.load(Path(run_dir) / "train" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == STEPS
    return {f"{part}.{net}.{k}": v for part in ("networks", "ema") for net, sd in state[part].items()
            for k, v in sd.items()}


def assert_same_generator(run_dir, reference_dir) -> None:
    got, want = generator_state(run_dir), generator_state(reference_dir)
    assert got.keys() == want.keys()
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, f"weights differ from the uninterrupted run: {different[:5]}"


def loss_rows(run_dir) -> list[dict]:
    with open(Path(run_dir) / "train" / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


def newest_run(project: Project, before: set[str]) -> str:
    made = [p.name for p in (project.root / "runs").iterdir() if p.name not in before]
    assert len(made) == 1, made
    return made[0]


def mlflow_runs_named(client, name: str):
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"tags.mlflow.runName = '{name}'")


@pytest.mark.slow
def test_the_same_configuration_again_is_up_to_date_and_force_registers_another(project, baseline):
    client = project.client()
    result, summary = project.run(*TINY, summary="again.json")
    assert result.returncode == 0, explain(result)
    assert summary["status"] == "up_to_date" and "training" not in summary, summary
    assert "up to date" in result.stdout and f"{NAME} v1" in result.stdout
    assert sorted(versions(client)) == ["1"]
    tags = client.get_model_version(NAME, "1").tags  # what the check compared
    assert tags["ganpipe.data_version"] == baseline["data"]["data_hash"]
    assert tags["ganpipe.params_hash"] == baseline["params_hash"]
    assert tags["ganpipe.code_version"] == baseline["code_version"]
    assert mlflow_runs_named(client, summary["run_name"])[0].data.tags["ganpipe.status"] == "up_to_date"

    forced, forced_summary = project.run(*TINY, "--force", summary="forced.json")
    assert forced.returncode == 0, explain(forced)
    assert forced_summary["status"] == "registered" and sorted(versions(client)) == ["1", "2"]
    assert_same_generator(forced_summary["run_dir"], baseline["run_dir"])  # same config, same weights


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_resume_ends_as_an_uninterrupted_run(project, baseline, point):
    client = project.client()
    before_runs = {p.name for p in (project.root / "runs").iterdir()}
    before_versions = set(versions(client))
    killed = subprocess.run([str(BIN / "ganpipe"), "run", "--no-progress", *TINY, "--force"], cwd=project.root,
                            env={**project.env, "GANPIPE_TEST_KILL_AT": point}, capture_output=True, text=True,
                            timeout=900)
    assert killed.returncode == -signal.SIGKILL, explain(killed)
    name = newest_run(project, before_runs)
    new_versions = set(versions(client)) - before_versions
    assert len(new_versions) <= 1  # a kill inside registration leaves at most the one version
    checkpoint = torch.load(project.root / "runs" / name / "train" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] == (10 if point == "train.step:12" else STEPS)  # the last one written, readable

    which = name if point.startswith("register") else "latest"  # both spellings of --resume
    resumed, summary = project.run("--resume", which, summary=f"resumed-{point}.json")
    assert resumed.returncode == 0, explain(resumed)
    assert summary["run_name"] == name and summary["status"] == "registered", summary
    # Continued from the last checkpoint, not retrained from scratch (which would end with the same weights).
    assert summary["training"]["resumed_from"] == (10 if point == "train.step:12" else STEPS)
    assert_same_generator(summary["run_dir"], baseline["run_dir"])
    assert loss_rows(summary["run_dir"]) == loss_rows(baseline["run_dir"])  # steps 1..20 once, same values

    runs = mlflow_runs_named(client, name)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one MLflow run, continued, not orphaned
    run_id = runs[0].info.run_id
    steps = sorted(m.step for m in client.get_metric_history(run_id, "g_loss"))
    assert steps == list(range(1, STEPS + 1))  # metrics keep their step numbers, each logged once
    mine = [v for v in versions(client).values() if v.run_id == run_id]
    assert len(mine) == 1 and set(versions(client)) - before_versions == {str(mine[0].version)}
    assert "promotion_reason" in mine[0].tags and mine[0].tags["ganpipe.run_id"] == run_id
    aliases = client.get_registered_model(NAME).aliases
    assert str(aliases["challenger"]) == str(mine[0].version)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "nproc"), [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_sigterm_and_sigint_checkpoint_mark_the_run_killed_and_name_the_resume_command(project, baseline, signum,
                                                                                      nproc):
    """With --nproc 2 the signal reaches this process, which passes it to torchrun and so to both training
    processes: they agree on the step to stop at, and rank 0 checkpoints it."""
    runs_dir = project.root / "runs"
    before = {p.name for p in runs_dir.iterdir()}
    process = subprocess.Popen([str(BIN / "ganpipe"), "run", "--no-progress", "--preset", "smoke", "--force",
                                "--set", "train.steps=5000", "--set", "train.checkpoint_every=25",
                                "--nproc", str(nproc), "--summary-json", "signal.json"],
                               cwd=project.root, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 600
        while not any((runs_dir / p.name / "train" / "checkpoints" / "last.pt").is_file()
                      for p in runs_dir.iterdir() if p.name not in before):
            assert process.poll() is None and time.monotonic() < deadline, "no checkpoint while training"
            time.sleep(0.2)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, f"exit {process.returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    name = newest_run(project, before)
    assert "Traceback" not in stderr
    assert f"resume with: ganpipe run --resume {name}" in stderr.strip().splitlines()[0]
    state = torch.load(runs_dir / name / "train" / "checkpoints" / "last.pt", weights_only=True)
    assert 25 <= state["step"] < 5000  # the step the signal found, checkpointed; not the end of training
    [run] = mlflow_runs_named(project.client(), name)
    assert run.info.status == "KILLED" and run.data.tags["ganpipe.status"] == "interrupted"
    summary = json.loads((project.root / "signal.json").read_text())
    assert summary["status"] == "interrupted" and summary["exit_code"] == 128 + signum


@pytest.mark.slow
def test_changed_data_rescores_the_champion_on_the_new_reference_set_before_deciding(project, baseline,
                                                                                    monkeypatch):
    from ganmodels.data import PreparedDataset
    from ganmodels.metrics import evaluate_model
    from ganmodels.train import load_model
    from pipelines.config import run_config_from_dict
    from pipelines.stages import references

    client = project.client()
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.run_id == baseline["mlflow_run_id"]
    # Another train/test split: a new data version, so a new reference set to judge both models on.
    result, summary = project.run(*TINY, "--set", "data.split_seed=1", summary="new-data.json")
    assert result.returncode == 0, explain(result)
    assert summary["data"]["data_hash"] != baseline["data"]["data_hash"]
    version = client.get_model_version(NAME, summary["registry"]["version"])
    tags = version.tags

    # The champion scored independently on the new run's prepared data, with the new run's eval settings.
    monkeypatch.chdir(project.root)  # the domain classifier cache (.cache/) of the project
    cfg = run_config_from_dict(json.loads((Path(summary["run_dir"]) / "config.json").read_text()))
    data = PreparedDataset.load(summary["data"]["path"])
    refs = references(cfg, data)
    expected = evaluate_model(load_model(Path(baseline["run_dir"]) / "train" / "checkpoints" / "last.pt"), data,
                              n_samples=cfg.eval.n_samples, classifier=refs.classifier,
                              classifier_accuracy=refs.classifier_accuracy, seed=cfg.eval.seed, modes=refs.modes,
                              cas_epochs=cfg.eval.cas_epochs)[cfg.primary_metric]
    primary = cfg.primary_metric
    assert float(tags["decision.champion_score"]) == pytest.approx(expected, rel=1e-9)
    assert float(tags["decision.champion_score_on_own_data"]) == float(champion.tags[f"metric.{primary}"])
    assert float(tags["decision.champion_score"]) != float(champion.tags[f"metric.{primary}"])
    assert tags["decision.champion_data_version"] == baseline["data"]["data_hash"]
    assert tags["decision.challenger_data_version"] == summary["data"]["data_hash"]
    assert float(tags["decision.challenger_score"]) == summary["evaluation"]["metrics"][primary]
    # The decision used the re-scored value, not the one from the champion's own data.
    assert f"champion v{champion.version} {float(tags['decision.champion_score']):.6g}" in tags["promotion_reason"]
    assert summary["registry"]["champion_rescore"]["value"] == float(tags["decision.champion_score"])


def assert_same_training_up_to_rounding(run_dir, reference_dir) -> None:
    """Two processes sum in another order than one, and this GAN amplifies float rounding step by step
    (one process with 2 threads instead of 1 ends 20 steps 1.8e-3 away; benchmarks/distributed.py):
    so the first steps must agree closely, the end only within a few learning-rate steps.
    A wrong split, gradient or normalisation differs at step 1 (tests/test_distributed.py checks every
    family to 2e-5 on a smaller net)."""
    got, want = loss_rows(run_dir), loss_rows(reference_dir)
    for row, ref in zip(got[:3], want[:3]):
        for key in ref:
            assert float(row[key]) == pytest.approx(float(ref[key]), rel=1e-3, abs=1e-5), (row["step"], key)
    got, want = generator_state(run_dir), generator_state(reference_dir)
    assert got.keys() == want.keys()
    for key in want:
        if want[key].is_floating_point():
            assert (got[key] - want[key]).abs().max() < 5e-3, key


@pytest.mark.slow
def test_two_training_processes_train_and_register_the_single_process_model(project, baseline):
    """``--nproc 2``: torchrun, gloo, the global batch of one process split in two; rank 0 alone logs and
    checkpoints, and evaluation, export and registration run once, after training."""
    client = project.client()
    before_versions = set(versions(client))
    result, summary = project.run(*TINY, "--force", "--nproc", "2", summary="nproc2.json")
    assert result.returncode == 0, explain(result)
    assert summary["status"] == "registered" and len(set(versions(client)) - before_versions) == 1
    assert_same_training_up_to_rounding(summary["run_dir"], baseline["run_dir"])
    [run] = mlflow_runs_named(client, summary["run_name"])
    assert run.data.tags["ganpipe.nproc"] == "2"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "g_loss"))
    assert steps == list(range(1, STEPS + 1))  # rank 0 logged every step, once
    assert (Path(summary["run_dir"]) / "train" / "torchrun.log").is_file()


@pytest.mark.slow
def test_a_killed_training_process_fails_the_run_cleanly_and_a_resume_continues_it(project, baseline):
    """SIGKILL of rank 1 at step 12: torchrun stops rank 0, the run fails with exit 10 in one line naming
    the rank, registers nothing and keeps the step-10 checkpoint; ``--resume latest --nproc 2`` ends it."""
    client = project.client()
    before_runs = {p.name for p in (project.root / "runs").iterdir()}
    before_versions = set(versions(client))
    killed = subprocess.run([str(BIN / "ganpipe"), "run", "--no-progress", *TINY, "--force", "--nproc", "2"],
                            cwd=project.root, capture_output=True, text=True, timeout=900,
                            env={**project.env, "GANPIPE_TEST_KILL_AT": "train.step:12", "GANPIPE_TEST_KILL_RANK": "1"})
    assert killed.returncode == 10, explain(killed)
    assert "Traceback" not in killed.stderr
    [line] = [ln for ln in killed.stderr.splitlines() if ln.startswith("ganpipe:")]
    assert "rank 1" in line and "SIGKILL" in line, line
    assert set(versions(client)) == before_versions  # a failed run registers nothing
    name = newest_run(project, before_runs)
    [run] = mlflow_runs_named(client, name)
    assert run.info.status == "FAILED"
    checkpoint = torch.load(project.root / "runs" / name / "train" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 10

    resumed, summary = project.run("--resume", "latest", "--nproc", "2", summary="resumed-rank.json")
    assert resumed.returncode == 0, explain(resumed)
    assert summary["run_name"] == name and summary["status"] == "registered"
    assert summary["training"]["resumed_from"] == 10
    assert_same_training_up_to_rounding(summary["run_dir"], baseline["run_dir"])
    assert len(set(versions(client)) - before_versions) == 1

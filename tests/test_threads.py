"""run.threads and OpenMP's wait policy: a shared CPU must not slow a run out of proportion (issue 12)."""

import os
import subprocess
import sys

import pytest
import torch

from pipelines.config import load_run_config, run_config_from_dict
from pipelines.errors import ConfigError
from pipelines.settings import apply_threads, setup_environment


def test_threads_default_auto_and_explicit(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("run: {threads: 2}\n")
    assert load_run_config(None, overrides=["train.steps=5"]).threads == 0  # auto
    cfg = load_run_config(params)
    assert cfg.threads == 2
    assert run_config_from_dict(cfg.to_dict()).threads == 2  # survives the stages' round trip
    assert load_run_config(params, overrides=["run.threads=auto"]).threads == 0


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "true"])
def test_bad_threads_name_the_field(value):
    with pytest.raises(ConfigError, match=r"run\.threads"):
        load_run_config(None, overrides=[f"run.threads={value}"])


def test_apply_threads_sets_torch_and_auto_leaves_it():
    before = torch.get_num_threads()
    try:
        apply_threads(0)
        assert torch.get_num_threads() == before
        apply_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_passive_wait_policy_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    setup_environment()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    setup_environment()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_cli_sets_the_policy_before_torch_loads():
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: the CLI must not import torch before
    setup_environment runs (in main, after parsing)."""
    code = ("import sys, pipelines.cli as cli; cli.build_parser().parse_args(['run', '--model', 'dcgan']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_process_deployments_start_flows_with_the_passive_policy():
    """A deployment's flow run imports torch before setup_environment: the policy must come from its job env."""
    from pathlib import Path

    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "prefect.yaml").read_text())
    process = [d for d in spec["deployments"] if d["work_pool"]["name"] == "ganpipe-process"]
    assert process
    for d in process:
        assert d["work_pool"]["job_variables"]["env"]["OMP_WAIT_POLICY"] == "PASSIVE", d["name"]


def test_nproc_is_a_run_setting_outside_the_fingerprint(tmp_path):
    """run.nproc (``--nproc``) spreads training over processes; it does not change the model, so a run
    may resume with another count and a repeat on another count is still "up to date"."""
    from pipelines.runstate import params_hash

    assert load_run_config(None, overrides=["train.steps=5"]).nproc == 1
    cfg = load_run_config(None, overrides=["run.nproc=2"])
    assert cfg.nproc == 2 and run_config_from_dict(cfg.to_dict()).nproc == 2
    assert params_hash(cfg.to_dict()) == params_hash(load_run_config(None).to_dict())


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "true"])
def test_bad_nproc_names_the_field(value):
    with pytest.raises(ConfigError, match=r"run\.nproc"):
        load_run_config(None, overrides=[f"run.nproc={value}"])


def test_bad_nproc_option_exits_2_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--nproc", "0"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert result.returncode == 2 and "--nproc" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("overrides", "nproc", "message"), [
    (["train.batch_size=64"], 3, "train.batch_size=64 must be divisible"),
    (["run.model=stylegan2", "train.batch_size=12"], 4, "path-length batch"),  # 12 / 4 = 3 per process, 6 / 4 not
])
def test_a_process_count_the_batch_cannot_be_split_over_is_bad_input(overrides, nproc, message):
    from pipelines.training import check_processes

    cfg = load_run_config(None, overrides=overrides)
    with pytest.raises(ConfigError, match=message):
        check_processes(cfg, nproc)
    check_processes(cfg, 1)  # one process always fits
    check_processes(load_run_config(None, overrides=["train.batch_size=64"]), 4)


def test_more_processes_than_gpus_is_bad_input(monkeypatch):
    from pipelines.training import check_processes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = load_run_config(None, overrides=["train.device=cuda"])
    check_processes(cfg, 2)
    with pytest.raises(ConfigError, match="one process per GPU"):
        check_processes(cfg, 4)


def test_library_warnings_reach_the_terminal_once(capsys):
    """Prefect's console handler shows only CRITICAL records; a setting the library cannot honour here
    (train.cuda_graph without a GPU, train.compile without a compiler) must still be seen, once."""
    import logging

    setup_environment()
    setup_environment()  # the CLI and the flow both set up the process
    logging.getLogger("ganmodels.train.trainer").warning("train.cuda_graph: why; training runs uncaptured")
    logging.getLogger("ganmodels.train.trainer").info("resumed from somewhere")
    err = capsys.readouterr().err
    assert err.count("ganpipe: warning: train.cuda_graph: why; training runs uncaptured") == 1
    assert "resumed from" not in err

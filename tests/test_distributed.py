"""Data-parallel training (ganmodels.train.distributed) under torchrun with gloo on the CPU: 2 processes at
the global batch of one must train the same weights as one process, for every model family, and a
distributed run must resume exactly from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ganmodels
from tests.model_configs import SMALL

SCRIPT = Path(__file__).with_name("distributed_train.py")
ROOT = Path(__file__).resolve().parents[1]
# Every regulariser and random draw a family has: DiffAugment, R1 (lazy), EMA, the lr schedule;
# StyleGAN2 adds style mixing, noise inputs, path length and w_avg; CycleGAN its image pools.
TRAIN = {"diffaugment": "color,translation,cutout", "r1_gamma": 0.5, "reg_every": 2, "lr_decay_start": 0.5}


def train(args: list[str], nproc: int = 1, timeout: float = 300) -> None:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                if nproc > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*launcher, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def assert_same_training(a: dict, b: dict, atol: float = 2e-5) -> None:
    for section in ("networks", "ema"):
        assert a[section].keys() == b[section].keys()
        for net, weights in a[section].items():
            for key, value in weights.items():
                other = b[section][net][key]
                if value.is_floating_point():
                    assert torch.allclose(value, other, atol=atol, rtol=1e-4), \
                        f"{section}.{net}.{key}: max diff {(value - other).abs().max():.3g}"
                else:
                    assert torch.equal(value, other), f"{section}.{net}.{key}"
    assert a["logs"].keys() == b["logs"].keys()
    for key in a["logs"]:
        assert a["logs"][key] == pytest.approx(b["logs"][key], rel=1e-3, abs=1e-4), key
    for key, value in a["family_state"].items():
        assert torch.allclose(value, b["family_state"][key], atol=atol), key


@pytest.mark.parametrize("name", sorted(set(SMALL) - {"mlp2d"}) + ["mlp2d"])
def test_two_gloo_processes_train_the_weights_of_one(name, data_of_kind, tmp_path):
    model = ganmodels.build(name, SMALL[name])
    data = tmp_path / "data.pt"
    data_of_kind[model.accepts[0]].save(data)
    common = ["--model", name, "--data", str(data), "--train", json.dumps(TRAIN)]
    train([*common, "--out", str(tmp_path / "one.pt")])
    train([*common, "--out", str(tmp_path / "two.pt")], nproc=2)
    one, two = torch.load(tmp_path / "one.pt", weights_only=False), torch.load(tmp_path / "two.pt", weights_only=False)
    assert (one["world"], two["world"]) == (1, 2)  # the second run really was distributed
    assert one["steps"] == two["steps"] == 6
    assert torch.equal(one["rng"], two["rng"])  # the same draws, in the same order
    assert_same_training(one, two)


def test_a_distributed_run_resumes_exactly_from_its_checkpoint(data_of_kind, tmp_path):
    """3 steps on 2 processes, then resumed to 6 on 2 processes, equals 6 steps in one process."""
    data = tmp_path / "data.pt"
    data_of_kind[ganmodels.build("stylegan2", SMALL["stylegan2"]).accepts[0]].save(data)
    train_cfg = json.dumps({**TRAIN, "checkpoint_every": 3})
    common = ["--model", "stylegan2", "--data", str(data), "--train", train_cfg]
    train([*common, "--out", str(tmp_path / "one.pt")])
    work = tmp_path / "work"
    train([*common, "--until", "3", "--workdir", str(work), "--out", str(tmp_path / "half.pt")], nproc=2)
    assert (work / "checkpoints" / "last.pt").is_file()
    train([*common, "--workdir", str(work), "--resume", "--out", str(tmp_path / "resumed.pt")], nproc=2)
    one, resumed = (torch.load(tmp_path / p, weights_only=False) for p in ("one.pt", "resumed.pt"))
    assert resumed["world"] == 2 and resumed["steps"] == 6
    assert_same_training(one, resumed)


@pytest.mark.parametrize("rank", [0, 1])
def test_a_stop_requested_on_one_process_stops_every_process(rank, data_of_kind, tmp_path):
    """A collapse monitor (rank 0) or a signal (any rank) stops one process: all stop after the same step,
    instead of the others waiting forever in the next all_reduce."""
    data = tmp_path / "data.pt"
    data_of_kind[ganmodels.build("dcgan", SMALL["dcgan"]).accepts[0]].save(data)
    train(["--model", "dcgan", "--data", str(data), "--stop-at", "2", "--stop-rank", str(rank),
           "--out", str(tmp_path / "two.pt")], nproc=2, timeout=120)
    two = torch.load(tmp_path / "two.pt", weights_only=False)
    assert two["steps"] == 2
    assert two["stop_reason"] == ("asked at step 2" if rank == 0 else "stopped by another training process")

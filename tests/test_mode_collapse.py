"""Mode-collapse protection of the mlp2d recipes (the fast counterpart of benchmarks/mode_collapse.py).

* The full evaluation path reports a generator collapsed onto one mode as exactly that: 1 mode
  captured, reverse KL = log K (closed form), so a collapsing run cannot pass the mode gates.
* The benchmark's comparison is fair: both recipes build the same networks.
* The stabilised recipe on ring8 captures all 8 modes with a reduced budget (a smoke-sized run of
  the benchmark; the full budget and 5 seeds are in the benchmark).
* ``ganpipe run --dataset ring8|grid25`` trains with the benchmark's settings, and the benchmark
  script runs end to end (tiny budget) and writes its JSON; runs spread over worker processes
  (``--jobs``) give the same results, in the same order, as runs one after another.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import ganmodels
from ganmodels.data import DataConfig, load_dataset, mixture_spec
from ganmodels.metrics import evaluate_generator
from ganmodels.train import TrainConfig, Trainer, seed_everything
from benchmarks import mode_collapse
from pipelines.config import load_run_config

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

# A reduced budget (the benchmark runs 8000 steps) on seed 0.
QUICK_RING_STEPS = 1500
QUICK_RING_BATCH = 512


@pytest.fixture(scope="module")
def ring8():
    return load_dataset(DataConfig(name="ring8"))


class OneModeGenerator(nn.Module):
    """G(z, c) that puts every sample on mode ``k`` with the mixture's own spread."""

    def __init__(self, means: torch.Tensor, std: float, k: int = 0):
        super().__init__()
        self.z_dim, self.c_dim, self.out_shape = 2, 0, (2,)
        self.register_buffer("centre", means[k].clone())
        self.std = nn.Parameter(torch.tensor(std))

    def forward(self, z: torch.Tensor, c=None) -> torch.Tensor:
        return self.centre + self.std * z  # (B, 2)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_collapsed_generator_is_reported_as_one_mode(name):
    data = load_dataset(DataConfig(name=name, num_points=2000))
    means, std = mixture_spec(name)
    G = OneModeGenerator(torch.as_tensor(means, dtype=torch.float32), std, k=3)
    metrics = evaluate_generator(G, data, n_samples=2500, modes=(means, std), seed=0)
    assert metrics["modes_captured"] == 1
    assert metrics["reverse_kl"] == pytest.approx(math.log(len(means)))  # all mass on one of K modes
    assert metrics["high_quality_fraction"] > 0.97  # on its one mode, within 3 std: 1 - exp(-4.5)
    assert metrics["recall"] < 0.2  # the real data's other modes are not covered


def test_recipes_share_the_architecture():
    """The benchmark compares training recipes, not networks: baseline and stabilised build the same nets."""
    shapes = {}
    for recipe in ("baseline", "stabilised"):
        gan = ganmodels.build("mlp2d", ganmodels.get_recipe("mlp2d", recipe)["model"])
        shapes[recipe] = [p.shape for p in gan.G.parameters()]
    assert shapes["baseline"] == shapes["stabilised"]
    assert ganmodels.get_recipe("mlp2d", "baseline")["train"]["ema_beta"] == 0.0
    assert ganmodels.get_recipe("mlp2d", "baseline")["model"]["pack"] == 1


def test_stabilised_recipe_captures_all_ring_modes_quickly(ring8):
    recipe = ganmodels.get_recipe("mlp2d", "stabilised")
    seed_everything(0)
    gan = ganmodels.build("mlp2d", recipe["model"])
    cfg = TrainConfig(**recipe["train"], steps=QUICK_RING_STEPS, batch_size=QUICK_RING_BATCH, seed=0, device="cpu",
                      checkpoint_every=QUICK_RING_STEPS + 1)
    trainer = Trainer(gan, ring8, cfg)
    trainer.fit()
    metrics = evaluate_generator(trainer.generator, ring8, n_samples=2500, modes=mixture_spec("ring8"), seed=1234)
    assert metrics["modes_captured"] == 8
    assert metrics["reverse_kl"] < 0.05
    assert metrics["high_quality_fraction"] > 0.5  # > 0.9 needs the full budget


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_pipeline_trains_what_the_benchmark_measures(name):
    cfg = load_run_config(PROJECT_PARAMS, dataset=name)
    settings = mode_collapse.RUN_SETTINGS[name]
    recipe = ganmodels.get_recipe("mlp2d", "stabilised")
    assert (cfg.model, cfg.recipe) == ("mlp2d", "stabilised")
    assert (cfg.train.steps, cfg.train.batch_size) == (settings.steps, settings.batch_size)
    for key, value in recipe["train"].items():
        assert getattr(cfg.train, key) == value, key
    assert cfg.model_overrides == recipe["model"]


def test_benchmark_script_runs_and_writes_results(tmp_path):
    out = tmp_path / "mc.json"
    assert mode_collapse.main(["--datasets", "ring8", "--seeds", "0", "--configs", "baseline", "stabilised",
                               "--steps", "30", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert [(r["config"], r["steps"]) for r in summary["results"]] == [("baseline", 30), ("stabilised", 30)]
    assert summary["configs"]["stabilised"]["train"]["r1_gamma"] > 0
    assert summary["configs"]["baseline"]["train"]["r1_gamma"] == 0
    assert set(summary["target"]["ring8"]) == {"met", "failing_seeds"}


def test_benchmark_jobs_give_the_same_results_as_one_process(tmp_path):
    args = ["--datasets", "ring8", "grid25", "--seeds", "0", "1", "--configs", "stabilised", "--steps", "20"]
    summaries = []
    for jobs in (1, 2):
        out = tmp_path / f"mc{jobs}.json"
        assert mode_collapse.main([*args, "--jobs", str(jobs), "--out", str(out)]) == 0
        summaries.append(json.loads(out.read_text()))
    assert summaries[1]["jobs"] == 2

    def comparable(summary):
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in summary["results"]]

    assert [(r["dataset"], r["seed"]) for r in summaries[1]["results"]] == [
        ("ring8", 0), ("ring8", 1), ("grid25", 0), ("grid25", 1)]
    assert comparable(summaries[1]) == comparable(summaries[0])

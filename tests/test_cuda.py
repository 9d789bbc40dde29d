"""The CUDA path of the trainer, where a GPU is present (skipped elsewhere; CI has none).

On CPU the same code runs through tests/test_train.py; what only a GPU can show is checked here: the
per-sample draws are made on the device, the step's numbers stay there until a sync point, the fused
optimiser is the default, a deferred guard still rolls back, and resume is exact. Needs only torch
and scikit-learn, so it runs on a bare GPU machine: ``PYTHONPATH=. python -m pytest -q tests/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch

import ganmodels
from ganmodels import draws
from ganmodels.train import Callback, GuardConfig, TrainConfig, Trainer, load_checkpoint, seed_everything

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL_DCGAN = {"g_width": 8, "d_width": 8, "resolution": 16}


def make(data, tmp_path=None, **train):
    seed_everything(0)
    cfg = TrainConfig(**{"batch_size": 16, "checkpoint_every": 1000, "seed": 0, "device": "cuda", **train})
    return Trainer(ganmodels.build("dcgan", SMALL_DCGAN), data, cfg, workdir=tmp_path)


def test_defaults_on_cuda(tiny_images):
    t = make(tiny_images)
    assert t.sync_every > 1 and not t.use_amp
    assert t.device_gen is not t.gen and t.device_gen.device.type == "cuda"
    assert all(group.get("fused") for opt in t.optimisers.values() for group in opt.param_groups)
    assert draws.randn((4, 3), t.device_gen).device.type == "cuda"


def test_deferred_reads_change_no_number_on_cuda(tiny_images):
    a, b = make(tiny_images, sync_every=1), make(tiny_images, sync_every=7)
    a.fit(20)
    b.fit(20)
    for (name, x), y in zip(a.generator.state_dict().items(), b.generator.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-5), name


def test_resume_on_cuda_continues_the_device_stream(tiny_images, tmp_path):
    straight = make(tiny_images, tmp_path / "a")
    straight.fit(20)
    first = make(tiny_images, tmp_path / "b", checkpoint_every=10)
    first.fit(10)
    assert "device" in load_checkpoint(first.checkpoint_path)["rng"]
    resumed = make(tiny_images, tmp_path / "b")
    resumed.device_gen.manual_seed(777)
    resumed.fit(20, resume=True)
    for (name, x), y in zip(straight.generator.state_dict().items(), resumed.generator.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-5), name


class Poison(Callback):
    """NaN into D's first weight after step ``at``, once (before any rollback)."""

    def __init__(self, at):
        self.at = at

    def needs_live_state(self, trainer, step):
        return step == self.at

    def on_step_end(self, trainer, step, logs):
        if step == self.at and not trainer.rollbacks:
            with torch.no_grad():
                next(trainer.networks["D"].parameters()).fill_(float("nan"))


def test_a_deferred_guard_rolls_back_on_cuda(tiny_images):
    t = make(tiny_images, checkpoint_every=5, guard=GuardConfig(max_rollbacks=2))
    t.callbacks.append(Poison(8))
    result = t.fit(16)
    assert result.rollbacks == 1 and (result.events[0].step, result.events[0].restored_step) == (8, 5)
    assert all(torch.isfinite(p).all() for p in t.networks["D"].parameters())


def test_compiled_training_on_cuda_matches_eager(tiny_images):
    # train.compile on the GPU: the networks compiled by Inductor/Triton, R1 (every 2nd step) uncompiled.
    from ganmodels import compiled

    if compiled.unavailable(torch.device("cuda")):
        pytest.skip(compiled.unavailable(torch.device("cuda")))
    from ganmodels.train import LossHistory

    logs = {}
    for flag in (False, True):
        history = LossHistory()
        t = make(tiny_images, compile=flag, r1_gamma=1.0, reg_every=2)
        t.callbacks.append(history)
        assert t.compiled is flag
        t.fit(6)
        logs[flag] = history.logs
    assert len(logs[True]) == 6
    for a, b in zip(logs[False], logs[True]):
        for key in a:  # TF32 convolutions on both sides: agreement to rounding, not bits
            assert b[key] == pytest.approx(a[key], rel=1e-2, abs=1e-3), key


GRAPHED = dict(cuda_graph=True, sync_every=10, r1_gamma=1.0, reg_every=4, ema_start=6, lr_decay_start=0.5,
               diffaugment="color,translation,cutout")


def _graph_run(data, warmup, steps=40, tmp_path=None, resume=False, **train):
    """A cuda_graph run (R1 every 4th step, EMA copying until step 6, a decaying rate) and its logs;
    ``warmup`` = 10**9 runs every step eagerly through the same path (the reference)."""
    from ganmodels.train import LossHistory, graphs

    saved, graphs.WARMUP = graphs.WARMUP, warmup
    try:
        history = LossHistory()
        t = make(data, tmp_path, **{**GRAPHED, "steps": 40, **train})
        t.callbacks.append(history)
        t.device_gen.manual_seed(777)  # a resumed run must get its stream from the checkpoint
        t.fit(steps, resume=resume)
    finally:
        graphs.WARMUP = saved
    return t, history.logs


def _assert_close(a, b):
    for (name, x), y in zip(a.generator.state_dict().items(), b.generator.state_dict().values()):
        assert torch.allclose(x, y, rtol=1e-3, atol=1e-4), name


def test_cuda_graph_replays_the_step_like_eager(tiny_images):
    """The whole step captured and replayed: Adam capturable with its rate on the device, draws from the
    device generator (graph-safe: every replay draws new numbers), one graph per step pattern."""
    eager, eager_logs = _graph_run(tiny_images, 10**9)
    assert eager.graphs is not None and eager.graphs.captures == 0
    replayed, logs = _graph_run(tiny_images, 2)
    assert replayed.graphs is not None, "the step was not captured (see the warning above)"
    assert replayed.graphs.captures >= 2
    assert all(group["capturable"] and torch.is_tensor(group["lr"])
               for opt in replayed.optimisers.values() for group in opt.param_groups)
    assert len({round(step["d_real"], 6) for step in logs[-10:]}) > 1, "replays drew the same batch"
    for step, (a, b) in enumerate(zip(eager_logs, logs), 1):
        for key in a:  # the same kernels and the same random numbers: agreement to rounding
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-4), f"step {step}: {key}"
    _assert_close(eager, replayed)


def test_cuda_graph_run_resumes(tiny_images, tmp_path):
    straight, _ = _graph_run(tiny_images, 2, 30, tmp_path / "a")
    _graph_run(tiny_images, 2, 15, tmp_path / "b", checkpoint_every=15)
    resumed, _ = _graph_run(tiny_images, 2, 30, tmp_path / "b", resume=True, checkpoint_every=15)
    assert resumed.graphs.captures >= 1
    _assert_close(straight, resumed)


def test_cuda_graph_run_rolls_back(tiny_images):
    t = make(tiny_images, **GRAPHED, checkpoint_every=15, guard=GuardConfig(max_rollbacks=2))
    t.callbacks.append(Poison(18))
    result = t.fit(40)
    assert result.rollbacks == 1 and (result.events[0].step, result.events[0].restored_step) == (18, 15)
    assert t.graphs is not None and t.graphs.captures >= 4  # 3 patterns captured by step 16, more after the load
    assert all(torch.isfinite(p).all() for p in t.networks["D"].parameters())


@pytest.mark.parametrize("name", ["cgan", "stylegan2", "cyclegan", "pix2pix", "mlp2d"])
def test_every_family_is_captured_on_cuda(name, data_of_kind):
    """Every family's step captured on the GPU (StyleGAN2's style mixing and path-length mean; CycleGAN
    without its pool) and replayed: the same numbers as the same run never captured."""
    from ganmodels.train import LossHistory, graphs
    from tests.model_configs import SMALL

    model = {**SMALL[name], **({"pool_size": 0} if name == "cyclegan" else {})}
    gan = ganmodels.build(name, model)
    points = gan.accepts[0].value == "points"
    runs = []
    for warmup in (10**9, 2):
        saved, graphs.WARMUP = graphs.WARMUP, warmup
        try:
            seed_everything(0)
            history = LossHistory()
            cfg = TrainConfig(**{"batch_size": 16, "checkpoint_every": 1000, "seed": 0, "device": "cuda",
                                 **GRAPHED, **({"r1_gamma": 0.0, "diffaugment": ""} if points else {}), "steps": 24})
            t = Trainer(ganmodels.build(name, model), data_of_kind[gan.accepts[0]], cfg, callbacks=[history])
            t.fit()
        finally:
            graphs.WARMUP = saved
        runs.append((t, history.logs))
    (eager, eager_logs), (replayed, logs) = runs
    assert replayed.graphs is not None and replayed.graphs.captures >= 2, "not captured (see the warning above)"
    for step, (a, b) in enumerate(zip(eager_logs, logs), 1):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-4), f"step {step}: {key}"
    _assert_close(eager, replayed)

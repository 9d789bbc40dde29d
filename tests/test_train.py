"""Trainer: determinism, exact resume, checkpoint format, losses handed to callbacks, divergence guard."""

from __future__ import annotations

import math

import pytest
import torch

import ganmodels
from ganmodels.train import (Callback, GuardConfig, LossHistory, TrainConfig, Trainer, TrainingDiverged,
                             load_checkpoint, load_generator, seed_everything)

SMALL_DCGAN = {"g_width": 8, "d_width": 8, "resolution": 16}
SMALL_MLP = {"g_width": 32, "g_depth": 2, "d_width": 32, "d_depth": 2}


def make_trainer(name, model_cfg, data, tmp_path=None, **train):
    seed_everything(0)
    gan = ganmodels.build(name, model_cfg)
    cfg = TrainConfig(**{"batch_size": 16, "checkpoint_every": 1000, "seed": 0, **train})
    return Trainer(gan, data, cfg, workdir=tmp_path)


def all_weights(trainer):
    state = trainer.state_dict()
    tensors = {f"{k}.{n}": t for k in ("G", "D", "G_ema") if state[k] for n, t in state[k].items()}
    for k in ("opt_G", "opt_D"):
        for pid, s in state[k]["state"].items():
            tensors.update({f"{k}.{pid}.{n}": t for n, t in s.items() if torch.is_tensor(t)})
    return tensors


def assert_bitwise_equal(a, b):
    wa, wb = all_weights(a), all_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key} differs"


def test_same_seed_same_weights(tiny_images):
    a = make_trainer("dcgan", SMALL_DCGAN, tiny_images, diffaugment="color,translation,cutout", r1_gamma=1.0)
    b = make_trainer("dcgan", SMALL_DCGAN, tiny_images, diffaugment="color,translation,cutout", r1_gamma=1.0)
    a.fit(20)
    b.fit(20)
    assert_bitwise_equal(a, b)
    c = make_trainer("dcgan", SMALL_DCGAN, tiny_images, seed=1)
    c.fit(20)
    assert not torch.equal(all_weights(a)["G.net.0.weight"], all_weights(c)["G.net.0.weight"])


def test_2k_steps_equal_1k_plus_resume_plus_1k(tiny_points, tmp_path):
    straight = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path / "a")
    straight.fit(2000)
    first = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path / "b")
    first.fit(1000)
    del first  # "stop": a new process would rebuild everything from the checkpoint
    resumed = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path / "b")
    torch.manual_seed(12345)  # global RNG state must not matter: the checkpoint restores it
    result = resumed.fit(2000, resume=True)
    assert result.steps == 2000
    assert_bitwise_equal(straight, resumed)


def test_dcgan_resume_with_all_stabilisers(tiny_images, tmp_path):
    kw = dict(diffaugment="color,translation,cutout", r1_gamma=1.0, reg_every=4, loss="hinge", checkpoint_every=7)
    straight = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "a", **kw)
    straight.fit(40)
    part = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "b", **kw)
    part.fit(20)
    resumed = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "b", **kw)
    resumed.fit(40, resume=True)
    assert_bitwise_equal(straight, resumed)


def test_checkpoint_is_plain_data(tiny_images, tmp_path):
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path, steps=5)
    result = trainer.fit()
    state = torch.load(result.checkpoint, weights_only=True)  # no pickled modules
    assert state["step"] == 5 and state["model"] == "dcgan"
    assert {"G", "D", "G_ema", "opt_G", "opt_D", "rng", "train_config", "model_config", "data"} <= set(state)
    assert state["train_config"]["steps"] == 5
    assert not list(tmp_path.rglob("*.tmp"))  # atomic write leaves no temp files
    G = load_generator(result.checkpoint)
    torch.testing.assert_close(G(torch.zeros(2, G.z_dim)), trainer.generator(torch.zeros(2, G.z_dim)))


def test_torn_checkpoint_is_rejected(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(ValueError, match="not a readable ganpipe checkpoint"):
        load_checkpoint(bad)


def test_losses_reach_callbacks_as_floats(tiny_images):
    history = LossHistory()
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, gp_lambda=10.0, loss="wgan")
    trainer.callbacks.append(history)
    trainer.fit(3)
    assert history.steps == [1, 2, 3]
    for logs in history.logs:
        assert {"d_loss", "g_loss", "gp", "d_grad_norm", "g_grad_norm"} <= set(logs)
        assert all(type(v) is float and math.isfinite(v) for v in logs.values())


class Sabotage(Callback):
    """Poison D's weights with NaN after ``at`` steps, ``times`` times."""

    def __init__(self, at, times):
        self.at, self.times = at, times

    def on_step_end(self, trainer, step, logs):
        if step == self.at and self.times > 0:
            self.times -= 1
            with torch.no_grad():
                next(trainer.D.parameters()).fill_(float("nan"))


def test_nan_is_caught_and_rolled_back(tiny_images):
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, checkpoint_every=5, guard=GuardConfig(max_rollbacks=2))
    trainer.callbacks.append(Sabotage(at=8, times=1))
    result = trainer.fit(12)
    assert result.rollbacks == 1 and result.steps == 12
    event = result.events[0]
    assert event.step == 8 and event.restored_step == 5 and "nan" in event.reason.lower()
    assert event.lr_scale == 0.5
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(trainer.cfg.lr_g * 0.5)
    assert all(torch.isfinite(p).all() for p in trainer.gan.parameters())


def test_persistent_divergence_fails_cleanly(tiny_images):
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, checkpoint_every=5, guard=GuardConfig(max_rollbacks=2))
    trainer.callbacks.append(Sabotage(at=6, times=10))
    with pytest.raises(TrainingDiverged, match="after 2 rollback") as info:
        trainer.fit(20)
    assert "nan" in info.value.reason.lower()


def test_runaway_loss_is_detected(tiny_images):
    # An absurd learning rate with the unbounded WGAN loss and no penalty blows up the critic quickly.
    trainer = make_trainer("dcgan", {**SMALL_DCGAN, "d_norm": "none"}, tiny_images, loss="wgan", lr_d=50.0,
                           guard=GuardConfig(loss_limit=1e3, max_rollbacks=0))
    with pytest.raises(TrainingDiverged, match="exceeds the limit|is nan|is inf"):
        trainer.fit(200)


def test_shape_mismatch_is_a_clear_error(tiny_images):
    with pytest.raises(ValueError, match="resolution/channels"):
        make_trainer("dcgan", {**SMALL_DCGAN, "resolution": 32}, tiny_images)


def test_bad_train_config_names_the_field():
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="lsgan")
    with pytest.raises(ValueError, match="unknown train config field"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="diffaugment"):
        TrainConfig(diffaugment="rotate")

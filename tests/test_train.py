"""Trainer: determinism, exact resume, checkpoint format, losses handed to callbacks, divergence guard.

Each test is written to fail when the promise it protects breaks (tests/mutation_check.py applies
those breakages and expects this file to fail): resume is checked from a trainer whose own weights
and random stream differ from the run's, the guard by its order (check before update) and each of
its limits, seeding by changing only the seed."""

from __future__ import annotations

import math

import pytest
import torch

import ganmodels
from ganmodels.train import (Callback, DivergenceDetected, GuardConfig, LossHistory, ResumeError, TrainConfig,
                             Trainer, TrainingDiverged, load_checkpoint, load_generator, seed_everything)

SMALL_DCGAN = {"g_width": 8, "d_width": 8, "resolution": 16}
SMALL_MLP = {"g_width": 32, "g_depth": 2, "d_width": 32, "d_depth": 2}


def make_trainer(name, model_cfg, data, tmp_path=None, init_seed=0, **train):
    seed_everything(init_seed)
    gan = ganmodels.build(name, model_cfg)
    cfg = TrainConfig(**{"batch_size": 16, "checkpoint_every": 1000, "seed": 0, **train})
    return Trainer(gan, data, cfg, workdir=tmp_path)


def all_weights(trainer):
    state = trainer.state_dict()
    tensors = {f"{section}.{net}.{n}": t for section in ("networks", "ema") for net, sd in state[section].items()
               for n, t in sd.items()}
    for name, opt in state["optimisers"].items():
        for pid, s in opt["state"].items():
            tensors.update({f"opt.{name}.{pid}.{n}": t for n, t in s.items() if torch.is_tensor(t)})
    return tensors


def assert_bitwise_equal(a, b):
    wa, wb = all_weights(a), all_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key} differs"


STABILISERS = dict(diffaugment="color,translation,cutout", r1_gamma=1.0)


def test_same_seed_same_weights_and_only_the_seed_changes_them(tiny_images):
    a = make_trainer("dcgan", SMALL_DCGAN, tiny_images, **STABILISERS)
    b = make_trainer("dcgan", SMALL_DCGAN, tiny_images, **STABILISERS)
    a.fit(20)
    b.fit(20)
    assert_bitwise_equal(a, b)
    c = make_trainer("dcgan", SMALL_DCGAN, tiny_images, seed=1, **STABILISERS)  # same init weights, other seed
    c.fit(20)
    assert not torch.equal(all_weights(a)["networks.G.net.0.weight"], all_weights(c)["networks.G.net.0.weight"])


def fresh_elsewhere(trainer) -> None:
    """Make a resuming trainer's own state differ from the run's: other initial weights (built under
    another seed) and an advanced random stream. Only the checkpoint can make it match again."""
    trainer.gen.manual_seed(987654)
    torch.manual_seed(12345)  # the global RNG must not matter either: the checkpoint restores it


def test_2k_steps_equal_1k_plus_resume_plus_1k(tiny_points, tmp_path):
    straight = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path / "a")
    straight.fit(2000)
    first = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path / "b")
    first.fit(1000)
    del first  # "stop": a new process would rebuild everything from the checkpoint
    resumed = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path / "b", init_seed=99)
    fresh_elsewhere(resumed)
    result = resumed.fit(2000, resume=True)
    assert result.steps == 2000 and result.resumed_from == 1000
    assert_bitwise_equal(straight, resumed)


def test_dcgan_resume_with_all_stabilisers(tiny_images, tmp_path):
    kw = dict(diffaugment="color,translation,cutout", r1_gamma=1.0, reg_every=4, loss="hinge", checkpoint_every=7)
    straight = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "a", **kw)
    straight.fit(40)
    part = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "b", **kw)
    part.fit(20)
    resumed = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "b", init_seed=99, **kw)
    fresh_elsewhere(resumed)
    assert resumed.fit(40, resume=True).resumed_from == 20
    assert_bitwise_equal(straight, resumed)


def test_resume_without_a_checkpoint_is_an_explicit_choice(tiny_points, tmp_path):
    trainer = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path)
    with pytest.raises(ResumeError, match="no checkpoint at"):
        trainer.fit(5, resume=True)
    assert trainer.step == 0
    result = trainer.fit(5, resume="auto")  # "auto": a fresh start when there is nothing to resume
    assert result.resumed_from is None and result.steps == 5
    again = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path)
    assert again.fit(8, resume="auto").resumed_from == 5


def test_resume_refuses_a_checkpoint_of_another_run(tiny_points, tmp_path):
    make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path).fit(5)
    other_lr = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path, lr_g=1e-3)
    with pytest.raises(ResumeError, match="lr_g"):
        other_lr.fit(10, resume=True)
    other_model = make_trainer("mlp2d", {**SMALL_MLP, "g_width": 16}, tiny_points, tmp_path)
    with pytest.raises(ResumeError, match="another config"):
        other_model.fit(10, resume=True)
    longer = make_trainer("mlp2d", SMALL_MLP, tiny_points, tmp_path, steps=50)  # steps may change
    assert longer.fit(resume=True).steps == 50


def test_checkpoint_is_plain_data(tiny_images, tmp_path):
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path, steps=5)
    result = trainer.fit()
    state = torch.load(result.checkpoint, weights_only=True)  # no pickled modules
    assert state["step"] == 5 and state["model"] == "dcgan" and state["family"] == "noise"
    assert {"networks", "ema", "optimisers", "rng", "train_config", "model_config", "data"} <= set(state)
    assert set(state["networks"]) == {"G", "D"} and set(state["ema"]) == {"G"}
    assert set(state["optimisers"]) == {"G", "D"}
    assert state["train_config"]["steps"] == 5
    assert not list(tmp_path.rglob("*.tmp"))  # atomic write leaves no temp files
    G = load_generator(result.checkpoint)
    torch.testing.assert_close(G(torch.zeros(2, G.z_dim)), trainer.generator(torch.zeros(2, G.z_dim)))


def test_format_1_checkpoints_still_load(tiny_images, tmp_path):
    """Checkpoints written before families (fixed G/D keys) load as the same generator."""
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path, steps=3)
    path = trainer.fit().checkpoint
    state = torch.load(path, weights_only=True)
    old = {k: v for k, v in state.items() if k not in ("networks", "ema", "optimisers", "family_state", "family")}
    old.update(format="ganpipe-checkpoint/1", G=state["networks"]["G"], D=state["networks"]["D"],
               G_ema=state["ema"]["G"], opt_G=state["optimisers"]["G"], opt_D=state["optimisers"]["D"])
    torch.save(old, tmp_path / "old.pt")
    z = torch.randn(3, 64)
    torch.testing.assert_close(load_generator(tmp_path / "old.pt")(z), load_generator(path)(z))


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
    """Poison a tensor of the run with NaN after ``at`` steps, ``times`` times (D's first weight by default)."""

    def __init__(self, at, times, target=lambda trainer: next(trainer.networks["D"].parameters())):
        self.at, self.times, self.target = at, times, target

    def needs_live_state(self, trainer, step):
        return step == self.at

    def on_step_end(self, trainer, step, logs):
        if step == self.at and self.times > 0:
            self.times -= 1
            with torch.no_grad():
                self.target(trainer).fill_(float("nan"))


def all_finite(trainer) -> bool:
    return all(torch.isfinite(t).all() for t in all_weights(trainer).values() if t.is_floating_point())


def test_nan_is_caught_and_rolled_back(tiny_images):
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, checkpoint_every=5, guard=GuardConfig(max_rollbacks=2))
    trainer.callbacks.append(Sabotage(at=8, times=1))
    result = trainer.fit(12)
    assert result.rollbacks == 1 and result.steps == 12
    event = result.events[0]
    assert event.step == 8 and event.restored_step == 5 and "nan" in event.reason.lower()
    assert event.lr_scale == 0.5
    assert trainer.optimisers["G"].param_groups[0]["lr"] == pytest.approx(trainer.cfg.lr_g * 0.5)
    assert all_finite(trainer)


@pytest.mark.parametrize("target", [
    lambda trainer: next(trainer.networks["D"].parameters()),  # poisons the next losses
    lambda trainer: trainer.networks["G"].net[1].running_var,  # unused in training: no loss ever shows it
], ids=["D-weight", "G-batchnorm-statistics"])
def test_a_non_finite_state_never_becomes_the_rollback_target(tiny_images, tmp_path, target):
    """NaN written at a checkpoint step (10): the state is checked there, so training rolls back to
    step 5 and finishes, and no checkpoint ever holds the NaN."""
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path, checkpoint_every=5,
                           guard=GuardConfig(max_rollbacks=2))
    trainer.callbacks.append(Sabotage(at=10, times=1, target=target))
    result = trainer.fit(14)
    assert result.steps == 14 and result.rollbacks == 1
    assert result.events[0].restored_step == 5 and "non-finite" in result.events[0].reason
    assert all_finite(trainer)
    saved = load_checkpoint(result.checkpoint)
    assert all(torch.isfinite(t).all() for sd in (*saved["networks"].values(), *saved["ema"].values())
               for t in sd.values() if t.is_floating_point())


def test_the_guard_checks_before_the_update(tiny_images):
    """A rejected update leaves the parameters and optimiser state exactly as they were (buffers such
    as batch-norm statistics and spectral-norm vectors move in any forward pass, so they are not compared)."""
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, guard=GuardConfig(grad_norm_limit=1e-9))
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    with pytest.raises(DivergenceDetected, match="d_grad_norm=.* exceeds the limit 1e-09"):
        trainer.train_step()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.named_parameters())
    assert all(not opt.state for opt in trainer.optimisers.values())


def test_the_gradient_norm_limit_alone_stops_a_run(tiny_images):
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, guard=GuardConfig(grad_norm_limit=1e-9, loss_limit=1e9,
                                                                                max_rollbacks=1))
    with pytest.raises(TrainingDiverged, match="grad_norm=.* exceeds the limit"):
        trainer.fit(5)


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
        TrainConfig(loss="wasserstein")
    with pytest.raises(ValueError, match="unknown train config field"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="diffaugment"):
        TrainConfig(diffaugment="rotate")


# -- deferred host reads (sync_every > 1, the CUDA default): the same run, read in batches ----------------


class Seen(Callback):
    """Records (step, the trainer's step when the callback ran, logs); needs the live state at ``live``."""

    def __init__(self, live=()):
        self.live, self.calls = set(live), []

    def needs_live_state(self, trainer, step):
        return step in self.live

    def on_step_end(self, trainer, step, logs):
        self.calls.append((step, trainer.step, dict(logs)))


def test_deferred_reads_change_no_number(tiny_images):
    """sync_every only moves where the host reads: weights, EMA, optimiser state and every step's logs
    are bitwise those of reading after every update (lazy R1 and DiffAugment on, so phases vary)."""
    runs = {}
    for every in (1, 7):
        trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, sync_every=every, reg_every=4, **STABILISERS)
        seen = Seen()
        trainer.callbacks.append(seen)
        trainer.fit(20)
        runs[every] = trainer, seen
    assert_bitwise_equal(runs[1][0], runs[7][0])
    assert [(s, logs) for s, _, logs in runs[1][1].calls] == [(s, logs) for s, _, logs in runs[7][1].calls]
    assert [s for s, _, _ in runs[7][1].calls] == list(range(1, 21))
    assert any("r1" in logs for _, _, logs in runs[7][1].calls)


def test_steps_reach_callbacks_in_batches_and_live_where_asked(tiny_images):
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, sync_every=4)
    seen = Seen(live={6})
    trainer.callbacks.append(seen)
    trainer.fit(10)
    assert [(s, at) for s, at, _ in seen.calls] == [(1, 4), (2, 4), (3, 4), (4, 4), (5, 6), (6, 6), (7, 8), (8, 8),
                                                    (9, 10), (10, 10)]
    assert all(type(v) is float for _, _, logs in seen.calls for v in logs.values())


def test_cpu_reads_every_step_and_cuda_defers_by_default(tiny_images):
    assert make_trainer("dcgan", SMALL_DCGAN, tiny_images).sync_every == 1
    assert make_trainer("dcgan", SMALL_DCGAN, tiny_images, sync_every=9).sync_every == 9
    from ganmodels.train.trainer import DEVICE_SYNC_EVERY
    assert DEVICE_SYNC_EVERY > 1
    with pytest.raises(ValueError, match="sync_every must be >= 0"):
        TrainConfig(sync_every=-1)


def test_adam_is_fused_on_cpu_by_default_and_each_implementation_can_be_chosen(tiny_images):
    """``optimizer_impl: auto`` is fused on CPU as on CUDA (measured faster on both, docs/performance.md);
    the explicit settings reach torch.optim.Adam as asked."""
    def flags(**train):
        groups = [g for opt in make_trainer("dcgan", SMALL_DCGAN, tiny_images, **train).optimisers.values()
                  for g in opt.param_groups]
        assert len({(g["fused"], g["foreach"]) for g in groups}) == 1  # every optimiser alike
        return groups[0]["fused"], groups[0]["foreach"]
    assert flags() == flags(optimizer_impl="fused") == (True, None)
    assert flags(optimizer_impl="foreach") == (None, True)
    assert flags(optimizer_impl="for-loop") == (None, False)


def test_a_deferred_guard_rolls_back_exactly_like_the_immediate_one(tiny_images):
    """NaN put into D after step 8; checkpoints every 5. Read every step, step 9's loss is caught before
    its update; read every 4 steps, it is caught at the step-10 checkpoint's sync, after bad updates were
    applied. Both roll back to step 5 with the same event, and end bitwise equal."""
    runs = {}
    for every in (1, 4):
        trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, sync_every=every, checkpoint_every=5,
                               guard=GuardConfig(max_rollbacks=2))
        seen = Seen()
        trainer.callbacks += [Sabotage(at=8, times=1), seen]
        result = trainer.fit(16)
        runs[every] = trainer, result, seen
    (a, ra, sa), (b, rb, sb) = runs[1], runs[4]
    assert ra.events == rb.events and len(rb.events) == 1
    assert (rb.events[0].step, rb.events[0].restored_step) == (8, 5) and "nan" in rb.events[0].reason
    assert_bitwise_equal(a, b)
    assert all_finite(b)
    # No callback saw a step after the bad one before the rollback: 1..8, then 6..16 again.
    assert [s for s, _, _ in sb.calls] == [s for s, _, _ in sa.calls] == [*range(1, 9), *range(6, 17)]


def test_no_unchecked_update_reaches_a_checkpoint(tiny_images, tmp_path):
    """Reads every 50 steps, a checkpoint every 5: the checkpoint reads and checks the pending steps
    first, so an over-limit loss at step 1 fails the run and nothing is ever written."""
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path, sync_every=50, checkpoint_every=5,
                           guard=GuardConfig(loss_limit=1e-9, max_rollbacks=0))
    with pytest.raises(TrainingDiverged, match="step 0 .*exceeds the limit 1e-09"):
        trainer.fit(10)
    assert not trainer.checkpoint_path.exists()


# -- the accelerator's generator, exercised on CPU: a second generator stands in for the device's --------


@pytest.fixture
def separate_device_gen(monkeypatch):
    """Per-sample draws from their own generator, as on CUDA (there it lives on the device)."""
    from ganmodels.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "_device_generator",
                        lambda gen, device, seed: torch.Generator().manual_seed(seed + 12345))


def test_with_a_device_generator_resume_stays_exact(tiny_images, tmp_path, separate_device_gen):
    straight = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "a", **STABILISERS)
    assert straight.device_gen is not straight.gen
    straight.fit(20)
    first = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "b", checkpoint_every=10, **STABILISERS)
    first.fit(10)
    assert "device" in load_checkpoint(first.checkpoint_path)["rng"]
    resumed = make_trainer("dcgan", SMALL_DCGAN, tiny_images, tmp_path / "b", init_seed=99, **STABILISERS)
    resumed.device_gen.manual_seed(777)  # its own stream must be replaced by the checkpoint's
    resumed.fit(20, resume=True)
    assert_bitwise_equal(straight, resumed)


def test_a_rollback_does_not_replay_the_device_stream(tiny_images, separate_device_gen):
    """After a rollback to step 5 the device generator is reseeded, as the CPU one is: the batch that
    led to the divergence is not drawn again."""

    class States(Callback):
        def __init__(self):
            self.saved = self.after_rollback = None

        def on_step_end(self, trainer, step, logs):
            if step == 5 and self.saved is None:
                self.saved = trainer.device_gen.get_state()

        def on_rollback(self, trainer, event):
            self.after_rollback = trainer.device_gen.get_state()

    t = make_trainer("dcgan", SMALL_DCGAN, tiny_images, checkpoint_every=5, guard=GuardConfig(max_rollbacks=2))
    states = States()
    t.callbacks += [Sabotage(at=8, times=1), states]
    assert t.fit(12).events[0].restored_step == 5
    assert not torch.equal(states.saved, states.after_rollback)


def test_per_sample_draws_come_from_the_device_generator(tiny_images, separate_device_gen):
    """Reseeding only the device generator changes the run: the batch, latents and augmentation are its."""
    a = make_trainer("dcgan", SMALL_DCGAN, tiny_images, **STABILISERS)
    b = make_trainer("dcgan", SMALL_DCGAN, tiny_images, **STABILISERS)
    b.device_gen.manual_seed(1)
    a.fit(3)
    b.fit(3)
    assert not torch.equal(all_weights(a)["networks.G.net.0.weight"], all_weights(b)["networks.G.net.0.weight"])


@pytest.mark.parametrize("every", [1, 4])
def test_the_guard_checks_every_repeat_of_a_phase(tiny_images, every):
    """d_steps=2: the first of step 2's two D updates has an over-limit loss (with no gradient), the
    second a normal one. Read every update or every 4 steps, the first is what fails the run."""
    trainer = make_trainer("dcgan", SMALL_DCGAN, tiny_images, d_steps=2, sync_every=every,
                           guard=GuardConfig(max_rollbacks=0))
    original, d_updates = trainer.model.phase_loss, []

    def phase_loss(phase, ctx):
        loss, extra = original(phase, ctx)
        if ctx.step == 2 and phase.name == "D":
            d_updates.append(ctx.step)
            if len(d_updates) == 1:
                loss = loss * 0 + 1e6
        return loss, extra

    trainer.model.phase_loss = phase_loss
    with pytest.raises(TrainingDiverged, match=r"step 2 .*d_loss=1e\+06 exceeds the limit"):
        trainer.fit(8)


def test_memory_format_is_a_setting(tiny_images):
    def conv_weights(trainer):
        return [p for p in trainer.networks["D"].parameters() if p.dim() == 4 and p.shape[1] > 1]

    nhwc = make_trainer("dcgan", SMALL_DCGAN, tiny_images, memory_format="channels_last")
    assert conv_weights(nhwc) and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                                      for w in conv_weights(nhwc))
    auto = make_trainer("dcgan", SMALL_DCGAN, tiny_images)  # auto: contiguous on CPU (channels_last on CUDA)
    assert all(w.is_contiguous() for w in conv_weights(auto))
    nhwc.fit(2)
    assert all_finite(nhwc)
    with pytest.raises(ValueError, match="memory_format must be one of"):
        TrainConfig(memory_format="nhwc")

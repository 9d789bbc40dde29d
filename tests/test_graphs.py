"""train.cuda_graph: the whole step captured and replayed, tested here on the CPU with a stand-in graph.

A CUDA graph needs a GPU; what the trainer does around it does not. ``ReplayedOnCPU`` stands in for
``CUDAStepGraph`` as a graph behaves: ``capture`` runs nothing, ``replay`` runs the captured step with
the Python decisions of its capture (which phases, penalties due, EMA copying or averaging), and writes
its numbers into one output tensor that the next replay overwrites. Against the same trainer with no
step ever captured, a run must be bitwise equal -- per-step logs, weights, EMA, optimiser state --
through lazy R1, d_steps, the EMA start, a decaying learning rate, a rollback and a resume. That fails
when a graph is replayed for the wrong step pattern, when a replay's numbers are not copied out before
the next one, when the learning rate is baked into a graph, or when a load keeps stale graphs.

What only a GPU can show (capture itself, graph-safe random draws, capturable Adam) is in
tests/test_cuda.py, which benchmarks/gpu.sh runs.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ganmodels
from ganmodels.train import Callback, GuardConfig, LossHistory, TrainConfig, Trainer, graphs, seed_everything
from tests.model_configs import SMALL
from tests.test_train import Sabotage, all_finite, assert_bitwise_equal, fresh_elsewhere

# Every step-dependent decision at once: R1 every 3rd step, two D updates, EMA copying until step 6,
# the learning rate decaying over the second half, DiffAugment's draws.
# On the CPU also where a GPU is present (benchmarks/gpu.sh runs this file): the comparisons are bitwise.
RECIPE = dict(device="cpu", batch_size=16, seed=0, checkpoint_every=1000, sync_every=4, cuda_graph=True,
              r1_gamma=1.0, reg_every=3, d_steps=2, ema_start=6, lr_decay_start=0.5, steps=20,
              diffaugment="color,translation,cutout")


class ReplayedOnCPU:
    """A CUDA graph's behaviour on the CPU: capture runs nothing; each replay runs the captured step
    into the same output tensor, and must run what the first one ran: the same kernels on the same
    shapes, reading the same state tensors (a real graph replays those and nothing else)."""

    def __init__(self, device, generators):
        self.fn, self.output, self.trace = None, None, None

    def capture(self, fn):
        self.fn = fn

    def replay(self):
        with Trace() as trace:
            out = self.fn()
        if self.trace is None:
            self.trace = trace.ops
        else:
            assert_replays(self.trace, trace.ops)
        if self.output is None:
            self.output = out.clone()
        else:
            self.output.copy_(out)
        return self.output


class Trace(TorchDispatchMode):
    """The ops a step runs, each with its inputs: for a tensor made earlier in the step its shape, for
    one that was there before (weights, optimiser state, a family's buffers) its storage as well. A
    captured graph reads the storage it was captured with: a step that replaces such a tensor instead of
    updating it in place, or makes a Python decision that is not in its step pattern, shows up as a
    replay that differs from the capture."""

    def __init__(self):
        super().__init__()
        self.ops, self.made, self.before = [], set(), set()

    def _describe(self, value):
        storage = value.untyped_storage().data_ptr()
        if storage in self.made:
            return (tuple(value.shape), value.dtype)
        self.before.add(storage)
        return (tuple(value.shape), value.dtype, storage, value.storage_offset())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = [v for v in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(v, torch.Tensor)]
        inputs = tuple(self._describe(v) for v in leaves)
        out = func(*args, **kwargs)
        self.ops.append((str(func), inputs))
        aliases = {v.untyped_storage().data_ptr() for v in leaves}  # in-place ops and views return their input
        for value in torch.utils._pytree.tree_leaves(out):
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() not in aliases:
                # A new tensor; at the address of one that was freed in this step, maybe, so not "before".
                self.before.discard(value.untyped_storage().data_ptr())
                self.made.add(value.untyped_storage().data_ptr())
        return out


def assert_replays(captured, replayed):
    for i, (a, b) in enumerate(zip(captured, replayed)):
        assert a == b, f"replay op {i} differs from the capture's: {a} then {b}"
    assert len(captured) == len(replayed), f"the capture ran {len(captured)} ops, a replay {len(replayed)}"


@pytest.fixture
def on_cpu(monkeypatch):
    """Let the trainer capture on the CPU, through ``ReplayedOnCPU``; every other reason still applies."""
    real = graphs.unavailable
    monkeypatch.setattr(graphs, "unavailable", lambda device, **kw: real(torch.device("cuda"), **kw))
    monkeypatch.setattr(graphs, "CUDAStepGraph", ReplayedOnCPU)
    return monkeypatch


def _trainer(data, tmp_path=None, name="dcgan", init_seed=0, model=None, **train):
    seed_everything(init_seed)
    history = LossHistory()
    trainer = Trainer(ganmodels.build(name, {**SMALL[name], **(model or {})}), data, TrainConfig(**{**RECIPE, **train}),
                      workdir=tmp_path, callbacks=[history])
    return trainer, history


def _never_captured(on_cpu):
    on_cpu.setattr(graphs, "WARMUP", 10**9)  # every step runs eagerly through the same path


def test_captured_steps_equal_eager_ones_bitwise(tiny_images, on_cpu):
    _never_captured(on_cpu)
    eager, eager_logs = _trainer(tiny_images)
    eager.fit()
    assert eager.graphs is not None and eager.graphs.captures == 0
    on_cpu.setattr(graphs, "WARMUP", 2)
    replayed, logs = _trainer(tiny_images)
    replayed.fit()
    # Step patterns (R1 due, EMA copying): (no, yes) steps 1 2 4 5, (yes, no) 6 9 12 15 18, (no, no) 7 8 10 ...
    # are captured at their third occurrence; (yes, yes) at steps 0 and 3 only warms up.
    assert replayed.graphs.captures == 3
    assert logs.steps == eager_logs.steps == list(range(1, 21))
    assert logs.logs == eager_logs.logs  # every step's numbers, exactly
    assert_bitwise_equal(eager, replayed)


def test_the_learning_rate_lives_on_the_device_and_follows_the_schedule(tiny_images, on_cpu):
    trainer, _ = _trainer(tiny_images)
    rate = trainer.optimisers["G"].param_groups[0]["lr"]
    assert torch.is_tensor(rate) and float(rate) == pytest.approx(trainer.cfg.lr_g)
    trainer.fit()
    assert trainer.optimisers["G"].param_groups[0]["lr"] is rate  # the tensor a graph holds, updated in place
    # The last step (19) ran at 1 - (19 - 10) / 10 of the rate: linear decay from step 10 of 20.
    assert float(rate) == pytest.approx(trainer.cfg.lr_g * 0.1)


def test_a_rollback_drops_the_graphs_and_ends_like_the_eager_run(tiny_images, on_cpu):
    """NaN put into D after step 8, checkpoints every 5: the replayed run rolls back to step 5 like the
    eager one, captures its steps again (the load replaced the optimiser state a graph holds), and ends
    bitwise equal."""
    runs = {}
    for warmup in (10**9, 2):
        on_cpu.setattr(graphs, "WARMUP", warmup)
        trainer, history = _trainer(tiny_images, checkpoint_every=5, guard=GuardConfig(max_rollbacks=2))
        trainer.callbacks.append(Sabotage(at=8, times=1))
        counted = CapturesAtRollback()
        trainer.callbacks.append(counted)
        result = trainer.fit(16)
        runs[warmup] = trainer, result, history, counted.captures
    (eager, er, eh, _), (replayed, rr, rh, captures) = runs[10**9], runs[2]
    assert er.events == rr.events and len(rr.events) == 1 and rr.events[0].restored_step == 5
    assert captures == [0], "the rollback kept graphs that hold the replaced optimiser state"
    assert replayed.graphs.captures >= 1, "no graph was captured after the load"
    assert rh.logs == eh.logs
    assert_bitwise_equal(eager, replayed)
    assert all_finite(replayed)


class CapturesAtRollback(Callback):
    """The graphs the trainer holds right after each rollback's load."""

    def __init__(self):
        self.captures = []

    def on_rollback(self, trainer, event):
        self.captures.append(len(trainer.graphs.graphs))


def test_a_replayed_run_resumes_bitwise(tiny_images, tmp_path, on_cpu):
    straight, _ = _trainer(tiny_images, tmp_path / "a")
    straight.fit()
    first, _ = _trainer(tiny_images, tmp_path / "b", checkpoint_every=7)
    first.fit(7)
    resumed, _ = _trainer(tiny_images, tmp_path / "b", init_seed=99, checkpoint_every=7)
    fresh_elsewhere(resumed)
    assert resumed.fit(resume=True).resumed_from == 7
    assert resumed.graphs.captures >= 1
    assert_bitwise_equal(straight, resumed)


def test_a_capture_that_fails_trains_on_uncaptured(tiny_images, on_cpu, caplog):
    class Refuses(ReplayedOnCPU):
        def capture(self, fn):
            raise RuntimeError("operation not permitted when stream is capturing")

    on_cpu.setattr(graphs, "CUDAStepGraph", Refuses)
    with caplog.at_level(logging.WARNING, logger="ganmodels.train.trainer"):
        trainer, history = _trainer(tiny_images)
        trainer.fit()
    assert trainer.graphs is None and history.steps == list(range(1, 21))
    assert any("could not be captured" in r.getMessage() and "not permitted" in r.getMessage()
               and "uncaptured" in r.getMessage() for r in caplog.records)
    on_cpu.setattr(graphs, "CUDAStepGraph", ReplayedOnCPU)
    _never_captured(on_cpu)
    eager, eager_history = _trainer(tiny_images)
    eager.fit()
    assert history.logs == eager_history.logs  # the step that failed to capture ran eagerly, once
    assert_bitwise_equal(eager, trainer)


@pytest.mark.parametrize("settings, says", [
    ({"sync_every": 1}, "train.sync_every=1"),
    ({"amp": True}, "train.amp"),
    ({"compile": True}, "train.compile and train.cuda_graph"),
    ({"name": "cyclegan"}, "model.pool_size=3"),
])
def test_what_cannot_be_captured_trains_uncaptured_and_says_why(settings, says, data_of_kind, on_cpu, caplog):
    settings = dict(settings)
    name = settings.pop("name", "dcgan")
    if settings.get("compile"):
        on_cpu.setattr("ganmodels.compiled.unavailable", lambda device: None)
        on_cpu.setattr("ganmodels.compiled.compile_modules", lambda modules, device: None)
    data = data_of_kind[ganmodels.build(name, SMALL[name]).accepts[0]]
    with caplog.at_level(logging.WARNING, logger="ganmodels.train.trainer"):
        trainer, _ = _trainer(data, name=name, **settings)
    assert trainer.graphs is None
    assert any(says in r.getMessage() and "uncaptured" in r.getMessage() for r in caplog.records)
    assert not torch.is_tensor(trainer.optimisers[next(iter(trainer.optimisers))].param_groups[0]["lr"])


def test_on_a_cpu_the_setting_says_it_needs_cuda(tiny_images, caplog):
    with caplog.at_level(logging.WARNING, logger="ganmodels.train.trainer"):
        trainer, history = _trainer(tiny_images)
    assert trainer.graphs is None
    assert any("need a CUDA device" in r.getMessage() for r in caplog.records)
    trainer.fit(2)
    assert history.steps == [1, 2]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_model_is_captured_and_replays_bitwise(name, data_of_kind, on_cpu):
    """Each registered model, captured and replayed, against the same run never captured: StyleGAN2 with
    style mixing, path-length steps and its running means; CycleGAN without its image pool (with one it
    is not captured), G phase before D's."""
    model = {"pool_size": 0} if name == "cyclegan" else {}
    gan = ganmodels.build(name, SMALL[name])
    data = data_of_kind[gan.accepts[0]]
    extra = {} if gan.accepts[0].value != "points" else {"r1_gamma": 0.0, "diffaugment": ""}
    runs = []
    for warmup in (10**9, 2):
        on_cpu.setattr(graphs, "WARMUP", warmup)
        trainer, history = _trainer(data, name=name, model=model, **extra)
        trainer.fit()
        runs.append((trainer, history))
    (eager, eager_history), (replayed, history) = runs
    assert replayed.graphs.captures >= 2, name
    assert history.logs == eager_history.logs
    assert_bitwise_equal(eager, replayed)
    assert all(torch.equal(a, b) for a, b in zip(eager.model.family_state().values(),
                                                 replayed.model.family_state().values()))


class HostWork(TorchDispatchMode):
    """Records what a CUDA graph cannot replay: reading a tensor's value on the host (``float(t)``,
    ``.item()``, ``nonzero``: a capture fails on them) and drawing from the host generator (a capture
    would freeze the draw). On CUDA the per-sample draws come from the device generator; here a second
    CPU generator stands in for it, so a draw from the host one is told apart."""

    READS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.equal.default",
             "aten.is_nonzero.default"}

    def __init__(self, host_gen):
        super().__init__()
        self.host_gen, self.found = host_gen, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if str(func) in self.READS:
            self.found.append(f"{func} (a host read)")
        if any(value is self.host_gen for value in (*args, *kwargs.values())):
            self.found.append(f"{func} from the host generator")
        return func(*args, **kwargs)


@pytest.mark.parametrize("name, extra", [*((name, {}) for name in sorted(SMALL)), ("cyclegan", {"pool_size": 0})],
                         ids=[*sorted(SMALL), "cyclegan-no-pool"])
def test_a_capturable_step_does_no_host_work(name, extra, data_of_kind, monkeypatch):
    """Every registered model: its step does no host read and no host draw (R1 and DiffAugment on for
    images; fused Adam, as on CUDA) exactly when its family does not block capture. Only CycleGAN with
    an image pool blocks it (the pool is kept and sampled on the host); the others are captured."""
    from ganmodels.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "_device_generator", lambda gen, device, seed: torch.Generator().manual_seed(1))
    seed_everything(0)
    gan = ganmodels.build(name, {**SMALL[name], **extra})
    image = gan.accepts[0].value != "points"
    cfg = TrainConfig(**{**RECIPE, "cuda_graph": False, "optimizer_impl": "fused", "reg_every": 1, "d_steps": 1,
                         **({} if image else {"r1_gamma": 0.0, "diffaugment": ""})})
    trainer = Trainer(gan, data_of_kind[gan.accepts[0]], cfg)
    for _ in range(2):  # lazy state (Adam's, a pool's) is made outside: a capture follows warm-up steps
        trainer._step()
        trainer.step += 1
    with HostWork(trainer.gen) as seen:
        for _ in range(4):  # steps 2-5: StyleGAN2's path-length step (every 4) among them
            trainer._step()
            trainer.step += 1
    blocker = gan.capture_blocker(cfg)
    assert (not seen.found) == (blocker is None), (blocker, seen.found)
    assert (blocker is None) == (name != "cyclegan" or extra == {"pool_size": 0})


def test_cuda_graph_must_be_a_boolean():
    with pytest.raises(ValueError, match="cuda_graph must be true or false"):
        TrainConfig(cuda_graph="yes")


def test_an_optimiser_state_loads_with_this_runs_implementation():
    """A checkpoint's optimiser groups carry the saving run's flags (a capturable, fused CUDA Adam);
    torch's load_state_dict would adopt them, and a capturable Adam cannot step on a CPU."""
    from ganmodels.train.trainer import _load_optimiser

    theirs = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], fused=True)
    theirs.param_groups[0]["params"][0].grad = torch.ones(3)
    theirs.step()
    saved = theirs.state_dict()
    saved["param_groups"][0]["capturable"] = True
    param = torch.nn.Parameter(torch.ones(3))
    mine = torch.optim.Adam([param], foreach=False)
    _load_optimiser(mine, saved)
    group = mine.param_groups[0]
    assert (group["fused"], group["foreach"], group["capturable"]) == (None, False, False)
    assert float(mine.state[param]["step"]) == 1.0
    param.grad = torch.ones(3)
    mine.step()  # would raise "If capturable=True, params and state_steps must be on supported devices"
    assert float(mine.state[param]["step"]) == 2.0

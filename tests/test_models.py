"""Registry-driven model tests: every registered model, through its family, builds, trains a step,
samples, exports to ONNX (checked in onnxruntime), and reloads from its checkpoint. A model is tested
the day it registers; it only has to add its small test config to SMALL."""

from __future__ import annotations

import onnx
import pytest
import torch

import ganmodels
from ganmodels.data import DataKind
from ganmodels.export import check_onnx, export_onnx, read_metadata
from ganmodels.families import GANFamily, IncompatibleData
from ganmodels.registry import get_spec, register
from ganmodels.train import TrainConfig, Trainer, load_model
from tests.model_configs import SMALL

MODELS = ganmodels.list_models()


def small_config(name: str) -> dict:
    return SMALL[name]


def test_every_registered_model_has_a_small_test_config():
    assert sorted(SMALL) == MODELS


def build(name: str) -> GANFamily:
    torch.manual_seed(0)
    return ganmodels.build(name, small_config(name))


@pytest.mark.parametrize("name", MODELS)
def test_the_signature_describes_the_inference_call(name):
    model = build(name)
    assert isinstance(model, get_spec(name).family) and model.accepts == get_spec(name).accepts
    signature = model.signature()
    inputs = signature.example(4, torch.Generator().manual_seed(0))
    out = model.export_module()(*inputs)
    assert tuple(out.shape) == (4, *signature.outputs[0].shape)
    if DataKind.POINTS not in model.accepts:
        assert out.min() >= -1 and out.max() <= 1  # tanh output range
    out.sum().backward()  # the inference network is differentiable end to end
    grads = [p.grad for p in model.generator.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", MODELS)
def test_trains_samples_exports_and_reloads_through_its_family(name, data_of_kind, tmp_path):
    model = build(name)
    data = data_of_kind[model.accepts[0]]
    trainer = Trainer(model, data, TrainConfig(steps=2, batch_size=8, checkpoint_every=1, seed=0), workdir=tmp_path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = trainer.fit()
    assert result.steps == 2 and {"d_loss", "g_loss"} <= set(result.logs)
    for net_name in model.networks():  # every network's optimiser stepped
        changed = [not torch.equal(before[n], p) for n, p in model.named_parameters() if n.startswith(net_name + ".")]
        assert any(changed), f"{net_name} did not train"

    samples = model.evaluation_samples(20, seed=0, G=trainer.generator, data=data)
    assert samples.fake.shape == (20, *data.sample_shape) and torch.isfinite(samples.fake).all()
    if getattr(model, "conditional", False):  # the classes in turn
        assert samples.labels.tolist() == [i % model.G.c_dim for i in range(20)]

    reloaded = load_model(result.checkpoint)
    assert type(reloaded) is type(model) and reloaded.name == name
    again = reloaded.evaluation_samples(20, seed=0, data=data)
    torch.testing.assert_close(again.fake, samples.fake)  # the EMA generator, rebuilt from plain state dicts

    for target, (_, signature) in reloaded.export_targets().items():  # CycleGAN: both directions
        path = export_onnx(reloaded, tmp_path / f"{target}.onnx", target=target)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        assert check_onnx(path, reloaded, batch_sizes=(1, 7, 64), target=target)["passed"]
        assert read_metadata(path)["signature"] == signature
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == [s.name for s in signature.inputs]
        assert [o.name for o in graph.output] == [s.name for s in signature.outputs]


@pytest.mark.parametrize("name", MODELS)
def test_refuses_data_of_another_kind(name, data_of_kind):
    model = build(name)
    other = next(k for k in (DataKind.POINTS, DataKind.LABELLED_IMAGES) if not k.satisfies(model.accepts))
    with pytest.raises(IncompatibleData, match=f"model '{name}' trains on"):
        Trainer(model, data_of_kind[other], TrainConfig(steps=1, batch_size=8))


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_resolutions(resolution, channels):
    gan = ganmodels.build("dcgan", g_width=4, d_width=4, resolution=resolution, channels=channels)
    out = gan.G(torch.randn(2, gan.G.z_dim))
    assert out.shape == (2, channels, resolution, resolution)
    assert gan.D(out).shape == (2,)


def test_packing_reduces_logits_and_checks_batch():
    gan = ganmodels.build("dcgan", g_width=4, d_width=4, resolution=16, pack=2)
    assert gan.D(torch.randn(6, 1, 16, 16)).shape == (3,)
    with pytest.raises(ValueError, match="divisible"):
        gan.D(torch.randn(5, 1, 16, 16))


def test_minibatch_std_sees_collapse():
    from ganmodels.models.layers import MinibatchStd

    layer = MinibatchStd(group_size=4)
    same = torch.ones(8, 3, 4, 4)
    varied = torch.randn(8, 3, 4, 4)
    assert layer(same)[:, -1].abs().max() < 1e-3  # a collapsed batch has ~0 std
    assert layer(varied)[:, -1].mean() > 0.5
    assert layer(torch.randn(8, 5)).shape == (8, 6)


def test_spectral_norm_bounds_the_layer():
    gan = ganmodels.build("dcgan", g_width=4, d_width=4, resolution=16, d_norm="spectral")
    conv = gan.D.features[0]
    for _ in range(30):  # power iterations converge in train mode
        conv(torch.randn(2, 1, 16, 16))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.weight.shape[0], -1), ord=2).item()
    assert sigma == pytest.approx(1.0, abs=0.05)


def test_registry_refuses_duplicates_and_unknown_fields():
    from ganmodels.models.dcgan import DCGANConfig

    with pytest.raises(ValueError, match="already registered"):
        register("dcgan", config=DCGANConfig, family=GANFamily, accepts=(DataKind.IMAGES,))(lambda cfg: None)
    with pytest.raises(TypeError, match="GANFamily subclass"):
        register("new-model", config=DCGANConfig, family=torch.nn.Module, accepts=(DataKind.IMAGES,))(lambda c: None)
    with pytest.raises(ValueError, match="unknown field"):
        ganmodels.build("dcgan", {"widht": 3})
    with pytest.raises(KeyError, match="registered models"):
        ganmodels.build("nope")
    with pytest.raises(ValueError, match="resolution"):
        ganmodels.build("dcgan", resolution=48)


@pytest.mark.parametrize("name", MODELS)
def test_resume_is_exact_for_every_family(name, data_of_kind, tmp_path):
    """N steps == N/2 + resume + N/2, bit for bit, whatever the family's networks and phases; the
    resuming trainer starts from other weights and another random stream, so only the checkpoint
    can make it match."""
    from ganmodels.train import seed_everything

    def trainer(workdir, init_seed=0):
        seed_everything(init_seed)
        model = ganmodels.build(name, small_config(name))
        cfg = TrainConfig(steps=6, batch_size=8, checkpoint_every=3, seed=0, ema_beta=0.9, r1_gamma=0.5, reg_every=2,
                          lr_decay_start=0.5)  # every regulariser, and a schedule that must resume at its step
        return Trainer(model, data_of_kind[model.accepts[0]], cfg, workdir=workdir)

    straight = trainer(tmp_path / "a")
    straight.fit()
    trainer(tmp_path / "b").fit(3)
    resumed = trainer(tmp_path / "b", init_seed=99)
    resumed.gen.manual_seed(4321)
    assert resumed.fit(resume=True).resumed_from == 3
    a, b = straight.state_dict(), resumed.state_dict()
    for section in ("networks", "ema"):
        for net, weights in a[section].items():
            for key, value in weights.items():
                assert torch.equal(value, b[section][net][key]), f"{section}.{net}.{key}"

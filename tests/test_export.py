"""ONNX export: every generator flavour exports with a dynamic batch, loads, and matches PyTorch in
onnxruntime (an independent implementation); failed exports leave nothing behind; a model with
non-finite outputs never passes the check."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime  # noqa: F401  (declared test dependencies: a broken install fails here, never skips)
import onnxscript  # noqa: F401
import pytest
import torch
from torch import nn

import ganmodels
from ganmodels.export import (
    OnnxExportError,
    OnnxMismatchError,
    check_onnx,
    export_onnx,
    onnx_sample,
    read_metadata,
)


class ConvG(nn.Module):
    """Unconditional DCGAN-style generator: z (B, 8) -> (B, 1, 8, 8)."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.c_dim = 8, 0
        self.net = nn.Sequential(
            nn.ConvTranspose2d(8, 16, 4, 1, 0, bias=False),  # (B, 16, 4, 4)
            nn.BatchNorm2d(16),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(16, 1, 4, 2, 1),  # (B, 1, 8, 8)
            nn.Tanh(),
        )

    def forward(self, z, c=None):
        return self.net(z.reshape(z.shape[0], self.z_dim, 1, 1))


class CondConvG(nn.Module):
    """Class-conditional generator: label embedding concatenated to z, (B, 6) + (B,) -> (B, 3, 8, 8)."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.c_dim = 6, 4
        self.embed = nn.Embedding(4, 6)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(12, 16, 4, 1, 0),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 3, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, z, c=None):
        h = torch.cat([z, self.embed(c)], dim=1)  # (B, 12)
        return self.net(h[:, :, None, None])


class PointsG(nn.Module):
    """MLP generator for 2D points: z (B, 2) -> (B, 2)."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.c_dim = 2, 0
        self.net = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32), nn.LeakyReLU(0.2), nn.Linear(32, 2))

    def forward(self, z, c=None):
        return self.net(z)


FLAVOURS = {"conv": ConvG, "conditional": CondConvG, "points": PointsG}


def make(flavour: str) -> nn.Module:
    torch.manual_seed(0)
    G = FLAVOURS[flavour]()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval vs train mode would differ
        for m in G.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return G


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_export_loads_runs_at_several_batches_and_matches_torch(flavour, tmp_path):
    G = make(flavour)
    G.train()
    path = export_onnx(G, tmp_path / f"{flavour}.onnx")

    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{flavour}.onnx"]  # one file, no temp or .data left
    assert G.training and all(m.training for m in G.modules())  # caller's mode restored
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)

    result = check_onnx(path, G, batch_sizes=(1, 7), atol=1e-4)
    assert result["passed"] and result["batch_sizes"] == [1, 7] and result["max_abs_diff"] <= 1e-4

    meta = read_metadata(path)
    assert (meta["z_dim"], meta["c_dim"], meta["exporter"]) == (G.z_dim, G.c_dim, "dynamo")
    assert meta["output_name"] == ("points" if flavour == "points" else "image")
    assert meta["ganpipe_version"] == ganmodels.__version__


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_onnx_sample_matches_torch_on_the_documented_noise(flavour, tmp_path):
    G = make(flavour).eval()
    path = export_onnx(G, tmp_path / "g.onnx")
    labels = np.arange(5) % G.c_dim if G.c_dim else None
    samples = onnx_sample(path, 5, seed=3, labels=labels, batch_size=2)  # 3 chunks: 2 + 2 + 1

    z = torch.from_numpy(np.random.default_rng(3).standard_normal((5, G.z_dim), dtype=np.float32))
    with torch.no_grad():
        expected = G(z, torch.from_numpy(labels) if G.c_dim else None).numpy()
    assert samples.dtype == np.float32 and samples.shape == expected.shape
    np.testing.assert_allclose(samples, expected, atol=1e-4)
    assert not np.allclose(samples, onnx_sample(path, 5, seed=4, labels=labels))


def test_onnx_sample_labels_are_validated(tmp_path):
    cond = export_onnx(make("conditional"), tmp_path / "cond.onnx")
    assert onnx_sample(cond, 3, seed=0).shape == (3, 3, 8, 8)  # labels drawn when not given
    with pytest.raises(ValueError, match="labels must lie"):
        onnx_sample(cond, 3, seed=0, labels=4)
    uncond = export_onnx(make("points"), tmp_path / "points.onnx")
    with pytest.raises(ValueError, match="unconditional"):
        onnx_sample(uncond, 3, seed=0, labels=1)


def test_mismatched_model_raises_with_diff_and_tolerance(tmp_path):
    G = make("conv").eval()
    path = export_onnx(G, tmp_path / "g.onnx")
    other = make("conv")
    with torch.no_grad():
        other.net[3].bias.add_(0.05)  # a small shift: tanh keeps the outputs in range but moves them
    with pytest.raises(OnnxMismatchError, match=r"max \|diff\| = .* > atol = 0.0001") as info:
        check_onnx(path, other)
    assert info.value.max_abs_diff > 1e-3 and info.value.atol == 1e-4


def test_interface_mismatch_raises(tmp_path):
    path = export_onnx(make("conv"), tmp_path / "g.onnx")
    with pytest.raises(OnnxMismatchError, match=r"signature \(z float32\[8\]\) .* differs .* \(z float32\[2\]\)"):
        check_onnx(path, make("points"))


class Broken(ConvG):
    def forward(self, z, c=None):
        raise RuntimeError("forward is broken")


def test_model_raising_in_forward_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="forward is broken"):
        export_onnx(Broken(), tmp_path / "g.onnx")
    assert list(tmp_path.iterdir()) == []


def test_failed_export_never_replaces_the_previous_file(tmp_path, monkeypatch):
    path = export_onnx(make("conv"), tmp_path / "g.onnx")
    before = path.read_bytes()

    def half_writing_export(model, args, f=None, **kwargs):
        if f is not None:  # the TorchScript exporter writes to a path: leave half a file, then fail
            with open(f, "wb") as fh:
                fh.write(before[: len(before) // 2])
        raise RuntimeError(f"exporter crashed (dynamo={kwargs.get('dynamo')})")

    monkeypatch.setattr(torch.onnx, "export", half_writing_export)
    with pytest.raises(OnnxExportError, match="dynamo=True.*dynamo=False"):
        export_onnx(make("points"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]


def test_falls_back_to_torchscript_when_dynamo_fails(tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def dynamo_fails(model, args, f=None, **kwargs):
        if kwargs.get("dynamo", True):
            raise RuntimeError("unsupported operator")
        return real_export(model, args, f, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    G = make("conditional").eval()
    path = export_onnx(G, tmp_path / "g.onnx")
    assert read_metadata(path)["exporter"] == "torchscript"
    assert check_onnx(path, G, batch_sizes=(1, 7))["passed"]  # dynamic batch via dynamic_axes


def test_batch_example_of_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="batch_example"):
        export_onnx(make("points"), tmp_path / "g.onnx", batch_example=1)


def poison(G: nn.Module) -> nn.Module:
    with torch.no_grad():
        G.net[3].bias.fill_(float("nan"))
    return G


@pytest.mark.parametrize("where", ["both", "torch"])
def test_non_finite_outputs_never_pass(where, tmp_path):
    """NaN on both sides (a broken model exported faithfully) or on one side: the check fails, with
    max_abs_diff NaN, never 0.0 (Python's max() silently drops a NaN in second place)."""
    G = make("conv").eval()
    path = export_onnx(poison(G) if where == "both" else G, tmp_path / "g.onnx")
    if where == "torch":
        poison(G)
    with pytest.raises(OnnxMismatchError, match="NaN or inf") as info:
        check_onnx(path, G)
    assert np.isnan(info.value.max_abs_diff)


def test_a_nan_on_a_later_batch_is_not_hidden_by_an_earlier_good_one(tmp_path):
    G = make("conv").eval()
    path = export_onnx(G, tmp_path / "g.onnx")

    class NaNFromBatch7(nn.Module):  # same interface; NaN only for the second batch size
        def __init__(self):
            super().__init__()
            self.G, self.z_dim, self.c_dim = G, G.z_dim, G.c_dim

        def forward(self, z, c=None):
            out = self.G(z)
            return out * float("nan") if len(z) == 7 else out

    with pytest.raises(OnnxMismatchError, match="batch 7"):
        check_onnx(path, NaNFromBatch7(), batch_sizes=(1, 7))

"""The Inception-v3 feature network used by FID, written for this project.

FID (Heusel et al. 2017) is defined on the 2048-d "pool3" features of the TensorFlow Inception
graph ``inception-2015-12-05``. pytorch-fid (Seitzer, github.com/mseitzer/pytorch-fid) ported those
weights to PyTorch as ``pt_inception-2015-12-05-6726825d.pth``; scores are only comparable across
papers when computed with that network, so this module reproduces its layout exactly:

* torchvision's Inception-v3 stem and block layout (Szegedy et al. 2016, "Rethinking the Inception
  Architecture", Fig. 5-7), conv + BatchNorm(eps=1e-3) + ReLU units without conv bias;
* the TF graph differs from torchvision's in two ways (pytorch-fid ``FIDInception*``):
  its 3×3 average pools ignore zero padding (``count_include_pad=False``) in the A, C and E blocks,
  and the pool branch of the *last* E block (Mixed_7c) is a 3×3 max-pool;
* inputs are resized to 299×299 (bilinear, ``align_corners=False``) and expected in [-1, 1].

Parameter names match the weights file (``Conv2d_1a_3x3.conv.weight`` ...) so it loads as-is; its
classifier head (``fc.*``) is not needed for pool3 features and is ignored.

Weights are never downloaded: ``find_inception_weights`` looks in an explicit path, the
``GANPIPE_INCEPTION_WEIGHTS`` environment variable and the torch hub cache, in that order.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FID_WEIGHTS_FILENAME",
    "FID_WEIGHTS_URL",
    "FIDInceptionV3",
    "InceptionWeightsNotFound",
    "find_inception_weights",
    "load_fid_inception",
]

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILENAME}"
WEIGHTS_ENV = "GANPIPE_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
FEATURE_DIM = 2048


class InceptionWeightsNotFound(FileNotFoundError):
    """The FID Inception weights file is not on this machine (and is never downloaded)."""


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
class ConvBNReLU(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3, the TF default) -> ReLU; names match the weight file."""

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME-padded average pool divides by the number of real pixels under the window.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class MixedA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1. Out: 224 + pool_features channels."""

    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(c_in, 64, 1)
        self.branch5x5_1 = ConvBNReLU(c_in, 48, 1)
        self.branch5x5_2 = ConvBNReLU(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBNReLU(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBNReLU(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBNReLU(96, 96, 3, padding=1)
        self.branch_pool = ConvBNReLU(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class ReductionB(nn.Module):
    """35×35 -> 17×17 grid reduction: 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2. Out: 480 + c_in channels."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = ConvBNReLU(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBNReLU(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBNReLU(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBNReLU(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class MixedC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (1×7 and 7×1). Out: 768 channels."""

    def __init__(self, c_in: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(c_in, 192, 1)
        self.branch7x7_1 = ConvBNReLU(c_in, c7, 1)
        self.branch7x7_2 = ConvBNReLU(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBNReLU(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBNReLU(c_in, c7, 1)
        self.branch7x7dbl_2 = ConvBNReLU(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBNReLU(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBNReLU(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBNReLU(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBNReLU(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class ReductionD(nn.Module):
    """17×17 -> 8×8 grid reduction. Out: 512 + c_in channels."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = ConvBNReLU(c_in, 192, 1)
        self.branch3x3_2 = ConvBNReLU(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBNReLU(c_in, 192, 1)
        self.branch7x7x3_2 = ConvBNReLU(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBNReLU(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBNReLU(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class MixedE(nn.Module):
    """8×8 block with expanded (1×3 ‖ 3×1) outputs. Out: 2048 channels.

    ``max_pool=True`` reproduces the TF graph's Mixed_7c, whose pool branch is a max-pool
    (pytorch-fid ``FIDInceptionE_2``; the paper and torchvision use an average pool).
    """

    def __init__(self, c_in: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBNReLU(c_in, 320, 1)
        self.branch3x3_1 = ConvBNReLU(c_in, 384, 1)
        self.branch3x3_2a = ConvBNReLU(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBNReLU(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBNReLU(c_in, 448, 1)
        self.branch3x3dbl_2 = ConvBNReLU(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBNReLU(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBNReLU(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBNReLU(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        t = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], 1)
        t = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(t), self.branch3x3dbl_3b(t)], 1)
        pooled = _max_pool_3x3(x) if self.max_pool else _avg_pool_3x3(x)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, bd, bp], 1)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
class FIDInceptionV3(nn.Module):
    """Images (B, C, H, W) in [-1, 1], C in {1, 3} -> pool3 features (B, 2048)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBNReLU(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBNReLU(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBNReLU(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBNReLU(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBNReLU(80, 192, 3)
        self.Mixed_5b = MixedA(192, pool_features=32)
        self.Mixed_5c = MixedA(256, pool_features=64)
        self.Mixed_5d = MixedA(288, pool_features=64)
        self.Mixed_6a = ReductionB(288)
        self.Mixed_6b = MixedC(768, c7=128)
        self.Mixed_6c = MixedC(768, c7=160)
        self.Mixed_6d = MixedC(768, c7=160)
        self.Mixed_6e = MixedC(768, c7=192)
        self.Mixed_7a = ReductionD(768)
        self.Mixed_7b = MixedE(1280, max_pool=False)
        self.Mixed_7c = MixedE(2048, max_pool=True)

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """(B, 1|3, H, W) in [-1, 1] -> (B, 3, 299, 299)."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"Inception expects images (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grayscale: same value on R, G, B (as PIL's convert('RGB'))
        # Bilinear resize is affine-equivariant, so resizing [-1, 1] data here equals pytorch-fid's
        # resize-then-rescale of [0, 1] data up to float rounding.
        return F.interpolate(x.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)  # (B, 3, 299, 299)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (B, 288, 35, 35)
        x = self.Mixed_6a(x)  # (B, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (B, 768, 17, 17)
        x = self.Mixed_7a(x)  # (B, 1280, 8, 8)
        x = self.Mixed_7c(self.Mixed_7b(x))  # (B, 2048, 8, 8)
        return x.mean(dim=(2, 3))  # (B, 2048): global average pool = "pool3"


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------
def _candidate_paths(weights_path: str | os.PathLike | None) -> list[tuple[str, Path | None]]:
    """(where, path) in search order; path None for an unset environment variable.

    An explicit path is the only candidate when given: silently falling back to another file
    would make a typo compute FID with weights the caller did not ask for.
    """
    if weights_path is not None:
        return [("weights_path argument", Path(weights_path))]
    env = os.environ.get(WEIGHTS_ENV)
    return [
        (f"${WEIGHTS_ENV}", Path(env) if env else None),
        ("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME),
    ]


def find_inception_weights(weights_path: str | os.PathLike | None = None) -> Path:
    """Path of the FID Inception weights, or raise ``InceptionWeightsNotFound`` (never downloads)."""
    candidates = _candidate_paths(weights_path)
    for _, path in candidates:
        if path is not None and path.is_file():
            return path
    searched = "\n".join(f"  - {where}: {path if path is not None else '(not set)'}" for where, path in candidates)
    hub_target = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME
    raise InceptionWeightsNotFound(
        f"FID Inception weights '{FID_WEIGHTS_FILENAME}' not found. Searched:\n{searched}\n"
        f"Nothing is downloaded automatically. Get the file from the pytorch-fid release\n"
        f"  {FID_WEIGHTS_URL}\n"
        f"and put it at {hub_target}, or point ${WEIGHTS_ENV} (or weights_path=) at it.\n"
        f"Without it FID is unavailable; the offline domain Fréchet distance ('domain_fd', in the "
        f"feature space of ganmodels.metrics.train_domain_classifier) still works."
    )


def _check_state_dict(model: nn.Module, state: dict, source: Path) -> dict:
    """Keep the keys the feature network uses; fail clearly on missing or misshapen ones."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{source} is not a pytorch-fid Inception weights file: missing {len(missing)} keys, e.g. {missing[:3]}")
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{source}: wrong tensor shapes for {bad[:3]} (expected {[tuple(own[k].shape) for k in bad[:3]]})")
    # The file's classifier head (fc.*, 1008 classes) is not part of the pool3 network.
    return {k: state[k] for k in own if k in state}


def load_fid_inception(weights_path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> FIDInceptionV3:
    """FIDInceptionV3 in eval mode with frozen weights from the pytorch-fid file."""
    path = find_inception_weights(weights_path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = FIDInceptionV3()
    model.load_state_dict(_check_state_dict(model, state, path), strict=False)
    model.requires_grad_(False).eval()
    return model.to(device or "cpu")

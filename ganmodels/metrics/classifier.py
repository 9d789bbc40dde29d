"""Offline domain feature extractor: a small CNN trained on the data set's own labels.

Why: FID needs the ImageNet Inception weights, which an offline machine may not have, and its
ImageNet features are a poor fit for 32×32 digits anyway. Following the practice of evaluating
small-domain GANs in a classifier's feature space (e.g. the "FID with a LeNet" used for MNIST in
Lucic et al. 2018, "Are GANs Created Equal?", and the mode-counting classifiers of Metz et al.
2017 / Srivastava et al. 2017), we train a compact CNN on the real training split and use its
penultimate embedding for Fréchet / KID / PR metrics and its predictions for class coverage.

Its Fréchet distance is reported as ``domain_fd``: it is NOT FID and must never be compared with
published FID numbers, only across runs that share the same classifier (same data hash and seed).

The same network with two classes is the style classifier of unpaired data (``train_style_classifier``):
it learns which domain a real image comes from (A = 0, B = 1), and judges whether a translation
reached its target style, as font-style transfer work scores its outputs with a style classifier.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ganmodels.io import atomic_torch_save

if TYPE_CHECKING:
    from ganmodels.data.base import PreparedDataset

__all__ = ["ClassifierConfig", "DomainClassifier", "STYLE_A", "STYLE_B", "train_domain_classifier",
           "train_style_classifier"]

STYLE_A, STYLE_B = 0, 1  # the style classifier's classes: the domain an image belongs to


@dataclass(frozen=True)
class ClassifierConfig:
    in_channels: int
    num_classes: int
    image_size: int = 32  # H == W expected; the net is size-agnostic but features are not comparable across sizes
    width: int = 16
    embed_dim: int = 128


class DomainClassifier(nn.Module):
    """(B, C, H, W) in [-1, 1] -> ``features``: (B, embed_dim), ``forward``: logits (B, num_classes).

    Four 3×3 conv-BN-ReLU stages (width w, 2w, 4w, 8w; the first strided, the next two followed by
    2× max-pooling), global average pooling, a ReLU embedding layer (the feature space) and a
    linear classifier. Kept small on purpose (≈3.5 M multiply-adds per 32×32 image) so it trains in
    seconds on a CPU; the strided first conv skips full-resolution activations, which dominate CPU
    time for such a thin network.
    """

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(
            _conv_stage(config.in_channels, w, stride=2),  # (B, w, H/2, W/2)
            _conv_stage(w, 2 * w, pool=True),  # (B, 2w, H/4, W/4)
            _conv_stage(2 * w, 4 * w, pool=True),  # (B, 4w, H/8, W/8)
            _conv_stage(4 * w, 8 * w),  # (B, 8w, H/8, W/8)
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (B, 8w)
        )
        self.embed = nn.Sequential(nn.Linear(8 * w, config.embed_dim), nn.ReLU())
        self.head = nn.Linear(config.embed_dim, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config.in_channels
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"DomainClassifier expects (B, {c}, H, W) images, got shape {tuple(x.shape)}")
        return self.embed(self.body(x))  # (B, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes)

    # -- persistence: state dict + config only, loadable with weights_only=True ----------------
    def save(self, path: str | os.PathLike, **extra: float | int | str) -> None:
        """Atomic write of {"config", "state_dict", **extra} (e.g. test_accuracy, data_hash)."""
        state = {"config": asdict(self.config), "state_dict": self.state_dict(), **extra}
        atomic_torch_save(state, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "DomainClassifier":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"domain classifier not found: {path}. Train one with train_domain_classifier().")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(ClassifierConfig(**state["config"]))
        model.load_state_dict(state["state_dict"])
        return model.to(device or "cpu").eval()


def _conv_stage(c_in: int, c_out: int, *, stride: int = 1, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ±max_shift pixels (edge padding): cheap augmentation that
    makes the features robust to the small misalignments GAN samples have."""
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(b, x.shape[1], h, w + 2 * max_shift)
    out = padded.gather(2, rows)  # (B, C, H, W + 2s)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(b, x.shape[1], h, w)
    return out.gather(3, cols)  # (B, C, H, W)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512, device=None) -> float:
    model.eval()
    device = device or next(model.parameters()).device
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        logits = model(x[i : i + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == y[i : i + batch_size]).sum().item()
    return correct / max(1, x.shape[0])


def train_domain_classifier(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
    *,
    epochs: int = 10,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    embed_dim: int = 128,
    max_shift: int = 2,
) -> tuple[DomainClassifier, float]:
    """Train on (x_train, y_train), return (model in eval mode, accuracy on (x_test, y_test)).

    Deterministic for a given seed on CPU: initialisation and shuffling use their own seeded RNGs,
    so the global torch RNG is neither read nor advanced.
    """
    if x_train.ndim != 4:
        raise ValueError(f"train_domain_classifier expects images (N, C, H, W), got {tuple(x_train.shape)}")
    device = torch.device(device or "cpu")
    config = ClassifierConfig(x_train.shape[1], num_classes, x_train.shape[-1], width, embed_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(config)
    model.to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-x_train.shape[0] // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    x_train, y_train = x_train.float(), y_train.long()
    for _ in range(epochs):
        _train_epoch(model, opt, sched, x_train, y_train, batch_size, max_shift, gen, device)
    model.eval()
    return model, accuracy(model, x_test.float(), y_test.long(), device=device)


def _train_epoch(model, opt, sched, x, y, batch_size, max_shift, gen, device) -> None:
    model.train()
    order = torch.randperm(x.shape[0], generator=gen)
    for i in range(0, x.shape[0], batch_size):
        idx = order[i : i + batch_size]
        xb = _random_shift(x[idx], max_shift, gen) if max_shift else x[idx]
        loss = F.cross_entropy(model(xb.to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def domain_targets(n_a: int, n_b: int) -> torch.Tensor:
    """int64 ``(n_a + n_b,)``: ``STYLE_A`` for ``n_a`` domain-A images followed by ``STYLE_B`` for ``n_b`` B ones."""
    return torch.cat([torch.full((n_a,), STYLE_A, dtype=torch.int64), torch.full((n_b,), STYLE_B, dtype=torch.int64)])


def train_style_classifier(data: "PreparedDataset", *, epochs: int = 16, seed: int = 0,
                           device: str | torch.device | None = None) -> tuple[DomainClassifier, float]:
    """The style (domain) classifier of two-domain ``data``: trained on the real training images of A
    (class ``STYLE_A``) and B (``STYLE_B``); returns (model, accuracy on the held-out images of both)."""
    if data.b_train is None:
        raise ValueError(f"a style classifier needs two domains; data set {data.name!r} has one")
    return train_domain_classifier(torch.cat([data.x_train, data.b_train]),
                                   domain_targets(len(data.x_train), len(data.b_train)),
                                   torch.cat([data.x_test, data.b_test]),
                                   domain_targets(len(data.x_test), len(data.b_test)), 2,
                                   epochs=epochs, seed=seed, device=device)

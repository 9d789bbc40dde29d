"""Pictures a person looks at: sample grids (images or 2D scatter) and loss curves, written as PNG."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from ganmodels.io import atomic_path

# Samples drawn for a preview picture, by sample layout: an 8x8 image grid, a 1,000-point scatter.
PREVIEW_SAMPLES = {"image": 64, "points": 1000}


def _atomic_png(write, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        write(str(tmp))
    return path


def save_samples(samples: torch.Tensor, path: str | os.PathLike, *, real: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None) -> Path:
    """Images (N, C, H, W) in [-1, 1] -> a grid PNG (one row per class when ``labels`` are given);
    points (N, 2) -> a scatter PNG (real points in grey)."""
    path = Path(path)
    if samples.dim() == 4:
        return _atomic_png(lambda tmp: _image_grid(samples, tmp, labels), path)
    return _atomic_png(lambda tmp: _scatter(samples, real, tmp), path)


def save_image(image: np.ndarray | torch.Tensor, path: str | os.PathLike) -> Path:
    """One image (C, H, W) in [-1, 1] as an 8-bit PNG at its own size (grey for C = 1)."""
    from PIL import Image

    array = np.asarray(image, dtype=np.float32)
    pixels = np.round((np.clip(array, -1, 1) + 1) * 127.5).astype(np.uint8)
    picture = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    return _atomic_png(lambda tmp: picture.save(tmp, format="PNG"), Path(path))


def _rows_by_class(samples: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Reorder into one row per class (class 0 on top), short rows padded with blank (-1) tiles."""
    classes = sorted(set(labels.tolist()))
    rows = [samples[labels == k] for k in classes]
    width = max(len(r) for r in rows)
    blank = -torch.ones_like(samples[:1])
    padded = [torch.cat([r, blank.expand(width - len(r), *samples.shape[1:])]) for r in rows]
    return torch.cat(padded), width


def _image_grid(samples: torch.Tensor, out: str, labels: torch.Tensor | None = None, nrow: int | None = None) -> None:
    from PIL import Image
    from torchvision.utils import make_grid

    samples = samples.detach().float().cpu().clamp(-1, 1)
    if labels is not None:
        samples, nrow = _rows_by_class(samples, labels.cpu())
    elif nrow is None:
        nrow = max(1, int(np.ceil(np.sqrt(samples.shape[0]))))
    grid = make_grid(samples, nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=1.0)  # (3, H', W') in [0, 1]
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    image = Image.fromarray(array)
    if image.width < 256:  # 8-16 px digits are unreadable at native size
        scale = int(np.ceil(256 / image.width))
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(out, format="PNG")


def save_strips(inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor, path: str | os.PathLike) -> Path:
    """Paired data: one row per pair, input (nearest-neighbour enlarged) | bicubic | output | target."""
    from ganmodels.metrics.image_quality import bicubic_upsample

    size = tuple(targets.shape[-2:])
    nearest = torch.nn.functional.interpolate(inputs.float(), size=size, mode="nearest")
    columns = [nearest, bicubic_upsample(inputs, size), outputs.float(), targets.float()]
    tiles = torch.stack(columns, dim=1).reshape(-1, *targets.shape[1:])  # (N * 4, C, H, W), row-major
    return _atomic_png(lambda tmp: _image_grid(tiles, tmp, nrow=len(columns)), Path(path))


def save_cycle_strips(a_rows: tuple[torch.Tensor, ...], b_rows: tuple[torch.Tensor, ...],
                      path: str | os.PathLike) -> Path:
    """Two domains: input | translated | translated back, for held-out A images, then B images."""
    a = torch.stack([t.float() for t in a_rows], dim=1).flatten(0, 1)  # (N * 3, C, H, W), row-major
    b = torch.stack([t.float() for t in b_rows], dim=1).flatten(0, 1)
    return _atomic_png(lambda tmp: _image_grid(torch.cat([a, b]), tmp, nrow=3), Path(path))


def save_interpolation(walk: torch.Tensor, path: str | os.PathLike, *, real: torch.Tensor | None = None) -> Path:
    """A latent walk (rows, steps, ...) as a picture: images -> one row per walk, left to right;
    points -> each walk as a line over the real points (grey), its start marked."""
    path = Path(path)
    rows, steps = walk.shape[:2]
    if walk.dim() == 5:  # (rows, steps, C, H, W)
        tiles = walk.reshape(rows * steps, *walk.shape[2:])
        return _atomic_png(lambda tmp: _image_grid(tiles, tmp, nrow=steps), path)

    def write(out: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        if real is not None:
            r = real.detach().cpu().numpy()
            ax.scatter(r[:, 0], r[:, 1], s=2, c="0.8")
        for k, line in enumerate(walk.detach().cpu().numpy()):  # (steps, 2)
            ax.plot(line[:, 0], line[:, 1], "-o", markersize=3, linewidth=1, color=f"C{k % 10}")
            ax.plot(line[0, 0], line[0, 1], "s", markersize=6, color=f"C{k % 10}")
        ax.set_aspect("equal")
        fig.savefig(out, format="png", bbox_inches="tight")
        plt.close(fig)

    return _atomic_png(write, path)


def save_metric_curves(histories: dict[str, list[tuple[int, float]]], path: str | os.PathLike) -> Path | None:
    """One small panel per metric history ``{name: [(step, value), ...]}``; None when there is none."""
    histories = {k: sorted(v) for k, v in sorted(histories.items()) if v}
    if not histories:
        return None

    def write(out: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = min(3, len(histories))
        rows = -(-len(histories) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), dpi=100, squeeze=False)
        for ax, (name, points) in zip(axes.flat, histories.items()):
            ax.plot([s for s, _ in points], [v for _, v in points], "-o", markersize=3, linewidth=1)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(histories):]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out, format="png", bbox_inches="tight")
        plt.close(fig)

    return _atomic_png(write, Path(path))


def _scatter(samples: torch.Tensor, real: torch.Tensor | None, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if real is not None:
        r = real.detach().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.7", label="real")
    s = samples.detach().cpu().numpy()
    ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:red", label="generated")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    fig.savefig(out, format="png", bbox_inches="tight")
    plt.close(fig)


def save_sweep(results: dict[str, dict[str, float]], option: str, path: str | os.PathLike) -> Path:
    """Metrics against an evaluation option (StyleGAN2's truncation psi): quality vs diversity."""
    values = sorted(results, key=float)
    shown = [m for m in ("precision", "recall", "density", "coverage", "domain_fd", "fid") if m in results[values[0]]]

    def write(out: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
        for metric in shown:
            axis = right if metric in ("domain_fd", "fid") else left
            axis.plot([float(v) for v in values], [results[v][metric] for v in values], marker="o", label=metric)
        for axis, label in ((left, "higher is better"), (right, "lower is better")):
            axis.set_xlabel(option)
            axis.set_title(label)
            if axis.lines:
                axis.legend()
        fig.savefig(out, format="png", bbox_inches="tight")
        plt.close(fig)

    return _atomic_png(write, Path(path))


def save_loss_curves(csv_path: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Plot every loss column of the per-step CSV written by ``LossCSV``."""
    rows = list(csv.DictReader(Path(csv_path).open()))

    def write(out: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        steps = [int(r["step"]) for r in rows]
        for key in ("d_loss", "g_loss"):
            if rows and key in rows[0]:
                ax.plot(steps, [float(r[key]) for r in rows], label=key, linewidth=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        fig.savefig(out, format="png", bbox_inches="tight")
        plt.close(fig)

    return _atomic_png(write, Path(path))

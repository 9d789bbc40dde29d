"""``mnist``, ``fashion-mnist`` and ``cifar10`` from files in torchvision's on-disk layout.

Files are read from ``cfg.root`` (default ``data/raw/<name>``) and downloaded only when
``cfg.download`` is true. Each set keeps its official train/test split.

MNIST and Fashion-MNIST are read by torchvision itself: it wants the *uncompressed* idx files
in ``<root>/MNIST/raw/`` (``<root>/FashionMNIST/raw/``) and checks only that they exist.

CIFAR-10 is read here, from the same layout (``<root>/cifar-10-batches-py/``): torchvision's
reader insists on the md5 of every file of the official archive, which rules out subsets and
test fixtures, and it unpickles with plain ``pickle.load``, which runs any code a file holds.
The reader below accepts only the few globals a numpy array needs. With ``download=True``
torchvision fetches and md5-checks the archive first; the files are then read the same way.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind
from ganmodels.data.registry import register_dataset
from ganmodels.data.splits import cap_indices

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"

# Module-level errors from torchvision's readers and downloaders (it raises RuntimeError for
# both missing files and failed downloads).
_READ_ERRORS = (RuntimeError, OSError, ValueError, TypeError, AssertionError, EOFError, pickle.UnpicklingError)


def default_root(cfg: DataConfig) -> Path:
    return Path(cfg.root) if cfg.root else Path("data") / "raw" / cfg.name


def missing_files_error(name: str, root: Path, missing: list[Path], hint: str = "") -> DataError:
    shown = ", ".join(str(p) for p in missing[:6])
    return DataError(
        f"{name}: data files not found under root {root} (missing: {shown}). Pass download=True "
        f"(CLI: --set data.download=true) to fetch them, or place the files in torchvision's layout there."
        + (f" {hint}" if hint else "")
    )


def official_split_source(
    cfg: DataConfig,
    parts: dict[str, tuple[list[np.ndarray], np.ndarray]],
    class_names: list[str],
    origin: str,
) -> SourceData:
    """One ``SourceData`` from per-split (samples, labels), ids ``name[split:index]``, capped."""
    samples, labels, ids, split = [], [], [], []
    for part, (part_samples, part_labels) in parts.items():
        samples.extend(part_samples)
        labels.append(np.asarray(part_labels, dtype=np.int64))
        ids.extend(f"{cfg.name}[{part}:{i}]" for i in range(len(part_samples)))
        split.extend([part] * len(part_samples))
    labels_all = np.concatenate(labels)
    keep = cap_indices(labels_all, split, len(ids), cfg.max_samples, cfg.split_seed)
    return SourceData(
        name=cfg.name,
        kind="image",
        samples=[samples[i] for i in keep],
        labels=labels_all[keep],
        ids=[ids[i] for i in keep],
        value_range=(0.0, 255.0),
        class_names=list(class_names),
        origin=origin,
        split=[split[i] for i in keep],
    )


# --- MNIST and Fashion-MNIST -------------------------------------------------------------------


def read_mnist_like(cfg: DataConfig, torchvision_class: str) -> SourceData:
    import torchvision.datasets as tvd  # heavy import, only when used

    dataset_cls = getattr(tvd, torchvision_class)
    root = default_root(cfg)
    raw = root / dataset_cls.__name__ / "raw"
    processed = root / dataset_cls.__name__ / "processed"
    legacy = all((processed / f).is_file() for f in ("training.pt", "test.pt"))  # torchvision < 0.9 cache
    missing = [raw / f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing and not legacy and not cfg.download:
        gz = [p for p in missing if p.with_name(p.name + ".gz").is_file()]
        hint = f"Found {gz[0].name}.gz: torchvision reads the uncompressed files, so gunzip them in place." if gz else ""
        raise missing_files_error(cfg.name, root, missing, hint)
    try:
        train = dataset_cls(str(root), train=True, download=cfg.download)
        test = dataset_cls(str(root), train=False, download=cfg.download)
    except _READ_ERRORS as e:
        raise DataError(f"{cfg.name}: could not read or download the files under root {root}: {e}") from e
    parts = {
        "train": (list(train.data.numpy()), train.targets.numpy()),  # (N, 28, 28) uint8
        "test": (list(test.data.numpy()), test.targets.numpy()),
    }
    return official_split_source(cfg, parts, list(train.classes), origin=str(raw))


@register_dataset("mnist", kind=DataKind.LABELLED_IMAGES,
                  description="MNIST handwritten digits (torchvision layout), 28x28 grey, 10 classes")
def read_mnist(cfg: DataConfig) -> SourceData:
    return read_mnist_like(cfg, "MNIST")


@register_dataset("fashion-mnist", kind=DataKind.LABELLED_IMAGES,
                  description="Fashion-MNIST (torchvision layout), 28x28 grey, 10 classes")
def read_fashion_mnist(cfg: DataConfig) -> SourceData:
    return read_mnist_like(cfg, "FashionMNIST")


# --- CIFAR-10 ----------------------------------------------------------------------------------


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays only; any other global is refused."""

    ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if module == "numpy.core" or module.startswith("numpy.core."):  # numpy < 2 wrote these names
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        # latin1: the official files were written by Python 2 (str keys, byte strings)
        return ArrayUnpickler(f, encoding="latin1").load()


def read_cifar_batch(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """One batch file -> HWC uint8 images (32, 32, 3) and int64 labels."""
    try:
        entry = load_pickle(path)
        data = np.asarray(entry["data"])
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except (*_READ_ERRORS, KeyError) as e:
        raise DataError(f"cifar10: cannot read batch file {path}: {e}") from e
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(
            f"cifar10: {path} holds data {data.dtype}{data.shape} and {len(labels)} labels; "
            f"expected uint8 (n, 3072) rows (R, G, B planes of 32x32) and n labels"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are channel planes -> HWC
    return list(images), labels


@register_dataset("cifar10", kind=DataKind.LABELLED_IMAGES,
                  description="CIFAR-10 (torchvision layout), 32x32 RGB, 10 classes")
def read_cifar10(cfg: DataConfig) -> SourceData:
    root = default_root(cfg)
    folder = root / CIFAR10_FOLDER
    if cfg.download:
        import torchvision.datasets as tvd  # heavy import, only when used

        try:
            tvd.CIFAR10(str(root), train=True, download=True)  # fetches and md5-checks the archive
        except _READ_ERRORS as e:
            raise DataError(f"cifar10: download to root {root} failed: {e}") from e
    missing = [folder / f for f in (*CIFAR10_TRAIN, *CIFAR10_TEST, CIFAR10_META) if not (folder / f).is_file()]
    if missing:
        raise missing_files_error(cfg.name, root, missing)

    def read_split(files: tuple[str, ...]) -> tuple[list[np.ndarray], np.ndarray]:
        batches = [read_cifar_batch(folder / f) for f in files]
        return [im for b in batches for im in b[0]], np.concatenate([b[1] for b in batches])

    try:
        class_names = [str(c) for c in load_pickle(folder / CIFAR10_META)["label_names"]]
    except (*_READ_ERRORS, KeyError) as e:
        raise DataError(f"cifar10: cannot read class names from {folder / CIFAR10_META}: {e}") from e
    parts = {"train": read_split(CIFAR10_TRAIN), "test": read_split(CIFAR10_TEST)}
    return official_split_source(cfg, parts, class_names, origin=str(folder))

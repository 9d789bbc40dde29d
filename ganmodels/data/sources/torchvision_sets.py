"""``mnist``, ``fashion-mnist`` and ``cifar10`` from their files as they are shipped.

Files are read from ``cfg.root`` (default ``data/raw/<name>``) and downloaded only when
``cfg.download`` is true. Each set keeps its official train/test split.

MNIST and Fashion-MNIST are the four IDX files of LeCun's format (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-...``), read here, gzipped or not, from the first of these
folders that holds all four: torchvision's ``<root>/MNIST/raw/`` (``<root>/FashionMNIST/raw/``),
``<root>`` itself (the files as downloaded, or Debian's ``dataset-fashion-mnist`` package, which
installs the four ``.gz`` files in ``/usr/share/datasets/fashion-mnist/``), or ``<root>/raw/``.
Kaggle's spelling ``train-images.idx3-ubyte`` is accepted too. torchvision's own reader wants
the uncompressed files in its layout only; with ``download=True`` it fetches them into that layout
and they are read the same way. A torchvision < 0.9 cache (``processed/training.pt``) alone is
still read through torchvision.

CIFAR-10 is read here, from torchvision's layout (``<root>/cifar-10-batches-py/``): torchvision's
reader insists on the md5 of every file of the official archive, which rules out subsets and
test fixtures, and it unpickles with plain ``pickle.load``, which runs any code a file holds.
The reader below accepts only the few globals a numpy array needs. With ``download=True``
torchvision fetches and md5-checks the archive first; the files are then read the same way.
"""

from __future__ import annotations

import gzip
import pickle
import re
import struct
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


def missing_files_error(name: str, root: Path, missing: list[Path], hint: str = "",
                        layout: str = "in torchvision's layout ") -> DataError:
    shown = ", ".join(str(p) for p in missing[:6])
    return DataError(
        f"{name}: data files not found under root {root} (missing: {shown}). Pass download=True "
        f"(CLI: --set data.download=true) to fetch them, or place the files {layout}there."
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


# The IDX header (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code
# (0x08: unsigned byte), the number of dimensions, then each dimension as a big-endian int32.
IDX_UBYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped when its name ends in ``.gz``) -> uint8 array of ``ndim`` dims."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError when truncated
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != IDX_UBYTE or raw[3] != ndim:
        raise DataError(f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s) "
                        f"(header {raw[:4].hex() or 'empty'}; expected 0000080{ndim})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header cut short ({len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} = {int(np.prod(shape))} bytes of data, the file holds "
                        f"{len(raw) - header}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable, like torchvision's


def idx_candidates(stem: str) -> tuple[str, ...]:
    """File names a data set's ``stem`` (``train-images-idx3-ubyte``) is shipped under, preferred first."""
    kaggle = re.sub(r"-(idx\d-ubyte)$", r".\1", stem)  # train-images.idx3-ubyte
    return (stem, f"{stem}.gz", kaggle, f"{kaggle}.gz")


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four MNIST-like files in ``folder`` (by canonical stem), or None unless all four are there."""
    found = {}
    for stem in MNIST_FILES:
        path = next((folder / n for n in idx_candidates(stem) if (folder / n).is_file()), None)
        if path is None:
            return None
        found[stem] = path
    return found


def mnist_folders(root: Path, torchvision_folder: str) -> list[Path]:
    """Where the IDX files may lie, in the order they are looked for."""
    return [root / torchvision_folder / "raw", root, root / "raw"]


def read_mnist_like(cfg: DataConfig, torchvision_class: str) -> SourceData:
    import torchvision.datasets as tvd  # heavy import, only when used

    dataset_cls = getattr(tvd, torchvision_class)
    root = default_root(cfg)
    folders = mnist_folders(root, dataset_cls.__name__)
    if cfg.download:
        try:
            dataset_cls(str(root), train=True, download=True)  # fetches into <root>/<Class>/raw, unpacked
        except _READ_ERRORS as e:
            raise DataError(f"{cfg.name}: download to root {root} failed: {e}") from e
    files = next((f for f in map(find_idx_files, folders) if f is not None), None)
    if files is None:
        processed = root / dataset_cls.__name__ / "processed"
        if all((processed / f).is_file() for f in ("training.pt", "test.pt")):  # torchvision < 0.9 cache
            return read_torchvision_legacy(cfg, dataset_cls, root)
        searched = ", ".join(str(f) for f in folders)
        raise missing_files_error(cfg.name, root, [folders[0] / f for f in MNIST_FILES],
                                  f"Looked for the four IDX files (gzipped or not) in {searched}.", layout="")
    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(files[f"{prefix}-images-idx3-ubyte"], ndim=3)  # (N, 28, 28) uint8
        labels = read_idx(files[f"{prefix}-labels-idx1-ubyte"], ndim=1)
        if len(images) != len(labels):
            raise DataError(f"{cfg.name}: {files[f'{prefix}-images-idx3-ubyte']} holds {len(images)} images but "
                            f"{files[f'{prefix}-labels-idx1-ubyte']} {len(labels)} labels")
        classes = len(dataset_cls.classes)
        if len(labels) and labels.max() >= classes:
            raise DataError(f"{cfg.name}: {files[f'{prefix}-labels-idx1-ubyte']} holds label {labels.max()}; "
                            f"{cfg.name} has classes 0..{classes - 1}")
        parts[part] = (list(images), labels.astype(np.int64))
    origin = str(files["train-images-idx3-ubyte"].parent)
    return official_split_source(cfg, parts, list(dataset_cls.classes), origin=origin)


def read_torchvision_legacy(cfg: DataConfig, dataset_cls, root: Path) -> SourceData:
    try:
        train = dataset_cls(str(root), train=True)
        test = dataset_cls(str(root), train=False)
    except _READ_ERRORS as e:
        raise DataError(f"{cfg.name}: could not read torchvision's cache under root {root}: {e}") from e
    parts = {"train": (list(train.data.numpy()), train.targets.numpy()),
             "test": (list(test.data.numpy()), test.targets.numpy())}
    return official_split_source(cfg, parts, list(train.classes), origin=str(root / dataset_cls.__name__))


@register_dataset("mnist", kind=DataKind.LABELLED_IMAGES,
                  description="MNIST handwritten digits (IDX files, gzipped or not, flat or torchvision's layout), "
                              "28x28 grey, 10 classes")
def read_mnist(cfg: DataConfig) -> SourceData:
    return read_mnist_like(cfg, "MNIST")


@register_dataset("fashion-mnist", kind=DataKind.LABELLED_IMAGES,
                  description="Fashion-MNIST (IDX files, gzipped or not, flat or torchvision's layout), 28x28 grey, "
                              "10 classes")
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

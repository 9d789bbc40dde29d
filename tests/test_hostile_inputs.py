"""Hostile and broken inputs through ``ganpipe run``, as a user would point it at them.

Every case builds its bad files itself and checks what the user gets: the documented exit code (2 bad
input, 3 validation), a message naming the file (or the setting) and the problem, no Python traceback
on the terminal, a validation report where validation ran, no prepared data or training output, and
nothing registered. Every case fails before training. A last case checks that valid but unusual
data (mixed bit depths and modes, odd sizes, a JPEG named .png) passes validation.

Reader behaviour in detail is in test_data_folder.py / test_data_npy.py; this module is about the
command line's contract.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_pipeline_e2e import cli_env, explain, make_project, prefect_api  # noqa: F401 (module-scoped fixture)

RNG = np.random.default_rng(0)


def noise_png(path: Path, size=(16, 16), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,), "LA": (2,)}[mode]
    Image.fromarray(RNG.integers(0, 256, (*size, *channels), dtype=np.uint8), mode).save(path)
    return path


def labelled_folder(root: Path, per_class: int = 3) -> Path:
    """Two class sub-folders of noise images: labelled images, which the default dcgan trains on."""
    for cls in ("cat", "dog"):
        for i in range(per_class):
            noise_png(root / cls / f"{i:03d}.png")
    return root


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width x height`` pixels, with a valid CRC: a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts after signature (8) + length + type
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


# Each builder gets the project root, makes its data there and returns (ganpipe run arguments, the
# exit code, strings the message must contain).


def zero_byte(root):
    folder = labelled_folder(root / "imgs")
    (folder / "cat" / "empty.png").write_bytes(b"")
    return ["--dataset", "imgs"], 2, ["empty.png", "cannot read image file"]


def truncated(root):
    folder = labelled_folder(root / "imgs")
    full = noise_png(root / "full.png", size=(64, 64)).read_bytes()
    (folder / "dog" / "cut.png").write_bytes(full[: len(full) // 2])
    return ["--dataset", "imgs"], 2, ["cut.png", "cannot read image file"]


def text_named_png(root):
    folder = labelled_folder(root / "imgs")
    (folder / "cat" / "notes.png").write_text("these are my notes, not a picture")
    return ["--dataset", "imgs"], 2, ["notes.png", "cannot identify image file"]


def decompression_bomb(root):
    folder = labelled_folder(root / "imgs")
    png_declaring(folder / "cat" / "bomb.png", 100_000, 100_000)
    return ["--dataset", "imgs"], 2, ["bomb.png", "decompression bomb"]


def large_declared_image(root):  # between 1x and 2x PIL's limit PIL only warns, then would decode
    folder = labelled_folder(root / "imgs")
    png_declaring(folder / "cat" / "huge.png", 10_000, 10_000)
    return ["--dataset", "imgs"], 2, ["huge.png", "10000x10000", "89,478,485-pixel limit"]


def dangling_symlink(root):
    folder = labelled_folder(root / "imgs")
    (folder / "cat" / "gone.png").symlink_to(root / "nowhere.png")
    return ["--dataset", "imgs"], 2, ["gone.png", "broken symbolic link"]


def looping_symlink(root):
    folder = labelled_folder(root / "imgs")
    (folder / "dog" / "a.png").symlink_to(folder / "dog" / "b.png")
    (folder / "dog" / "b.png").symlink_to(folder / "dog" / "a.png")
    return ["--dataset", "imgs"], 2, ["a.png", "broken symbolic link"]


def empty_class_folder(root):
    folder = labelled_folder(root / "imgs")
    (folder / "bird").mkdir()
    return ["--dataset", "imgs"], 2, ["['bird']", "hold no image files"]


def empty_folder(root):
    (root / "imgs").mkdir()
    (root / "imgs" / "readme.txt").write_text("no images yet")
    return ["--dataset", "imgs"], 2, ["imgs", "no image files found"]


def all_blank(root):
    for cls in ("cat", "dog"):
        for i in range(60):
            (root / "imgs" / cls).mkdir(parents=True, exist_ok=True)
            Image.new("L", (16, 16), 0).save(root / "imgs" / cls / f"{i:03d}.png")
    return ["--dataset", "imgs"], 3, ["not_blank", "cat/000.png", "validation.max_blank_share"]


def all_identical(root):
    one = RNG.integers(0, 256, (16, 16), dtype=np.uint8)
    for cls in ("cat", "dog"):
        for i in range(60):
            (root / "imgs" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(one).save(root / "imgs" / cls / f"{i:03d}.png")
    return ["--dataset", "imgs"], 3, ["not_duplicate", "validation.max_duplicate_share"]


def too_few_samples(root):
    labelled_folder(root / "imgs", per_class=10)
    return ["--dataset", "imgs"], 3, ["min_samples", "validation.min_samples"]


def labelled_npy(root, images, name="images.npy"):
    np.save(root / name, images)
    np.save(root / name.replace(".npy", ".labels.npy"), np.arange(len(images)) % 2)
    return name


def npy_nan(root):
    images = RNG.uniform(0, 1, (150, 16, 16)).astype(np.float32)
    images[7, 3, 3] = np.nan
    images[9, 0, 0] = np.inf
    return ["--dataset", labelled_npy(root, images)], 3, ["images.npy[all:7]", "images.npy[all:9]"]


def npy_wrong_shape(root):
    np.save(root / "images.npy", np.zeros((20, 5), np.float32))
    return ["--dataset", "images.npy"], 2, ["images.npy", "shape (20, 5)"]


def npy_wrong_dtype(root):
    return ["--dataset", labelled_npy(root, np.ones((20, 16, 16), np.complex64))], 2, ["images.npy", "complex64"]


def npy_pickled_objects(root):
    np.save(root / "images.npy", np.array([{"evil": 1}] * 20, dtype=object), allow_pickle=True)
    return ["--dataset", "images.npy"], 2, ["images.npy", "Python objects", "allow_pickle=False"]


def npy_empty(root):
    return ["--dataset", labelled_npy(root, np.zeros((0, 16, 16), np.uint8))], 2, ["images.npy", "no samples"]


def unpaired_pairs(root):
    for i in range(120):
        noise_png(root / "pairs" / "B" / f"{i:03d}.png")
        if i not in (4, 11):
            noise_png(root / "pairs" / "A" / f"{i:03d}.png", size=(8, 8))
    noise_png(root / "pairs" / "A" / "stray.png", size=(8, 8))
    return ["--dataset", "pairs"], 3, ["pair_complete", "004.png", "011.png", "stray.png"]


def npz_mismatched(root):
    np.savez(root / "pairs.npz", a=np.zeros((10, 8, 8), np.uint8), b=np.zeros((12, 16, 16), np.uint8))
    return ["--dataset", "pairs.npz"], 2, ["pairs.npz", "10 inputs but 12 targets"]


def aligned_wrong_width(root):
    for i in range(120):
        noise_png(root / "aligned" / f"{i:03d}.png", size=(16, 32))
    noise_png(root / "aligned" / "odd.png", size=(16, 20))
    return ["--dataset", "aligned", "--set", "data.root=aligned"], 3, ["odd.png", "2H wide"]


def params_yaml_syntax(root):
    (root / "broken.yaml").write_text("train:\n  steps: [40\n  lr_g: 0.0002\n")
    return ["--params", "broken.yaml"], 2, ["broken.yaml", "not valid YAML", "line 3"]


def params_wrong_type(root):
    text = (root / "params.yaml").read_text()
    (root / "typed.yaml").write_text(text + "\ntrain:\n  batch_size: lots\n")  # a repeated section: the last wins
    return ["--params", "typed.yaml"], 2, ["train.batch_size", "'lots'"]


def set_unparsable(root):
    return ["--set", "train.steps=[40"], 2, ["--set 'train.steps=[40'", "cannot parse"]


def set_wrong_type(root):
    return ["--set", "data.resolution=big"], 2, ["data.resolution", "'big'"]


# Refused while the command line is checked, before Prefect or MLflow start: a few seconds each.
AT_START = [dangling_symlink, looping_symlink, empty_folder, npy_wrong_shape, npy_pickled_objects, params_yaml_syntax,
            params_wrong_type, set_unparsable, set_wrong_type]
# Refused by the flow's first task (reading or validating the data), before training: they need the
# Prefect server and an MLflow run, about 15 s each on a shared 2-core machine, so they are marked slow.
IN_FLOW = [zero_byte, truncated, text_named_png, decompression_bomb, large_declared_image, empty_class_folder,
           all_blank, all_identical, too_few_samples, npy_nan, npy_wrong_dtype, npy_empty, unpaired_pairs,
           npz_mismatched, aligned_wrong_width]
CASES = [pytest.param(c, id=c.__name__) for c in AT_START] + [
    pytest.param(c, id=c.__name__, marks=pytest.mark.slow) for c in IN_FLOW]


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_fails_clearly_before_training(case, tmp_path, request):
    # The module's Prefect server only for cases that reach the flow; the others must not need one.
    server = {"PREFECT_API_URL": request.getfixturevalue("prefect_api")} if case in IN_FLOW else {}
    project = make_project(tmp_path / "project", cli_env(tmp_path, PREFECT_HOME=str(tmp_path / "prefect"), **server))
    args, code, named = case(project.root)
    result, summary = project.run("--preset", "smoke", *args)
    assert result.returncode == code, explain(result)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, explain(result)
    label = {2: "ganpipe: bad input: ", 3: "ganpipe: data validation failed: "}[code]
    lines = result.stderr.strip().splitlines()
    message = next((line for line in lines if line.startswith(label)), None)
    assert message is not None, explain(result)
    if code == 2:  # one line, the last, says what and where
        assert lines[-1] == message
        for text in named:
            assert text in message, explain(result)
    else:  # the validation report's paragraph names the failed checks and sample ids
        report = result.stderr[result.stderr.index(label):]
        for text in named:
            assert text in report, explain(result)

    runs = sorted((project.root / "runs").glob("*")) if (project.root / "runs").is_dir() else []
    for run_dir in runs:  # no partial artifacts: nothing prepared, trained or exported
        assert not (run_dir / "data").exists() and not (run_dir / "train").exists(), run_dir
        assert not (run_dir / "export").exists(), run_dir
    if code == 3:
        assert len(runs) == 1 and (runs[0] / "validation" / "data_docs" / "index.html").is_file()
        assert summary["status"] == "failed" and (runs[0] / "error.log").is_file()
    if (project.root / "mlflow.db").exists():
        assert project.client().search_registered_models() == []


def test_valid_but_unusual_images_pass(tmp_path):
    """8- and 16-bit images in one folder, palette, CMYK, RGBA, grey+alpha, bilevel, odd sizes, a JPEG
    named .png: all valid, all read (files are identified by content, not by extension)."""
    from test_cli import ganpipe

    root = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        for i in range(55):
            noise_png(root / cls / f"{i:03d}.png", size=(9 + i % 13, 8 + (i * 7) % 23))
    rgb = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P").save(root / "cat" / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "cat" / "cmyk.jpg")
    Image.fromarray(rgb).save(root / "cat" / "really_a_jpeg.png", format="JPEG")
    noise_png(root / "dog" / "rgba.png", mode="RGBA")
    noise_png(root / "dog" / "grey_alpha.png", mode="LA")
    Image.fromarray(RNG.integers(0, 65536, (12, 40), dtype=np.uint16)).save(root / "dog" / "deep.png")
    Image.fromarray(RNG.integers(0, 2, (10, 10)).astype(bool)).save(root / "dog" / "bilevel.png")
    result = ganpipe(tmp_path, "validate", "--dataset", "imgs", "--params",
                     str(Path(__file__).resolve().parents[1] / "params.yaml"))
    assert result.returncode == 0, result.stderr
    assert "117 samples passed validation" in result.stdout
    summary = json.loads((tmp_path / "runs" / "validation" / "validation_summary.json").read_text())
    assert summary["success"] is True

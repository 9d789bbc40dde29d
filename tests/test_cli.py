"""The ``ganpipe`` command line as a subprocess in tmp directories: help, exit codes and messages of
``validate``, ``fid``, and ``sample``/``export`` on bad references and on checkpoints trained for a
few steps here. Pipeline runs are in test_pipeline_e2e.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganmodels.metrics.inception import FID_WEIGHTS_FILENAME, WEIGHTS_ENV

REPO = Path(__file__).resolve().parents[1]
GANPIPE = Path(sys.executable).parent / "ganpipe"
TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "False"}


def ganpipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "GANPIPE_"))}
    env.update(TELEMETRY_OFF, OMP_NUM_THREADS="1", PREFECT_HOME=str(tmp_path / ".prefect"),
               TORCH_HOME=str(tmp_path / "torch-home"))  # a torch hub cache without Inception weights
    return subprocess.run([str(GANPIPE), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_help_lists_commands_and_exit_codes(tmp_path):
    result = ganpipe(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "validate", "sample", "export", "compare", "ui", "fid"):
        assert command in result.stdout
    assert "4  quality gate rejected the model" in result.stdout and "5  training diverged" in result.stdout
    run_help = ganpipe(tmp_path, "run", "--help")
    assert run_help.returncode == 0 and "--preset" in run_help.stdout and "--set" in run_help.stdout
    assert ganpipe(tmp_path).returncode == 2  # no command: argparse usage error
    assert ganpipe(tmp_path, "run", "--no-such-option").returncode == 2


def test_compare_and_ui_without_a_store_say_to_run_first(tmp_path):
    for args in (["compare"], ["compare", "dcgan-digits"], ["ui", "--port", "5999"]):
        result = ganpipe(tmp_path, *args)
        assert result.returncode == 2, result.stderr
        assert last_line(result).startswith("ganpipe: bad input: no MLflow store at") and "ganpipe run" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # looking created nothing
    bad_port = ganpipe(tmp_path, "ui", "--port", "70000")
    assert bad_port.returncode == 2 and "--port 70000" in last_line(bad_port)


def write_images(path: Path, seed: int) -> Path:
    images = np.random.default_rng(seed).integers(0, 256, size=(24, 16, 16), dtype=np.uint8)
    np.save(path, images)
    return path


def test_fid_without_inception_weights_says_where_to_put_them(tmp_path):
    a, b = write_images(tmp_path / "A.npy", 0), write_images(tmp_path / "B.npy", 1)
    result = ganpipe(tmp_path, "fid", str(a), str(b))
    assert result.returncode == 2, result.stderr
    target = tmp_path / "torch-home" / "hub" / "checkpoints" / FID_WEIGHTS_FILENAME
    assert "ganpipe: bad input:" in result.stderr and f"put it at {target}" in result.stderr
    assert f"${WEIGHTS_ENV}" in result.stderr and "Nothing is downloaded" in result.stderr
    assert not target.exists()

    explicit = ganpipe(tmp_path, "fid", str(a), str(b), "--inception-weights", "nowhere/weights.pth")
    assert explicit.returncode == 2 and "nowhere/weights.pth" in explicit.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_fid_on_a_gpu_that_is_not_there_is_bad_input(tmp_path):
    a, b = write_images(tmp_path / "A.npy", 0), write_images(tmp_path / "B.npy", 1)
    result = ganpipe(tmp_path, "fid", str(a), str(b), "--device", "cuda")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--device cuda" in last_line(result) and "use device=auto or cpu" in last_line(result)


def test_fid_with_a_missing_image_set(tmp_path):
    result = ganpipe(tmp_path, "fid", str(write_images(tmp_path / "A.npy", 0)), "missing_dir")
    assert result.returncode == 2 and "missing_dir" in last_line(result)


def test_validate_digits_writes_data_docs(tmp_path):
    result = ganpipe(tmp_path, "validate", "--dataset", "digits", "--params", str(REPO / "params.yaml"))
    assert result.returncode == 0, result.stderr
    docs = tmp_path / "runs" / "validation" / "data_docs" / "index.html"
    assert docs.is_file() and "<html" in docs.read_text().lower()
    assert "1797 samples passed validation" in result.stdout and str(docs) in result.stdout
    assert (tmp_path / "runs" / "validation" / "validation_summary.json").is_file()


def test_validate_reports_bad_data_with_exit_3(tmp_path):
    images = np.random.default_rng(0).uniform(0, 1, size=(150, 8, 8)).astype(np.float32)
    images[7, 1, 1] = np.inf
    np.save(tmp_path / "bad.npy", images)
    result = ganpipe(tmp_path, "validate", "--dataset", "bad.npy", "--params", str(REPO / "params.yaml"),
                     "--out", "report")
    assert result.returncode == 3, result.stderr
    assert "data validation failed" in result.stderr and "bad.npy[all:7]" in result.stderr
    assert (tmp_path / "report" / "data_docs" / "index.html").is_file()


def test_validate_with_a_bad_dataset_name_exits_2(tmp_path):
    result = ganpipe(tmp_path, "validate", "--dataset", "nosuchset", "--params", str(REPO / "params.yaml"))
    assert result.returncode == 2 and "'nosuchset'" in last_line(result)


@pytest.mark.parametrize("args, named", [
    (["models:/dcgan-digits"], "models:/NAME@ALIAS"),  # neither alias nor version
    (["models:/dcgan-digits/1/extra"], "models:/NAME@ALIAS"),
    (["models:/nosuch@champion"], "not found in the registry"),
    (["runs/none/train/checkpoints/last.pt"], "no such checkpoint"),
    (["x.pt", "--n", "0"], "--n must be >= 1"),
    (["x.pt", "--out", "x.txt"], ".npy"),
])
def test_sample_with_a_bad_reference_exits_2(tmp_path, args, named):
    result = ganpipe(tmp_path, "sample", *args, *([] if "--out" in args else ["--out", "x.npy"]))
    assert result.returncode == 2, result.stderr
    assert last_line(result).startswith("ganpipe: bad input:") and named in result.stderr
    assert not (tmp_path / "x.npy").exists()


def test_sample_reads_the_store_named_in_params_yaml(tmp_path):
    """`ganpipe sample models:/...` looks in the store `ganpipe run` registers to: tracking.tracking_uri in the
    project's params.yaml (a shared server, another database) wins over the project's own mlflow.db."""
    other = tmp_path / "shared" / "store.db"
    other.parent.mkdir()
    (tmp_path / "params.yaml").write_text(f"tracking:\n  tracking_uri: sqlite:///{other}\n")
    result = ganpipe(tmp_path, "sample", "models:/nosuch@champion", "--out", "x.npy")
    assert result.returncode == 2 and f"not found in the registry at sqlite:///{other}" in result.stderr


def test_export_with_a_missing_checkpoint_exits_2(tmp_path):
    result = ganpipe(tmp_path, "export", "missing.pt", "--out", "g.onnx")
    assert result.returncode == 2 and "missing.pt" in last_line(result)
    assert not (tmp_path / "g.onnx").exists()


def tiny_checkpoint(tmp_path: Path, model: str, poison: bool = False) -> Path:
    """A checkpoint of ``model`` trained 2 steps on 16 px digits; ``poison`` fills its generator with NaN."""
    import torch

    import ganmodels
    from ganmodels.data import DataConfig, load_dataset
    from ganmodels.train import TrainConfig, Trainer
    from tests.model_configs import SMALL

    data = load_dataset(DataConfig(name="digits", resolution=16, max_samples=200))
    trainer = Trainer(ganmodels.build(model, SMALL[model]), data, TrainConfig(steps=2, batch_size=8),
                      workdir=tmp_path / model)
    path = trainer.fit().checkpoint
    if poison:
        state = torch.load(path, weights_only=True)
        for weights in (state["networks"]["G"], state["ema"]["G"]):
            for tensor in weights.values():
                if tensor.is_floating_point():
                    tensor.fill_(float("nan"))
        torch.save(state, path)
    return path


def test_export_of_a_model_with_nan_outputs_exits_6_and_leaves_no_file(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path, "dcgan", poison=True)
    result = ganpipe(tmp_path, "export", str(checkpoint), "--out", "g.onnx")
    assert result.returncode == 6, result.stderr
    assert last_line(result).startswith("ganpipe: ONNX export check failed:") and "NaN or inf" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.onnx*"))  # the unchecked file is not left where the user asked for one


def test_export_writes_a_checked_file(tmp_path):
    result = ganpipe(tmp_path, "export", str(tiny_checkpoint(tmp_path, "dcgan")), "--out", "g.onnx")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "g.onnx").is_file() and "max abs diff" in result.stdout


def test_sample_a_conditional_model_writes_balanced_labels_or_the_asked_classes(tmp_path):
    checkpoint = str(tiny_checkpoint(tmp_path, "cgan"))
    result = ganpipe(tmp_path, "sample", checkpoint, "--n", "25", "--out", "s.npy")
    assert result.returncode == 0, result.stderr
    samples, labels = np.load(tmp_path / "s.npy"), np.load(tmp_path / "s.labels.npy")
    assert samples.shape == (25, 1, 16, 16) and samples.dtype == np.float32
    assert labels.dtype == np.int64 and labels.tolist() == [i % 10 for i in range(25)]
    result = ganpipe(tmp_path, "sample", checkpoint, "--n", "6", "--out", "t.npy", "--class", "3", "--class", "7")
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "t.labels.npy").tolist() == [3, 7, 3, 7, 3, 7]
    bad = ganpipe(tmp_path, "sample", checkpoint, "--n", "6", "--out", "u.npy", "--class", "10")
    assert bad.returncode == 2 and "--class 10" in last_line(bad) and not (tmp_path / "u.npy").exists()
    unconditional = ganpipe(tmp_path, "sample", str(tiny_checkpoint(tmp_path, "dcgan")), "--n", "4", "--out", "v.npy",
                            "--class", "1")
    assert unconditional.returncode == 2 and "unconditional" in last_line(unconditional)


def tiny_pix2pix(tmp_path: Path) -> tuple[Path, object]:
    import ganmodels
    from ganmodels.data import DataConfig, load_dataset
    from ganmodels.train import TrainConfig, Trainer
    from tests.model_configs import SMALL

    data = load_dataset(DataConfig(name="digits-sr", resolution=None, max_samples=200))
    trainer = Trainer(ganmodels.build("pix2pix", SMALL["pix2pix"]), data, TrainConfig(steps=2, batch_size=8),
                      workdir=tmp_path / "pix2pix")
    return trainer.fit().checkpoint, data


def test_translate_with_a_checkpoint_and_its_onnx_file_agree(tmp_path):
    import torch

    from ganmodels.train import load_model

    checkpoint, data = tiny_pix2pix(tmp_path)
    inputs = data.a_test[:9].numpy()  # (9, 1, 4, 4) in [-1, 1]
    np.save(tmp_path / "low.npy", inputs)
    result = ganpipe(tmp_path, "translate", str(checkpoint), "low.npy", "--out", "high.npy")
    assert result.returncode == 0, result.stderr
    high = np.load(tmp_path / "high.npy")
    with torch.no_grad():
        expected = load_model(checkpoint).G(torch.from_numpy(inputs)).clamp(-1, 1).numpy()
    assert high.shape == (9, 1, 8, 8) and high.dtype == np.float32
    np.testing.assert_allclose(high, expected, atol=1e-5)

    assert ganpipe(tmp_path, "export", str(checkpoint), "--out", "p.onnx").returncode == 0
    onnx_result = ganpipe(tmp_path, "translate", "p.onnx", "low.npy", "--out", "high_onnx.npy")
    assert onnx_result.returncode == 0, onnx_result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "high_onnx.npy"), high, atol=1e-4)

    folder = ganpipe(tmp_path, "translate", str(checkpoint), "low.npy", "--out", "pngs")
    assert folder.returncode == 0 and len(list((tmp_path / "pngs").glob("*.png"))) == 9


def test_translate_refuses_a_noise_model_and_sample_refuses_a_translation_model(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 4, 4), np.float32))
    noise = ganpipe(tmp_path, "translate", str(tiny_checkpoint(tmp_path, "dcgan")), "x.npy", "--out", "y.npy")
    assert noise.returncode == 2 and "ganpipe sample" in last_line(noise)
    checkpoint, _ = tiny_pix2pix(tmp_path)
    sampled = ganpipe(tmp_path, "sample", str(checkpoint), "--out", "s.npy")
    assert sampled.returncode == 2 and "not sampled from noise" in last_line(sampled)


def test_a_two_domain_model_translates_and_exports_both_directions(tmp_path):
    import torch

    import ganmodels
    from ganmodels.data import DataConfig, load_dataset
    from ganmodels.train import TrainConfig, Trainer, load_model
    from tests.model_configs import SMALL

    data = load_dataset(DataConfig(name="digits-bold", resolution=16, max_samples=300))
    trainer = Trainer(ganmodels.build("cyclegan", SMALL["cyclegan"]), data, TrainConfig(steps=2, batch_size=4),
                      workdir=tmp_path / "cyclegan")
    checkpoint = trainer.fit().checkpoint
    np.save(tmp_path / "bold.npy", data.b_test[:5].numpy())
    result = ganpipe(tmp_path, "translate", str(checkpoint), "bold.npy", "--direction", "b2a", "--out", "thin.npy")
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = load_model(checkpoint).G_BA(data.b_test[:5]).clamp(-1, 1).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "thin.npy"), expected, atol=1e-5)

    exported = ganpipe(tmp_path, "export", str(checkpoint), "--out", "cg.onnx")
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in tmp_path.glob("cg*.onnx")) == ["cg_a2b.onnx", "cg_b2a.onnx"]
    from ganmodels.export import read_metadata

    assert read_metadata(tmp_path / "cg_b2a.onnx")["signature"].inputs[0].name == "b"
    onnx_thin = ganpipe(tmp_path, "translate", "cg_b2a.onnx", "bold.npy", "--out", "thin_onnx.npy")
    assert onnx_thin.returncode == 0, onnx_thin.stderr
    np.testing.assert_allclose(np.load(tmp_path / "thin_onnx.npy"), expected, atol=1e-4)
    one_way = ganpipe(tmp_path, "translate", str(tiny_pix2pix(tmp_path)[0]), "bold.npy", "--direction", "b2a",
                      "--out", "x.npy")
    assert one_way.returncode == 2 and "--direction" in last_line(one_way)


def test_sample_stylegan2_with_truncation(tmp_path):
    import ganmodels
    from ganmodels.data import DataConfig, load_dataset
    from ganmodels.export import onnx_sample
    from ganmodels.train import TrainConfig, Trainer
    from tests.model_configs import SMALL

    data = load_dataset(DataConfig(name="digits", resolution=16, max_samples=200))
    trainer = Trainer(ganmodels.build("stylegan2", SMALL["stylegan2"]), data, TrainConfig(steps=2, batch_size=8),
                      workdir=tmp_path / "sg")
    checkpoint = str(trainer.fit().checkpoint)
    result = ganpipe(tmp_path, "sample", checkpoint, "--n", "5", "--out", "t0.npy", "--truncation", "0")
    assert result.returncode == 0, result.stderr
    at_zero = np.load(tmp_path / "t0.npy")
    assert np.allclose(at_zero, at_zero[:1])  # psi 0: every sample is the average w's image
    assert ganpipe(tmp_path, "sample", checkpoint, "--n", "5", "--out", "t1.npy").returncode == 0
    assert not np.allclose(np.load(tmp_path / "t1.npy"), np.load(tmp_path / "t1.npy")[:1])
    assert ganpipe(tmp_path, "export", checkpoint, "--out", "sg.onnx").returncode == 0
    assert onnx_sample(tmp_path / "sg.onnx", 4, seed=0).shape == (4, 1, 16, 16)  # psi fed as 1
    dcgan = ganpipe(tmp_path, "sample", str(tiny_checkpoint(tmp_path, "dcgan")), "--out", "d.npy", "--truncation", "0.5")
    assert dcgan.returncode == 2 and "no truncation" in last_line(dcgan)

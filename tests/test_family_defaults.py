"""Every model family's shipped defaults, end to end: ``ganpipe run --model <family>`` exactly as a user runs
it (params.yaml defaults: full training, every gate on), each through the real Prefect flow, MLflow store
and ONNX export, its quality judged by checks independent of ganmodels' own evaluation.

These train for minutes each (about 18 serially on a 2-core CPU). They are a module of their own because the
README's parallel run (``pytest -n 2`` with ``--dist loadfile``) keeps a module on one worker: apart from the
smoke project in test_pipeline_e2e.py, they and it run on different workers, and conftest's LONGEST_FIRST
starts this module first. DCGAN's default run is measured by benchmarks/digits_quality.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_pipeline_e2e import aliases, explain, prefect_api, project  # noqa: F401 (module-scoped fixtures)


# -- the conditional GAN, default settings ------------------------------------------------------


def independent_digit_classifier():
    """scikit-learn's SVC on the real 8x8 digits (98-99% held-out accuracy): no part of ganpipe's own
    evaluation (the CNN domain classifier, its features or its training) is involved."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    digits = load_digits()
    return SVC(gamma=0.001).fit(digits.data, digits.target)


def as_8x8_digits(samples: np.ndarray) -> np.ndarray:
    """(N, 1, 16, 16) in [-1, 1] -> (N, 64) in 0..16, the layout of sklearn's digits (2x2 area mean)."""
    n = len(samples)
    small = samples.reshape(n, 8, 2, 8, 2).mean(axis=(2, 4))
    return ((small.clip(-1, 1) + 1) * 8).reshape(n, 64)


@pytest.mark.slow
def test_cgan_default_run_registers_a_conditional_champion(project):
    """``ganpipe run --model cgan`` as a user runs it (params.yaml defaults: 3,000 steps, every gate on)."""
    import mlflow
    import onnxruntime as ort
    import torch

    from ganmodels.train import load_model

    result, summary = project.run("--model", "cgan", summary="cgan.json")
    assert result.returncode == 0, explain(result)
    name = "cgan-digits"
    assert (summary["registry"]["model_name"], summary["registry"]["version"]) == (name, "1")
    assert aliases(project.client(), name) == {"champion": "1", "challenger": "1"}
    metrics = summary["evaluation"]["metrics"]
    assert {"cond_accuracy", "intra_fd", "cas"} <= set(metrics) and metrics["cond_accuracy"] >= 0.9

    # The exported ONNX graph takes (z, c) with a dynamic batch and matches PyTorch.
    session = ort.InferenceSession(summary["export"]["onnx"], providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert list(inputs) == ["z", "c"] and inputs["z"].type == "tensor(float)" and inputs["c"].type == "tensor(int64)"
    model = load_model(summary["training"]["checkpoint"])
    z = torch.randn(5, model.G.z_dim, generator=torch.Generator().manual_seed(3))
    c = torch.tensor([0, 3, 9, 3, 1])
    (images,) = session.run(None, {"z": z.numpy(), "c": c.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(images, model.G(z, c).numpy(), atol=1e-4)

    # The MLflow model has the two-input signature and answers a dict of named arrays.
    mlflow.set_tracking_uri(f"sqlite:///{project.root / 'mlflow.db'}")
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        assert [s.name for s in pyfunc.metadata.get_input_schema().inputs] == ["z", "c"]
        np.testing.assert_allclose(pyfunc.predict({"z": z.numpy(), "c": c.numpy()}), images, atol=1e-4)
    finally:
        mlflow.set_tracking_uri(None)

    # Samples with their labels, fed back as a data set would be; every class where asked for.
    sampled = project.ganpipe("sample", f"models:/{name}@champion", "--n", "1000", "--out", "s.npy")
    assert sampled.returncode == 0, explain(sampled)
    samples, labels = np.load(project.root / "s.npy"), np.load(project.root / "s.labels.npy")
    assert samples.shape == (1000, 1, 16, 16) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [100] * 10
    predicted = independent_digit_classifier().predict(as_8x8_digits(samples))
    per_class = [float((predicted[labels == k] == k).mean()) for k in range(10)]
    assert min(per_class) >= 0.9, per_class
    assert sorted(set(predicted.tolist())) == list(range(10))


# -- Pix2Pix, paired data ----------------------------------------------------------------------------


def numpy_psnr(x: np.ndarray, y: np.ndarray) -> float:
    """Mean per-image PSNR for images in [-1, 1] (data range 2), written out independently of ganmodels."""
    mse = ((x.astype(np.float64) - y.astype(np.float64)) ** 2).reshape(len(x), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(4.0 / mse)))


@pytest.mark.slow
def test_pix2pix_digits_sr_default_run_beats_bicubic(project):
    import onnxruntime as ort
    import torch.nn.functional as F

    from ganmodels.data import PreparedDataset

    result, summary = project.run("--model", "pix2pix", "--dataset", "digits-sr", summary="pix2pix.json")
    assert result.returncode == 0, explain(result)
    name = "pix2pix-digits-sr"
    assert (summary["registry"]["model_name"], summary["registry"]["version"]) == (name, "1")
    assert aliases(project.client(), name) == {"champion": "1", "challenger": "1"}
    assert summary["evaluation"]["primary_metric"] == "psnr_gain_over_bicubic"
    assert summary["evaluation"]["metrics"]["psnr_gain_over_bicubic"] >= 3.0

    # The ONNX contract: one input a (N, 1, 4, 4), output (N, 1, 8, 8), a dynamic N.
    session = ort.InferenceSession(summary["export"]["onnx"], providers=["CPUExecutionProvider"])
    (a_input,) = session.get_inputs()
    assert a_input.name == "a" and a_input.shape[1:] == [1, 4, 4] and not isinstance(a_input.shape[0], int)
    assert summary["export"]["batch_sizes"] == [1, 7, 64]

    # `ganpipe translate` on the held-out inputs of the run's own data version beats bicubic by >= 3 dB.
    data = PreparedDataset.load(summary["data"]["path"])
    np.save(project.root / "held_out_inputs.npy", data.a_test.numpy())
    translated = project.ganpipe("translate", f"models:/{name}@champion", "held_out_inputs.npy", "--out", "sr.npy")
    assert translated.returncode == 0, explain(translated)
    outputs, targets = np.load(project.root / "sr.npy"), data.x_test.numpy()
    bicubic = F.interpolate(data.a_test, size=(8, 8), mode="bicubic", align_corners=False).clamp(-1, 1).numpy()
    assert outputs.shape == targets.shape == (len(data.a_test), 1, 8, 8)
    assert numpy_psnr(outputs, targets) - numpy_psnr(bicubic, targets) >= 3.0
    (strips,) = [p for p in Path(summary["run_dir"]).glob("eval/samples.png")]
    from PIL import Image

    with Image.open(strips) as image:  # input | bicubic | output | target: four columns
        assert image.width > image.height / 3 and image.format == "PNG"


# -- CycleGAN, two unpaired domains ------------------------------------------------------------------


@pytest.mark.slow
def test_cyclegan_digits_bold_default_run_matches_the_known_truth(project):
    """``ganpipe run --model cyclegan`` (params.yaml defaults): translations of held-out digits reach the
    true bold versions (which training never saw paired) and keep their class by an independent judge."""
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    from ganmodels.data import PreparedDataset

    result, summary = project.run("--model", "cyclegan", "--dataset", "digits-bold", summary="cyclegan.json")
    assert result.returncode == 0, explain(result)
    name = "cyclegan-digits-bold"
    assert (summary["registry"]["model_name"], summary["registry"]["version"]) == (name, "1")
    assert summary["evaluation"]["primary_metric"] == "psnr_a2b"
    targets = summary["export"]["targets"]
    assert sorted(targets) == ["generator_a2b", "generator_b2a"]
    for target, check in targets.items():  # both directions, batch sizes 1, 7 and 64, in onnxruntime
        assert check["passed"] and check["batch_sizes"] == [1, 7, 64]
        (onnx_input,) = ort.InferenceSession(check["onnx"], providers=["CPUExecutionProvider"]).get_inputs()
        assert onnx_input.name == target[-3] and onnx_input.shape[1:] == [1, 16, 16]

    data = PreparedDataset.load(summary["data"]["path"])
    np.save(project.root / "thin.npy", data.x_test.numpy())
    translated = project.ganpipe("translate", f"models:/{name}@champion", "thin.npy", "--out", "bold.npy")
    assert translated.returncode == 0, explain(translated)
    bold = np.load(project.root / "bold.npy")
    assert numpy_psnr(bold, data.truth_a2b_test.numpy()) >= 20.0

    # The judge: scikit-learn's SVC trained on real digits drawn in domain B's style (dilated at 16 px, then
    # the 2x2 block means, as sklearn's 8x8 layout), nothing of ganpipe's own evaluation.
    digits = load_digits()
    real = np.asarray(digits.images, dtype=np.float32)[:, None] / 8.0 - 1.0  # (N, 1, 8, 8) in [-1, 1]
    real16 = F.interpolate(torch.from_numpy(real), size=16, mode="bilinear", align_corners=False)
    real_bold = F.max_pool2d(real16, 3, 1, 1).numpy()
    judge = SVC(gamma=0.001).fit(as_8x8_digits(real_bold), digits.target)
    kept = (judge.predict(as_8x8_digits(bold)) == data.y_test.numpy()).mean()
    assert kept >= 0.9, kept


@pytest.mark.slow
def test_cyclegan_glyphs_fonts_default_run_turns_sans_glyphs_into_serif_ones(project):
    """``ganpipe run --model cyclegan --dataset glyphs-fonts`` (params.yaml defaults): every gate passes, the
    style and character scores reach MLflow, and held-out sans glyphs translated with ``ganpipe translate``
    move towards their true serif drawings (which training never saw paired)."""
    from ganmodels.data import PreparedDataset

    result, summary = project.run("--model", "cyclegan", "--dataset", "glyphs-fonts", summary="fonts.json")
    assert result.returncode == 0, explain(result)
    name = "cyclegan-glyphs-fonts"
    assert summary["registry"]["model_name"] == name and summary["evaluation"]["primary_metric"] == "psnr_a2b"
    logged = project.client().get_run(summary["mlflow_run_id"]).data.metrics
    assert logged["style_classifier_accuracy"] >= 0.9  # the style judge behind the gate can be trusted
    assert logged["style_transfer_a2b"] >= 0.75 and logged["class_preservation_a2b"] >= 0.85
    assert {"style_transfer_b2a", "class_preservation_b2a", "psnr_b2a"} <= set(logged)

    data = PreparedDataset.load(summary["data"]["path"])
    np.save(project.root / "sans.npy", data.x_test.numpy())
    translated = project.ganpipe("translate", f"models:/{name}@champion", "sans.npy", "--out", "serif.npy")
    assert translated.returncode == 0, explain(translated)
    serif, sans, truth = np.load(project.root / "serif.npy"), data.x_test.numpy(), data.truth_a2b_test.numpy()
    # Closer to the true serif glyph than the input was, and changed: not the identity.
    assert numpy_psnr(serif, truth) > numpy_psnr(sans, truth)
    assert np.abs(serif - sans).mean() > 0.02


# -- StyleGAN2 ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_stylegan2_default_run_and_its_onnx_file_draw_every_digit(project):
    """``ganpipe run --model stylegan2`` (params.yaml defaults, every digits gate on); the exported graph,
    with the untruncated psi, draws all 10 digits by an independent judge and matches PyTorch."""
    import torch

    from ganmodels.export import onnx_sample, read_metadata
    from ganmodels.train import load_model

    result, summary = project.run("--model", "stylegan2", summary="stylegan2.json")
    assert result.returncode == 0, explain(result)
    name = "stylegan2-digits"
    assert (summary["registry"]["model_name"], summary["registry"]["version"]) == (name, "1")
    sweep = json.loads((Path(summary["run_dir"]) / "eval" / "truncation_sweep.json").read_text())
    assert sorted(map(float, sweep)) == [0.5, 0.7, 0.85, 1.0]
    assert sweep["0.5"]["precision"] > sweep["1.0"]["precision"]  # truncation trades diversity for fidelity
    assert sweep["0.5"]["recall"] < sweep["1.0"]["recall"]

    onnx_path = summary["export"]["onnx"]
    assert [s.name for s in read_metadata(onnx_path)["signature"].inputs] == ["z", "psi"]
    samples = onnx_sample(onnx_path, 1000, seed=7)  # documented noise, psi = 1
    z = torch.from_numpy(np.random.default_rng(7).standard_normal((1000, 64), dtype=np.float32))
    with torch.no_grad():
        expected = load_model(summary["training"]["checkpoint"]).G(z).numpy()
    np.testing.assert_allclose(samples, expected, atol=1e-4)
    predicted = independent_digit_classifier().predict(as_8x8_digits(samples))
    assert sorted(set(predicted.tolist())) == list(range(10))
    assert np.bincount(predicted, minlength=10).min() >= 30  # no digit is a rare accident (1,000 samples)

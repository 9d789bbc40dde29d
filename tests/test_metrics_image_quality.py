"""PSNR and SSIM against scikit-image (an independent implementation), the bicubic baseline, and the
paired evaluation on generators with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ganmodels.data import DataKind
from ganmodels.metrics import evaluate_model, produced_metrics, train_domain_classifier
from ganmodels.metrics.image_quality import PSNR_CAP, bicubic_upsample, l1_error, psnr, ssim


def pair(shape, noise=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g) * 2 - 1
    return x, (x + noise * torch.randn(*shape, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("side, channels, window", [(32, 1, 11), (16, 3, 11), (8, 1, 7), (4, 2, 3)])
def test_ssim_matches_scikit_image(side, channels, window):
    x, y = pair((3, channels, side, side))
    ours = ssim(x, y)
    for i in range(3):
        reference = structural_similarity(x[i].double().numpy(), y[i].double().numpy(), gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False, data_range=2.0, win_size=window,
                                          channel_axis=0)
        assert ours[i].item() == pytest.approx(reference, abs=1e-12)


def test_psnr_and_l1_match_their_definitions():
    x, y = pair((4, 1, 16, 16))
    for i in range(4):
        assert psnr(x, y)[i].item() == pytest.approx(peak_signal_noise_ratio(x[i].double().numpy(),
                                                                             y[i].double().numpy(), data_range=2.0))
    assert torch.allclose(l1_error(x, y), (x - y).abs().double().mean(dim=(1, 2, 3)))
    assert psnr(x, x).tolist() == [PSNR_CAP] * 4 and ssim(x, x).tolist() == pytest.approx([1.0] * 4)


def test_bicubic_baseline_is_torch_bicubic_clamped_and_the_identity_at_the_same_size():
    a = torch.rand(2, 1, 4, 4) * 2 - 1
    expected = F.interpolate(a, size=(8, 8), mode="bicubic", align_corners=False).clamp(-1, 1)
    assert torch.equal(bicubic_upsample(a, (8, 8)), expected)
    assert torch.equal(bicubic_upsample(a, (4, 4)), a)


class Lookup(torch.nn.Module):
    """A 'translation' model with a known answer: the bicubic upsampling of its input (``mode="bicubic"``),
    or the true target found by looking the input up in the data (``mode="oracle"``)."""

    def __init__(self, data, mode):
        super().__init__()
        self.mode, self.anchor = mode, torch.nn.Parameter(torch.zeros(()))
        self.table = {tuple(a.flatten().tolist()): b for a, b in zip(torch.cat([data.a_train, data.a_test]),
                                                                       torch.cat([data.x_train, data.x_test]))}
        self.in_shape, self.out_shape = tuple(data.input_shape), tuple(data.sample_shape)

    def forward(self, a):
        if self.mode == "bicubic":
            return bicubic_upsample(a, self.out_shape[-2:]) + 0 * self.anchor
        return torch.stack([self.table[tuple(row.flatten().tolist())] for row in a]) + 0 * self.anchor


@pytest.fixture
def scored(tiny_pairs):
    import ganmodels

    from tests.model_configs import SMALL

    classifier, accuracy = train_domain_classifier(tiny_pairs.x_train, tiny_pairs.y_train, tiny_pairs.x_test,
                                                   tiny_pairs.y_test, 10, epochs=12, seed=0)
    out = {}
    for mode in ("bicubic", "oracle"):
        model = ganmodels.build("pix2pix", SMALL["pix2pix"])
        model.G = Lookup(tiny_pairs, mode)
        out[mode] = evaluate_model(model, tiny_pairs, classifier=classifier, classifier_accuracy=accuracy)
    return out, accuracy


def test_paired_metrics_against_known_answers(scored, tiny_pairs):
    scores, accuracy = scored
    assert set(scores["oracle"]) == set(produced_metrics(DataKind.PAIRED_IMAGES, available=["labels"]))
    bicubic = scores["bicubic"]
    assert bicubic["psnr_gain_over_bicubic"] == 0.0 and bicubic["psnr"] == bicubic["psnr_bicubic"]
    assert bicubic["ssim"] == bicubic["ssim_bicubic"]
    oracle = scores["oracle"]
    assert oracle["psnr"] == PSNR_CAP and oracle["ssim"] == pytest.approx(1.0) and oracle["l1"] == 0.0
    assert oracle["psnr_gain_over_bicubic"] == pytest.approx(PSNR_CAP - bicubic["psnr_bicubic"])
    assert abs(oracle["domain_fd"]) < 1e-6  # the outputs are the targets
    assert oracle["class_preservation"] == pytest.approx(accuracy)  # the classifier's own accuracy on the targets
    assert bicubic["class_preservation"] < oracle["class_preservation"]

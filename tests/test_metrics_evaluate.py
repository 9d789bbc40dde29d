"""evaluate_generator / evaluate_model on tiny generators with known answers: keys (exactly the ones the
metric registry promises), sanity values, seeding, mode restoration."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from ganmodels.data import DataKind
from ganmodels.data.base import PreparedDataset
from ganmodels.metrics import evaluate_generator, produced_metrics, train_domain_classifier

IMAGE_KEYS = {"domain_fd", "kid", "kid_std", "precision", "recall", "density", "coverage", "class_coverage", "classes_covered", "class_kl",
              "authenticity", "data_copying_ct"}


@pytest.fixture(autouse=True)
def no_inception_weights(monkeypatch, tmp_path):
    """Make sure no Inception weights on this machine leak into the tests (fid must be absent)."""
    monkeypatch.delenv("GANPIPE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def digits_32():
    """sklearn's bundled digits (offline) at 32×32 in [-1, 1]: 1,437 train / 360 test."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0 * 2 - 1  # (1797, 1, 8, 8)
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(-1, 1)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    test, train = perm[:360], perm[360:]
    return x[train], y[train], x[test], y[test]


@pytest.fixture(scope="module")
def digits():
    xtr, ytr, xte, yte = digits_32()
    data = PreparedDataset("digits", "image", xtr, xte, ytr, yte, class_names=[str(i) for i in range(10)])
    clf, _ = train_domain_classifier(xtr, ytr, xte, yte, 10, epochs=3, seed=0)
    return data, clf


class TinyG(nn.Module):
    def __init__(self, c_dim=0, out=(1, 32, 32)):
        super().__init__()
        self.z_dim, self.c_dim, self.out = 8, c_dim, out
        self.emb = nn.Embedding(max(c_dim, 1), 8)
        self.fc = nn.Linear(8, int(np.prod(out)))

    def forward(self, z, c=None):
        h = z + self.emb(c) if c is not None else z
        return torch.tanh(self.fc(h)).view(-1, *self.out)


class Replay(nn.Module):
    """A 'generator' that plays back fixed images in order, ignoring z."""

    def __init__(self, x):
        super().__init__()
        self.z_dim, self.c_dim, self.x, self.pos = 4, 0, x, 0

    def forward(self, z, c=None):
        out = self.x[self.pos : self.pos + len(z)]
        self.pos += len(z)
        return out


def test_random_generator_keys_and_mode_restored(digits):
    data, clf = digits
    G = TinyG().train()
    out = evaluate_generator(G, data, n_samples=300, classifier=clf, seed=0)
    assert set(out) == IMAGE_KEYS  # no 'fid' without weights
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert G.training and not clf.training
    assert out["domain_fd"] > 1.0 and out["precision"] < 0.5
    again = evaluate_generator(G, data, n_samples=300, classifier=clf, seed=0)
    assert again == out  # seeded sampling: same numbers


class ClassReplay(nn.Module):
    """A conditional 'generator' that answers class c with a real training image of class ``c + shift``.

    shift=0 is a perfect conditional generator; shift=1 draws the very same image distribution (a
    good overall FD) with every class wrong.
    """

    def __init__(self, x, y, shift=0):
        super().__init__()
        self.z_dim, self.c_dim, self.shift = 4, 10, shift
        self.pools = [x[y == k] for k in range(10)]

    def forward(self, z, c=None):
        pick = (z[:, 0].abs() * 1e4).long()
        return torch.stack([self.pools[(k + self.shift) % 10][i % len(self.pools[(k + self.shift) % 10])]
                            for k, i in zip(c.tolist(), pick.tolist())])


@pytest.fixture(scope="module")
def conditional_scores(digits):
    data, clf = digits
    return {shift: evaluate_generator(ClassReplay(data.x_train, data.y_train, shift), data, n_samples=400,
                                      classifier=clf, seed=0, cas_epochs=12) for shift in (0, 1)}


def test_conditional_metrics_are_exactly_the_registered_ones(conditional_scores, digits):
    data, clf = digits
    promised = set(produced_metrics(DataKind.LABELLED_IMAGES, conditional=True)) - {"classifier_accuracy"}
    assert set(conditional_scores[0]) == promised == IMAGE_KEYS | {"cond_accuracy", "intra_fd", "cas"}
    assert set(evaluate_generator(TinyG(), data, n_samples=100, classifier=clf)) == set(
        produced_metrics(DataKind.LABELLED_IMAGES)) - {"classifier_accuracy"}


def test_conditional_metrics_against_known_answers(conditional_scores, digits):
    right, wrong = conditional_scores[0], conditional_scores[1]
    # Real images of the asked class: the classifier agrees as often as it is right on real digits.
    assert right["cond_accuracy"] > 0.9 and wrong["cond_accuracy"] < 0.1
    # Same images, so the same marginal quality (a noise generator scores ~700 here); only the
    # class-aware metrics tell them apart.
    assert right["domain_fd"] < 2.0 and wrong["domain_fd"] < 2.0
    assert right["class_coverage"] == wrong["class_coverage"] == 1.0
    assert wrong["intra_fd"] > 5 * right["intra_fd"]
    # CAS: a classifier trained on the generated (image, asked class) pairs, tested on real digits.
    assert right["cas"] > 0.9 and wrong["cas"] < 0.1


def test_a_conditional_generator_is_asked_for_every_class_in_turn(digits):
    data, clf = digits
    seen = []

    class Spy(TinyG):
        def forward(self, z, c=None):
            seen.extend(c.tolist())
            return super().forward(z, c)

    evaluate_generator(Spy(c_dim=10), data, n_samples=30, classifier=clf, batch_size=16, cas_epochs=1)
    assert seen[:30] == [i % 10 for i in range(30)]


def test_replaying_real_images_scores_perfectly(digits):
    data, clf = digits
    out = evaluate_generator(Replay(data.x_test), data, n_samples=len(data.x_test), classifier=clf, batch_size=100)
    assert abs(out["domain_fd"]) < 1e-6
    assert out["coverage"] == 1.0 and out["precision"] == 1.0 and out["recall"] == 1.0
    assert out["class_coverage"] == 1.0 and out["class_kl"] < 0.01  # predicted vs true labels: classifier errors only
    # With the same m samples on both sides the unbiased MMD² is 2/m² (S_offdiag/(m-1) - tr K) <= 0,
    # because 1ᵀK1 <= m·λ_max(K) <= m·tr K for a PSD kernel matrix.
    assert out["kid"] <= 0.0
    # The same images as C_T's held-out sample: in every cell U is exactly n²/2, so C_T is exactly 0.
    assert out["data_copying_ct"] == 0.0
    # The memorisation metrics always measure against the training split, whatever the quality reference.
    vs_train = evaluate_generator(Replay(data.x_test), data, n_samples=len(data.x_test), classifier=clf,
                                  batch_size=100, reference="train")
    assert {k: vs_train[k] for k in ("authenticity", "data_copying_ct")} == {k: out[k] for k in ("authenticity",
                                                                                                  "data_copying_ct")}


def test_image_data_without_any_feature_network_is_an_error(digits):
    data, _ = digits
    with pytest.raises(ValueError, match="classifier="):
        evaluate_generator(TinyG(), data, n_samples=50)
    with pytest.raises(ValueError, match="does not match"):
        evaluate_generator(TinyG(out=(3, 32, 32)), data, n_samples=50, classifier=digits[1])


class RingG(nn.Module):
    """Samples a ring8 mixture from z: z[0] picks the mode, z[1:3] the offset. ``modes`` restricts it."""

    def __init__(self, modes=range(8)):
        super().__init__()
        self.z_dim, self.c_dim, self.modes = 3, 0, torch.tensor(list(modes))
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z, c=None):
        u = torch.special.ndtr(z[:, 0])  # uniform in (0, 1)
        k = self.modes[(u * len(self.modes)).long().clamp(max=len(self.modes) - 1)]
        angle = 2 * math.pi * k / 8
        return torch.stack([angle.cos(), angle.sin()], 1) + 0.01 * z[:, 1:3]


def ring8_data(n=4000):
    g = torch.Generator().manual_seed(0)
    x = RingG()(torch.randn(n, 3, generator=g))
    return PreparedDataset("ring8", "points", x[: n // 2], x[n // 2 :])


def test_points_metrics():
    data = ring8_data()
    angles = 2 * np.pi * np.arange(8) / 8
    modes = (np.stack([np.cos(angles), np.sin(angles)], 1), 0.01)
    good = evaluate_generator(RingG(), data, n_samples=2000, modes=modes)
    assert set(good) == set(produced_metrics(DataKind.POINTS, available=["modes"]))
    assert good["modes_captured"] == 8 and good["modes_fraction"] == 1.0 and good["high_quality_fraction"] > 0.97 and good["reverse_kl"] < 0.01
    assert good["precision"] > 0.9 and good["recall"] > 0.9
    collapsed = evaluate_generator(RingG(modes=[3]), data, n_samples=2000, modes=modes)
    assert collapsed["modes_captured"] == 1 and collapsed["reverse_kl"] == pytest.approx(math.log(8))
    assert collapsed["modes_fraction"] == 1 / 8
    assert collapsed["recall"] < 0.2 and collapsed["precision"] > 0.9
    assert set(evaluate_generator(RingG(), data, n_samples=500)) == set(produced_metrics(DataKind.POINTS))

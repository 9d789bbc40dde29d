"""The offline domain classifier: accuracy on digits, determinism, checkpoint round trip."""

import time

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from ganmodels.metrics import DomainClassifier, train_domain_classifier


def digits_32(seed=0):
    """sklearn's bundled 8×8 digits (offline), upsampled to 32×32 in [-1, 1], 80/20 split."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0 * 2 - 1  # (1797, 1, 8, 8)
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(-1, 1)  # (1797, 1, 32, 32)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = len(x) // 5
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


@pytest.fixture(scope="module")
def trained():
    xtr, ytr, xte, yte = digits_32()
    start = time.perf_counter()
    model, acc = train_domain_classifier(xtr, ytr, xte, yte, 10, epochs=10, seed=0)
    return model, acc, time.perf_counter() - start, (xte, yte)


def test_reaches_95_percent_on_digits(trained):
    model, acc, seconds, (xte, yte) = trained
    print(f"digits 32x32 domain classifier: test accuracy {acc:.4f} in {seconds:.1f} s")
    assert acc >= 0.95
    assert not model.training
    with torch.no_grad():
        feats = model.features(xte[:8])
        logits = model(xte[:8])
    assert feats.shape == (8, 128) and logits.shape == (8, 10)
    # Independent check of the reported accuracy.
    with torch.no_grad():
        assert (model(xte).argmax(1) == yte).float().mean().item() == pytest.approx(acc)


def test_save_load_roundtrip(trained, tmp_path):
    model, acc, _, (xte, _) = trained
    path = tmp_path / "clf" / "domain_classifier.pt"
    model.save(path, test_accuracy=acc)
    state = torch.load(path, weights_only=True)  # plain data: no pickled modules
    assert state["config"]["num_classes"] == 10 and state["test_accuracy"] == acc
    loaded = DomainClassifier.load(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(xte[:16]), model.features(xte[:16]))
    assert [p.name for p in path.parent.iterdir()] == ["domain_classifier.pt"]
    with pytest.raises(FileNotFoundError, match="train_domain_classifier"):
        DomainClassifier.load(tmp_path / "nope.pt")


def test_training_is_deterministic_and_leaves_global_rng_alone():
    xtr, ytr, xte, yte = digits_32()
    xtr, ytr = xtr[:256], ytr[:256]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    m1, a1 = train_domain_classifier(xtr, ytr, xte, yte, 10, epochs=1, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    m2, a2 = train_domain_classifier(xtr, ytr, xte, yte, 10, epochs=1, seed=7)
    assert a1 == a2
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(v1, v2), k


def test_rejects_wrong_channels(trained):
    model = trained[0]
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model.features(torch.zeros(2, 3, 32, 32))


def test_random_shift_is_a_crop_of_the_padded_image():
    from ganmodels.metrics.classifier import _random_shift

    x = torch.randn(6, 2, 5, 7)
    out = _random_shift(x, 2, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(len(x)):
        crops = [padded[i, :, dy : dy + 5, dx : dx + 7] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) for c in crops)

"""Our Inception/FID against pytorch-fid itself (random weights, nothing downloaded), compute_fid on
two different sets against an independent Fréchet computation, and the clear error when the real
weights are absent."""

import numpy as np
import pytest
import pytorch_fid.inception as pfi
import scipy.linalg
import torch

from ganmodels.metrics import FIDInceptionV3, InceptionWeightsNotFound, compute_fid, find_inception_weights
from ganmodels.metrics.fid import feature_stats, inception_batch_size, inception_features
from ganmodels.metrics.inception import FID_WEIGHTS_FILENAME, FID_WEIGHTS_URL, load_fid_inception


def build_pytorch_fid_with_random_weights(seed: int):
    """pytorch-fid's InceptionV3([3]) with seeded random weights, and its weights-file state dict.

    pytorch-fid builds torchvision's Inception3, swaps in its FID blocks, then loads the released
    file. We stub the download and the load, keep the freshly initialised weights, randomise the
    BatchNorm affine parameters, and set BN running statistics from one batch (cumulative average)
    so that activations stay well scaled through ~100 random layers.
    """
    import torchvision

    captured = {}
    original = pfi.fid_inception_v3

    def capture():
        net = original()
        captured["net"] = net
        return net

    torch.manual_seed(seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(torchvision.models.inception.Inception3, "load_state_dict", lambda self, sd, strict=True: None)
        mp.setattr(pfi, "fid_inception_v3", capture)
        ref = pfi.InceptionV3([3])
    bns = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.reset_running_stats()
            bn.momentum = None
        ref.train()
        ref(torch.rand(4, 3, 64, 64))
    ref.eval()
    return ref, captured["net"].state_dict()  # the weights-file format: Conv2d_1a_3x3.conv.weight, ..., fc.*


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref, state = build_pytorch_fid_with_random_weights(seed=0)
    path = tmp_path_factory.mktemp("inception") / FID_WEIGHTS_FILENAME
    torch.save(state, path)
    return ref, load_fid_inception(path), path


@torch.no_grad()
def reference_features(ref, images01: torch.Tensor) -> np.ndarray:
    """pytorch-fid's get_activations core: images in [0, 1], 3 channels -> (N, 2048)."""
    if images01.shape[1] == 1:
        images01 = images01.repeat(1, 3, 1, 1)  # what its loader's PIL convert('RGB') does
    out = []
    for i in range(0, len(images01), 50):
        out.append(ref(images01[i : i + 50])[0].squeeze(3).squeeze(2).double().numpy())
    return np.concatenate(out)


def reference_fid(fa: np.ndarray, fb: np.ndarray) -> float:
    mu1, s1 = fa.mean(0), np.cov(fa, rowvar=False)
    mu2, s2 = fb.mean(0), np.cov(fb, rowvar=False)
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance

        return float(calculate_frechet_distance(mu1, s1, mu2, s2))
    except TypeError:  # a SciPy without sqrtm(disp=...): same formula, scipy sqrtm directly
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_state_dict_layout_matches_the_weights_file(pair):
    _, ours, path = pair
    file_keys = set(torch.load(path, weights_only=True))
    own = {k for k in ours.state_dict() if not k.endswith("num_batches_tracked")}
    assert own <= file_keys
    assert {k.split(".")[0] for k in file_keys - own - {k for k in file_keys if k.endswith("num_batches_tracked")}} == {"fc"}


@pytest.mark.parametrize("channels", [3, 1])
def test_features_match_pytorch_fid(pair, channels):
    ref, ours, _ = pair
    x01 = torch.rand(3, channels, 32, 32, generator=torch.Generator().manual_seed(channels))
    expected = reference_features(ref, x01)
    got = inception_features(x01 * 2 - 1, ours)
    assert got.shape == (3, 2048)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


@pytest.mark.slow
@pytest.mark.parametrize("channels", [3, 1])
def test_fid_matches_pytorch_fid(pair, channels):
    ref, _, path = pair
    g = torch.Generator().manual_seed(10 + channels)
    a01 = torch.rand(64, channels, 32, 32, generator=g)
    b01 = (torch.rand(64, channels, 32, 32, generator=g) * 0.7 + 0.2).clamp(0, 1)  # a different distribution
    expected = reference_fid(reference_features(ref, a01), reference_features(ref, b01))
    got = compute_fid(a01 * 2 - 1, b01 * 2 - 1, weights_path=path, batch_size=32)
    assert got == pytest.approx(expected, rel=1e-3)
    assert expected > 0


def test_compute_fid_of_a_set_with_itself_is_zero(pair):
    _, ours, _ = pair
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    mu, cov = feature_stats(inception_features(x, ours))
    assert compute_fid(x, x.clone(), model=ours) < 1e-6 * np.trace(cov)


def independent_fid(fa: np.ndarray, fb: np.ndarray) -> float:
    """FID of feature sets (n1, D) and (n2, D) by a route that shares no code with ganmodels.metrics.

    With centred features Xa, Xb and unbiased covariances Sa = XaᵀXa/(n1-1), Sb = XbᵀXb/(n2-1), the
    nonzero eigenvalues of Sa Sb are those of (Xa Xbᵀ)(Xa Xbᵀ)ᵀ / ((n1-1)(n2-1)), so
    tr sqrt(Sa Sb) = (sum of the singular values of Xa Xbᵀ) / sqrt((n1-1)(n2-1)). One SVD of an
    n1 x n2 matrix replaces scipy's sqrtm at 2048-d (seconds, and inexact on these rank-deficient
    covariances); test_independent_fid_is_the_sqrtm_formula checks the identity against sqrtm.
    """
    fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
    xa, xb = fa - fa.mean(0), fb - fb.mean(0)
    na, nb = len(fa) - 1, len(fb) - 1
    trace_sqrt = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    diff = fa.mean(0) - fb.mean(0)
    return float(diff @ diff + (xa**2).sum() / na + (xb**2).sum() / nb - 2 * trace_sqrt)


def test_independent_fid_is_the_sqrtm_formula():
    # Full-rank covariances in a few dimensions, where scipy's sqrtm is exact and quick.
    rng = np.random.default_rng(3)
    fa = rng.standard_normal((40, 6)) @ rng.standard_normal((6, 6))
    fb = rng.standard_normal((50, 6)) * 2.0 + 0.5
    mu1, s1, mu2, s2 = fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2)).real
    assert independent_fid(fa, fb) == pytest.approx(expected, rel=1e-10)


def test_compute_fid_of_two_different_sets_matches_an_independent_reference(pair):
    """compute_fid on two different image sets against independent_fid on the same network's
    features: catches a compute_fid that drops, reuses or mixes up either set's statistics, which
    the set-with-itself test above cannot (only the slow pytorch-fid parity test would)."""
    _, ours, _ = pair
    g = torch.Generator().manual_seed(5)
    a = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    b = torch.rand(4, 3, 16, 16, generator=g) * 1.2 - 0.4  # another distribution: narrower, brighter
    c = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1  # a third: grayscale
    fa, fb, fc = (inception_features(x, ours) for x in (a, b, c))

    ab, ba, ac = compute_fid(a, b, model=ours), compute_fid(b, a, model=ours), compute_fid(a, c, model=ours)
    expected_ab, expected_ac = independent_fid(fa, fb), independent_fid(fa, fc)
    # Same features, float64 statistics on both sides: agreement to rounding (about 1e-15 here).
    assert ab == pytest.approx(expected_ab, rel=1e-9)
    assert ac == pytest.approx(expected_ac, rel=1e-9)
    assert ba == pytest.approx(ab, rel=1e-9)  # the Fréchet distance is symmetric
    # Clearly nonzero (a set against itself gives < 1e-6 of the trace), and the second set matters.
    scale = fa.var(0, ddof=1).sum()  # tr(Sa)
    assert ab > 0.05 * scale and ac > 0.05 * scale
    assert abs(ab - ac) > 0.05 * max(ab, ac)


def test_missing_weights_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("GANPIPE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(InceptionWeightsNotFound) as info:
        compute_fid(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    for expected in (FID_WEIGHTS_FILENAME, FID_WEIGHTS_URL, "GANPIPE_INCEPTION_WEIGHTS", str(tmp_path / "hub" / "checkpoints"), "domain"):
        assert expected in message
    with pytest.raises(InceptionWeightsNotFound, match="weights_path argument"):
        find_inception_weights(tmp_path / "typo.pth")


def test_weights_are_found_via_env_and_hub_cache(monkeypatch, tmp_path):
    hub_file = tmp_path / "hub" / "checkpoints" / FID_WEIGHTS_FILENAME
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"x")
    env_file = tmp_path / "elsewhere.pth"
    env_file.write_bytes(b"x")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("GANPIPE_INCEPTION_WEIGHTS", raising=False)
    assert find_inception_weights() == hub_file
    monkeypatch.setenv("GANPIPE_INCEPTION_WEIGHTS", str(env_file))
    assert find_inception_weights() == env_file


def test_input_validation():
    with pytest.raises(ValueError, match="1 or 3"):
        FIDInceptionV3.preprocess(torch.zeros(2, 4, 8, 8))


def test_the_inception_batch_size_changes_no_feature(pair):
    """The batch is sized for the device (50 on CPU, 250 on a GPU); in eval mode the features, and so
    FID, do not depend on it."""
    _, ours, _ = pair
    assert inception_batch_size("cpu") == 50 and inception_batch_size(torch.device("cuda", 0)) == 250
    x = torch.rand(7, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    whole = inception_features(x, ours)  # the device's default: one batch of 7
    in_threes = inception_features(x, ours, batch_size=3)  # 3 + 3 + 1
    assert whole.shape == (7, 2048) and whole.dtype == np.float64
    np.testing.assert_allclose(in_threes, whole, rtol=1e-5, atol=1e-6)

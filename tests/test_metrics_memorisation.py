"""Memorisation metrics (authenticity, the data-copying test C_T) against independent references: scipy's
Mann-Whitney test, brute-force nearest neighbours and C_T, closed forms for fresh samples; and the gates
params.yaml ships, on digits: a generator that returns training images fails them, real held-out images pass."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.cluster import KMeans

from ganmodels.data import DataConfig, load_dataset
from ganmodels.data.base import PreparedDataset
from ganmodels.metrics import authenticity, data_copying_test, evaluate_generator, mann_whitney_z, train_domain_classifier
from ganmodels.metrics.memorisation import nearest_neighbours
from pipelines.config import EvalConfig, load_run_config
from pipelines.gates import evaluate_gates

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) Euclidean distances by broadcasting: the brute-force reference."""
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


# -- Mann-Whitney U -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_mann_whitney_matches_scipy_and_pair_counting_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, rng.integers(1, 15)).astype(float)  # few values: many ties, within and across
    y = rng.integers(0, 4, rng.integers(1, 15)).astype(float)
    u, z = mann_whitney_z(x, y)
    pairs = (x[:, None] > y[None, :]).sum() + 0.5 * (x[:, None] == y[None, :]).sum()
    assert u == pairs == stats.mannwhitneyu(x, y).statistic
    if len(np.unique(np.r_[x, y])) > 1:
        # scipy's one-sided p-value with the same (tie-corrected, uncorrected-for-continuity) normal
        # approximation is Φ(Z) for alternative="less".
        p = stats.mannwhitneyu(x, y, alternative="less", method="asymptotic", use_continuity=False).pvalue
        assert z == pytest.approx(stats.norm.ppf(p), abs=1e-7)
    else:
        assert z == 0.0  # all values tied: no evidence either way


def test_mann_whitney_sign_and_size():
    rng = np.random.default_rng(0)
    near, far = rng.uniform(0, 1, 200), rng.uniform(0.5, 1.5, 300)
    assert mann_whitney_z(near, far)[1] < -10 and mann_whitney_z(far, near)[1] > 10
    with pytest.raises(ValueError, match="both samples"):
        mann_whitney_z([], [1.0])


# -- nearest neighbours and authenticity -----------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [3, 1024])  # several chunks, and one
def test_nearest_neighbours_against_brute_force(chunk_size):
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(40, 5))
    ref[7] = ref[3]  # an exact duplicate: each is the other's neighbour at distance 0
    queries = rng.normal(size=(25, 5))
    dist, index = nearest_neighbours(queries, ref, chunk_size=chunk_size)
    full = pairwise(queries, ref)
    np.testing.assert_array_equal(index, full.argmin(1))
    np.testing.assert_allclose(dist, full.min(1), rtol=1e-12)
    self_full = pairwise(ref, ref) + np.diag(np.full(len(ref), np.inf))
    dist, index = nearest_neighbours(ref, ref, exclude_self=True, chunk_size=chunk_size)
    np.testing.assert_allclose(dist, self_full.min(1), rtol=1e-12, atol=0)
    assert index[3] == 7 and index[7] == 3 and dist[3] == dist[7] == 0.0
    assert (index != np.arange(len(ref))).all()


def brute_force_authenticity(train: np.ndarray, generated: np.ndarray) -> float:
    """Alaa et al. 2022 written out: nearest training row x*, its own nearest other training row."""
    train_d = pairwise(train, train)
    np.fill_diagonal(train_d, np.inf)
    authentic = []
    for g in generated:
        d = np.sqrt(((train - g) ** 2).sum(1))
        star = d.argmin()
        authentic.append(d[star] > train_d[star].min())
    return float(np.mean(authentic))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("chunk_size", [7, 1024])
def test_authenticity_matches_brute_force(seed, chunk_size):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(60, 4))
    train[10] = train[11]  # a duplicated training row: its copy is never authentic
    generated = np.concatenate([rng.normal(size=(50, 4)), train[[0, 10, 20]],  # fresh, copies,
                                train[:10] + rng.normal(scale=0.05, size=(10, 4))])  # and near-copies
    value = authenticity(train, generated, chunk_size=chunk_size)
    assert value == brute_force_authenticity(train, generated)
    assert 0.3 < value < 0.9  # a mix, not a degenerate 0 or 1


def test_copies_of_training_rows_are_never_authentic():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 16))
    copies = train[rng.integers(0, len(train), 1000)]
    assert authenticity(train, copies) == 0.0
    assert authenticity(torch.from_numpy(train).float(), torch.from_numpy(copies).float()) == 0.0  # torch in, too


def circle(n: int, rng) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(angle), np.sin(angle)], 1)


@pytest.mark.parametrize("sample, dim", [(circle, 1), (lambda n, rng: rng.uniform(0, 1, (n, 2)), 2)])
def test_fresh_samples_of_locally_uniform_data_have_the_closed_form_authenticity(sample, dim):
    """A fresh draw g is inauthentic exactly when g and its nearest training row are mutual nearest
    neighbours. For a homogeneous Poisson process that happens with probability V_ball / V_union
    (two unit balls, centres 1 apart; Pickard 1982): 2/3 in 1-D, π / (4π/3 + √3/2) = 0.6215 in 2-D."""
    mutual = {1: 2 / 3, 2: math.pi / (4 * math.pi / 3 + math.sqrt(3) / 2)}[dim]
    rng = np.random.default_rng(0)
    values = [authenticity(sample(3000, rng), sample(3000, rng)) for _ in range(4)]
    # 12,000 draws: binomial standard error 0.004; the unit square's edges bias 2-D by ~0.01.
    assert np.mean(values) == pytest.approx(1 - mutual, abs=0.02)


# -- the data-copying test C_T ----------------------------------------------------------------------


def reference_ct(train, test, generated, n_cells, seed, min_generated=20) -> float:
    """C_T written out from Meehan et al. 2020 with scipy's Mann-Whitney test and brute-force distances to the
    training rows of the same cell; the partition is the same seeded scikit-learn k-means."""
    km = KMeans(n_clusters=n_cells, n_init=10, random_state=seed).fit(train)
    t_cell, p_cell, q_cell = km.labels_, km.predict(test), km.predict(generated)
    weights, zs = [], []
    for k in range(n_cells):
        t, p, q = train[t_cell == k], test[p_cell == k], generated[q_cell == k]
        if len(q) <= min_generated or len(p) == 0:
            continue
        lq, lp = pairwise(q, t).min(1), pairwise(p, t).min(1)
        pvalue = stats.mannwhitneyu(lq, lp, alternative="less", method="asymptotic", use_continuity=False).pvalue
        weights.append(len(p) / len(test))
        zs.append(stats.norm.ppf(pvalue))
    return float(np.dot(weights, zs) / np.sum(weights))


def clusters(sizes, rng, dim=3) -> tuple[np.ndarray, np.ndarray]:
    """Rows from well-separated Gaussian clusters (centres 20 apart, std 1) of the given sizes, and their cluster."""
    centres = 20.0 * np.eye(len(sizes), dim)
    which = np.repeat(np.arange(len(sizes)), sizes)
    return centres[which] + rng.normal(size=(len(which), dim)), which


def test_ct_matches_an_independent_reference_with_unequal_cells():
    """Four clusters with unequal test shares (the weights), copies in one, near-copies in another, fresh
    samples in a third and only 20 copies in the last (too few: excluded)."""
    rng = np.random.default_rng(0)
    train, train_cluster = clusters([300, 200, 200, 100], rng)
    test, _ = clusters([150, 40, 80, 30], rng)
    in_cluster = lambda k: np.flatnonzero(train_cluster == k)  # noqa: E731
    generated = np.concatenate([
        train[rng.choice(in_cluster(0), 120)],  # copies
        train[rng.choice(in_cluster(1), 90)] + rng.normal(scale=0.3, size=(90, 3)),  # near-copies
        clusters([0, 0, 150, 0], rng)[0],  # fresh
        train[rng.choice(in_cluster(3), 20)],  # copies, but only 20: not in Π_τ
    ])
    result = data_copying_test(train, test, generated, n_cells=4, seed=0)
    assert result.c_t == pytest.approx(reference_ct(train, test, generated, n_cells=4, seed=0), abs=1e-7)
    assert result.used.sum() == 3 and sorted(result.n_generated) == [20, 90, 120, 150]
    copying = result.n_generated == 120
    assert result.z[copying] < -8 and (np.abs(result.z[result.used & ~copying]) < 3).all()
    assert not math.isclose(result.c_t, float(np.mean(result.z[result.used])), abs_tol=0.5)  # the weights matter


@pytest.mark.parametrize("seed", range(3))
def test_ct_matches_the_reference_where_cells_touch(seed):
    """One 2-D Gaussian cut into 6 cells: rows near a boundary have their nearest training row in the next
    cell, so measuring within the cell (the authors' code) and across the whole set differ here."""
    rng = np.random.default_rng(seed)
    train, test = rng.normal(size=(600, 2)), rng.normal(size=(200, 2))
    generated = np.concatenate([rng.normal(size=(500, 2)), train[rng.integers(0, 600, 300)]])  # fresh and copies
    result = data_copying_test(train, test, generated, n_cells=6, seed=seed)
    assert result.used.all() and result.c_t < -2
    assert result.c_t == pytest.approx(reference_ct(train, test, generated, n_cells=6, seed=seed), abs=1e-7)


def test_ct_of_copies_is_strongly_negative_and_of_fresh_draws_near_zero():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(1000, 16)), rng.normal(size=(400, 16))
    copies = train[rng.integers(0, len(train), 2000)]
    assert data_copying_test(train, test, copies).c_t < -10
    # Under H0 each cell's Z is about N(0, 1) and C_T averages ten of them: its spread is about 0.3.
    fresh = [data_copying_test(train, test, rng.normal(size=(2000, 16)), seed=s).c_t for s in range(5)]
    assert max(abs(v) for v in fresh) < 1.5
    wide = data_copying_test(train, test, 1.5 * rng.normal(size=(2000, 16))).c_t
    assert wide > 3  # further from the training data than unseen data: underfitting, positive


def test_ct_without_a_qualifying_cell_is_nan():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(200, 2)), rng.normal(size=(100, 2))
    result = data_copying_test(train, test, rng.normal(size=(30, 2)), n_cells=5)  # <= 20 generated in every cell
    assert math.isnan(result.c_t) and not result.used.any()


# -- the shipped gates on digits, in the domain classifier's features -------------------------------------


class Replay(torch.nn.Module):
    """A 'generator' that returns rows of ``x`` picked by z, with replacement."""

    def __init__(self, x):
        super().__init__()
        self.x, self.z_dim, self.c_dim = x, 4, 0

    def forward(self, z, c=None):
        return self.x[(z[:, 0].abs() * 1e4).long() % len(self.x)]


@pytest.fixture(scope="module")
def digits():
    """The default run's data and the pipeline's domain classifier (EvalConfig's epochs and seed)."""
    data = load_dataset(DataConfig(name="digits", resolution=16))
    cfg = EvalConfig()
    clf, _ = train_domain_classifier(data.x_train, data.y_train, data.x_test, data.y_test, data.num_classes,
                                     epochs=cfg.classifier_epochs, seed=cfg.seed)
    return data, clf, cfg


def shipped_gate_report(G, data, clf, cfg):
    metrics = evaluate_generator(G, data, n_samples=cfg.n_samples, classifier=clf, seed=cfg.seed)
    return metrics, evaluate_gates(metrics, load_run_config(PROJECT_PARAMS, dataset="digits").gates)


def test_a_generator_that_returns_training_images_fails_the_shipped_gates(digits):
    metrics, report = shipped_gate_report(Replay(digits[0].x_train), *digits)
    assert metrics["authenticity"] == 0.0 and metrics["data_copying_ct"] < -10
    # Every other gate is passed: training images are perfect samples, only the memorisation gates can tell.
    assert set(report.failed) == {"authenticity", "data_copying_ct"}


def test_real_held_out_images_pass_the_shipped_gates(digits):
    data, clf, cfg = digits
    metrics, report = shipped_gate_report(Replay(data.x_test), data, clf, cfg)
    assert report.passed, report.failed
    # C_T's held-out sample is the test split itself here; held-out images measured against half of it
    # (the other half replayed) make two independent real samples, which must pass as well.
    perm = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(0))
    ref, rest = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    half = PreparedDataset(data.name, data.kind, data.x_train, data.x_test[ref], data.y_train, data.y_test[ref],
                           class_names=data.class_names)
    metrics, _ = shipped_gate_report(Replay(data.x_test[rest]), half, clf, cfg)
    memorisation_gates = {m: g for m, g in load_run_config(PROJECT_PARAMS).gates.items()
                          if m in ("authenticity", "data_copying_ct")}
    assert len(memorisation_gates) == 2 and evaluate_gates(metrics, memorisation_gates).passed, metrics

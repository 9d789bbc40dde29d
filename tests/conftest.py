"""Shared fixtures. Every test runs offline with telemetry off and no writes outside tmp paths."""

from __future__ import annotations

import os

for _key, _value in {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "False",
    # One thread per thread pool (torch's and scikit-learn's libgomp, OpenBLAS), and OpenMP workers that
    # sleep when idle. The suite runs two pytest workers on two cores (README); each pool's default of one
    # thread per core would put four threads on two cores, and spinning OpenMP workers slow a loaded machine
    # out of proportion (docs/performance.md). Read once, when a library loads: so before torch (and numpy) is
    # imported here, and inherited by every process a test starts.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402 (after the thread settings above)
import torch  # noqa: E402

# Unit tests run tiny ops where intra-op threads only add contention (a 2-core CI box running
# other processes slowed the resume test 10x); one thread per test process is also deterministic.
torch.set_num_threads(1)


@pytest.fixture
def tiny_images():
    """A tiny labelled image set (digits at 16x16), built directly so model/trainer tests need no data package."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from ganmodels.data.base import PreparedDataset

    d = load_digits()
    x = torch.tensor(d.images[:300], dtype=torch.float32)[:, None] / 8.0 - 1.0  # (N, 1, 8, 8) in [-1, 1]
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False)
    y = torch.tensor(d.target[:300], dtype=torch.int64)
    return PreparedDataset("digits-tiny", "image", x[:240], x[240:], y[:240], y[240:], [str(i) for i in range(10)])


@pytest.fixture
def tiny_points():
    from ganmodels.data.base import PreparedDataset

    g = torch.Generator().manual_seed(0)
    angles = torch.arange(8) * (2 * torch.pi / 8)
    means = torch.stack([angles.cos(), angles.sin()], 1)
    idx = torch.randint(8, (512,), generator=g)
    x = means[idx] + 0.01 * torch.randn(512, 2, generator=g)
    return PreparedDataset("ring-tiny", "points", x[:400], x[400:], idx[:400], idx[400:], [f"mode{i}" for i in range(8)])


@pytest.fixture
def tiny_pairs():
    """Paired super-resolution data like digits-sr, built directly: 8x8 digit targets, 4x4 block-mean inputs."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from ganmodels.data.base import PreparedDataset

    d = load_digits()
    x = torch.tensor(d.images[:300], dtype=torch.float32)[:, None] / 8.0 - 1.0  # (N, 1, 8, 8) in [-1, 1]
    a = F.avg_pool2d(x, 2)  # (N, 1, 4, 4)
    y = torch.tensor(d.target[:300], dtype=torch.int64)
    return PreparedDataset("digits-sr-tiny", "image", x[:240], x[240:], y[:240], y[240:], [str(i) for i in range(10)],
                           a_train=a[:240], a_test=a[240:])


@pytest.fixture
def tiny_unpaired():
    """Two unpaired domains like digits-bold, built directly: digits at 16x16 (A) and other digits dilated (B)."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from ganmodels.data.base import PreparedDataset

    d = load_digits()
    x = torch.tensor(d.images[:400], dtype=torch.float32)[:, None] / 8.0 - 1.0
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False)  # (N, 1, 16, 16) in [-1, 1]
    y = torch.tensor(d.target[:400], dtype=torch.int64)
    a, b = x[:200], F.max_pool2d(x[200:], 3, 1, 1)
    data = PreparedDataset("digits-bold-tiny", "image", a[:160], a[160:], y[:160], y[160:200],
                           [str(i) for i in range(10)])
    data.b_train, data.b_test, data.yb_train, data.yb_test = b[:160], b[160:], y[200:360], y[360:]
    data.truth_a2b_test, data.truth_b2a_test = F.max_pool2d(a[160:], 3, 1, 1), x[360:]
    return data


@pytest.fixture
def data_of_kind(tiny_images, tiny_points, tiny_pairs, tiny_unpaired):
    """A tiny data set of every kind a model may accept (``model.accepts[0]`` picks one)."""
    from ganmodels.data.kinds import DataKind

    return {DataKind.LABELLED_IMAGES: tiny_images, DataKind.IMAGES: tiny_images, DataKind.POINTS: tiny_points,
            DataKind.PAIRED_IMAGES: tiny_pairs, DataKind.UNPAIRED_IMAGES: tiny_unpaired}


# The modules that take minutes, longest first (serial CI, 2026-11-29: the family default runs ~18 min, the
# mutation check ~8, the smoke project and the failure runs several each). Under the README's two workers
# (``-n 2``; pyproject's ``--dist loadfile --no-loadscope-reorder``) each module runs whole on one worker in
# collection order, so these start first and the many short modules fill in around them. Without this xdist
# queues modules by their number of tests, which put these few-test ones last: one worker then ran them alone
# for the last 20 minutes. Only the order changes; a serial run keeps pytest's.
LONGEST_FIRST = (
    "test_family_defaults.py",
    "test_mutation_check.py",
    "test_pipeline_e2e.py",
    "test_run_failures.py",
    "test_hostile_inputs.py",
    "test_tracking_server.py",
    "test_resume_e2e.py",
    "test_metrics_fid.py",
    "test_browser.py",
    "test_schedule.py",
)


def pytest_collection_modifyitems(config, items):
    if "PYTEST_XDIST_WORKER" not in os.environ:  # xdist's workers collect; the controller only schedules
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order

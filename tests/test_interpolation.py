"""Latent interpolation of noise generators (``NoiseGAN.interpolate``), against slerp written out in
numpy from its definition (Shoemake 1985) and the generator called directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganmodels
from tests.model_configs import SMALL


def numpy_slerp(z0: np.ndarray, z1: np.ndarray, t: float) -> np.ndarray:
    """sin((1 - t) W) / sin W * z0 + sin(t W) / sin W * z1, W the angle between z0 and z1 (one pair)."""
    omega = np.arccos(np.dot(z0, z1) / (np.linalg.norm(z0) * np.linalg.norm(z1)))
    return (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)


def endpoints(seed: int, rows: int, z_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The documented draw: z0 then z1, N(0, I), from a CPU generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, z_dim, generator=gen), torch.randn(rows, z_dim, generator=gen)


@pytest.mark.parametrize("name", ["dcgan", "cgan", "mlp2d"])
def test_each_row_walks_the_great_circle_between_two_latents(name):
    torch.manual_seed(0)
    model = ganmodels.build(name, SMALL[name])
    rows, steps = 3, 5
    G = model.generator
    G.train()
    walk, labels = model.interpolate(rows, steps, seed=7)
    assert G.training  # the walk runs G in eval mode and restores its mode
    z0, z1 = endpoints(7, rows, G.z_dim)
    if name == "cgan":
        assert labels.tolist() == [0, 1, 2]  # one class per row, the classes in turn
    else:
        assert labels is None
    G.eval()
    for r in range(rows):
        c = torch.full((steps,), int(labels[r])) if labels is not None else None
        path = np.stack([numpy_slerp(z0[r].double().numpy(), z1[r].double().numpy(), t)
                         for t in np.linspace(0, 1, steps)])
        np.testing.assert_allclose(path[0], z0[r].numpy(), atol=1e-6)  # the walk starts and ends on the draws
        np.testing.assert_allclose(path[-1], z1[r].numpy(), atol=1e-6)
        with torch.no_grad():
            expected = G(torch.from_numpy(path).float(), c)
        assert walk[r].shape == expected.shape == (steps, *expected.shape[1:])
        torch.testing.assert_close(walk[r], expected, atol=1e-5, rtol=1e-5)


def test_slerp_keeps_the_norm_of_gaussian_latents_where_a_line_loses_it():
    from ganmodels.families.noise import slerp

    z0, z1 = endpoints(0, 256, 128)
    middle = slerp(z0, z1, torch.tensor([0.5]))[:, 0]  # (256, 128)
    line = 0.5 * (z0 + z1)
    ends = torch.cat([z0, z1]).norm(dim=1).mean()
    assert abs(middle.norm(dim=1).mean() / ends - 1) < 0.02  # about sqrt(128) like the draws
    assert line.norm(dim=1).mean() / ends < 0.75  # about sqrt(128 / 2): where G never trained


def test_parallel_endpoints_fall_back_to_the_line_and_bad_sizes_are_refused():
    from ganmodels.families.noise import slerp

    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    walk = slerp(z, 2 * z, torch.linspace(0, 1, 3))
    assert torch.isfinite(walk).all()
    torch.testing.assert_close(walk[:, 1], 1.5 * z)
    model = ganmodels.build("dcgan", SMALL["dcgan"])
    with pytest.raises(ValueError, match="steps >= 2"):
        model.interpolate(2, 1)

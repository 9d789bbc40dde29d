"""Small configs of every registered model, so registry-driven tests take about a second per model.

A new model adds its entry here; tests/test_models.py fails until it does.
"""

SMALL = {
    "dcgan": {"g_width": 8, "d_width": 8, "resolution": 16},
    "cgan": {"g_width": 8, "d_width": 8, "resolution": 16, "c_dim": 10},
    "mlp2d": {"g_width": 16, "d_width": 16},
    "pix2pix": {"g_width": 8, "d_width": 8, "resolution": 8, "scale": 2},
    "cyclegan": {"g_width": 4, "d_width": 4, "n_blocks": 1, "resolution": 16, "pool_size": 3},
    "stylegan2": {"g_width": 8, "d_width": 8, "z_dim": 8, "w_dim": 8, "mapping_layers": 2, "resolution": 16,
                  "pl_every": 2},
}

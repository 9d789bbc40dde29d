"""ganmodels.inference: evaluation never leaves a network in the wrong mode, and batching changes nothing."""

import pytest
import torch
from torch import nn

from ganmodels.inference import apply_in_batches, eval_mode, module_device


def _net():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    net.train()
    net[1].eval()  # a frozen-statistics submodule: must stay in eval mode afterwards, not be switched to train
    return net


def test_eval_mode_restores_every_submodule_mode():
    net = _net()
    before = [m.training for m in net.modules()]
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before


def test_eval_mode_restores_after_an_error():
    net = _net()
    before = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(net):
            raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == before


def test_apply_in_batches_equals_one_call_and_handles_no_inputs():
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    out = apply_in_batches(net, x, batch_size=3, device=module_device(net))
    assert out.dtype == torch.float32 and out.shape == (10, 2)
    torch.testing.assert_close(out, net(x).detach().float())
    empty = apply_in_batches(net, x[:0], batch_size=3, device=torch.device("cpu"), out_shape=lambda: (2,))
    assert empty.shape == (0, 2)


def test_module_device_without_parameters_is_the_cpu():
    assert module_device(nn.ReLU()) == torch.device("cpu")

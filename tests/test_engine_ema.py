"""EMA update against hand values (slimssl.engine.ema)."""

import copy

import pytest
import torch
from torch import nn

from slimssl.engine.ema import ema_update_


def test_ema_by_hand():
    online = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    target = copy.deepcopy(online)
    with torch.no_grad():
        target[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        online[0].weight.copy_(torch.tensor([[3.0, 4.0]]))
        target[0].bias.fill_(0.0)
        online[0].bias.fill_(10.0)
        online[1].running_mean.fill_(7.0)
        online[1].num_batches_tracked.fill_(5)
    ema_update_(target, online, 0.9)
    assert target[0].weight.flatten().tolist() == pytest.approx([1.2, 2.2])  # 0.9*1 + 0.1*3, 0.9*2 + 0.1*4
    assert target[0].bias.tolist() == pytest.approx([1.0])
    assert target[1].running_mean.tolist() == [7.0]  # buffers copied
    assert int(target[1].num_batches_tracked) == 5
    assert online[0].weight.tolist() == [[3.0, 4.0]]  # online untouched
    ema_update_(target, online, 1.0)
    assert target[0].weight.flatten().tolist() == pytest.approx([1.2, 2.2])


def test_momentum_zero_copies_and_mismatch_is_refused():
    online = nn.Linear(3, 2)
    target = nn.Linear(3, 2)
    ema_update_(target, online, 0.0)
    assert torch.equal(target.weight, online.weight)
    with pytest.raises(ValueError):
        ema_update_(nn.Linear(3, 3), online, 0.9)

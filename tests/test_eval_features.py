"""Feature extraction per sub-network with a stand-in slimmable backbone."""

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from slimssl.eval.features import default_transform, extract_features
from slimssl.eval.linear_eval import FrozenFamily


@dataclass(frozen=True)
class Spec:  # stand-in for slimssl.nn.SubnetSpec
    width: float
    depth: tuple[int, ...] | None = None


class ToySlim(nn.Module):
    """model.subnet(spec) selects the leading width*8 output channels; model(x) -> (B, C_w)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 8)
        self.width = 1.0
        self.calls = 0
        self.modes: list[bool] = []

    @contextmanager
    def subnet(self, spec):
        old, self.width = self.width, spec.width
        try:
            yield self
        finally:
            self.width = old

    def forward(self, x):
        self.calls += 1
        self.modes.append(self.training)
        f = self.fc(x.mean(dim=(2, 3)))
        return f[:, : int(round(8 * self.width))]


def _images(n=10):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 4, 4, 3), dtype=torch.uint8, generator=g)  # NHWC


def test_shapes_batching_no_grad_and_mode_restored():
    m = ToySlim().train()
    imgs = _images(10)
    f = extract_features(m, Spec(0.5), imgs, batch_size=4)
    assert f.shape == (10, 4) and f.dtype == torch.float32 and not f.requires_grad
    assert m.calls == 3 and m.modes == [False] * 3
    assert m.training and m.width == 1.0
    m.eval()
    extract_features(m, Spec(1.0), imgs, batch_size=4)
    assert not m.training
    # equals a direct forward on the default-transformed batch
    with torch.no_grad():
        ref = m.fc(default_transform(imgs).mean(dim=(2, 3)))
    torch.testing.assert_close(extract_features(m, Spec(1.0), imgs.numpy(), batch_size=3), ref)


def test_mode_restored_on_error():
    m = ToySlim().train()
    with pytest.raises(RuntimeError):
        extract_features(m, Spec(1.0), torch.zeros(2, 5, 4, 4), batch_size=2)  # wrong channels
    assert m.training and m.width == 1.0


def test_loader_and_transform_and_recalibrate():
    m = ToySlim()
    imgs = _images(9)
    loader = [(imgs[i : i + 4], torch.zeros(len(imgs[i : i + 4]))) for i in range(0, 9, 4)]
    seen = []

    def recal(model, spec):
        seen.append((spec, model.width))
        model.train()  # may use train mode; extraction must still be in eval

    tf = lambda x: default_transform(x) * 2.0  # noqa: E731
    a = extract_features(m, Spec(0.25), loader, transform=tf, recalibrate=recal)
    b = extract_features(m, Spec(0.25), imgs, transform=tf, batch_size=100)
    torch.testing.assert_close(a, b)
    assert seen == [(Spec(0.25), 0.25)]
    assert all(mode is False for mode in m.modes)


def test_family_features_once_per_member_in_one_pass():
    m = ToySlim()
    specs = [Spec(1.0), Spec(0.5), Spec(0.5, (1, 1)), Spec(1.0)]
    feats = FrozenFamily(m, specs).features(_images(6), default_transform, batch_size=4)
    assert list(feats) == [Spec(1.0), Spec(0.5), Spec(0.5, (1, 1))]
    assert m.calls == 3 * 2  # every distinct member once per batch (6 images in batches of 4)
    assert feats[Spec(0.5)].shape == (6, 4)
    torch.testing.assert_close(feats[Spec(0.5)], feats[Spec(1.0)][:, :4])
    torch.testing.assert_close(feats[Spec(1.0)], extract_features(m, Spec(1.0), _images(6)))


def test_default_transform_layouts():
    nhwc = torch.full((2, 5, 5, 3), 255, dtype=torch.uint8)
    out = default_transform(nhwc)
    assert out.shape == (2, 3, 5, 5) and out.dtype == torch.float32 and float(out.max()) == 1.0
    nchw = np.zeros((2, 3, 5, 5), dtype=np.float32)
    assert default_transform(torch.from_numpy(nchw)).shape == (2, 3, 5, 5)

"""Slimmable ops vs their exported twins and vs hand slicing (Yu et al. 2019; docs/design.md
sec. 2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimssl.nn import (SlimBatchNorm1d, SlimBatchNorm2d, SlimConv2d, SlimLayerNorm, SlimLinear,
                        SlimmableModel, SubnetSpec, channels_at, recalibrate_bn, set_subnet)

WIDTHS = (1.0, 0.75, 0.5, 0.25)
ATOL = 1e-5


def _switch(module: nn.Module, width: float) -> None:
    set_subnet(module, SubnetSpec(width))


@pytest.mark.parametrize("width", WIDTHS)
def test_conv_matches_export_and_hand_slice(width):
    torch.manual_seed(0)
    conv = SlimConv2d(16, 24, 3, stride=2, padding=1, bias=True)
    _switch(conv, width)
    cin, cout = channels_at(16, width), channels_at(24, width)
    x = torch.randn(2, cin, 9, 9)
    y = conv(x)
    ref = F.conv2d(x, conv.weight[:cout, :cin], conv.bias[:cout], stride=2, padding=1)
    plain = conv.export()
    assert type(plain) is nn.Conv2d and plain.weight.shape == (cout, cin, 3, 3)
    assert y.shape == (2, cout, 5, 5)
    torch.testing.assert_close(y, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(plain(x), y, atol=ATOL, rtol=0)


@pytest.mark.parametrize("width", WIDTHS)
def test_depthwise_and_stem_conv(width):
    torch.manual_seed(1)
    dw = SlimConv2d(32, 32, 3, padding=1, groups=32, divisor=8)
    stem = SlimConv2d(3, 32, 3, padding=1, slim_in=False, divisor=8)
    _switch(dw, width)
    _switch(stem, width)
    c = channels_at(32, width, 8)
    img = torch.randn(2, 3, 8, 8)
    h = stem(img)
    assert h.shape[1] == c
    torch.testing.assert_close(h, F.conv2d(img, stem.weight[:c], padding=1), atol=ATOL, rtol=0)
    y = dw(h)
    torch.testing.assert_close(y, F.conv2d(h, dw.weight[:c], padding=1, groups=c),
                               atol=ATOL, rtol=0)
    plain = dw.export()
    assert plain.groups == c and plain.weight.shape == (c, 1, 3, 3)
    torch.testing.assert_close(plain(h), y, atol=ATOL, rtol=0)


@pytest.mark.parametrize("width", WIDTHS)
def test_linear_matches_export_and_hand_slice(width):
    torch.manual_seed(2)
    fc = SlimLinear(20, 12)
    head = SlimLinear(20, 7, slim_out=False)
    for m in (fc, head):
        _switch(m, width)
    cin, cout = channels_at(20, width), channels_at(12, width)
    x = torch.randn(3, cin)
    torch.testing.assert_close(fc(x), F.linear(x, fc.weight[:cout, :cin], fc.bias[:cout]))
    torch.testing.assert_close(fc.export()(x), fc(x), atol=ATOL, rtol=0)
    assert head(x).shape == (3, 7)
    torch.testing.assert_close(head.export()(x), head(x), atol=ATOL, rtol=0)


def test_wrong_input_width_is_explained():
    conv = SlimConv2d(8, 8, 1)
    _switch(conv, 0.5)
    with pytest.raises(RuntimeError, match="expects 4 input channels"):
        conv(torch.randn(1, 8, 2, 2))


def _warm(norm: nn.Module, shape, widths, steps: int = 3) -> None:
    """Give every width's running statistics non-trivial values."""
    norm.train()
    for w in widths:
        _switch(norm, w)
        for _ in range(steps):
            c = channels_at(shape[1], w)
            norm(torch.randn(shape[0], c, *shape[2:]) * 2 + 1)


@pytest.mark.parametrize("cls,shape", [(SlimBatchNorm2d, (4, 16, 5, 5)),
                                       (SlimBatchNorm1d, (6, 16))])
@pytest.mark.parametrize("mode", ["switchable", "universal"])
def test_batchnorm_matches_export(cls, shape, mode):
    torch.manual_seed(3)
    norm = cls(16, mode, WIDTHS)
    if mode == "universal":
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    _warm(norm, shape, WIDTHS if mode == "switchable" else (1.0,))
    for w in WIDTHS:
        _switch(norm, w)
        c = channels_at(16, w)
        x = torch.randn(shape[0], c, *shape[2:])
        if mode == "universal" and w != 1.0:
            norm.stats_width.fill_(w)  # pretend recalibrated: the slice of the stats is used
        norm.eval()
        plain = norm.export()
        assert type(plain) is norm.plain_cls and plain.num_features == c
        torch.testing.assert_close(plain.eval()(x), norm(x), atol=ATOL, rtol=0)
        if mode == "universal":
            ref = F.batch_norm(x, norm.running_mean[:c], norm.running_var[:c],
                               norm.weight[:c], norm.bias[:c], False, 0.0, norm.eps)
            torch.testing.assert_close(norm(x), ref, atol=ATOL, rtol=0)
        norm.train()
        torch.testing.assert_close(plain.train()(x), norm(x), atol=ATOL, rtol=0)


def test_switchable_bn_keeps_private_stats_per_width():
    norm = SlimBatchNorm2d(8, "switchable", WIDTHS)
    before = [{k: v.clone() for k, v in bn.state_dict().items()} for bn in norm.bn]
    _switch(norm, 0.75)
    norm.train()
    norm(torch.randn(4, 6, 3, 3) + 3)
    for i, bn in enumerate(norm.bn):
        changed = any(not torch.equal(v, before[i][k]) for k, v in bn.state_dict().items())
        assert changed == (i == 1), f"bn[{i}] changed={changed}"


def test_universal_bn_universal_stats_guard():
    norm = SlimBatchNorm2d(8, "universal")
    _switch(norm, 0.5)
    norm.eval()
    with pytest.raises(RuntimeError, match="recalibrate_bn"):
        norm(torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("width", [1.0, 0.6, 0.25])
def test_layernorm_matches_export(width):
    torch.manual_seed(4)
    ln = SlimLayerNorm(12)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    _switch(ln, width)
    c = channels_at(12, width)
    x = torch.randn(2, 5, c)
    ref = F.layer_norm(x, (c,), ln.weight[:c], ln.bias[:c], ln.eps)
    torch.testing.assert_close(ln(x), ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(ln.export()(x), ref, atol=ATOL, rtol=0)


class TinyNet(SlimmableModel):
    """conv-BN-ReLU-conv-BN-pool-linear: enough to test switching, gradients and calibration."""

    def __init__(self, norm: str = "switchable", widths=WIDTHS, width_range=None) -> None:
        super().__init__(widths, norm, width_range, stage_depths=(2, 3))
        self.conv1 = SlimConv2d(3, 16, 3, padding=1, slim_in=False)
        self.bn1 = SlimBatchNorm2d(16, norm, self.widths)
        self.conv2 = SlimConv2d(16, 24, 3, padding=1)
        self.bn2 = SlimBatchNorm2d(24, norm, self.widths)
        self.fc = SlimLinear(24, 5, slim_out=False)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x)).mean((2, 3))
        return self.fc(x)


def test_subnet_gradients_touch_only_its_slice():
    torch.manual_seed(5)
    net = TinyNet()
    with net.subnet(0.5):
        net(torch.randn(4, 3, 6, 6)).square().sum().backward()
    for conv, cout, cin in [(net.conv1, 8, 3), (net.conv2, 12, 8)]:
        grad = conv.weight.grad
        assert grad[:cout, :cin].abs().sum() > 0
        mask = torch.ones_like(grad, dtype=torch.bool)
        mask[:cout, :cin] = False
        assert grad[mask].abs().max() == 0
    g = net.fc.weight.grad
    assert g[:, :12].abs().sum() > 0 and g[:, 12:].abs().max() == 0
    for i, bn in enumerate(net.bn2.bn):  # only the active width's private BN learns
        assert (bn.weight.grad is not None) == (i == 2)


def test_universal_recalibration_equals_plain_bn_from_scratch():
    """Recalibrated statistics == a plain BN (momentum=None) run on the same batches."""
    torch.manual_seed(6)
    net = TinyNet("universal", widths=(1.0, 0.25), width_range=(0.25, 1.0))
    batches = [torch.randn(8, 3, 6, 6) * 1.5 + 0.3 for _ in range(3)]
    width = 0.6
    recalibrate_bn(net, width, batches)
    with net.subnet(width):
        conv1, conv2 = net.conv1.export(), net.conv2.export()
        c1, c2 = conv1.out_channels, conv2.out_channels
        bn1, bn2 = nn.BatchNorm2d(c1, momentum=None), nn.BatchNorm2d(c2, momentum=None)
        with torch.no_grad():
            for plain, slim, c in [(bn1, net.bn1, c1), (bn2, net.bn2, c2)]:
                plain.weight.copy_(slim.weight[:c])
                plain.bias.copy_(slim.bias[:c])
            for x in batches:
                bn2(conv2(F.relu(bn1(conv1(x)))))
        for plain, slim, c in [(bn1, net.bn1, c1), (bn2, net.bn2, c2)]:
            torch.testing.assert_close(slim.running_mean[:c], plain.running_mean,
                                       atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(slim.running_var[:c], plain.running_var,
                                       atol=1e-5, rtol=1e-5)
        net.eval()
        net(batches[0])  # evaluating the recalibrated width is now allowed
    with net.subnet(0.5), pytest.raises(RuntimeError, match="recalibrate"):
        net(batches[0])


def test_bad_widths_and_depths_name_the_allowed_values():
    switchable = TinyNet()
    with pytest.raises(ValueError, match=r"\[1.0, 0.75, 0.5, 0.25\]"):
        switchable.validate_spec(0.6)
    universal = TinyNet("universal", width_range=(0.25, 1.0))
    universal.validate_spec(0.6)
    with pytest.raises(ValueError, match=r"\[0.25, 1\]"):
        universal.validate_spec(0.1)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        switchable.validate_spec(SubnetSpec(1.0, (3, 3)))
    with pytest.raises(ValueError, match="2 stages"):
        switchable.validate_spec(SubnetSpec(1.0, (1, 1, 1)))


@pytest.mark.parametrize("slim,width", [(False, 0.5), (True, 0.97)])
def test_universal_bn_running_stats_follow_only_the_full_width(slim, width):
    """An unsliced universal BN (a head's output BN) or a width rounding to every channel must
    not write sub-network batches into the full width's statistics."""
    norm = SlimBatchNorm1d(16, "universal", slim=slim)
    _switch(norm, width)
    norm.train()
    norm(torch.randn(8, 16) + 5)
    assert norm.running_mean.abs().max() == 0 and int(norm.num_batches_tracked) == 0
    _switch(norm, 1.0)
    norm(torch.randn(8, 16) + 5)
    assert norm.running_mean.min() > 0 and float(norm.stats_width) == 1.0


@pytest.mark.parametrize("active_in", [4, 6, 8])
def test_channels_last_1x1_stride2_narrow_matches_nchw(active_in):
    """``train.channels_last`` (on in the ImageNet configs): torch's CPU backward of a 1x1
    stride-2 conv on NHWC input with 2-7 channels corrupts the heap, so SlimConv2d runs that
    case in NCHW. Output and gradients equal the NCHW computation (an F.conv2d on plain
    tensors, the reference)."""
    torch.manual_seed(0)
    conv = SlimConv2d(8, 16, 1, stride=2, bias=False)
    conv.width = active_in / 8
    x = torch.randn(4, active_in, 8, 8)
    ref_w = conv.weight.detach()[:conv.active_out, :active_in].clone().requires_grad_()
    ref_x = x.clone().requires_grad_()
    ref = F.conv2d(ref_x, ref_w, None, 2)
    ref.square().sum().backward()

    conv.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    out = conv(xc)
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xc.grad, ref_x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad[:conv.active_out, :active_in], ref_w.grad,
                               rtol=1e-5, atol=1e-5)
    assert conv.weight.grad[conv.active_out:].abs().sum() == 0

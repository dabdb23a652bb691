"""How accurate float32 gradients are in NHWC (``train.channels_last``) against NCHW, on this CPU.

The peer protocol's narrow ResNet-18 (stem 16, CIFAR stem, 32 px, batch 32), a softmax loss
over a fixed random projection of its features (T = 0.2, as MoCo's logits), gradients of every
parameter in float64 NCHW (the reference), float32 NCHW, float32 NHWC, and both again under
``torch.compile`` (``train.compile``); then single layers
(3x3 conv, 1x1 conv, BN; 32 channels, 16 px) the same way. Reports the largest relative error
(``||g - g_ref|| / ||g_ref||`` per tensor). BENCHMARKS.md section 1c.

Usage::

    python benchmarks/channels_last_precision.py

Writes ``benchmarks/results/channels_last_precision.json``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, make_config, temp_run_dir, write_result  # noqa: E402

NHWC = torch.channels_last
NCHW = torch.contiguous_format


def _grads(model, x, proj) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    y = model(x)
    torch.log_softmax((y @ proj.to(y.dtype)) / 0.2, 1)[:, 0].sum().backward()
    return {n: p.grad.detach().double().clone() for n, p in model.named_parameters()}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def network() -> dict:
    from slimssl.engine.build import build_backbone

    with temp_run_dir() as d:
        cfg = make_config(None, ["model.arch=resnet18", "model.widths=[1.0]",
                                 "model.base_width=16", "data.image_size=32"], d)
    torch.manual_seed(0)
    bb = build_backbone(cfg, init_weights=True).train()
    x, proj = torch.randn(32, 3, 32, 32), torch.randn(128, 10)
    ref = _grads(copy.deepcopy(bb).double(), x.double(), proj)
    out = {}
    for name, fmt, compiled in (("float32_nchw", NCHW, False), ("float32_nhwc", NHWC, False),
                                ("float32_nchw_compiled", NCHW, True),
                                ("float32_nhwc_compiled", NHWC, True)):
        m = copy.deepcopy(bb).to(memory_format=fmt)
        if compiled:  # train.compile: inductor's fused kernels (their own reduction order)
            m.compile()
        g = _grads(m, x.contiguous(memory_format=fmt), proj)
        errs = {n: _rel(g[n], ref[n]) for n in ref}
        worst = sorted(errs.items(), key=lambda kv: -kv[1])[:5]
        # over all parameters at once (a tensor whose exact gradient is near 0, such as a BN
        # bias feeding another BN, cannot inflate it)
        diff = torch.cat([(g[n] - ref[n]).flatten() for n in ref])
        whole = torch.cat([ref[n].flatten() for n in ref])
        convs = [n for n in ref if n.endswith("weight") and ref[n].dim() == 4]
        out[name] = {"max_rel_err": worst[0][1], "worst": worst,
                     "global_rel_err": (diff.norm() / whole.norm()).item(),
                     "max_rel_err_conv_weights": max(errs[n] for n in convs)}
    return out


def layers() -> dict:
    torch.manual_seed(0)
    mods = {"conv3x3": torch.nn.Conv2d(32, 32, 3, padding=1, bias=False),
            "conv1x1": torch.nn.Conv2d(32, 32, 1, bias=False),
            "conv3x3_stride2": torch.nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False),
            "bn": torch.nn.BatchNorm2d(32),
            # the network's worst tensor is a BN of its first stage: 16 channels, 32 px, batch 32
            "bn_16ch_32px_batch32": torch.nn.BatchNorm2d(16)}
    shapes = {"bn_16ch_32px_batch32": (32, 16, 32, 32)}
    out = {}
    for name, mod in mods.items():
        x = torch.randn(*shapes.get(name, (16, 32, 16, 16)))
        res = {}
        for tag, fmt, dt in (("ref", NCHW, torch.float64), ("float32_nchw", NCHW, torch.float32),
                             ("float32_nhwc", NHWC, torch.float32)):
            m = copy.deepcopy(mod).to(dt).to(memory_format=fmt)
            xx = x.to(dt).contiguous(memory_format=fmt).detach().requires_grad_()
            y = m(xx)
            (y * torch.linspace(-1, 1, y.numel(), dtype=dt).reshape(y.shape)).sum().backward()
            res[tag] = (y.detach().double(), xx.grad.double(), next(m.parameters()).grad.double())
        out[name] = {tag: dict(zip(("out", "grad_in", "grad_w"),
                                   (_rel(a, b) for a, b in zip(res[tag], res["ref"]))))
                     for tag in ("float32_nchw", "float32_nhwc")}
    return out


def bn_chain() -> dict:
    """BN -> ReLU -> global pool -> softmax loss, over elements per channel (N*H*W): where the
    network's error comes from (the first stages have the most elements per channel)."""
    torch.manual_seed(0)
    out = {}
    for n, hw in ((8, 8), (32, 32), (128, 32)):
        x = torch.randn(n, 16, hw, hw)
        mod = torch.nn.Sequential(torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1))
        grads = {}
        for tag, fmt, dt in (("ref", NCHW, torch.float64), ("float32_nchw", NCHW, torch.float32),
                             ("float32_nhwc", NHWC, torch.float32)):
            m = copy.deepcopy(mod).to(dt).to(memory_format=fmt)
            xx = x.to(dt).contiguous(memory_format=fmt).detach().requires_grad_()
            y = m(xx).flatten(1)
            w = torch.linspace(-1, 1, y.numel(), dtype=dt).reshape(y.shape)
            torch.log_softmax(y * w * 5, 1)[:, 0].sum().backward()
            grads[tag] = torch.cat([xx.grad.double().flatten()] +
                                   [p.grad.double().flatten() for p in m.parameters()])
        out[f"{n * hw * hw}"] = {tag: _rel(grads[tag], grads["ref"])
                                 for tag in ("float32_nchw", "float32_nhwc")}
    return out


def main() -> None:
    torch.set_num_threads(1)
    result = {"machine": machine_info(1), "network": network(), "layers": layers(),
              "bn_relu_pool_by_elements_per_channel": bn_chain()}
    for name, r in result["network"].items():
        print(f"narrow ResNet-18 gradients, {name}: relative error vs float64: all parameters "
              f"{r['global_rel_err']:.1e}, worst conv weight {r['max_rel_err_conv_weights']:.1e}, "
              f"worst tensor {r['max_rel_err']:.1e} ({r['worst'][0][0]})")
    for name, r in result["layers"].items():
        print(f"{name}: " + ", ".join(f"{tag} {max(v.values()):.1e}" for tag, v in r.items()))
    for count, r in result["bn_relu_pool_by_elements_per_channel"].items():
        print(f"BN -> ReLU -> pool, {count} elements per channel: " +
              ", ".join(f"{tag} {v:.1e}" for tag, v in r.items()))
    write_result("channels_last_precision", result)


if __name__ == "__main__":
    main()

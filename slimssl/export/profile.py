"""Parameters and MACs of each family member, counted on its exported plain model.

Counting the export (not the slimmable family with masks) is what makes the numbers honest: the
exported tensors are physically the member's weights (SlimCLR Table 1 reports the same
quantities: ResNet-50 at widths 1.0/0.75/0.5/0.25 has 25.6M/14.7M/6.9M/2.0M parameters and
4.1G/2.3G/1.1G/278M MACs).

MACs count the multiply-accumulates of convolutions, linear layers and the tensor products
between activations (the convention of those tables, and of fvcore, whose counts DeiT reports):

* a convolution costs ``output elements x (in_channels / groups) x kh x kw``;
* a linear layer ``in_features x out_features`` per output vector (per token in a ViT);
* attention (``F.scaled_dot_product_attention``) costs its two products, ``q k^T`` (``L x S x E``)
  and ``softmax(.) v`` (``L x S x Ev``) for every batch element and head;
  ``nn.MultiheadAttention`` (torchvision's ViT) adds its input and output projections, which it
  applies functionally (no ``nn.Linear`` call a hook could see);
* an explicit ``matmul``/``@``/``mm``/``bmm``/``baddbmm`` costs ``output elements x inner size``.

Norms, activations, softmax, pooling and additions are ignored. The products between activations
are caught with a ``TorchFunctionMode`` while the layers are counted by forward hooks, so nothing
is counted twice. ViT-Tiny (DeiT-Ti) at 224 px: 1.075 G without the attention products, 1.254 G
with them (12 blocks x 2 x 197^2 x 192 = 0.179 G; the same count for torchvision's
``VisionTransformer``, which attends through ``nn.MultiheadAttention``).
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from slimssl.export.extract import extract_subnet
from slimssl.nn.norm import _SlimBatchNorm
from slimssl.nn.spec import SubnetSpec, as_spec
from slimssl.nn.switch import SlimmableModel


def count_params(module: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def _input_shape(input_size: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(input_size, int):
        return (1, 3, input_size, input_size)
    shape = tuple(int(s) for s in input_size)
    if len(shape) == 2:
        return (1, 3, *shape)
    if len(shape) == 3:
        return (1, *shape)
    return shape


def _sdpa_macs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> int:
    """``q k^T`` and ``attn v`` of ``F.scaled_dot_product_attention``: query ``(..., L, E)``,
    key ``(..., S, E)``, value ``(..., S, Ev)``; the leading dims broadcast (grouped heads)."""
    batch = math.prod(torch.broadcast_shapes(query.shape[:-2], key.shape[:-2],
                                             value.shape[:-2]))
    length, source = query.shape[-2], key.shape[-2]
    return batch * length * source * (query.shape[-1] + value.shape[-1])


def _mha_macs(a: dict[str, Any]) -> int:
    """``F.multi_head_attention_forward`` (``nn.MultiheadAttention``): q/k/v input projections,
    the two attention products over all heads, and the output projection."""
    query, key, value = a["query"], a["key"], a["value"]
    embed = int(a["embed_dim_to_check"])
    length = query.shape[0]
    batch = query.shape[1] if query.dim() == 3 else 1
    source = key.shape[0] + (a.get("bias_k") is not None) + bool(a.get("add_zero_attn"))
    projections = batch * (length * embed * embed + key.shape[0] * key.shape[-1] * embed
                           + value.shape[0] * value.shape[-1] * embed + length * embed * embed)
    return projections + 2 * batch * length * source * embed


#: explicit products between tensors: (function, index of the left operand in its arguments)
_MATMULS = {torch.matmul: 0, torch.Tensor.matmul: 0, torch.Tensor.__matmul__: 0,
            torch.Tensor.__rmatmul__: 1, torch.mm: 0, torch.Tensor.mm: 0, torch.bmm: 0,
            torch.Tensor.bmm: 0, torch.baddbmm: 1, torch.Tensor.baddbmm: 1}


class _ProductCounter(TorchFunctionMode):
    """Counts the products between activations that no ``nn.Conv2d``/``nn.Linear`` hook sees.

    A mode is inactive while its own handler runs, so a counted function's inner calls (the
    products inside ``multi_head_attention_forward``) are not seen a second time.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is F.scaled_dot_product_attention:  # a builtin: no signature to bind
            qkv = [*args[:3], *(kwargs[n] for n in ("query", "key", "value")[len(args):])]
            self.total += _sdpa_macs(*qkv)
        elif func is F.multi_head_attention_forward:
            self.total += _mha_macs(inspect.signature(func).bind(*args, **kwargs).arguments)
        elif func in _MATMULS and isinstance(out, torch.Tensor):
            left = args[_MATMULS[func]]
            self.total += out.numel() * left.shape[-1]
        return out


@torch.no_grad()
def count_macs(module: nn.Module, input_size: int | Sequence[int] = 224) -> int:
    """Multiply-accumulates of one forward pass for ONE sample (conv, linear, attention; see the
    module docstring), via forward hooks and a function mode.

    Args:
        module: a plain module (e.g. from :func:`extract_subnet`).
        input_size: ``224`` -> (1, 3, 224, 224); (H, W), (C, H, W) or a full (N, C, H, W) shape
            (the count is divided by N).
    """
    shape = _input_shape(input_size)
    total = 0

    def conv_hook(m: nn.Conv2d, inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += output.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * m.in_features  # = in * out per vector (x tokens, if any)

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    products = _ProductCounter()
    try:
        try:  # shapes only, on meta tensors: no arithmetic, so counting is instant
            state = {name: torch.empty_like(t, device="meta") for name, t in
                     [*module.named_parameters(), *module.named_buffers()]}
            with products:
                functional_call(module, state, (torch.zeros(shape, device="meta"),))
        except (NotImplementedError, RuntimeError):  # an op without a meta kernel: really run
            total, products = 0, _ProductCounter()
            ref = next(module.parameters(), None)
            kwargs = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
            with products:
                module(torch.zeros(shape, **kwargs))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return (total + products.total) // shape[0]


@contextmanager
def statistics_ignored(model: nn.Module, width: float) -> Iterator[None]:
    """Let a universal model export ``width`` without recalibration: sizes ignore statistics.

    The statistics' width tag is restored afterwards, so later evaluation still demands a
    proper recalibration (:func:`slimssl.nn.recalibrate_bn`).
    """
    norms = [m for m in model.modules() if isinstance(m, _SlimBatchNorm) and m.mode == "universal"]
    saved = [m.stats_width.clone() for m in norms]
    try:
        for m in norms:
            m.stats_width.fill_(width)
        yield
    finally:
        for m, value in zip(norms, saved):
            m.stats_width.copy_(value)


def profile_family(model: SlimmableModel, specs: Sequence[SubnetSpec | float] | None = None,
                   input_size: int | Sequence[int] = 224) -> list[dict]:
    """Params and MACs of each member (default: ``model.family()``), counted on its export.

    Returns one dict per member: ``label``, ``width``, ``depth`` (list or None), ``params``,
    ``macs``.
    """
    specs = model.family() if specs is None else [model.validate_spec(as_spec(s)) for s in specs]
    rows = []
    for spec in specs:
        with statistics_ignored(model, spec.width):
            plain = extract_subnet(model, spec)
        rows.append({"label": spec.label, "width": spec.width,
                     "depth": list(spec.depth) if spec.depth else None,
                     "params": count_params(plain), "macs": count_macs(plain, input_size)})
    return rows


def _human(value: float, units: Sequence[tuple[float, str]]) -> str:
    for scale, suffix in units:
        if value >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.0f}"


def format_profile_table(rows: Sequence[dict]) -> str:
    """Plain-text table: member, width, depth, params (M), MACs (G)."""
    header = ("member", "width", "depth", "params (M)", "MACs (G)")
    lines = [(r["label"], f"{r['width']:.3g}",
              "-".join(map(str, r["depth"])) if r.get("depth") else "full",
              f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e9:.3f}") for r in rows]
    cols = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{cols[0]}}}" if i == 0 else f"{{:>{c}}}" for i, c in enumerate(cols))
    out = [fmt.format(*header), "  ".join("-" * c for c in cols)]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)

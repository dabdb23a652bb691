"""Bring your own backbone: a slimmable twin of a torchvision or timm network, its weights in.

``from_torchvision(model, widths=...)`` (ResNet, MobileNetV2, MobileNetV3-Large/-Small) and
``from_timm(model, widths=...)`` (timm's plain ResNets) build the slimmable architecture with
the same layer names and channel counts and copy every weight in
(:func:`slimssl.nn.transplant.load_single_network`): shared convolutions and linears hold the
given tensors, and every width's private BatchNorm gets the leading channels of the given one,
so the full-width member *is* the given network and a width-``w`` member starts as its leading
channel slice. SSL can then start from a supervised checkpoint (DSPNet appendix 0.B initialises
slimmable training from one pre-trained network the same way).

The twin mirrors the classifier: a network with ``fc`` / ``classifier[-1]`` set to
``nn.Identity()`` gives a backbone returning pooled features (``num_classes=0``), the usual start
for self-supervised training. Nothing is guessed silently: after copying, the twin's full-width
member is run against the given network in eval mode and any difference beyond float rounding
(another activation, anti-aliasing, attention, a deep stem...) is an error naming the cause.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from slimssl.models.registry import create
from slimssl.models.resnet import SlimResNet
from slimssl.nn.norm import _SlimBatchNorm
from slimssl.nn.spec import WIDTH_TOL
from slimssl.nn.switch import SlimmableModel
from slimssl.nn.transplant import load_network_state, load_single_network

__all__ = ["from_timm", "from_torchvision", "load_backbone_weights"]

# a classifier's keys a backbone (num_classes=0) leaves out: torchvision / timm ResNets' fc,
# MobileNetV2's classifier.1, MobileNetV3's classifier.3 (its classifier.0 is in the backbone)
_HEAD_PREFIXES = ("fc.", "classifier.")
DEFAULT_WIDTHS = (1.0, 0.75, 0.5, 0.25)  # SlimCLR's family (Table 1)
_MBV3_BLOCKS = {15: "mobilenet_v3_large", 11: "mobilenet_v3_small"}  # Howard et al. Tables 1-2


def from_torchvision(model: nn.Module, widths: Sequence[float] = DEFAULT_WIDTHS,
                     norm: str = "switchable", **family: Any) -> SlimmableModel:
    """The slimmable twin of a torchvision ResNet, MobileNetV2 or MobileNetV3, weights copied.

    Args:
        model: ``torchvision.models.resnet50(weights=...)`` and the like (the CIFAR variant with
            ``conv1`` a 3x3 stride-1 conv and ``maxpool = nn.Identity()`` is recognised too).
        widths / norm: the family to build (must contain width 1.0: the given network).
        family: further arguments of the slimmable model (``width_range``, ``depth_choices``).
    """
    import torchvision

    if isinstance(model, torchvision.models.ResNet):
        if model.groups != 1 or model.base_width != 64:
            raise NotImplementedError("ResNeXt / wide ResNets (groups or width_per_group other "
                                      "than 1 / 64) have no slimmable twin in slimssl")
        return _resnet_twin(model, widths, norm, family)
    if isinstance(model, (torchvision.models.MobileNetV2, torchvision.models.MobileNetV3)) \
            and not isinstance(model.classifier, nn.Sequential):
        raise NotImplementedError("keep torchvision's classifier Sequential; for a backbone "
                                  "set its last layer to nn.Identity() (classifier[-1])")
    if isinstance(model, torchvision.models.MobileNetV2):
        twin = create("mobilenet_v2", widths=widths, norm=norm, stem=_mobilenet_stem(model),
                      num_classes=_classes(model.classifier[-1]),
                      dropout=float(model.classifier[0].p), **family)
        return _copy_and_verify(model, twin)
    if isinstance(model, torchvision.models.MobileNetV3):
        blocks = sum(type(m).__name__ == "InvertedResidual" for m in model.features)
        if blocks not in _MBV3_BLOCKS:
            raise NotImplementedError(f"a MobileNetV3 with {blocks} bottlenecks is neither the "
                                      "Large (15) nor the Small (11) model")
        twin = create(_MBV3_BLOCKS[blocks], widths=widths, norm=norm,
                      stem=_mobilenet_stem(model), num_classes=_classes(model.classifier[-1]),
                      dropout=float(model.classifier[2].p), **family)
        return _copy_and_verify(model, twin)
    raise NotImplementedError(f"from_torchvision converts ResNet, MobileNetV2 and MobileNetV3, "
                              f"not {type(model).__name__}")


def from_timm(model: nn.Module, widths: Sequence[float] = DEFAULT_WIDTHS,
              norm: str = "switchable", **family: Any) -> SlimResNet:
    """The slimmable twin of a timm ResNet (``timm.create_model("resnet50", ...)``), weights
    copied. Plain ResNets only: the ``d``/``s``/``t`` variants (deep stem, average-pool
    shortcuts), SE/ECA attention, anti-aliasing, other activations and norms have no slimmable
    twin and are refused."""
    if importlib.util.find_spec("timm") is None:
        raise ValueError("from_timm needs timm: pip install 'slimssl[timm]'")
    import timm

    if not isinstance(model, timm.models.ResNet):
        raise NotImplementedError(f"from_timm converts timm ResNets, not {type(model).__name__}")
    if not isinstance(model.conv1, nn.Conv2d):
        raise NotImplementedError("timm ResNets with a deep stem (resnet*d, resnet*s, ...) have "
                                  "no slimmable twin: slimssl's stem is one 7x7 conv")
    pool = getattr(model.global_pool, "pool_type", "avg")
    if pool != "avg":
        raise NotImplementedError(f"global pool {pool!r}: slimssl ResNets average-pool")
    return _resnet_twin(model, widths, norm, family)


def _classes(head: nn.Module) -> int:
    return head.out_features if isinstance(head, nn.Linear) else 0


def _mobilenet_stem(model: nn.Module) -> str:
    return "imagenet" if model.features[0][0].stride[0] == 2 else "cifar"


def _resnet_twin(model: nn.Module, widths: Sequence[float], norm: str,
                 family: dict[str, Any]) -> SlimResNet:
    """Torchvision and timm ResNets share the layout (conv1, bn1, maxpool, layer1-4, fc)."""
    kinds = {type(model.layer1[0]).__name__}
    if not kinds <= {"BasicBlock", "Bottleneck"}:
        raise NotImplementedError(f"ResNet blocks of type {kinds} have no slimmable twin")
    conv1 = model.conv1
    if (conv1.kernel_size, conv1.stride) == ((7, 7), (2, 2)) and \
            isinstance(model.maxpool, nn.MaxPool2d):
        stem = "imagenet"
    elif (conv1.kernel_size, conv1.stride) == ((3, 3), (1, 1)) and \
            isinstance(model.maxpool, nn.Identity):
        stem = "cifar"
    else:
        raise NotImplementedError(
            f"stem {conv1.kernel_size}/{conv1.stride} with {type(model.maxpool).__name__}: "
            "slimssl ResNets have a 7x7/2 conv + max-pool or a 3x3/1 conv without pool")
    block = "basic" if kinds == {"BasicBlock"} else "bottleneck"
    layers = [len(getattr(model, f"layer{i}")) for i in range(1, 5)]
    twin = SlimResNet(block, layers, widths=widths, norm=norm, stem=stem,
                      num_classes=_classes(model.fc), base_width=conv1.out_channels, **family)
    return _copy_and_verify(model, twin)


def _copy_and_verify(model: nn.Module, twin: SlimmableModel) -> Any:
    """Copy ``model`` into ``twin`` and check the full-width member computes what it does."""
    if twin.full_spec.width < 1.0 - WIDTH_TOL:
        raise ValueError(f"widths {list(twin.widths)} lack 1.0: the given network is the "
                         "family's full-width member, so the family must contain width 1.0")
    twin_keys = set(twin.state_dict())
    norms = [n for n, m in twin.named_modules() if isinstance(m, _SlimBatchNorm)]
    extra = [k for k in model.state_dict() if k not in twin_keys
             and not any(k.startswith(f"{n}.") for n in norms)]
    if extra:
        raise NotImplementedError(f"{type(model).__name__} has layers its slimmable twin lacks "
                                  f"({', '.join(extra[:4])}{', ...' if len(extra) > 4 else ''})")
    load_single_network(twin, model)
    reference = next(model.parameters())
    twin.to(device=reference.device, dtype=reference.dtype)
    _verify(model, twin)
    return twin.train(model.training)  # the twin is in the given network's mode


@torch.no_grad()
def _verify(model: nn.Module, twin: SlimmableModel, tolerance: float = 1e-4) -> None:
    size = 32 if getattr(twin, "stem", "imagenet") == "cifar" else 64
    p = next(model.parameters())
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(p)
    training = model.training
    model.eval()
    twin.eval()
    try:
        expected = model(x)
        with twin.subnet(twin.full_spec):
            got = twin(x)
    finally:
        model.train(training)
    diff = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    if diff > tolerance * max(1.0, float(expected.abs().max())):
        raise NotImplementedError(
            f"the slimmable twin does not reproduce {type(model).__name__} (max |diff| "
            f"{diff:.3g}, shapes {tuple(got.shape)} vs {tuple(expected.shape)}): the network has "
            "a part slimssl's architecture lacks (another activation or norm, anti-aliasing, "
            "attention, a modified forward)")


def _read_state(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such weights file (.safetensors, or a .pt/.pth "
                                    "state_dict)")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):  # training checkpoints: {"state_dict": {...}}
        if isinstance(state.get(wrapper), Mapping):
            state = dict(state[wrapper])
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


@torch.no_grad()
def load_backbone_weights(family: SlimmableModel,
                          source: str | Path | Mapping[str, torch.Tensor]) -> list[str]:
    """Initialise every member of ``family`` from one network's weights given as a state dict
    with torchvision / timm layer names: a ``.safetensors`` file, a ``.pt``/``.pth`` file (read
    with ``weights_only=True``) or a mapping. The full-width member becomes that network and
    narrower members its leading channels (``model.init_from`` of a pre-training config).

    Returns the classifier keys left out (``fc.*``/``classifier.*`` the backbone lacks); any
    other key the family lacks is an error, since it means another architecture. Unlike
    :func:`from_torchvision` this cannot run the network to compare outputs (there is only a
    state dict): activations and forward must be the family's.
    """
    state = _read_state(source)
    norms = [n for n, m in family.named_modules() if isinstance(m, _SlimBatchNorm)]
    known = set(family.state_dict())
    extra = [k for k in state if k not in known and not any(k.startswith(f"{n}.") for n in norms)]
    foreign = [k for k in extra if not k.startswith(_HEAD_PREFIXES)]
    if foreign:
        raise ValueError(f"the weights have layers the {type(family).__name__} lacks "
                         f"({', '.join(foreign[:4])}{', ...' if len(foreign) > 4 else ''}): "
                         "they are from another architecture; check model.arch / model.stem")
    load_network_state(family, state)
    return extra

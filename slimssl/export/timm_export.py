"""Exported ResNet members as timm models: ``timm.create_model`` arguments plus the weights.

A member is written as a timm model folder: ``model.safetensors`` (the exported member's
``state_dict``; parameter names coincide with timm's ResNet) and ``config.json`` in timm's own
layout (``architecture``, ``model_args``, ``pretrained_cfg``), so either of

    timm.create_model("local-dir:EXPORT/w1.00", pretrained=True)
    timm.create_model("resnet50", layers=[3, 4, 6, 3], channels=[64, 128, 256, 512],
                      num_classes=0, checkpoint_path="EXPORT/w1.00/model.safetensors")

rebuilds it without slimssl (the second call is stored verbatim under ``slimssl.create_model``).

What timm's ResNet can express (``timm.models.resnet.ResNet``, timm 1.0): a 7x7/2 stem with
max-pool whose width is fixed at 64 channels (``inplanes = 64`` unless ``stem_type='deep'``), any
per-stage block counts (``layers``) and per-stage widths (``channels``, the blocks' inner width;
outputs are ``channels * expansion``), any classifier (``num_classes``; 0 gives pooled features).
So every member with 64 stem channels and the ImageNet stem is exported exactly: in practice the
full-width member of a standard ResNet-18/34/50/101 family, at any depth of a DSPNet family.
Not expressible, and refused with an error saying why:

* members narrower than width 1 (their stem has fewer than 64 channels), and families whose base
  width is not 64 (``resnet10_narrow``: 32);
* the CIFAR stem (3x3 stride-1 conv, no max-pool): timm's stems all downsample 4x;
* stages whose output is not ``expansion`` x their inner width (odd widths of bottlenecks).

Those members load without slimssl through torchvision's classes instead
(:mod:`slimssl.export.torchvision_builder`, quoted in the model card of ``--format hub``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

__all__ = ["NotExpressibleError", "create_model_call", "load_timm", "require_timm",
           "check_members", "save_timm", "timm_args", "timm_available", "timm_config"]

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
# timm's registered ResNets whose factory fixes the block type (``block=`` is a class and cannot
# travel in JSON): resnet18 = BasicBlock, resnet50 = Bottleneck; the kwargs override the rest.
_TIMM_ARCH = {"basic": ("resnet18", 1), "bottleneck": ("resnet50", 4)}
_TIMM_STEM = 64  # timm.models.resnet.ResNet: inplanes = 64 for the single-conv stem


class NotExpressibleError(ValueError):
    """The member cannot be built by ``timm.create_model``; the message says why and what to use."""


def timm_available() -> bool:
    return importlib.util.find_spec("timm") is not None


def require_timm() -> None:
    if not timm_available():
        raise ValueError("loading a timm export needs timm: pip install 'slimssl[timm]'")


def _refuse(reason: str) -> NotExpressibleError:
    return NotExpressibleError(
        f"this member cannot be built by timm.create_model: {reason}. Export it with --format "
        "safetensors or hub instead: it loads without slimssl through torchvision's classes "
        "(the builder in the hub model card) or with slimssl.hub.load")


def timm_args(arch_name: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(model_name, kwargs)`` for ``timm.create_model`` building the plain ResNet ``config``
    (a :class:`~slimssl.export.resnet.PlainResNet` ``arch_config``); raises
    :class:`NotExpressibleError` naming the first thing timm cannot express."""
    if arch_name != "resnet":
        raise NotImplementedError(
            f"timm export covers ResNets only, not {arch_name!r} (timm's MobileNets use other "
            "layer names and channel rules); use --format safetensors or hub")
    if config["stem"] != "imagenet":
        raise _refuse("it has the CIFAR stem (3x3 stride-1 conv, no max-pool) and every "
                      "timm ResNet stem downsamples 4x (7x7/2 conv + max-pool, or a deep stem)")
    if config["stem_channels"] != _TIMM_STEM:
        raise _refuse(f"its stem has {config['stem_channels']} channels and timm's ResNet "
                      f"fixes the 7x7 stem at {_TIMM_STEM} (inplanes = 64 in "
                      "timm.models.resnet.ResNet); only full-width members of a base-64 family "
                      "(ResNet-18/34/50/101) have it")
    model_name, expansion = _TIMM_ARCH[config["block"]]
    inplanes = _TIMM_STEM
    for i, (mid, out, down) in enumerate(zip(config["stage_mid"], config["stage_out"],
                                             config["stage_downsample"])):
        if out != expansion * mid:
            raise _refuse(f"stage {i + 1} has {mid} inner and {out} output channels; "
                          f"timm's {config['block']} blocks output {expansion} x the inner width")
        if down != (i > 0 or inplanes != out):  # timm: stride != 1 or inplanes != out
            raise _refuse(f"stage {i + 1}'s projection shortcut differs from timm's rule")
        inplanes = out
    kwargs = {"layers": list(config["stage_depths"]), "channels": list(config["stage_mid"]),
              "num_classes": int(config["num_classes"])}
    return model_name, kwargs


def create_model_call(model_name: str, kwargs: dict[str, Any], weights: str = WEIGHTS_FILE) -> str:
    """The ``timm.create_model(...)`` line rebuilding a member, as text."""
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"timm.create_model({model_name!r}, {args}, checkpoint_path={weights!r})"


def timm_config(module: nn.Module, mean, std, image_size: int) -> dict[str, Any]:
    """timm's ``config.json`` for the plain module (``local-dir:``/``hf-hub:`` loading)."""
    model_name, kwargs = timm_args(module.arch_name, module.arch_config)
    return {
        "architecture": model_name,
        "num_classes": kwargs["num_classes"],
        "num_features": int(module.num_features),
        "model_args": kwargs,
        "pretrained_cfg": {
            # slimssl evaluates at the stored resolution without a crop (data.views.EvalTransform)
            "input_size": [3, int(image_size), int(image_size)], "crop_pct": 1.0,
            "interpolation": "bilinear", "mean": [float(v) for v in mean],
            "std": [float(v) for v in std], "first_conv": "conv1", "classifier": "fc",
        },
        "slimssl": {"create_model": create_model_call(model_name, kwargs)},
    }


def save_timm(module: nn.Module, directory: str | Path, mean, std, image_size: int) -> Path:
    """Write ``config.json`` (timm layout) and ``model.safetensors`` into ``directory``."""
    config = timm_config(module, mean, std, image_size)  # refuses before anything is written
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return directory


def load_timm(directory: str | Path) -> nn.Module:
    """Build the timm model from ``config.json``'s exact arguments and load the weights
    strictly (eval mode): what a user without slimssl runs."""
    require_timm()
    import timm

    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    model = timm.create_model(config["architecture"], pretrained=False, **config["model_args"],
                              checkpoint_path=str(directory / WEIGHTS_FILE))
    return model.eval()


def check_members(backbone: nn.Module, specs) -> None:
    """Refuse, before anything is written, a family member timm cannot build."""
    from slimssl.export.resnet import plain_config
    from slimssl.models.resnet import SlimResNet

    if not isinstance(backbone, SlimResNet):
        raise NotImplementedError(
            f"timm export covers ResNets only, not {type(backbone).__name__} (timm's MobileNets "
            "use other layer names and channel rules); use --format safetensors or hub")
    for spec in specs:
        with backbone.subnet(spec):
            try:
                timm_args("resnet", plain_config(backbone, spec))
            except NotExpressibleError as err:
                raise NotExpressibleError(f"member {spec.label}: {err}") from None

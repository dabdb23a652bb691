"""Frozen-feature extraction of one sub-network.

Every evaluation in slimssl (kNN, linear probes on cached features) starts from the
pooled backbone features of each sub-network. A whole family is embedded in one pass over the
images by :class:`slimssl.eval.linear_eval.FrozenFamily` (and cached on disk by
:mod:`slimssl.eval.feature_store`), which is what makes scoring all widths of a slimmable
network (SlimCLR, Zhao et al.; DSPNet, Wang et al.) cheap; :func:`extract_features` is the
single-member form.

Model interface relied upon:

* ``model.subnet(spec)`` -- a context manager selecting the sub-network ``spec``
  (a ``slimssl.nn.SubnetSpec``; typed loosely here). ``spec=None`` means "no
  selection" and is allowed for plain models.
* ``model(x)`` -- pooled features ``(B, C_w)``.
* optional ``recalibrate(model, spec)`` -- run inside the sub-network context before
  extraction, e.g. to re-estimate BatchNorm statistics for universally slimmable
  networks (US-Nets, Yu & Huang 2019), whose BN statistics are not stored per width.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

__all__ = ["default_transform", "extract_features"]

Transform = Callable[[torch.Tensor], torch.Tensor]
Recalibrate = Callable[[nn.Module, Any], None]


def default_transform(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (NHWC or NCHW) -> float NCHW in [0, 1]; float input passes through.

    NHWC is detected by a last dimension of 1 or 3 with a second dimension that is not.
    """
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return x.contiguous()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _subnet_context(model: nn.Module, spec: Any) -> contextlib.AbstractContextManager:
    if spec is None:
        return contextlib.nullcontext()
    if not hasattr(model, "subnet"):
        raise TypeError("model has no .subnet(spec) context manager; pass spec=None")
    return model.subnet(spec)


def _iter_batches(data: Any, batch_size: int) -> Iterable[torch.Tensor]:
    """Batches of inputs from a tensor/array of images or from a loader/iterable.

    Loader items may be a tensor or a tuple/list/dict whose first item (or ``"image"``)
    is the input; labels are ignored. The loader must yield the same order on every
    pass (no shuffling), since features of different sub-networks are compared by row.
    """
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        for start in range(0, data.shape[0], batch_size):
            yield data[start : start + batch_size]
        return
    for item in data:
        if isinstance(item, dict):
            item = item["image"]
        elif isinstance(item, (tuple, list)):
            item = item[0]
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(item)
        yield item


@torch.no_grad()
def extract_features(
    model: nn.Module,
    spec: Any,
    images_or_loader: Any,
    transform: Transform | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    recalibrate: Recalibrate | None = None,
) -> torch.Tensor:
    """Pooled features ``(N, C_w)`` (float32, CPU) of sub-network ``spec``.

    ``images_or_loader`` is a uint8/float tensor or numpy array of images (batched
    here by ``batch_size``) or an iterable of batches. ``transform`` maps a batch on
    ``device`` to model input (default: :func:`default_transform`). The model runs in
    eval mode under ``torch.no_grad()``; its previous train/eval mode is restored
    afterwards, also on error. ``recalibrate(model, spec)``, if given, runs inside the
    sub-network context before extraction (it may use train mode; eval is set after).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    dev = torch.device(device) if device is not None else _model_device(model)
    tf = transform if transform is not None else default_transform
    was_training = model.training
    chunks: list[torch.Tensor] = []
    try:
        with _subnet_context(model, spec):
            if recalibrate is not None:
                recalibrate(model, spec)
            model.eval()
            for batch in _iter_batches(images_or_loader, batch_size):
                x = tf(batch.to(dev, non_blocking=True))
                out = model(x)
                if out.ndim != 2:
                    out = out.flatten(1)
                chunks.append(out.float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("no data to extract features from")
    return torch.cat(chunks, 0)

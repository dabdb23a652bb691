"""ONNX export of a plain sub-network through the exporter torch ships (``torch.onnx``,
dynamo-based), and an onnxruntime check of the file.

Why optional: the exporter needs the ``onnx`` and ``onnxscript`` packages and the check needs
``onnxruntime``; most users never deploy through ONNX, so they come with ``pip install
'slimssl[onnx]'`` rather than as dependencies.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

INPUT_NAME, OUTPUT_NAME = "images", "features"
# one self-contained .onnx file unless the weights approach protobuf's 2 GiB message limit, above
# which they go to a side file (model.onnx.data) as the exporter requires
_ONE_FILE_LIMIT = 1 << 30


def onnx_available() -> bool:
    """Whether the exporter's packages are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def require_onnx() -> None:
    """Raise a one-line error saying how to install the exporter's packages."""
    if not onnx_available():
        raise ValueError("ONNX export needs the optional packages onnx and onnxscript: "
                         "pip install 'slimssl[onnx]' (or leave onnx out of --format)")


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def export_onnx(module: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Write ``module`` (eval mode) as ONNX with a symbolic batch dimension (input
    ``images``, output ``features``)."""
    require_onnx()
    path = Path(path)
    batch = torch.export.Dim("batch")
    weight_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    torch.onnx.export(module.eval(), (example,), str(path), dynamo=True, verbose=False,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_shapes=({0: batch},),
                      external_data=weight_bytes > _ONE_FILE_LIMIT)
    return path


def run_onnx(path: str | Path, images: torch.Tensor) -> torch.Tensor:
    """Outputs of the ONNX file on ``images`` with onnxruntime's CPU provider."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.detach().cpu().numpy()})
    return torch.from_numpy(out)

"""Write one exported sub-network in the requested deployment formats, and prove each file
computes what the model does.

Every file is read back (safetensors through :func:`load_subnet`, TorchScript through
``torch.jit.load``, ONNX through onnxruntime when installed) and run on a fixed input; the
largest absolute difference from the in-memory model is returned, and a file that disagrees
beyond ``tolerance`` is an error, so a broken export never reaches a device silently.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from slimssl.export.io import load_subnet, save_subnet
from slimssl.export.onnx_export import export_onnx, onnxruntime_available, require_onnx, run_onnx
from slimssl.export.timm_export import load_timm, save_timm, timm_available
from slimssl.export.torchscript import script_subnet

FORMATS = ("safetensors", "torchscript", "onnx", "timm")
FILES = {"safetensors": "model.safetensors", "torchscript": "model.torchscript.pt",
         "onnx": "model.onnx", "timm": "config.json"}
# what to install when a format was written but nothing here can run it back
RUNTIME_HINT = {"onnx": "pip install onnxruntime", "timm": "pip install 'slimssl[timm]'"}


def parse_formats(text: str) -> list[str]:
    """``"safetensors,onnx"`` -> ``["safetensors", "onnx"]``; unknown names and a missing ONNX
    extra are reported before any work."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"unknown export format(s) {unknown or [text]}; choose from "
                         f"{', '.join(FORMATS)} (comma-separated)")
    if "onnx" in formats:
        require_onnx()
    return list(dict.fromkeys(formats))


def _write_and_reload(fmt: str, plain: nn.Module, directory: Path, example: torch.Tensor,
                      extra: dict) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Write ``fmt`` and return a function running the file back (None: no runtime here)."""
    path = directory / FILES[fmt]
    if fmt == "safetensors":
        save_subnet(plain, directory, extra)
        return load_subnet(directory)
    if fmt == "torchscript":
        with warnings.catch_warnings():  # TorchScript's deprecation notice: offered knowingly
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated",
                                    category=FutureWarning)
            script_subnet(plain, path)
            return torch.jit.load(str(path))
    if fmt == "timm":  # extra: the run's normalisation and resolution (timm's pretrained_cfg)
        save_timm(plain, directory, extra["mean"], extra["std"], extra["image_size"])
        return load_timm(directory) if timm_available() else None
    export_onnx(plain, path, example)
    return (lambda x: run_onnx(path, x)) if onnxruntime_available() else None


@torch.no_grad()
def export_member(plain: nn.Module, directory: str | Path, formats: Sequence[str],
                  example: torch.Tensor, extra: dict | None = None,
                  tolerance: float = 1e-4) -> dict[str, float | None]:
    """Write ``plain`` into ``directory`` in each format; return ``{format: max |diff|}``
    (None where no runtime could check the file). Raises ``RuntimeError`` beyond
    ``tolerance`` (relative to the output's scale)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plain = plain.eval()
    expected = plain(example)
    scale = max(float(expected.abs().max()), 1.0)
    checks: dict[str, float | None] = {}
    for fmt in formats:
        run = _write_and_reload(fmt, plain, directory, example, extra or {})
        if run is None:
            checks[fmt] = None
            continue
        diff = float((run(example) - expected).abs().max())
        if diff > tolerance * scale:
            raise RuntimeError(f"{directory / FILES[fmt]} disagrees with the model by {diff:.3g} "
                               f"(tolerance {tolerance * scale:.3g}); the {fmt} export is broken")
        checks[fmt] = diff
    return checks

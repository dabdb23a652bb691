"""Deployment formats for exported sub-networks: TorchScript and ``torch.export`` programs.

Both take the *plain* module returned by :func:`slimssl.export.extract_subnet` (standard torch
layers only, fixed shapes), never the slimmable family, whose Python-side width switching is
not meant to be traced.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def script_subnet(module: nn.Module, path: str | Path | None = None) -> torch.jit.ScriptModule:
    """TorchScript-compile an exported module (eval mode); optionally save it to ``path``."""
    with warnings.catch_warnings():  # TorchScript's deprecation notice: we offer it knowingly
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated",
                                category=FutureWarning)
        scripted = torch.jit.script(module.eval())
    if path is not None:
        torch.jit.save(scripted, str(path))
    return scripted


def export_program(module: nn.Module, example: torch.Tensor,
                   dynamic_batch: bool = False) -> torch.export.ExportedProgram:
    """``torch.export.export`` an exported module (eval mode) on ``example`` inputs.

    With ``dynamic_batch`` the batch dimension is symbolic so the program serves any batch size.
    Run the result with ``program.module()(x)``; save it with ``torch.export.save``.
    """
    dynamic_shapes = None
    if dynamic_batch:
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},)
    return torch.export.export(module.eval(), (example,), dynamic_shapes=dynamic_shapes)

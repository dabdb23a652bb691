"""Save/load exported sub-networks as safetensors + a small JSON architecture file.

No pickle is involved: weights go through safetensors and the architecture through JSON, so an
exported model can be shared and loaded without trusting its author.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from slimssl.export.extract import plain_class

FORMAT = "slimssl-subnet"
FORMAT_VERSION = 1


def save_subnet(module: nn.Module, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``arch.json`` for a plain exported module."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arch = {"format": FORMAT, "version": FORMAT_VERSION, "arch": module.arch_name,
            "config": module.arch_config, **(extra or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    (directory / "arch.json").write_text(json.dumps(arch, indent=2))
    return directory


def load_subnet(directory: str | Path) -> nn.Module:
    """Rebuild an exported module from its directory (eval mode)."""
    directory = Path(directory)
    arch_path, weights_path = directory / "arch.json", directory / "model.safetensors"
    for path in (arch_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: an exported sub-network directory holds "
                                    "arch.json and model.safetensors (slimssl export writes both)")
    arch = json.loads(arch_path.read_text())
    if arch.get("format") != FORMAT:
        raise ValueError(f"{arch_path} is not a slimssl export (format {arch.get('format')!r})")
    module = plain_class(arch["arch"]).from_config(arch["config"])
    module.load_state_dict(load_file(str(weights_path)), strict=True)
    return module.eval()

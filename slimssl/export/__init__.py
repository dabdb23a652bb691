"""Export family members as plain models; profile them; save/load/script them (DESIGN.md sec. 2).

Importing this package registers every extractor and plain architecture.
"""

from slimssl.export import extract, io, profile, torchscript  # noqa: F401
from slimssl.export.extract import extract_subnet, register_extractor, register_plain
from slimssl.export.io import load_subnet, save_subnet
from slimssl.export.profile import count_macs, count_params, format_profile_table, profile_family
from slimssl.export.torchscript import export_program, script_subnet

# --- architectures: each import registers an extractor and a plain class ------------------
from slimssl.export import resnet  # noqa: E402,F401
from slimssl.export.resnet import PlainResNet  # noqa: E402

# (MobileNet / ViT exporters register here: `from slimssl.export import mobilenet, vit`)
# --- end architectures ---------------------------------------------------------------------

__all__ = [
    "PlainResNet", "count_macs", "count_params", "export_program", "extract_subnet",
    "format_profile_table", "load_subnet", "profile_family", "register_extractor",
    "register_plain", "save_subnet", "script_subnet",
]

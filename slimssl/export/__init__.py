"""Export family members as plain models; profile them; save/load/script them
(docs/design.md sec. 2).

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

from slimssl.export import mobilenet, vit  # noqa: E402,F401
from slimssl.export.mobilenet import PlainMobileNetV2, PlainMobileNetV3  # noqa: E402
from slimssl.export.vit import PlainVisionTransformer  # noqa: E402
# --- end architectures ---------------------------------------------------------------------

__all__ = [
    "PlainMobileNetV2", "PlainMobileNetV3", "PlainResNet", "PlainVisionTransformer", "count_macs", "count_params", "export_program", "extract_subnet",
    "format_profile_table", "load_subnet", "profile_family", "register_extractor",
    "register_plain", "save_subnet", "script_subnet",
]

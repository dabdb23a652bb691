"""Slimmable backbones and heads; ``create(name, **kwargs)`` builds a registered backbone.

Importing this package registers every architecture with :mod:`slimssl.models.registry`.
"""

from slimssl.models.registry import create, list_models, register_model

# --- architectures: each import registers its factories -----------------------------------
from slimssl.models import heads, resnet  # noqa: E402,F401
from slimssl.models.heads import SlimMLP  # noqa: E402
from slimssl.models.resnet import SlimResNet  # noqa: E402

# (MobileNetV2/V3 and ViT register here: `from slimssl.models import mobilenet, vit`)
# --- end architectures ---------------------------------------------------------------------

__all__ = ["SlimMLP", "SlimResNet", "create", "list_models", "register_model"]

"""Slimmable backbones and heads; ``create(name, **kwargs)`` builds a registered backbone.

Importing this package registers every architecture with :mod:`slimssl.models.registry`.
"""

from slimssl.models.registry import create, list_models, register_model

# --- architectures: each import registers its factories -----------------------------------
from slimssl.models import heads, resnet  # noqa: E402,F401
from slimssl.models.heads import SlimMLP  # noqa: E402
from slimssl.models.resnet import SlimResNet  # noqa: E402

from slimssl.models import mobilenet, vit  # noqa: E402,F401
from slimssl.models.mobilenet import SlimMobileNetV2, SlimMobileNetV3  # noqa: E402
from slimssl.models.vit import SlimVisionTransformer  # noqa: E402
# --- end architectures ---------------------------------------------------------------------

# bring your own backbone: slimmable twins of torchvision / timm networks, weights copied
from slimssl.models.convert import from_timm, from_torchvision  # noqa: E402

__all__ = ["SlimMLP", "SlimMobileNetV2", "SlimMobileNetV3", "SlimResNet", "SlimVisionTransformer", "create", "from_timm", "from_torchvision", "list_models", "register_model"]

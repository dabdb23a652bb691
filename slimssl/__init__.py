"""slimssl: self-supervised pre-training of slimmable networks (SlimCLR, DSPNet, US3L)."""

__version__ = "0.1.0"

"""Slimmable Vision Transformer (Dosovitskiy et al. 2021) at DeiT sizes (Touvron et al. 2021).

Width truly narrows the model: at width ``w`` the embedding dimension is
``channels_at(D, w, head_dim)`` with the head dimension fixed (64 for DeiT), so the sub-network
keeps ``dim / head_dim`` attention heads: the leading heads, shared by every width. Everything
that lives in the embedding space is sliced to its leading ``dim`` features: the patch embedding
conv's outputs, the class token, the position embedding, every LayerNorm (shared affine sliced),
the attention projections and the MLP (hidden ``mlp_ratio * dim``, exactly, because its divisor is
``mlp_ratio * head_dim``).

Why separate ``q``/``k``/``v`` slimmable linears instead of one fused ``qkv``: a fused weight
stores ``[q; k; v]`` stacked, so width ``w`` would need rows ``[0:d] + [D:D+d] + [2D:2D+d]``,
not a leading slice; three :class:`~slimssl.nn.ops.SlimLinear` keep the op library's single rule
(leading slice = leading heads). The exported plain model fuses them back into one ``qkv``
linear (timm's layout, one matrix product).

ViT-Tiny has 3 heads (192 = 3 x 64), so its members come in thirds: widths 1.0, 0.67 and 0.34
give 3, 2 and 1 heads (width 0.5 rounds to 128 = 2 heads). ViT-Small (6 heads) halves exactly.

``norm`` only matters for BatchNorm models: a ViT has LayerNorms, which need no statistics, so
here ``norm`` only decides which widths are valid (``switchable``: the listed widths;
``universal``: any width in ``width_range``), exactly as for the CNNs. ``recalibrate_bn`` is a
no-op for ViTs.

Depth elasticity (optional, ``depth_elastic=True``): ``SubnetSpec(w, (d,))`` keeps the first ``d``
blocks (one "stage"), as Once-for-All keeps leading blocks.

Inputs of another size than the configured ``img_size`` (any height and width that are multiples
of the patch size) get the position embedding resampled to their patch grid by
:func:`resample_pos_embed`: the class token's embedding is kept, the grid's is interpolated
bicubically, as DeiT (Touvron et al. 2021, Sec. 5.5 "Fine-tuning at different resolution": bicubic
rather than bilinear, which shrinks the vectors' norm) and timm's
``resample_abs_pos_embed`` do. At the configured size the embedding is used as it is.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimssl.models.registry import register_model
from slimssl.nn.norm import NormMode, SlimLayerNorm
from slimssl.nn.ops import SlimConv2d, SlimLinear
from slimssl.nn.spec import SubnetSpec, as_spec, channels_at
from slimssl.nn.switch import SlimmableModel

__all__ = ["SlimAttention", "SlimMlp", "SlimPatchEmbed", "SlimVisionTransformer", "SlimViTBlock",
           "patch_grid", "resample_pos_embed", "vit_small", "vit_tiny"]

Stem = Literal["imagenet", "cifar"]


def patch_grid(height: int, width: int, patch_size: int, img_size: int) -> tuple[int, int]:
    """Patch grid (rows, columns) of a ``height x width`` input; a clear error if the sides are
    not multiples of the patch size."""
    if height % patch_size or width % patch_size:
        raise RuntimeError(
            f"this ViT cuts {patch_size}x{patch_size} patches, so image sides must be multiples "
            f"of {patch_size} (configured {img_size}x{img_size}; other sizes interpolate the "
            f"position embedding), got {height}x{width}: resize or crop the images")
    return height // patch_size, width // patch_size


def resample_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int],
                       new_grid: tuple[int, int], num_prefix_tokens: int = 1,
                       antialias: bool = True) -> torch.Tensor:
    """Position embedding ``(1, prefix + H*W, D)`` of an ``old_grid`` patch grid, resampled to
    ``new_grid``: prefix (class) tokens unchanged, the grid interpolated per channel.

    Interpolation: bicubic, ``align_corners=False``, in float32, and ``antialias=True`` by
    default: the defaults of timm's ``resample_abs_pos_embed``, which timm's ViT applies to
    inputs of another size (``dynamic_img_size``). With ``antialias=True`` PyTorch's bicubic is
    the Keys kernel with a = -0.5 over a support widened by the downscaling factor, weights
    normalised over the pixels inside the grid (PIL's resize); DeiT's checkpoint resizing for
    fine-tuning at 384 px (Touvron et al. 2021, Sec. 5.5) called ``F.interpolate`` without
    antialiasing (a = -0.75, clamped borders): pass ``antialias=False`` for that. At
    ``new_grid == old_grid`` the input is returned as it is.
    """
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    if grid.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"position embedding has {grid.shape[1]} grid tokens, not "
                         f"{old_grid[0]}x{old_grid[1]}")
    dim = grid.shape[-1]
    image = grid.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=(new_grid[0], new_grid[1]), mode="bicubic",
                          align_corners=False, antialias=antialias)
    grid = image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)
    return torch.cat([prefix, grid.to(pos_embed.dtype)], dim=1)


class SlimPatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches -> tokens by a strided conv with sliced outputs."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, divisor: int) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = SlimConv2d(3, embed_dim, patch_size, patch_size, bias=True, slim_in=False,
                               divisor=divisor)

    def grid(self, x: torch.Tensor) -> tuple[int, int]:
        """Patch grid of input ``x`` (checked: sides multiples of the patch size)."""
        return patch_grid(x.shape[-2], x.shape[-1], self.patch_size, self.img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grid(x)
        return self.proj(x).flatten(2).transpose(1, 2)


class SlimAttention(nn.Module):
    """Multi-head self-attention whose active heads are the leading ``dim / head_dim`` heads."""

    def __init__(self, dim: int, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.q = SlimLinear(dim, dim, divisor=head_dim)
        self.k = SlimLinear(dim, dim, divisor=head_dim)
        self.v = SlimLinear(dim, dim, divisor=head_dim)
        self.proj = SlimLinear(dim, dim, divisor=head_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, c // self.head_dim, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        out = F.scaled_dot_product_attention(self._heads(self.q(x)), self._heads(self.k(x)),
                                             self._heads(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class SlimMlp(nn.Module):
    """``fc1 -> GELU -> fc2`` with hidden ``mlp_ratio * dim`` at every width."""

    def __init__(self, dim: int, mlp_ratio: int, head_dim: int) -> None:
        super().__init__()
        hidden_div = mlp_ratio * head_dim
        self.fc1 = SlimLinear(dim, mlp_ratio * dim, divisor=hidden_div, in_divisor=head_dim)
        self.act = nn.GELU()
        self.fc2 = SlimLinear(mlp_ratio * dim, dim, divisor=head_dim, in_divisor=hidden_div)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SlimViTBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, head_dim: int, mlp_ratio: int, eps: float) -> None:
        super().__init__()
        self.norm1 = SlimLayerNorm(dim, eps=eps, divisor=head_dim)
        self.attn = SlimAttention(dim, head_dim)
        self.norm2 = SlimLayerNorm(dim, eps=eps, divisor=head_dim)
        self.mlp = SlimMlp(dim, mlp_ratio, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SlimVisionTransformer(SlimmableModel):
    """Slimmable ViT with a class token (``global_pool="token"``).

    Args:
        widths / norm / width_range: the family (``norm`` only selects how widths are validated,
            see the module docstring).
        img_size, patch_size: configured input resolution (the position embedding's grid; other
            sizes resample it, see :func:`resample_pos_embed`) and patch size.
        embed_dim, depth, num_heads: full-size model; ``embed_dim / num_heads`` is the head
            dimension kept at every width.
        mlp_ratio: integer MLP expansion (4).
        num_classes: 0 for a backbone returning the class token's features.
        depth_elastic: allow ``SubnetSpec(w, (d,))`` members that keep the first ``d`` blocks.
    """

    def __init__(self, widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
                 width_range: tuple[float, float] | None = None, *, img_size: int = 224,
                 patch_size: int = 16, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: int = 4, num_classes: int = 0,
                 depth_elastic: bool = False, eps: float = 1e-6) -> None:
        if norm not in ("switchable", "universal"):
            raise ValueError(f"norm mode must be 'switchable' or 'universal', got {norm!r}")
        super().__init__(widths, norm, width_range,
                         stage_depths=(depth,) if depth_elastic else None)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.embed_dim, self.num_heads, self.depth = embed_dim, num_heads, depth
        self.head_dim = embed_dim // num_heads
        self.mlp_ratio, self.num_classes, self.eps = int(mlp_ratio), num_classes, eps
        self.patch_embed = SlimPatchEmbed(img_size, patch_size, embed_dim, self.head_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList(SlimViTBlock(embed_dim, self.head_dim, self.mlp_ratio, eps)
                                    for _ in range(depth))
        self.norm = SlimLayerNorm(embed_dim, eps=eps, divisor=self.head_dim)
        self.head: nn.Module = (SlimLinear(embed_dim, num_classes, slim_out=False,
                                           in_divisor=self.head_dim)
                                if num_classes > 0 else nn.Identity())
        self._init_weights()

    # heads use these to size and slice their input (cf. the CNN backbones)
    feature_slim = True

    @property
    def full_features(self) -> int:
        return self.embed_dim

    @property
    def feature_divisor(self) -> int:
        return self.head_dim

    def _init_weights(self) -> None:
        # ViT/DeiT practice: truncated normal (std 0.02) for embeddings and linears.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def dim_at(self, spec: SubnetSpec | float | None = None) -> int:
        """Embedding dimension of member ``spec`` (default: the active member)."""
        width = self.active_spec.width if spec is None else as_spec(spec).width
        return channels_at(self.embed_dim, width, self.head_dim)

    def heads_at(self, spec: SubnetSpec | float | None = None) -> int:
        """Attention heads of member ``spec`` (the leading ones)."""
        return self.dim_at(spec) // self.head_dim

    def feature_dim(self, spec: SubnetSpec | float | None = None) -> int:
        """Pre-logits (class token) feature size of member ``spec``."""
        return self.dim_at(spec)

    @property
    def num_features(self) -> int:
        return self.feature_dim()

    def active_depth(self) -> int:
        depth = self.active_spec.depth
        return depth[0] if depth else len(self.blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> normalised tokens (N, 1 + patches, dim), class token first."""
        dim = self.dim_at()
        grid = self.patch_embed.grid(x)
        x = self.patch_embed(x)
        cls = self.cls_token[:, :, :dim].expand(x.shape[0], -1, -1)
        pos = resample_pos_embed(self.pos_embed[:, :, :dim], self.patch_embed.grid_size, grid)
        x = torch.cat([cls, x], dim=1) + pos
        for block in self.blocks[: self.active_depth()]:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens -> class token features (``pre_logits`` or no classifier) or logits."""
        x = x[:, 0]
        if pre_logits or self.num_classes == 0:
            return x
        return self.head(x)

    def forward(self, x: torch.Tensor, spec: SubnetSpec | float | None = None) -> torch.Tensor:
        """Run the active member, or ``spec`` if given (switched for this call only)."""
        if spec is not None:
            with self.subnet(spec):
                return self.forward_head(self.forward_features(x))
        return self.forward_head(self.forward_features(x))


def _build(embed_dim: int, num_heads: int, widths: Sequence[float], norm: NormMode,
           stem: Stem, num_classes: int, width_range: tuple[float, float] | None,
           img_size: int | None, patch_size: int | None, depth: int,
           depth_elastic: bool) -> SlimVisionTransformer:
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' (224 px, 16 px patches) or 'cifar' (32 px, "
                         f"4 px patches), got {stem!r}")
    default_img, default_patch = (224, 16) if stem == "imagenet" else (32, 4)
    return SlimVisionTransformer(
        widths, norm, width_range, img_size=img_size or default_img,
        patch_size=patch_size or default_patch, embed_dim=embed_dim, depth=depth,
        num_heads=num_heads, num_classes=num_classes, depth_elastic=depth_elastic)


@register_model("vit_tiny")
def vit_tiny(widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
             stem: Stem = "imagenet", num_classes: int = 0,
             width_range: tuple[float, float] | None = None, *, img_size: int | None = None,
             patch_size: int | None = None, depth: int = 12,
             depth_elastic: bool = False) -> SlimVisionTransformer:
    """Slimmable ViT-Tiny (DeiT-Ti: 192 dim, 3 heads of 64, 12 blocks, MLP 4x).

    ``stem`` picks the default resolution: ``imagenet`` 224 px / 16 px patches, ``cifar`` 32 px /
    4 px patches; ``img_size``/``patch_size`` override it.
    """
    return _build(192, 3, widths, norm, stem, num_classes, width_range, img_size, patch_size,
                  depth, depth_elastic)


@register_model("vit_small")
def vit_small(widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
              stem: Stem = "imagenet", num_classes: int = 0,
              width_range: tuple[float, float] | None = None, *, img_size: int | None = None,
              patch_size: int | None = None, depth: int = 12,
              depth_elastic: bool = False) -> SlimVisionTransformer:
    """Slimmable ViT-Small (DeiT-S: 384 dim, 6 heads of 64, 12 blocks, MLP 4x); see vit_tiny."""
    return _build(384, 6, widths, norm, stem, num_classes, width_range, img_size, patch_size,
                  depth, depth_elastic)

"""Plain ViT twin and the extractor that fills it from a slimmable ViT member.

The plain model uses only standard layers (``nn.Conv2d``, ``nn.LayerNorm``, ``nn.Linear``,
``nn.GELU``) plus ``F.scaled_dot_product_attention``, with timm's module names
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,
mlp.fc1,mlp.fc2}``, ``norm``, ``head``). The slimmable model's separate q/k/v projections are
fused into one ``qkv`` linear (rows ``[q; k; v]``) on export. Inputs of another size than
``img_size`` resample the position embedding exactly as the slimmable model does
(:func:`slimssl.models.vit.resample_pos_embed`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimssl.export.extract import register_extractor, register_plain
from slimssl.models.vit import SlimVisionTransformer, patch_grid, resample_pos_embed
from slimssl.nn.spec import SubnetSpec

__all__ = ["PlainVisionTransformer"]


class PlainPatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class PlainAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class PlainMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PlainViTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = PlainAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = PlainMlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register_plain("vit")
class PlainVisionTransformer(nn.Module):
    """A class-token ViT (Dosovitskiy et al. 2021) of explicit size.

    Args:
        img_size, patch_size: configured input resolution (other sizes, multiples of the
            patch size, resample the position embedding) and patch size.
        embed_dim, depth, num_heads, mlp_hidden: the (exported) model's sizes.
        num_classes: 0 for a feature extractor (class token features).
        eps: LayerNorm epsilon (1e-6, as timm/DeiT).
    """

    arch_name = "vit"

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int,
                 num_heads: int, mlp_hidden: int, num_classes: int = 0,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.arch_config = {
            "img_size": img_size, "patch_size": patch_size, "embed_dim": embed_dim,
            "depth": depth, "num_heads": num_heads, "mlp_hidden": mlp_hidden,
            "num_classes": num_classes, "eps": eps}
        self.num_classes, self.num_features = num_classes, embed_dim
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.patch_embed = PlainPatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.Sequential(*(PlainViTBlock(embed_dim, num_heads, mlp_hidden, eps)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.head: nn.Module = (nn.Linear(embed_dim, num_classes) if num_classes > 0
                                else nn.Identity())

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PlainVisionTransformer":
        return cls(**config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        grid = patch_grid(x.shape[-2], x.shape[-1], self.patch_size, self.img_size)
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + resample_pos_embed(self.pos_embed, self.grid_size, grid)
        return self.norm(self.blocks(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0]
        if pre_logits:
            return x
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_extractor(SlimVisionTransformer)
def _extract_vit(model: SlimVisionTransformer, spec: SubnetSpec) -> PlainVisionTransformer:
    dim, depth = model.dim_at(), model.active_depth()
    plain = PlainVisionTransformer(
        model.patch_embed.img_size, model.patch_embed.patch_size, dim, depth, model.heads_at(),
        model.blocks[0].mlp.fc1.active_out, model.num_classes, model.eps)
    plain.patch_embed.proj.load_state_dict(model.patch_embed.proj.export().state_dict())
    with torch.no_grad():
        plain.cls_token.copy_(model.cls_token[:, :, :dim])
        plain.pos_embed.copy_(model.pos_embed[:, :, :dim])
    for slim, out in zip(model.blocks[:depth], plain.blocks):
        out.norm1.load_state_dict(slim.norm1.export().state_dict())
        out.norm2.load_state_dict(slim.norm2.export().state_dict())
        q, k, v = (lin.export() for lin in (slim.attn.q, slim.attn.k, slim.attn.v))
        out.attn.qkv.load_state_dict({
            "weight": torch.cat([q.weight, k.weight, v.weight]),
            "bias": torch.cat([q.bias, k.bias, v.bias])})
        out.attn.proj.load_state_dict(slim.attn.proj.export().state_dict())
        out.mlp.fc1.load_state_dict(slim.mlp.fc1.export().state_dict())
        out.mlp.fc2.load_state_dict(slim.mlp.fc2.export().state_dict())
    plain.norm.load_state_dict(model.norm.export().state_dict())
    if model.num_classes > 0:
        plain.head.load_state_dict(model.head.export().state_dict())
    return plain.to(model.cls_token.device)

"""Prompt-ViT: a Vision Transformer whose invariances are an input (the paper's "prompt-ViT").

The invariance vector ``i`` (one per batch) goes through a wide two-layer MLP, realised as
``token_mlps`` small MLPs whose outputs are averaged, to make ONE extra token appended after
[CLS] and the patch tokens. That token has no position embedding. The feature is the [CLS]
token after the final LayerNorm. ``conditioned=False`` gives the same backbone without the
token, for fixed-invariance baselines.

Example::

    model = PromptViT.tiny(num_groups=5, in_channels=3, image_size=32)
    z = model(images, torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5]))   # (B, model.feature_dim)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InvarianceToken", "PromptViT", "default_patch_size"]

_LN_EPS = 1e-6  # timm's ViT value


class InvarianceToken(nn.Module):
    """Maps one invariance vector to one token: the mean of ``token_mlps`` small MLPs.

    Each small MLP is ``num_groups -> dim -> dim`` with a GELU between. They run as one
    batched op: a Linear to ``token_mlps * dim`` (small MLP ``m`` owns rows
    ``m * dim : (m + 1) * dim`` of ``hidden.weight``), GELU, then ``second_weight[m]`` /
    ``second_bias[m]`` (``(out, in)`` layout like ``nn.Linear``) and a mean over ``m``.
    """

    def __init__(self, num_groups: int, dim: int, token_mlps: int = 16):
        super().__init__()
        if token_mlps < 1:
            raise ValueError(f"token_mlps must be at least 1, got {token_mlps}.")
        self.num_groups, self.dim, self.token_mlps = num_groups, dim, token_mlps
        self.hidden = nn.Linear(num_groups, token_mlps * dim)
        self.second_weight = nn.Parameter(torch.empty(token_mlps, dim, dim))
        self.second_bias = nn.Parameter(torch.empty(token_mlps, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default (uniform, +-1/sqrt(fan_in)) per small MLP, as in the paper's
        # code. The backbone's trunc_normal(0.02) would leave the GELU in its linear range for
        # inputs in [0, 1] and shrink the averaged token to std ~1e-3 (variance ~ LayerNorm's
        # eps); with this init its std is ~0.05 at dim 128.
        for param, fan_in in (
            (self.hidden.weight, self.num_groups),
            (self.hidden.bias, self.num_groups),
            (self.second_weight, self.dim),
            (self.second_bias, self.dim),
        ):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(param, -bound, bound)

    def forward(self, invariance: Tensor) -> Tensor:
        """``invariance``: ``(num_groups,)``. Returns the token, ``(dim,)``."""
        h = F.gelu(self.hidden(invariance)).view(self.token_mlps, self.dim)
        out = torch.einsum("mi,moi->o", h, self.second_weight) / self.token_mlps
        return out + self.second_bias.mean(0)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PromptViT(nn.Module):
    """ViT conditioned on an invariance vector by one token: small images (28-64 px) with
    the tiny and small presets, ViT-B at 224 px with the base preset.

    Args:
        num_groups: length of the invariance vector (groups in the invariance space).
        in_channels: image channels (1 or 3).
        image_size: square input side; must be divisible by ``patch_size``.
        patch_size: side of the square patches (conv with kernel = stride = patch_size).
        dim, depth, heads, mlp_ratio: transformer width, blocks, attention heads, MLP width.
        token_mlps: number of small MLPs averaged to make the invariance token.
        conditioned: False drops the token; ``forward`` then ignores ``invariance``.
        dropout: dropout after the embeddings, on attention weights and in the blocks.
    """

    def __init__(
        self,
        num_groups: int,
        in_channels: int = 3,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 192,
        depth: int = 6,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        token_mlps: int = 16,
        conditioned: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not divisible by patch_size {patch_size}; "
                f"pick a patch size that divides it (e.g. 4 or 7 for 28 px, 4 for 32, 8 for 64)."
            )
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}.")
        self.num_groups, self.in_channels = num_groups, in_channels
        self.image_size, self.patch_size = image_size, patch_size
        self.conditioned = conditioned
        self.feature_dim = dim
        num_patches = (image_size // patch_size) ** 2

        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))  # [CLS] + patches
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS)
        self.apply(_init_timm)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        # Created after apply(): the token MLP keeps its own init (see InvarianceToken).
        self.invariance_token = (
            InvarianceToken(num_groups, dim, token_mlps) if conditioned else None
        )

    @classmethod
    def tiny(
        cls, num_groups: int, in_channels: int = 3, image_size: int = 32, **overrides
    ) -> PromptViT:
        """dim 128, depth 4, heads 4: trains on a 2-core CPU; patch from ``default_patch_size``."""
        kwargs = dict(patch_size=default_patch_size(image_size), dim=128, depth=4, heads=4)
        return cls(num_groups, in_channels, image_size, **{**kwargs, **overrides})

    @classmethod
    def small(
        cls, num_groups: int, in_channels: int = 3, image_size: int = 32, **overrides
    ) -> PromptViT:
        """ViT-S width: dim 384, depth 12, heads 6. Patch size from ``default_patch_size``."""
        kwargs = dict(patch_size=default_patch_size(image_size), dim=384, depth=12, heads=6)
        return cls(num_groups, in_channels, image_size, **{**kwargs, **overrides})

    @classmethod
    def base(
        cls, num_groups: int, in_channels: int = 3, image_size: int = 224, **overrides
    ) -> PromptViT:
        """ViT-B, the size of MoCo-v3's released ``vit-b-300ep`` that the paper starts its
        prompt-ViT from: dim 768, depth 12, heads 12, patch 16 (224 px: 14x14 patches).
        Images whose side 16 does not divide get ``default_patch_size``."""
        patch = 16 if image_size % 16 == 0 else default_patch_size(image_size)
        kwargs = dict(patch_size=patch, dim=768, depth=12, heads=12)
        return cls(num_groups, in_channels, image_size, **{**kwargs, **overrides})

    def forward(self, x: Tensor, invariance: Tensor | None = None) -> Tensor:
        """``x``: ``(B, C, H, W)``, normalised; ``invariance``: ``(num_groups,)`` in [0, 1],
        one vector for the whole batch (ignored, may be None, when not conditioned).
        Returns the [CLS] feature after the final LayerNorm, ``(B, feature_dim)``.

        Only the vector's shape is checked here (no device sync); validate its values with
        the invariance space. It is moved to the model's device and dtype."""
        self._check_input(x)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        if self.invariance_token is not None:
            self._check_invariance(invariance)
            w = self.invariance_token.hidden.weight
            token = self.invariance_token(invariance.to(device=w.device, dtype=w.dtype))
            token = token.to(tokens.dtype).expand(x.shape[0], 1, -1)
            tokens = torch.cat([tokens, token], dim=1)
        tokens = self.blocks(self.pos_drop(tokens))
        return self.norm(tokens[:, 0])

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"PromptViT expects images of shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}; resize/convert the data or build the model for it."
            )

    def _check_invariance(self, invariance: Tensor | None) -> None:
        if not isinstance(invariance, Tensor) or invariance.shape != (self.num_groups,):
            if isinstance(invariance, Tensor):
                got = f"shape {tuple(invariance.shape)}"
            else:
                got = f"a {type(invariance).__name__}"
            raise ValueError(
                f"invariance must be ONE vector of length {self.num_groups} (num_groups) for "
                f"the whole batch, got {got}; build it with InvarianceSpace.vector()."
            )


def default_patch_size(image_size: int, max_patches: int = 64) -> int:
    """Smallest patch size in 4..16 that divides ``image_size`` into at most ``max_patches``
    patches: 4 for 28 and 32 px, 6 for 48, 8 for 64."""
    for p in range(4, 17):
        if image_size % p == 0 and (image_size // p) ** 2 <= max_patches:
            return p
    raise ValueError(
        f"no patch size in 4..16 divides image_size {image_size} into at most {max_patches} "
        f"patches; resize the images (--image-size, e.g. 32 or 64 px), or build PromptViT(...) "
        "directly with a patch_size that divides it."
    )


def _init_timm(module: nn.Module) -> None:
    # timm's "vit" scheme: the patch conv keeps PyTorch's default init (fan-in scaled), which
    # gives patch tokens of usable size; trunc_normal(0.02) on it would shrink them ~4x.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

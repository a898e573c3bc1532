"""The transformer building blocks shared by CLIP's two towers and, later, by DALL-E.

A transformer is a stack of identical *residual blocks*. Each block (in the "pre-norm" arrangement that
GPT-2 and CLIP use) does two things, each added back onto its input::

    x = x + Attention(LayerNorm(x))     # tokens look at each other
    x = x + MLP(LayerNorm(x))           # each token thinks on its own

This module holds exactly these pieces and nothing model-specific:

* :func:`quick_gelu` / :class:`QuickGELU` - OpenAI's cheap sigmoid approximation of GELU.
* :class:`Attention` - multi-head self-attention through ``F.scaled_dot_product_attention``.
* :class:`MLP` - two linear layers with GELU (or QuickGELU) between them.
* :class:`Block` - one pre-norm residual block.
* :class:`Transformer` - a stack of blocks.
* :class:`KVCache` - the keys and values of earlier positions, so that autoregressive sampling
  (DALL-E) computes each new token in O(T) instead of re-running the whole sequence.

Shapes: ``B`` batch, ``T`` tokens (sequence length), ``C`` width (channels), ``H`` heads, ``D`` head width
(``C = H * D``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "quick_gelu", "QuickGELU", "make_activation", "KVCache", "Attention", "MLP", "Block", "Transformer",
    "init_transformer_", "FusedQuickGELUMLP", "attention_at", "block_at",
]  # fmt: skip

_QUICK_GELU_ALPHA = 1.702


def quick_gelu(x: Tensor) -> Tensor:
    """``x * sigmoid(1.702 x)``: the GELU approximation that OpenAI's CLIP was trained with."""
    return x * torch.sigmoid(_QUICK_GELU_ALPHA * x)


class QuickGELU(nn.Module):
    """Module form of :func:`quick_gelu` (OpenAI's CLIP, DALL-E)."""

    def forward(self, x: Tensor) -> Tensor:
        return quick_gelu(x)


def make_activation(name: str) -> nn.Module:
    """``"gelu"`` (exact, erf-based) or ``"quick_gelu"`` (OpenAI's sigmoid approximation)."""
    if name == "gelu":
        return nn.GELU()
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"unknown activation {name!r}: use 'gelu' or 'quick_gelu'")


@dataclass
class KVCache:
    """Keys and values of the positions a causal model has already seen, one entry per layer.

    During autoregressive sampling the first call feeds the prompt, later calls feed one new token at a
    time; each :class:`Attention` layer appends its new keys/values to its entry and attends over all of
    them. Create one empty cache per sampling run and pass it to :meth:`Transformer.forward`.
    """

    keys: list[Tensor] = field(default_factory=list)  # per layer: (B, H, T_past, D)
    values: list[Tensor] = field(default_factory=list)  # per layer: (B, H, T_past, D)

    def length(self, layer: int = 0) -> int:
        """How many positions ``layer`` has cached (0 before the first call)."""
        return self.keys[layer].shape[2] if layer < len(self.keys) else 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this call's ``k``, ``v`` (B, H, T_new, D) for ``layer``; return all keys/values so far."""
        if layer == len(self.keys):  # first call: this layer has no entry yet
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)  # (B, H, T_past + T_new, D)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)  # (B, H, T_past + T_new, D)
        return self.keys[layer], self.values[layer]


class Attention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection.

    ``qkv`` holds the three projections stacked as rows ``[W_q; W_k; W_v]`` (shape ``(3C, C)``): one
    matrix multiply instead of three. The attention itself, ``softmax(q k^T / sqrt(D)) v`` per head, runs in
    PyTorch's fused ``scaled_dot_product_attention`` (flash attention where available), which never
    materialises the (T, T) matrix in full.
    """

    def __init__(self, width: int, heads: int, bias: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.out = nn.Linear(width, width, bias=bias)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        """``x`` (B, T, C) -> (B, T, C).

        ``attn_mask``: boolean (True = may attend) or additive float mask broadcastable to (B, H, T, T_k).
        ``is_causal``: each position sees only itself and earlier ones (text, DALL-E); cheaper than a mask.
        ``cache`` / ``layer``: see :class:`KVCache`.
        """
        B, T, C = x.shape
        H = self.heads
        qkv = self.qkv(x).view(B, T, 3, H, C // H)  # (B, T, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, D), views: no copy
        if cache is not None:
            past = cache.length(layer)  # per layer: earlier layers of this call already appended
            k, v = cache.update(layer, k, v)  # (B, H, past + T, D)
            if is_causal and past > 0:
                # SDPA's is_causal aligns the mask to the top-left corner, which is wrong once queries start
                # at position `past`; an explicit mask is needed (for one new token, none at all).
                if T > 1:
                    attn_mask = _causal_mask(T, past + T, x.device, offset=past)  # (T, past + T)
                is_causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.out(y)


def _causal_mask(t_q: int, t_k: int, device: torch.device, offset: int = 0) -> Tensor:
    """Boolean (t_q, t_k) mask, True where query ``i`` (at absolute position ``offset + i``) may attend."""
    q_pos = torch.arange(t_q, device=device)[:, None] + offset  # (t_q, 1)
    k_pos = torch.arange(t_k, device=device)[None, :]  # (1, t_k)
    return k_pos <= q_pos  # (t_q, t_k)


class MLP(nn.Module):
    """``fc2(act(fc1(x)))``: widen by ``mlp_ratio`` (4x in CLIP), apply the non-linearity, project back."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (..., C)


class Block(nn.Module):
    """One pre-norm residual block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, activation: str = "gelu", eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        mlp = FusedQuickGELUMLP if activation == "quick_gelu" else MLP  # the same maths, faster (see below)
        self.mlp = mlp(width, int(width * mlp_ratio), activation)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        """``x`` (B, T, C) -> (B, T, C); the arguments are passed on to :class:`Attention`."""
        x = x + self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal, cache=cache, layer=layer)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of ``layers`` :class:`Block` s of the same width (no embeddings, no final norm)."""

    def __init__(
        self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0, activation: str = "gelu", eps: float = 1e-5
    ):
        super().__init__()
        self.width = width
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio, activation, eps) for _ in range(layers)])

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        output_index: Tensor | None = None,
    ) -> Tensor:
        """``x`` (B, T, C) -> (B, T, C); or, given ``output_index`` (B,), only those positions: (B, C).

        ``output_index`` is for models that read a single token per row (CLIP): the last block then skips the
        work whose result would be thrown away (about 7% of a 12-layer forward). It cannot be combined with
        ``attn_mask`` or ``cache``.
        """
        if output_index is None:
            for i, block in enumerate(self.blocks):
                x = block(x, attn_mask=attn_mask, is_causal=is_causal, cache=cache, layer=i)
            return x
        if attn_mask is not None or cache is not None:
            raise ValueError("output_index cannot be combined with attn_mask or cache")
        *first, last = self.blocks
        for block in first:
            x = block(x, is_causal=is_causal)  # (B, T, C)
        return block_at(last, x, output_index, is_causal=is_causal)  # (B, C)


def init_transformer_(model: Transformer, std_scale: float = 1.0) -> None:
    """CLIP/GPT-2 style initialisation: normal weights whose scale shrinks with width and depth.

    Attention input ``std = C^-0.5``; the projections that write into the residual stream (``attn.out``,
    ``mlp.fc2``) use ``std = C^-0.5 * (2 L)^-0.5`` so the stream's variance does not grow with depth.
    """
    width, layers = model.width, len(model.blocks)
    attn_std = width**-0.5 * std_scale
    proj_std = attn_std * (2 * layers) ** -0.5
    fc_std = (2 * width) ** -0.5 * std_scale
    for block in model.blocks:
        nn.init.normal_(block.attn.qkv.weight, std=attn_std)
        nn.init.zeros_(block.attn.qkv.bias)
        nn.init.normal_(block.attn.out.weight, std=proj_std)
        nn.init.zeros_(block.attn.out.bias)
        nn.init.normal_(block.mlp.fc1.weight, std=fc_std)
        nn.init.zeros_(block.mlp.fc1.bias)
        nn.init.normal_(block.mlp.fc2.weight, std=proj_std)
        nn.init.zeros_(block.mlp.fc2.bias)


# ---------------------------------------------------------------------------------------------------- speed paths
# The classes above are the plain version to read. What follows computes the same numbers faster; the tests check
# each against the plain version (tests/test_clip.py), and `make bench` measures the gain.


class FusedQuickGELUMLP(MLP):
    """:class:`MLP` with OpenAI's QuickGELU, computed faster; the same parameters and the same numbers up to float
    rounding (a test compares it with ``MLP.forward``). :class:`Block` uses it for ``activation="quick_gelu"``."""

    def forward(self, x: Tensor) -> Tensor:
        """``fc2(quick_gelu(fc1(x)))``, computed as ``fc2'(silu(fc1'(x)))`` with the two scalings moved into the
        matrix multiplies: ``quick_gelu(z) = silu(1.702 z) / 1.702``, and ``torch.addmm`` computes
        ``beta * bias + alpha * (a @ b)`` at no extra cost. One pass over the wide hidden activations instead of
        three; the same numbers up to float rounding."""
        alpha = _QUICK_GELU_ALPHA
        x2 = x.reshape(-1, x.shape[-1])  # (N, C): addmm wants matrices
        h = torch.addmm(self.fc1.bias, x2, self.fc1.weight.t(), beta=alpha, alpha=alpha)  # (N, hidden): 1.702 fc1(x)
        h = F.silu(h, inplace=not h.requires_grad)  # in place when no autograd graph needs h
        y = torch.addmm(self.fc2.bias, h, self.fc2.weight.t(), alpha=1.0 / alpha)  # (N, C): fc2(h / 1.702)
        return y.view(*x.shape[:-1], y.shape[-1])  # (..., C)


def attention_at(attn: Attention, x: Tensor, index: Tensor, is_causal: bool = False) -> Tensor:
    """Attention output at one position per row only: ``x`` (B, T, C), ``index`` (B,) -> (B, C).

    Keys and values still come from every position, but the query (and everything after attention) is
    computed for the selected token alone. CLIP reads each tower's output at a single token (the class
    token, the end-of-text token), so its last layer needs nothing else. ``is_causal``: the selected token
    sees only positions up to its own.
    """
    B, T, C = x.shape
    H = attn.heads
    w_q, w_kv = attn.qkv.weight.split([C, 2 * C])  # (C, C), (2C, C)
    b_q, b_kv = attn.qkv.bias.split([C, 2 * C]) if attn.qkv.bias is not None else (None, None)
    kv = F.linear(x, w_kv, b_kv).view(B, T, 2, H, C // H)  # (B, T, 2, H, D)
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, H, T, D)
    x_q = x[torch.arange(B, device=x.device), index]  # (B, C)
    q = F.linear(x_q, w_q, b_q).view(B, H, 1, C // H)  # (B, H, 1, D): one query per row
    mask = None
    if is_causal:
        mask = torch.arange(T, device=x.device) <= index[:, None]  # (B, T): keys up to the query's position
        mask = mask[:, None, None, :]  # (B, 1, 1, T)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, 1, D)
    return attn.out(y.reshape(B, C))  # (B, C)


def block_at(block: Block, x: Tensor, index: Tensor, is_causal: bool = False) -> Tensor:
    """The block's output at one position per row: ``x`` (B, T, C), ``index`` (B,) -> (B, C).

    Equal to ``block(x)[arange(B), index]`` but computes the attention query and the MLP for that row only.
    """
    h = x[torch.arange(x.shape[0], device=x.device), index]  # (B, C)
    h = h + attention_at(block.attn, block.norm1(x), index, is_causal=is_causal)  # (B, C)
    return h + block.mlp(block.norm2(h))  # (B, C)

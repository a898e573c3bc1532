"""Vector quantisation: turning continuous encoder outputs into a grid of discrete codes.

A VQ-VAE or VQGAN encoder maps an image to a small grid of vectors ``z`` (B, D, h, w). The *quantiser* keeps a
*codebook* of K learned vectors ``e_1 .. e_K`` (K, D) and replaces every vector of the grid by its nearest code:

    index = argmin_k ||z - e_k||^2,        z_q = e_index

The image is then just ``h * w`` integers in ``[0, K)``: a "sentence" of image tokens that a transformer can
model (DALL-E) or that we can search over (VQGAN+CLIP). Four ideas make this trainable, each a small pure
function below that the lessons call and the tests check:

1. **Fast nearest code** (:func:`nearest_code`). ``||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2``: the middle term
   for all N vectors against all K codes is one matrix product (N, D) @ (D, K), so no (N, K, D) tensor is built.
2. **Straight-through gradient** (:func:`straight_through`). ``argmin`` has no gradient. In the forward pass we
   use ``z_q``; in the backward pass we pretend quantisation was the identity and copy the decoder's gradient
   straight to the encoder: ``z + (z_q - z).detach()`` has the value of ``z_q`` and the gradient of ``z``.
3. **Codebook and commitment losses** (:func:`vq_loss`). The straight-through trick gives the codebook no
   gradient, so the codebook term ``||sg[z] - e||^2`` pulls the chosen codes toward the encoder outputs, and
   the commitment term ``beta * ||z - sg[e]||^2`` keeps the encoder close to its codes (sg = stop-gradient).
4. **EMA codebook** (:func:`ema_update`) instead of the codebook loss: each code becomes a running average of
   the vectors assigned to it (k-means, one mini-batch at a time): the codebook needs no gradient and no
   learning rate (the appendix of the VQ-VAE paper describes it; VQ-VAE-2 uses it).

A classic failure is *codebook collapse*: a few codes win every vector, the others never get assigned, never
move, and are "dead" (a prototype of this course used 4 to 12 of 128 codes for its first 700 steps). Two
remedies here: the codebook starts from real encoder outputs of the first batch (:func:`init_from_data`), and
codes whose usage has dropped below a threshold are *restarted* (:func:`restart_dead_codes`) on random encoder
outputs of the current batch, from the very first steps on. Two statistics watch the codebook:
:func:`codebook_usage` (the fraction of codes used) and :func:`perplexity` (``exp`` of the entropy of the code
histogram: K when all K codes are used equally, 1 when one code takes everything).

Shapes: ``B`` batch, ``D`` code dimension, ``h, w`` code grid, ``N = B * h * w`` vectors, ``K`` codes.
This module imports no model module: :mod:`mmcore.vqgan` builds on it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "squared_distances",
    "nearest_code",
    "straight_through",
    "vq_loss",
    "code_histogram",
    "codebook_usage",
    "perplexity",
    "ema_update",
    "init_from_data",
    "restart_dead_codes",
    "Quantized",
    "VectorQuantizer",
]


# ------------------------------------------------------------------------------------------- the pure maths


def squared_distances(z: Tensor, codebook: Tensor) -> Tensor:
    """``||z_n - e_k||^2`` for every vector ``z`` (N, D) and code ``e`` (K, D) -> (N, K), through one matmul."""
    z_sq = (z * z).sum(dim=1, keepdim=True)  # (N, 1)
    e_sq = (codebook * codebook).sum(dim=1)  # (K,)
    return z_sq - 2.0 * z @ codebook.t() + e_sq  # (N, 1) - (N, K) + (K,) -> (N, K)


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared Euclidean distance) for each vector: ``z`` (N, D), ``codebook`` (K, D)
    -> LongTensor (N,). Ties go to the lower index, as ``argmin`` breaks them."""
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"expected z (N, D) and codebook (K, D); got {tuple(z.shape)} and {tuple(codebook.shape)}")
    return squared_distances(z, codebook).argmin(dim=1)  # (N,)


def straight_through(z: Tensor, z_q: Tensor) -> Tensor:
    """The value of ``z_q`` with the gradient of ``z``: ``d(out)/d(z)`` is the identity and ``z_q`` gets none."""
    return z + (z_q - z).detach()


def vq_loss(z: Tensor, z_q: Tensor, beta: float = 0.25, codebook_term: bool = True) -> Tensor:
    """VQ-VAE's quantisation loss: ``||sg[z] - z_q||^2 + beta * ||z - sg[z_q]||^2`` (means over all elements).

    The first (codebook) term moves the codes, the second (commitment) term the encoder. With an EMA codebook the
    codes are updated by :func:`ema_update` instead: pass ``codebook_term=False`` to keep only the commitment.
    ``z_q`` must be the quantised vectors *before* :func:`straight_through`.
    """
    commitment = F.mse_loss(z, z_q.detach())
    if not codebook_term:
        return beta * commitment
    return F.mse_loss(z_q, z.detach()) + beta * commitment


def code_histogram(indices: Tensor, num_codes: int) -> Tensor:
    """How many times each code was chosen: any-shaped LongTensor of indices -> float counts (K,)."""
    return torch.bincount(indices.reshape(-1), minlength=num_codes).float()  # (K,)


def codebook_usage(indices: Tensor, num_codes: int) -> float:
    """Fraction of the ``num_codes`` codes that appear at least once in ``indices`` (1.0: every code is used)."""
    return (code_histogram(indices, num_codes) > 0).float().mean().item()


def perplexity(counts: Tensor) -> Tensor:
    """``exp(entropy)`` of a code histogram (K,): the *effective* number of codes in use.

    Uniform use of K codes gives K, a single code gives 1. (Pass :func:`code_histogram`'s counts.)
    """
    p = counts.float() / counts.sum().clamp_min(1e-12)  # (K,)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return entropy.exp()


@torch.no_grad()
def ema_update(codebook: Tensor, cluster_size: Tensor, embed_sum: Tensor, z: Tensor, indices: Tensor,
               decay: float = 0.99, eps: float = 1e-5) -> None:
    """One k-means step as an exponential moving average, *in place* (all arguments are updated).

    ``cluster_size`` (K,) is a running count of the vectors assigned to each code, ``embed_sum`` (K, D) a running
    sum of those vectors; the new code is their ratio, the running mean of its vectors. Laplace smoothing keeps
    a code with a tiny count from dividing by zero. ``z`` (N, D) are this batch's vectors, ``indices`` (N,) their
    codes.
    """
    num_codes = codebook.shape[0]
    onehot = F.one_hot(indices, num_codes).type_as(z)  # (N, K)
    cluster_size.mul_(decay).add_(onehot.sum(dim=0), alpha=1 - decay)  # (K,)
    embed_sum.mul_(decay).add_(onehot.t() @ z, alpha=1 - decay)  # (K, N) @ (N, D) -> (K, D)
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + num_codes * eps) * n  # (K,): Laplace smoothing, same total
    codebook.copy_(embed_sum / smoothed.unsqueeze(1))  # (K, D)


def _random_rows(z: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` rows of ``z`` (N, D) drawn at random (without replacement when there are enough)."""
    if z.shape[0] >= n:
        pick = torch.randperm(z.shape[0], device=z.device, generator=generator)[:n]
    else:
        pick = torch.randint(0, z.shape[0], (n,), device=z.device, generator=generator)
    return z[pick]  # (n, D)


@torch.no_grad()
def init_from_data(codebook: Tensor, z: Tensor, noise: float = 0.01) -> None:
    """Set every code to a random vector of ``z`` (N, D) (plus a little noise), in place: all codes then start
    where the encoder outputs are, instead of in a random corner where no vector would ever reach them."""
    rows = _random_rows(z, codebook.shape[0])  # (K, D)
    codebook.copy_(rows + noise * rows.std() * torch.randn_like(rows))


@torch.no_grad()
def restart_dead_codes(codebook: Tensor, usage: Tensor, z: Tensor, threshold: float) -> Tensor:
    """Move every code whose ``usage`` (K,) is below ``threshold`` onto a random vector of ``z`` (N, D), in place.

    Returns the indices of the restarted codes (LongTensor, maybe empty). ``usage`` is whatever running measure
    of use the caller keeps (here: an EMA of how many vectors each code gets per batch); the caller resets it.
    """
    dead = (usage < threshold).nonzero().flatten()  # (n_dead,)
    if dead.numel():
        rows = _random_rows(z, dead.numel())  # (n_dead, D)
        codebook[dead] = rows + 0.01 * rows.std() * torch.randn_like(rows)
    return dead


# ------------------------------------------------------------------------------------------------- the module


class Quantized(NamedTuple):
    """What :class:`VectorQuantizer` returns."""

    z_q: Tensor  # (B, D, h, w) quantised vectors, with the straight-through gradient to the encoder
    indices: Tensor  # (B, h, w) LongTensor: the chosen code of each position
    loss: Tensor  # scalar: vq_loss (codebook + commitment; only commitment with the EMA codebook)
    perplexity: Tensor  # scalar (no gradient): effective number of codes used in this batch
    usage: float  # fraction of the K codes used at least once in this batch


class VectorQuantizer(nn.Module):
    """A codebook of ``num_codes`` vectors of size ``code_dim``, with an optional EMA update and dead-code restarts.

    Args:
        num_codes: K, the number of codes.
        code_dim: D, the size of each code (= the encoder's output channels).
        beta: weight of the commitment loss.
        ema: update the codebook by moving averages (:func:`ema_update`) instead of the codebook loss.
        decay: EMA decay (only with ``ema``).
        restart_every: in training, every this many steps restart the codes whose running usage is below
            ``restart_threshold`` vectors per batch (0: never).
        restart_threshold: see ``restart_every``.
        usage_decay: decay of the running usage per code that the restart reads.

    In training mode the first forward pass initialises the codebook from its inputs (:func:`init_from_data`),
    and with ``ema`` every training forward pass updates the codebook. In eval mode nothing changes.
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25, ema: bool = True, decay: float = 0.99,
                 restart_every: int = 10, restart_threshold: float = 0.03, usage_decay: float = 0.9) -> None:
        super().__init__()
        if num_codes < 2 or code_dim < 1:
            raise ValueError(f"need num_codes >= 2 and code_dim >= 1; got {num_codes}, {code_dim}")
        self.num_codes, self.code_dim, self.beta = num_codes, code_dim, beta
        self.ema, self.decay = ema, decay
        self.restart_every, self.restart_threshold, self.usage_decay = restart_every, restart_threshold, usage_decay
        # The codes: learned by gradient (ema=False), or a parameter that only ema_update changes (no gradient).
        self.codebook = nn.Parameter(torch.randn(num_codes, code_dim) / code_dim**0.5, requires_grad=not ema)
        self.register_buffer("cluster_size", torch.zeros(num_codes))  # (K,) EMA counts
        self.register_buffer("embed_sum", torch.zeros(num_codes, code_dim))  # (K, D) EMA sums
        self.register_buffer("usage", torch.ones(num_codes))  # (K,) running vectors per batch, for restarts
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training forward passes so far

    def extra_repr(self) -> str:
        return f"num_codes={self.num_codes}, code_dim={self.code_dim}, beta={self.beta}, ema={self.ema}"

    def lookup(self, indices: Tensor) -> Tensor:
        """Codes of an index grid (B, h, w) -> vectors (B, D, h, w)."""
        if indices.dtype not in (torch.int64, torch.int32) or indices.ndim != 3:
            raise ValueError(f"expected integer indices (B, h, w); got {indices.dtype} {tuple(indices.shape)}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"code indices must lie in [0, {self.num_codes}); got [{indices.min()}, {indices.max()}]")
        return self.codebook[indices.long()].permute(0, 3, 1, 2).contiguous()  # (B, h, w, D) -> (B, D, h, w)

    def forward(self, z: Tensor) -> Quantized:
        """Quantise ``z`` (B, D, h, w) -> :class:`Quantized`."""
        if z.ndim != 4 or z.shape[1] != self.code_dim:
            raise ValueError(f"expected z of shape (B, {self.code_dim}, h, w); got {tuple(z.shape)}")
        if z.is_cuda:  # under AMP: distances and codes in fp32 all the same
            with torch.autocast("cuda", enabled=False):
                return self._quantize(z.float())
        return self._quantize(z.float())

    def _quantize(self, z: Tensor) -> Quantized:
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # (B, h, w, D) -> (N, D)
        if self.training:
            self._before_assignment(flat.detach())
        indices = nearest_code(flat.detach(), self.codebook.detach())  # (N,)
        counts = code_histogram(indices, self.num_codes)  # (K,)
        if self.training:
            self._after_assignment(flat.detach(), indices, counts)
        z_q = self.codebook[indices].view(B, h, w, D).permute(0, 3, 1, 2)  # (N, D) -> (B, h, w, D) -> (B, D, h, w)
        loss = vq_loss(z, z_q, self.beta, codebook_term=not self.ema)
        return Quantized(
            z_q=straight_through(z, z_q),
            indices=indices.view(B, h, w),  # (N,) -> (B, h, w)
            loss=loss,
            perplexity=perplexity(counts).detach(),
            usage=(counts > 0).float().mean().item(),
        )

    @torch.no_grad()
    def _before_assignment(self, flat: Tensor) -> None:
        if int(self.steps) == 0:  # first training batch: start the codes on real encoder outputs
            init_from_data(self.codebook.data, flat)
            if self.ema:
                self.embed_sum.copy_(self.codebook.data)
                self.cluster_size.fill_(1.0)

    @torch.no_grad()
    def _after_assignment(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        self.steps += 1
        self.usage.mul_(self.usage_decay).add_(counts, alpha=1 - self.usage_decay)
        if self.ema:
            ema_update(self.codebook.data, self.cluster_size, self.embed_sum, flat, indices, self.decay)
        if self.restart_every and int(self.steps) % self.restart_every == 0:
            dead = restart_dead_codes(self.codebook.data, self.usage, flat, self.restart_threshold)
            if dead.numel():
                self.usage[dead] = 1.0  # give a restarted code time to win vectors before judging it again
                if self.ema:  # its running average starts again at its new position
                    self.cluster_size[dead] = 1.0
                    self.embed_sum[dead] = self.codebook.data[dead]

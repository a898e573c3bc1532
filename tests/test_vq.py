"""Tests of mmcore.vq: the vector quantiser's maths (nearest code, straight-through gradient, losses, EMA,
dead-code restarts, usage statistics) and the VectorQuantizer module. All tiny tensors: the file takes a second."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmcore.vq import (
    Quantized,
    VectorQuantizer,
    code_histogram,
    codebook_usage,
    ema_update,
    init_from_data,
    nearest_code,
    perplexity,
    restart_dead_codes,
    squared_distances,
    straight_through,
    vq_loss,
)

torch.set_num_threads(1)


def test_squared_distances_and_nearest_code_match_brute_force():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(300, 8, generator=g), torch.randn(40, 8, generator=g)
    brute = ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)  # (N, K, D) summed: the slow way
    assert torch.allclose(squared_distances(z, codebook), brute, atol=1e-4)
    assert torch.equal(nearest_code(z, codebook), brute.argmin(dim=1))


def test_nearest_code_of_a_code_is_itself_and_bad_shapes_raise():
    codebook = torch.randn(10, 4)
    assert torch.equal(nearest_code(codebook, codebook), torch.arange(10))
    with pytest.raises(ValueError, match="codebook"):
        nearest_code(torch.randn(5, 3), codebook)


def test_straight_through_has_the_value_of_z_q_and_the_identity_gradient():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 3, 3, generator=g, requires_grad=True)
    z_q = torch.randn(2, 4, 3, 3, generator=g, requires_grad=True)
    out = straight_through(z, z_q)
    assert torch.allclose(out, z_q, atol=1e-6)  # z + (z_q - z): equal up to float rounding
    upstream = torch.randn_like(out)
    out.backward(upstream)
    assert torch.allclose(z.grad, upstream)  # d out / d z = identity
    assert z_q.grad is None or torch.count_nonzero(z_q.grad) == 0  # the codes get nothing through this path


def test_vq_loss_values_and_where_its_gradients_go():
    z = torch.randn(8, 4, requires_grad=True)
    z_q = torch.randn(8, 4, requires_grad=True)
    mse = F.mse_loss(z, z_q).item()
    loss = vq_loss(z, z_q, beta=0.25)
    assert math.isclose(loss.item(), 1.25 * mse, rel_tol=1e-5)
    loss.backward()
    n = z.numel()
    assert torch.allclose(z.grad, 0.25 * 2 * (z - z_q).detach() / n, atol=1e-6)  # commitment -> encoder
    assert torch.allclose(z_q.grad, 2 * (z_q - z).detach() / n, atol=1e-6)  # codebook term -> codes
    assert math.isclose(vq_loss(z, z_q, 0.25, codebook_term=False).item(), 0.25 * mse, rel_tol=1e-5)


def test_perplexity_and_usage():
    assert math.isclose(perplexity(torch.full((16,), 7.0)).item(), 16.0, rel_tol=1e-5)  # uniform: K
    one_hot = torch.zeros(16)
    one_hot[3] = 50
    assert math.isclose(perplexity(one_hot).item(), 1.0, rel_tol=1e-5)  # one code: 1
    uniform_indices = torch.arange(32).repeat(10)  # every code 10 times
    assert math.isclose(perplexity(code_histogram(uniform_indices, 32)).item(), 32.0, rel_tol=1e-5)
    assert codebook_usage(torch.tensor([0, 1, 1, 5]), 8) == 3 / 8


def test_ema_update_moves_codes_toward_their_vectors():
    g = torch.Generator().manual_seed(1)
    codebook = torch.randn(4, 3, generator=g)
    cluster_size, embed_sum = torch.ones(4), codebook.clone()
    target = torch.tensor([5.0, -2.0, 1.0])
    z = target + 0.1 * torch.randn(64, 3, generator=g)  # all near one point
    indices = nearest_code(z, codebook)
    chosen = int(indices[0])
    indices[:] = chosen
    before = (codebook[chosen] - target).norm()
    others = codebook[[i for i in range(4) if i != chosen]].clone()
    ema_update(codebook, cluster_size, embed_sum, z, indices, decay=0.9)
    assert (codebook[chosen] - target).norm() < before
    assert torch.allclose(codebook[[i for i in range(4) if i != chosen]], others, atol=1e-3)  # unassigned barely move


def test_ema_update_with_no_memory_is_the_k_means_step():
    z = torch.randn(40, 2)
    indices = torch.arange(4).repeat(10)  # every code gets 10 vectors
    codebook, cluster_size, embed_sum = torch.zeros(4, 2), torch.zeros(4), torch.zeros(4, 2)
    ema_update(codebook, cluster_size, embed_sum, z, indices, decay=0.0, eps=1e-9)
    means = torch.stack([z[indices == k].mean(0) for k in range(4)])
    assert torch.allclose(codebook, means, atol=1e-5)


def test_restart_dead_codes_moves_only_dead_codes_onto_data():
    codebook = torch.full((6, 2), 100.0)
    usage = torch.tensor([5.0, 0.0, 3.0, 0.0, 0.0, 2.0])
    z = torch.randn(50, 2)
    dead = restart_dead_codes(codebook, usage, z, threshold=0.5)
    assert dead.tolist() == [1, 3, 4]
    assert (codebook[[0, 2, 5]] == 100.0).all()
    assert codebook[dead].abs().max() < 10  # now where the data is


def test_init_from_data_puts_codes_on_data():
    codebook = torch.full((8, 3), 50.0)
    z = torch.randn(100, 3)
    init_from_data(codebook, z)
    assert squared_distances(codebook, z).min(dim=1).values.max() < 0.1


def test_quantizer_output_shapes_and_lookup_round_trip():
    vq = VectorQuantizer(num_codes=32, code_dim=4).eval()
    z = torch.randn(2, 4, 3, 5)
    out = vq(z)
    assert isinstance(out, Quantized)
    assert out.z_q.shape == z.shape and out.indices.shape == (2, 3, 5) and out.indices.dtype == torch.long
    assert torch.allclose(vq.lookup(out.indices), out.z_q)
    brute = nearest_code(z.permute(0, 2, 3, 1).reshape(-1, 4), vq.codebook)  # (B, h, w, D) -> (N, D)
    assert torch.equal(out.indices.reshape(-1), brute)
    counts = torch.bincount(out.indices.flatten(), minlength=32).float()  # (32,): how often each code was picked
    assert out.usage == pytest.approx((counts > 0).float().mean().item())  # the share of codes used at least once
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    assert out.perplexity.item() == pytest.approx(entropy.exp().item(), rel=1e-5)  # exp(entropy) of the histogram


def test_quantizer_eval_mode_changes_nothing_and_training_mode_updates_ema():
    vq = VectorQuantizer(num_codes=16, code_dim=4)
    vq.eval()
    before = vq.codebook.detach().clone()
    vq(torch.randn(4, 4, 4, 4))
    assert torch.equal(vq.codebook, before) and int(vq.steps) == 0
    vq.train()
    vq(torch.randn(4, 4, 4, 4))
    assert not torch.equal(vq.codebook, before) and int(vq.steps) == 1
    assert not vq.codebook.requires_grad  # EMA codes learn by averages, not gradients


def test_quantizer_without_ema_learns_codes_by_gradient():
    vq = VectorQuantizer(num_codes=8, code_dim=4, ema=False).train()
    z = torch.randn(2, 4, 2, 2, requires_grad=True)
    out = vq(z)
    (out.z_q.sum() + out.loss).backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    # the encoder gets the straight-through gradient (ones) plus the commitment gradient
    expected = 1.0 + 0.25 * 2 * (z - out.z_q).detach() / z.numel()
    assert torch.allclose(z.grad, expected, atol=1e-6)


def test_dead_codes_get_restarted_early_in_training():
    # data spread over 64 clusters; a collapsed start: all 16 codes at one far point, so code 0 wins everything
    torch.manual_seed(0)
    centres = torch.randn(64, 4) * 3
    vq = VectorQuantizer(num_codes=16, code_dim=4, restart_every=5, restart_threshold=0.5).train()
    vq.codebook.data.fill_(50.0)
    vq.steps.fill_(1)  # pretend training already started: no initialisation from data
    used = []
    for step in range(40):
        pick = torch.randint(0, 64, (8, 4, 4))  # (B, h, w) cluster of each position
        z = (centres[pick] + 0.05 * torch.randn(8, 4, 4, 4)).permute(0, 3, 1, 2)  # (B, h, w, D) -> (B, D, h, w)
        used.append(vq(z).usage)
    assert used[0] == 1 / 16  # collapsed: one code takes every vector
    assert used[-1] == 1.0, used  # restarts brought every code back within a few dozen steps


def test_quantizer_rejects_bad_inputs():
    vq = VectorQuantizer(num_codes=8, code_dim=4)
    with pytest.raises(ValueError, match="expected z"):
        vq(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq.lookup(torch.full((1, 2, 2), 8))
    with pytest.raises(ValueError, match="integer"):
        vq.lookup(torch.zeros(1, 2, 2))


def test_vq_module_imports_no_model_module():
    tree = ast.parse((Path(__file__).parent.parent / "mmcore" / "vq.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any(name.split(".")[-1] in {"clip", "vqgan", "dalle", "unclip", "guided", "train"} for name in imported)

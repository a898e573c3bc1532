"""Tests of VQGAN+CLIP generation (:mod:`mmcore.guided`): prompt parsing, the spherical distance, cutouts, the loop."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import floor_seed
from PIL import Image

from mmcore import guided
from mmcore.clip import normalize_pixels
from mmcore.images import to_tensor
from mmcore.generation import Generation
from mmcore.guided import (GuidedResult, clamp_latent, codebook_bounds, make_cutouts, parse_prompts, quantize_st,
                           spherical_distance, total_variation)

PLAIN = guided.GuidedConfig.plain()  # classic VQGAN+CLIP: no prior, fast enough for many small tests

# ------------------------------------------------------------------------------------------------ parse_prompts


def test_parse_single_prompt_defaults_to_weight_one():
    assert parse_prompts("a red circle") == [("a red circle", 1.0)]


def test_parse_weighted_prompts():
    assert parse_prompts("a red circle:1 | blue:-0.5") == [("a red circle", 1.0), ("blue", -0.5)]
    assert parse_prompts(" a star : 2.5 |a heart") == [("a star", 2.5), ("a heart", 1.0)]
    assert parse_prompts("x:1e-1") == [("x", 0.1)]


def test_a_colon_before_a_phrase_is_text_not_a_weight():
    assert parse_prompts("on the left: a red circle") == [("on the left: a red circle", 1.0)]
    assert parse_prompts("বাঁদিকে: একটি লাল বৃত্ত | নীল:-1") == [("বাঁদিকে: একটি লাল বৃত্ত", 1.0), ("নীল", -1.0)]


def test_parse_bengali_prompts():
    assert parse_prompts("একটি লাল বৃত্ত") == [("একটি লাল বৃত্ত", 1.0)]
    assert parse_prompts("একটি লাল বৃত্ত:2 | নীল:-1") == [("একটি লাল বৃত্ত", 2.0), ("নীল", -1.0)]


@pytest.mark.parametrize("text", ["", "   ", "a red circle | ", "|", ":1", " :2 | blue"])
def test_parse_empty_prompts_raise(text):
    with pytest.raises(ValueError, match="empty"):
        parse_prompts(text)


@pytest.mark.parametrize("text", ["a red circle:abc", "a red circle:", "a:nan", "a:inf"])
def test_parse_bad_weights_raise(text):
    with pytest.raises(ValueError, match="weight"):
        parse_prompts(text)


def test_parse_needs_a_positive_weight():
    with pytest.raises(ValueError, match="positive"):
        parse_prompts("red:-1 | blue:0")


def test_parse_rejects_non_strings():
    with pytest.raises(TypeError):
        parse_prompts(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- spherical_distance


def _unit(angle: float) -> torch.Tensor:
    return torch.tensor([math.cos(angle), math.sin(angle), 0.0])


def test_spherical_distance_zero_for_equal_vectors():
    a = torch.nn.functional.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert torch.allclose(spherical_distance(a, a), torch.zeros(5), atol=1e-6)
    assert torch.allclose(spherical_distance(a, 3.0 * a), torch.zeros(5), atol=1e-6)  # scale does not matter


def test_spherical_distance_hand_computed():
    # orthogonal unit vectors: |a - b| = sqrt(2), angle = pi / 2, distance = 2 * (pi / 4) ** 2 = pi^2 / 8
    d = spherical_distance(_unit(0.0), _unit(math.pi / 2))
    assert d.item() == pytest.approx(math.pi**2 / 8, rel=1e-5)
    # opposite vectors: angle pi -> pi^2 / 2
    assert spherical_distance(_unit(0.0), _unit(math.pi)).item() == pytest.approx(math.pi**2 / 2, rel=1e-5)
    # in general: angle ** 2 / 2
    assert spherical_distance(_unit(0.0), _unit(0.3)).item() == pytest.approx(0.3**2 / 2, rel=1e-4)


def test_spherical_distance_monotone_in_angle():
    angles = torch.linspace(0, math.pi, 50)
    d = torch.stack([spherical_distance(_unit(0.0), _unit(float(t))) for t in angles])
    assert (d[1:] > d[:-1]).all()


def test_spherical_distance_broadcasts():
    a, b = torch.randn(7, 1, 8), torch.randn(1, 3, 8)
    assert spherical_distance(a, b).shape == (7, 3)


# ---------------------------------------------------------------------------------------- cutouts and latents


def test_make_cutouts_shape_range_and_determinism():
    x = torch.rand(2, 3, 32, 32)
    a = make_cutouts(x, 5, generator=torch.Generator().manual_seed(1))
    b = make_cutouts(x, 5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (10, 3, 32, 32)
    assert torch.equal(a, b)
    plain = make_cutouts(x, 3, min_scale=1.0, max_shift=0, flip=False, noise=0.0)
    assert torch.equal(plain, x.repeat_interleave(3, dim=0))  # no augmentation: copies, image-major


def test_make_cutouts_passes_gradients():
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    make_cutouts(x, 4, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_codebook_bounds_and_clamp():
    codebook = torch.tensor([[0.0, -1.0], [2.0, 1.0], [1.0, 0.5]])  # (K=3, D=2)
    low, high = codebook_bounds(codebook)
    assert low.flatten().tolist() == [0.0, -1.0] and high.flatten().tolist() == [2.0, 1.0]
    z = torch.tensor([5.0, -5.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    assert clamp_latent(z, low, high)[0, :, 0, 0].tolist() == [2.0, -1.0]


def test_quantize_st_value_and_gradient():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[[[0.2]], [[0.1]]], [[[0.9]], [[0.7]]]]).reshape(2, 2, 1, 1).requires_grad_(True)
    z_st, idx = quantize_st(z, codebook)
    assert idx.flatten().tolist() == [0, 1]
    assert torch.equal(z_st.detach()[1, :, 0, 0], torch.tensor([1.0, 1.0]))
    z_st.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # straight-through: identity gradient


def test_total_variation():
    assert total_variation(torch.ones(1, 3, 8, 8)).item() == 0.0
    assert total_variation(torch.rand(1, 3, 8, 8)).item() > 0.0


# ----------------------------------------------------------------------------------------------------- the loop


def test_generate_result_fields_and_loss_goes_down():
    r = guided.generate("a red circle", steps=10, seed=0, cutouts=8, frame_every=5, config=PLAIN)
    assert isinstance(r, GuidedResult) and isinstance(r, Generation)  # the result type of every generator
    assert isinstance(r.image, Image.Image) and r.image.size == (32, 32) and r.image.mode == "RGB"
    assert len(r.frames) == 3 and all(isinstance(f, Image.Image) for f in r.frames)  # steps 0, 5 + the final
    assert len(r.losses) == 10 and all(math.isfinite(v) for v in r.losses)
    clip_model, tokenizer, _ = guided.default_models("cpu")
    with torch.no_grad():  # the score is CLIP's cosine between the returned picture and the prompt
        img = clip_model.encode_image(normalize_pixels(to_tensor(r.image), 32), normalize=True)
        txt = clip_model.encode_text(tokenizer(["a red circle"]), normalize=True)
    assert r.clip_score == pytest.approx((img * txt).sum().item(), abs=2e-3)
    assert r.codes.shape == (1, 8, 8) and r.pixels.shape == (1, 3, 32, 32) and r.scores.tolist() == [r.clip_score]
    _, _, vqgan = guided.default_models("cpu")
    assert torch.allclose(r.pixels, vqgan.decode_indices(r.codes).clamp(0, 1))  # the picture is its codes drawn
    assert r.prompts == [("a red circle", 1.0)]
    assert sum(r.losses[-3:]) / 3 < sum(r.losses[:3]) / 3


def test_generate_is_deterministic_for_a_seed():
    a = guided.generate("একটি নীল বর্গ", steps=4, seed=3, cutouts=4, config=PLAIN)
    b = guided.generate("একটি নীল বর্গ", steps=4, seed=3, cutouts=4, config=PLAIN)
    c = guided.generate("একটি নীল বর্গ", steps=4, seed=4, cutouts=4, config=PLAIN)
    assert a.losses == b.losses and a.image.tobytes() == b.image.tobytes()
    assert a.losses != c.losses


def test_generate_weighted_and_init_image():
    init = Image.new("RGB", (32, 32), (230, 230, 220))
    r = guided.generate("a green heart:1 | red:-0.5", steps=3, seed=0, cutouts=4, init_image=init, config=PLAIN)
    assert r.prompts == [("a green heart", 1.0), ("red", -0.5)] and len(r.losses) == 3
    for init_name in guided.INITS:
        r = guided.generate("a star", steps=1, seed=0, cutouts=2, init=init_name, starts=2, prior_samples=4)
        assert r.image.size == (32, 32) and r.start in (0, 1)


@pytest.mark.parametrize("kwargs, match", [(dict(prompt=""), "empty"), (dict(prompt="a:x"), "weight"),
                                           (dict(prompt="a star", steps=-1), "steps"),
                                           (dict(prompt="a star", init="nope"), "init"),
                                           (dict(prompt="a star", starts=0), "starts"),
                                           (dict(prompt="a star", starts=8, prior_samples=4), "prior_samples")])
def test_generate_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        guided.generate(**kwargs)


def test_render_init_is_a_training_composition_and_reencode_projects_towards_real_latents():
    from mmcore.data import HELDOUT, dataset_images

    a = guided.render_init_attributes(0)
    assert a == guided.render_init_attributes(0) and (a["shape"], a["color"]) not in HELDOUT
    _, _, vqgan = guided.default_models("cpu")
    codebook = vqgan.quantizer.codebook.detach()
    # re-encoding is a projection towards Shapes-like latents: a real picture's latent keeps most of its codes
    # (measured 75 % of 16 x 64), a random latent loses almost all of them (measured 10 %)
    x = dataset_images(16, "test")
    with torch.no_grad():
        z = vqgan.encode_continuous(x)  # (16, D, 8, 8)
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0)) * z.std()
        kept = {}
        for name, latent in (("real", z), ("random", noise)):
            again = guided.reencode(vqgan, latent, codebook)
            assert again.shape == latent.shape
            kept[name] = (quantize_st(latent, codebook)[1] == quantize_st(again, codebook)[1]).float().mean().item()
    assert kept["real"] > 0.6 and kept["random"] < 0.3, kept


# ------------------------------------------------------------------------------------- the prior over codes


def test_soft_assignment_rows_are_distributions_around_the_nearest_code():
    from mmcore.vq import nearest_code

    torch.manual_seed(0)
    codebook = torch.randn(16, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    probs = guided.soft_assignment(z, codebook, temperature=0.5)
    assert probs.shape == (2, 9, 16)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 9), atol=1e-6)
    nearest = nearest_code(z.detach().permute(0, 2, 3, 1).reshape(-1, 4), codebook).view(2, 9)
    assert torch.equal(probs.argmax(-1), nearest)
    assert guided.soft_assignment(z, codebook, 1e-4).max(-1).values.min() > 0.99  # cold: one-hot
    probs[..., 0].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_prior_cross_entropy_of_one_hot_codes_is_the_negative_log_likelihood():
    from mmcore.dalle import DALLE, DALLEConfig

    torch.manual_seed(0)
    prior = DALLE(DALLEConfig.toy()).eval()
    G, K = prior.cfg.grid_size, prior.cfg.num_codes
    codes = torch.randint(0, K, (3, G, G))
    one_hot = torch.nn.functional.one_hot(codes.flatten(1), K).float()  # (3, G*G, K)
    text = prior.null_text(3)
    ce = prior.soft_code_cross_entropy(text, one_hot)
    assert torch.allclose(ce, -prior.code_log_likelihood(text, codes), atol=1e-5)
    soft = (one_hot * 0.9 + 0.1 / K).requires_grad_(True)
    prior.soft_code_cross_entropy(text, soft).sum().backward()
    assert soft.grad.abs().sum() > 0  # differentiable in the code distributions


def test_generate_with_the_prior_reports_where_the_image_came_from():
    r = guided.generate("a blue square", steps=4, seed=1, cutouts=4, starts=2, prior_samples=8, select_every=2,
                        frame_every=2)
    assert r.config.uses_prior and r.log_likelihood is not None and math.isfinite(r.log_likelihood)
    assert r.start in (0, 1) and r.step in (0, 2, 4)
    assert isinstance(r.init_image, Image.Image) and len(r.frames) == 3
    again = guided.generate("a blue square", steps=4, seed=1, cutouts=4, starts=2, prior_samples=8, select_every=2,
                            frame_every=2)
    assert again.image.tobytes() == r.image.tobytes() and again.losses == r.losses


def test_full_method_draws_what_the_judge_recognises():
    """A regression check on a fixed sample, not on seeds chosen because they pass: the first four training
    compositions of :func:`mmcore.data.seen_pairs`, seed 0. The benchmark (tests/benchmarks/bench_guided.py) measured
    88.9 % fidelity on 54 pictures of seen compositions; at that rate fewer than 2 faithful of 4 happens 0.3 % of
    the time. (Held-out compositions, 33 % there, are too rare a success for a 4-picture floor: the benchmark holds
    the overall rate to its >= 60 % target.)"""
    from mmcore import judge
    from mmcore.data import pair_prompt, seen_pairs

    referee = judge.load()
    pairs = seen_pairs(4)
    images = [guided.generate(pair_prompt(shape, color), seed=floor_seed(0)).image for shape, color in pairs]
    result = referee.report(images, [{"shape": s, "color": c} for s, c in pairs])
    print("VQGAN+CLIP, 4 seen compositions:", result)
    assert result["fidelity"] >= 0.5, (pairs, result)

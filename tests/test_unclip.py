"""Tests of mmcore.diffusion (schedule, noising, DDIM), mmcore.unclip (prior, decoder, the two-stage model,
variations, interpolation, checkpoints) and mmcore.train_unclip (pool, caption embeddings, a few training steps,
the command line).

Everything runs on the CPU with tiny random models (a random VQGAN and CLIP too), except the floor test of the
shipped ``shapes-unclip``, which is skipped until that checkpoint exists.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import floor_seed
import torch.nn.functional as F

import mmcore.unclip
import mmcore.vqgan
from mmcore.clip import CLIP, CLIPConfig, Preprocess, normalize_pixels
from mmcore.data import NUM_COMBOS, TRAIN_TEMPLATES, seen_pairs
from mmcore.diffusion import add_noise, alpha_bar, ddim_step, predicted_noise, time_grid, timestep_embedding
from mmcore.images import to_pil
from mmcore.sampling import PromptTooLongError
from mmcore.tokenizer import BPETokenizer
from mmcore.pools import build_embedding_pool, draw_prior_batch, text_embedding_table
from mmcore.train_unclip import UnCLIPTrainConfig, evaluate_decoder, main, train_unclip
from mmcore.generation import Generation
from mmcore.unclip import (CodeDecoder, DecoderConfig, DiffusionPrior, PriorConfig, UnCLIP, UnCLIPSampleConfig, decode,
                           generate, image_embeddings, interpolate, slerp, text_embeddings, variations)
from mmcore.vqgan import VQGAN, VQGANConfig

torch.set_num_threads(1)

# floors of the shipped checkpoint on the test's own 32-picture sample (8 seen pairs x 2 languages x 2), measured over
# seeds 0-3 (128 pictures): fidelity 77.3 % (69-88 % per seed), right shape and colour 97.7 % (94-100 %), without the
# prior 0-3 %. One 32-picture sample's standard deviation is about 7.4 points (fidelity) and 2.6 (shape and colour):
# the floors sit about 3 of them below. The full report is in data/checkpoints/shapes-unclip.md.
SEEN_FLOOR = 0.55  # clean + right shape + right colour, through prior and decoder
SHAPE_COLOR_FLOOR = 0.9  # right shape and colour, clean or not
PRIOR_GAIN_FLOOR = 0.3  # fidelity with the prior minus fidelity with the text embedding fed to the decoder
# variations of 48 test pictures (24 x 2), judged: measured 71.4 % over seeds 1-8 (384 pictures, range 54-83 %);
# one 48-picture sample's standard deviation is about 6.5 points, so 50 % sits about 3 standard deviations below
VARIATION_FLOOR = 0.5


@pytest.fixture(autouse=True)
def _normal_mode(monkeypatch):
    monkeypatch.delenv("MMCORE_QUICK", raising=False)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.course()


@pytest.fixture(scope="module")
def vqgan() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(VQGANConfig.tiny()).eval()


@pytest.fixture(scope="module")
def clip(tokenizer) -> CLIP:
    torch.manual_seed(1)
    return CLIP(CLIPConfig.tiny(vocab_size=tokenizer.vocab_size, eot_token=tokenizer.eot_token, text_layers=1,
                                vision_layers=1, embed_dim=32)).eval()


@pytest.fixture(scope="module")
def model(clip, tokenizer, vqgan) -> UnCLIP:
    torch.manual_seed(2)
    prior = DiffusionPrior(PriorConfig(embed_dim=32, width=48, depth=1))
    decoder = CodeDecoder(DecoderConfig(embed_dim=32, num_codes=vqgan.cfg.num_codes, code_dim=vqgan.cfg.code_dim,
                                        width=32, layers=1, heads=2), vqgan.quantizer.codebook)
    m = UnCLIP(prior, decoder).eval()
    m.sample_config = UnCLIPSampleConfig(prior_steps=4, decoder_steps=4)
    return m


@pytest.fixture(scope="module")
def helpers(clip, tokenizer, vqgan) -> dict:
    """The helper models the pipelines take: a random tiny CLIP (with the course tokenizer) and VQGAN."""
    return {"clip": clip, "tokenizer": tokenizer, "vqgan": vqgan}


# ------------------------------------------------------------------------------------------------ diffusion


def test_schedule_goes_from_clean_to_noise():
    t = torch.linspace(0, 1, 11)
    a = alpha_bar(t)
    assert a[0] > 0.9999 and a[-1] < 1e-3
    assert torch.all(a[1:] < a[:-1])  # strictly less signal as time goes on
    g = time_grid(5)
    assert g.tolist() == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    with pytest.raises(ValueError, match="steps"):
        time_grid(0)


def test_noise_round_trip_and_exact_ddim_path():
    """Given the true x0, a deterministic DDIM step lands exactly on the noised sample at the next time."""
    torch.manual_seed(0)
    x0, noise = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    t, t_next = torch.full((4,), 0.7), torch.full((4,), 0.3)
    x_t = add_noise(x0, t, noise)
    assert torch.allclose(predicted_noise(x_t, x0, t), noise, atol=1e-5)
    assert torch.allclose(ddim_step(x_t, x0, t, t_next), add_noise(x0, t_next, noise), atol=1e-5)
    assert torch.equal(ddim_step(x_t, x0, t, torch.zeros(4)), x0)  # the last step returns the guess
    # eta = 1 adds fresh noise of the right size: its variance is DDPM's posterior variance
    # beta~ = (1 - a') / (1 - a) * beta with beta = 1 - a / a' (Ho et al. 2020, eq. 7), and the rest keeps the
    # marginal variance: sqrt(a') x0 + sqrt(1 - a' - beta~) eps + sqrt(beta~) noise
    fresh = torch.randn(4, 3, 5)
    stochastic = ddim_step(x_t, x0, t, t_next, eta=1.0, noise=fresh)
    a, a_next = alpha_bar(t)[0], alpha_bar(t_next)[0]
    posterior_var = (1 - a_next) / (1 - a) * (1 - a / a_next)
    expected = a_next.sqrt() * x0 + (1 - a_next - posterior_var).sqrt() * noise + posterior_var.sqrt() * fresh
    torch.testing.assert_close(stochastic, expected, atol=1e-5, rtol=1e-5)
    half = ddim_step(x_t, x0, t, t_next, eta=0.5, noise=fresh)  # eta scales the standard deviation
    expected = a_next.sqrt() * x0 + (1 - a_next - posterior_var / 4).sqrt() * noise + (posterior_var / 4).sqrt() * fresh
    torch.testing.assert_close(half, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x_t, x0, t, t_next, eta=0.5)


def test_timestep_embedding_is_the_transformer_sinusoid_of_1000_t():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    e = timestep_embedding(t, 9)
    assert e.shape == (4, 9) and torch.all(e[:, -1] == 0)  # odd sizes are padded
    h = 4  # cos and sin of 4 frequencies 1000^(-k/4), k = 0 .. 3, of the time in 1000 steps
    for i, ti in enumerate(t.tolist()):
        for k in range(h):
            angle = 1000 * ti * 1000 ** (-k / h)
            assert e[i, k].item() == pytest.approx(math.cos(angle), abs=1e-4)
            assert e[i, h + k].item() == pytest.approx(math.sin(angle), abs=1e-4)


def test_slerp_stays_on_the_sphere():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(3, 8), dim=-1), F.normalize(torch.randn(3, 8), dim=-1)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.allclose((mid * a).sum(-1), (mid * b).sum(-1), atol=1e-5)  # equal angles to both ends
    steps = slerp(a[:1].expand(5, -1), b[:1].expand(5, -1), torch.linspace(0, 1, 5)[:, None])
    cos_to_a = (steps * a[:1]).sum(-1)
    assert torch.all(cos_to_a[1:] < cos_to_a[:-1])  # walks steadily away from a
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-6)  # equal ends: no division by zero


# ------------------------------------------------------------------------------------------- prior and decoder


def test_prior_shapes_guidance_and_determinism():
    torch.manual_seed(0)
    prior = DiffusionPrior(PriorConfig(embed_dim=16, width=32, depth=1)).eval()
    text = F.normalize(torch.randn(3, 16), dim=-1)
    x, t = torch.randn(3, 16), torch.rand(3)
    assert prior(x, t, text).shape == (3, 16)
    dropped = prior(x, t, text, drop=torch.tensor([True, True, True]))
    assert torch.allclose(dropped, prior(x, t, torch.zeros(3, 16), drop=torch.tensor([True] * 3)))  # text unused
    a = prior.sample(text, steps=3, generator=torch.Generator().manual_seed(0))
    b = prior.sample(text, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.allclose(a.norm(dim=-1), torch.ones(3), atol=1e-5)
    plain = prior.sample(text, steps=3, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a, plain)


def test_prior_learns_a_fixed_mapping():
    """A few hundred steps on 4 (text, image) pairs: the prior's samples land near the right image embeddings."""
    torch.manual_seed(0)
    prior = DiffusionPrior(PriorConfig(embed_dim=16, width=64, depth=2))
    text, image = F.normalize(torch.randn(4, 16), dim=-1), F.normalize(torch.randn(4, 16), dim=-1)
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss = prior.loss(image.repeat(16, 1), text.repeat(16, 1), drop_prob=0.1)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first
    samples = prior.eval().sample(text, steps=20, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    cos = samples @ image.t()  # (4, 4)
    assert torch.equal(cos.argmax(dim=1), torch.arange(4)) and cos.diagonal().min() > 0.8


def test_decoder_shapes_and_expected_latents(model):
    dec = model.decoder
    codes = torch.randint(dec.cfg.num_codes, (2, 8, 8))
    x0 = dec.latents(codes)
    assert x0.shape == (2, 64, dec.cfg.code_dim)
    one_hot = F.one_hot(codes.flatten(1), dec.cfg.num_codes).float() * 1e4  # certain logits
    assert torch.allclose(dec.expected_latents(one_hot), x0, atol=1e-5)
    logits = dec(x0, torch.rand(2), F.normalize(torch.randn(2, 32), dim=-1))
    assert logits.shape == (2, 64, dec.cfg.num_codes)
    loss = dec.loss(codes, F.normalize(torch.randn(2, 32), dim=-1))
    assert math.isfinite(loss.item()) and loss.item() > 0


def test_decoder_learns_codes_from_embeddings(vqgan):
    """Two images, two embeddings: after training, each embedding decodes to (mostly) its own image's codes."""
    torch.manual_seed(0)
    dec = CodeDecoder(DecoderConfig(embed_dim=16, num_codes=vqgan.cfg.num_codes, code_dim=vqgan.cfg.code_dim,
                                    width=48, layers=2, heads=2, latent_scale=float(vqgan.quantizer.codebook.std())),
                      vqgan.quantizer.codebook)
    codes = torch.randint(vqgan.cfg.num_codes, (2, 8, 8))
    emb = F.normalize(torch.randn(2, 16), dim=-1)
    optimizer = torch.optim.Adam(dec.parameters(), lr=3e-3)
    for _ in range(150):
        loss = dec.loss(codes.repeat(8, 1, 1), emb.repeat(8, 1), drop_prob=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out = dec.eval().sample_codes(emb, steps=10, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert (out == codes).float().mean() > 0.9


def test_decoder_same_noise_same_codes(model):
    emb = F.normalize(torch.randn(3, 32), dim=-1)
    noise = torch.randn(3, 64, model.decoder.cfg.code_dim)
    a = model.decoder.sample_codes(emb, steps=3, noise=noise)
    b = model.decoder.sample_codes(emb, steps=3, noise=noise)
    assert torch.equal(a, b) and a.shape == (3, 8, 8)


# ---------------------------------------------------------------------------------------------- the two stages


def test_generate_variations_interpolate(model, helpers, clip, vqgan):
    result = generate("a red circle", model, n=3, seed=0, **helpers)
    assert isinstance(result, Generation) and result.prompt == "a red circle" and result.seconds > 0
    images = result.images
    assert len(images) == 3 and images[0].size == (32, 32)
    assert torch.equal(result.pixels, vqgan.decode_indices(result.codes).clamp(0, 1))  # codes -> pictures
    again = generate("a red circle", model, n=3, seed=0, **helpers).images
    assert [im.tobytes() for im in images] == [im.tobytes() for im in again]
    raw = generate("একটি নীল বর্গ", model, n=2, seed=1, use_prior=False, **helpers)
    assert raw.pixels.shape == (2, 3, 32, 32) and raw.codes.shape == (2, 8, 8)
    assert torch.allclose(raw.embeddings[0], text_embeddings("একটি নীল বর্গ", clip, helpers["tokenizer"])[0], atol=1e-6)
    drawn = variations(images[0], model, n=4, clip=clip, vqgan=vqgan)
    assert len(drawn) == 4
    emb = image_embeddings(images[0], clip)  # what the variations are drawn from
    expected = model.decode_codes(emb.expand(4, -1), seed=0)  # (4, G, G): the same decoder run by hand
    assert torch.equal(drawn.codes, expected)
    assert len(variations(raw.pixels[0], model, n=2, clip=clip, vqgan=vqgan)) == 2  # a (3, S, S) tensor works too
    path = interpolate(images[0], images[1], model, steps=5, clip=clip, vqgan=vqgan)
    assert len(path) == 5
    # the two ends decode exactly the two pictures' own embeddings, from the path's shared start noise
    ends = torch.cat([image_embeddings(images[0], clip), image_embeddings(images[1], clip)])  # (2, E)
    G, D = model.decoder.cfg.grid_size, model.decoder.cfg.code_dim
    noise = torch.randn(1, G * G, D, generator=torch.Generator().manual_seed(0)).expand(2, -1, -1)
    by_hand = decode(ends, model, seed=0, noise=noise, vqgan=vqgan).images
    assert path.images[0].tobytes() == by_hand[0].tobytes() and path.images[-1].tobytes() == by_hand[1].tobytes()


def test_prior_embeddings_keep_the_candidate_closest_to_the_text(model, helpers):
    text = text_embeddings(["a red circle", "a blue square"], helpers["clip"], helpers["tokenizer"])
    one = model.prior_embeddings(text, n=3, seed=0, prior_candidates=1)
    best = model.prior_embeddings(text, n=3, seed=0, prior_candidates=4)
    assert one.shape == best.shape == (2, 3, 32)
    assert (best * text[:, None]).sum(-1).mean() >= (one * text[:, None]).sum(-1).mean()


def test_image_embeddings_pil_and_tensor_agree(model, helpers, clip):
    result = generate("a red circle", model, n=2, seed=0, **helpers)
    from_pil = image_embeddings(result.images, clip)
    from_tensor = image_embeddings(result.pixels, clip)
    assert torch.allclose(from_pil, from_tensor, atol=3e-3)  # PIL rounds pixels to 8 bits
    pixels = (torch.rand(1, 3, 32, 32) * 255).round() / 255  # 8-bit values, as a PIL image holds
    assert torch.allclose(normalize_pixels(pixels, 32)[0], Preprocess(32)(to_pil(pixels)[0]), atol=1e-5)


def test_clear_errors(model, helpers, clip, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        generate("  ", model, **helpers)
    with pytest.raises(PromptTooLongError, match="at most"):
        generate("a red circle " * 20, model, **helpers)
    with pytest.raises(TypeError, match="string"):
        generate(3, model, **helpers)
    with pytest.raises(TypeError, match="UnCLIPSampleConfig"):
        generate("a red circle", model, steps=3, **helpers)
    with pytest.raises(ValueError, match="n must be"):
        generate("a red circle", model, n=0, **helpers)
    with pytest.raises(ValueError, match="tokenizer"):
        text_embeddings("a red circle", clip)  # a CLIP of one's own needs its tokenizer
    picture = generate("a red circle", model, n=1, **helpers).image
    with pytest.raises(ValueError, match="steps must be"):
        interpolate(picture, picture, model, steps=1, clip=clip, vqgan=helpers["vqgan"])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        image_embeddings(torch.rand(2, 32, 32), clip)
    with pytest.raises(ValueError, match="unknown unCLIP model"):
        mmcore.unclip.load(tmp_path / "missing.safetensors")


def test_save_load_round_trip(model, tmp_path, vqgan, clip, tokenizer):
    path = model.save(tmp_path / "u.safetensors", dtype=torch.float32, metrics={"x": 1.0})
    loaded = mmcore.unclip.load(path, device="cpu")
    assert loaded.card["metrics"] == {"x": 1.0} and loaded.sample_config == model.sample_config
    helpers = {"clip": clip, "tokenizer": tokenizer, "vqgan": vqgan}
    a, b = generate("a red circle", model, n=2, seed=3, **helpers), generate("a red circle", loaded, n=2, seed=3, **helpers)
    assert torch.equal(a.codes, b.codes)
    other = tmp_path / "other.safetensors"
    from mmcore.weights import save_checkpoint

    save_checkpoint(other, {"w": torch.zeros(1)}, {"model": "dalle"})
    with pytest.raises(ValueError, match="not an unCLIP checkpoint"):
        mmcore.unclip.load(other)


# --------------------------------------------------------------------------------------------------- training


def test_pool_and_caption_embeddings(clip, tokenizer, vqgan):
    pool = build_embedding_pool(clip, vqgan, 40, seed=0)
    again = build_embedding_pool(clip, vqgan, 40, seed=0)
    assert pool.codes.shape == (40, 64) and pool.codes.dtype == torch.uint8 and pool.image_emb.shape == (40, 32)
    assert torch.equal(pool.codes, again.codes) and torch.allclose(pool.image_emb, again.image_emb)
    assert torch.allclose(pool.image_emb.norm(dim=-1), torch.ones(40), atol=1e-5)
    table = text_embedding_table(clip, tokenizer)
    T = 2 * len(TRAIN_TEMPLATES["en"])
    assert table.shape == (NUM_COMBOS, T, 32) and torch.allclose(table.norm(dim=-1), torch.ones(NUM_COMBOS, T))
    image, text = draw_prior_batch(pool, table, 8, torch.Generator().manual_seed(0))
    assert image.shape == text.shape == (8, 32)


def test_a_few_training_steps_lower_the_losses(clip, tokenizer, vqgan, tmp_path):
    cfg = UnCLIPTrainConfig(prior_width=32, prior_depth=1, decoder_width=32, decoder_layers=1, decoder_heads=2,
                            pool_size=128, prior_steps=60, prior_batch_size=32, decoder_steps=60,
                            decoder_batch_size=16, decoder_lr=3e-3, warmup_steps=5, eval_images=32, eval_every=30,
                            final_eval_samples=0, history_every=10, progress=False, threads=1, device="cpu",
                            out=str(tmp_path / "t.safetensors"))
    result = train_unclip(cfg, clip=(clip, tokenizer), vqgan=vqgan)
    h = result.history
    assert h.prior_step[-1] == 60 and h.decoder_step[-1] == 60 and len(h.eval_test) == 2
    assert h.prior_loss[-1] < h.prior_loss[0] and h.decoder_loss[-1] < h.decoder_loss[0] - 0.3
    assert result.metrics["test_decoder_loss"] < math.log(vqgan.cfg.num_codes)
    card = json.loads((tmp_path / "t.json").read_text())
    assert card["model"] == "mmcore.unclip.UnCLIP" and card["training"]["prior_steps"] == 60 and "history" in card
    assert evaluate_decoder(result.model.decoder, build_embedding_pool(clip, vqgan, 16, 5)) > 0


def test_init_from_continues_a_checkpoint(clip, tokenizer, vqgan, tmp_path):
    common = dict(pool_size=64, eval_images=16, eval_every=0, final_eval_samples=0, progress=False, threads=1,
                  device="cpu", warmup_steps=1, prior_batch_size=16, decoder_batch_size=8)
    first = train_unclip(UnCLIPTrainConfig(prior_width=32, prior_depth=1, decoder_width=32, decoder_layers=1,
                                           decoder_heads=2, prior_steps=3, decoder_steps=3,
                                           out=str(tmp_path / "a.safetensors"), **common),
                         clip=(clip, tokenizer), vqgan=vqgan)
    more = train_unclip(UnCLIPTrainConfig(init_from=str(first.path), prior_steps=0, decoder_steps=4, seed=1, **common),
                        clip=(clip, tokenizer), vqgan=vqgan)
    assert more.metrics["prior_steps"] == 0 and more.metrics["decoder_steps"] == 4
    assert more.model.decoder.cfg.width == 32  # the sizes come from the checkpoint, not the config's defaults
    start = mmcore.unclip.load(first.path, device="cpu")  # the starting weights, as stored (float16)
    for a, b in zip(start.prior.parameters(), more.model.prior.parameters()):
        assert torch.equal(a, b)  # the prior did not train
    assert not all(torch.equal(a, b) for a, b in zip(start.decoder.parameters(), more.model.decoder.parameters()))
    other = VQGAN(VQGANConfig.tiny())
    with pytest.raises(ValueError, match="another CLIP or VQGAN"):
        train_unclip(UnCLIPTrainConfig(init_from=str(first.path), prior_steps=0, decoder_steps=1, **common),
                     clip=(clip, tokenizer), vqgan=other)


def test_quick_mode_and_command_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MMCORE_QUICK", "1")
    result = main(["--device", "cpu", "--threads", "1", "--no-progress", "--out", str(tmp_path / "q.safetensors")])
    assert result.metrics["decoder_steps"] == 6 and result.model.decoder.cfg.width == 32
    assert "saved" in capsys.readouterr().out
    card = json.loads((tmp_path / "q.json").read_text())
    assert card["command"].startswith("python -m mmcore.train_unclip")


# ------------------------------------------------------------------------------------------ shipped checkpoint


def test_shipped_checkpoint_floor():
    """Seen compositions, English and Bengali, 2 pictures each through prior and decoder; the same without the prior;
    and variations of test pictures: the judge says >= the floors."""
    from mmcore import judge
    from mmcore.train_unclip import judge_unclip, judge_variations

    model = mmcore.unclip.load("shapes-unclip", device="cpu")
    assert model.num_parameters() < 3_000_000
    # the error message for a missing file names the first training command; the shipped file continued it
    assert model.card["command"].startswith("python -m mmcore.train_unclip --init-from data/checkpoints/shapes-unclip")
    assert mmcore.unclip.TRAIN_COMMAND.startswith("python -m mmcore.train_unclip ")
    referee = judge.load()
    seed = floor_seed(0)
    result = judge_unclip(model, referee, seen_pairs(8), n=2, seed=seed)
    print("unCLIP seen:", result)
    assert result["images"] == 32
    assert result["fidelity"] >= SEEN_FLOOR and result["shape_color"] >= SHAPE_COLOR_FLOOR, result
    no_prior = judge_unclip(model, referee, seen_pairs(8), n=2, seed=seed, use_prior=False)
    assert result["fidelity"] - no_prior["fidelity"] >= PRIOR_GAIN_FLOOR, (result, no_prior)

    variations = judge_variations(model, referee, "test", n_images=24, per_image=2, seed=seed)
    print("unCLIP variations:", variations)
    assert variations["images"] == 48 and variations["fidelity"] >= VARIATION_FLOOR, variations


def test_shipped_variations_keep_what_clip_sees_in_their_source():
    """A variation is CLIP's view of its source picture drawn again: under CLIP it must be far closer to its own
    source than to the other sources. Measured on 4 x 8 test pictures (2 variations each): cosine 0.95 to 0.97 to
    the own source, -0.07 to 0.06 to the others."""
    from mmcore.data import ShapesDataset

    model = mmcore.unclip.load("shapes-unclip", device="cpu")
    data = ShapesDataset("test", n=8, image_size=32, seed=11)
    sources = image_embeddings([data[i][0] for i in range(8)])  # (8, E), the shipped CLIP
    drawn = decode(sources.repeat_interleave(2, dim=0), model, seed=0).pixels  # (16, 3, 32, 32)
    sim = image_embeddings(drawn).view(8, 2, -1) @ sources.t()  # (8, 2, 8): variation x source
    own = sim[torch.arange(8), :, torch.arange(8)]  # (8, 2)
    others = sim.permute(0, 2, 1)[~torch.eye(8, dtype=torch.bool)]  # (56, 2)
    assert own.mean() > 0.8 and others.mean() < 0.3 and (own.min(dim=1).values > others.view(8, 7, 2).amax((1, 2))).all()


def test_prompts_as_people_type_them_floor():
    """Unseen phrasings (mmcore.data.UNSEEN_PHRASINGS), one per (pair, language), 6 seen + 6 held-out pairs, one
    picture each, no re-ranking. Measured on 288 pictures (bench_phrasing): 69.4 % fidelity; on this 24-picture
    sample with seed offsets 0, 100, 200, 300: 58 to 75 % (69.8 % of 96), shape + colour 100 %. Floors a 24-picture
    sample's noise (about 9 points) clears: 45 % and 90 %."""
    from mmcore import judge
    from mmcore.data import HELDOUT, phrased_prompts

    model, referee = mmcore.unclip.load("shapes-unclip", device="cpu"), judge.load()
    prompts = phrased_prompts(seen_pairs(6) + sorted(HELDOUT), per_pair=1)
    images = [generate(text, model, n=1, seed=floor_seed(i)).image for i, (text, _, _) in enumerate(prompts)]
    result = referee.report(images, [wanted for _, _, wanted in prompts])
    assert result["images"] == 24 and result["fidelity"] >= 0.45 and result["shape_color"] >= 0.9, result

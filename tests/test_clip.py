"""Tests for mmcore.transformer and mmcore.clip: building blocks against hand-written maths, and the whole model
against open_clip and Hugging Face transformers with random weights (float32, CPU)."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmcore.clip import (
    CLIP,
    CLIPConfig,
    OPENAI_MEAN,
    OPENAI_STD,
    Preprocess,
    clip_loss,
    convert_openai_state_dict,
    eot_positions,
    load,
    patchify,
    zero_shot_classifier,
)
from mmcore.transformer import MLP, Attention, Block, FusedQuickGELUMLP, KVCache, Transformer, quick_gelu

TOL = 1e-4  # max absolute difference allowed in the parity tests

PROMPTS = [
    "a photo of a cat.",
    "a diagram",
    "a dog on the grass, seen from above",
    "A RED circle in the top-left corner!!",
    "two people riding bicycles at sunset near the sea",
    "an origami crane",
]


def small_config(**kw) -> CLIPConfig:
    """A fast config with OpenAI's vocabulary (so real OpenAI token batches fit)."""
    base = CLIPConfig.tiny(vocab_size=49408, eot_token=49407, context_length=77, image_size=64, patch_size=16)
    return replace(base, **kw)


@pytest.fixture(scope="module")
def openai_tokenizer():
    from mmcore.tokenizer import BPETokenizer

    return BPETokenizer.openai()  # ours, never a stand-in: a broken tokenizer must fail these tests


@pytest.fixture(scope="module")
def tokens(openai_tokenizer) -> torch.Tensor:
    return openai_tokenizer(PROMPTS)  # (6, 77)


# ---------------------------------------------------------------------------------------------- building blocks


def reference_attention(attn: Attention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, written out with matrices."""
    B, T, C = x.shape
    H, D = attn.heads, C // attn.heads
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).split(C, dim=-1)
    q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)  # (B, H, T, T)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = scores.softmax(-1) @ v  # (B, H, T, D)
    return attn.out(y.transpose(1, 2).reshape(B, T, C))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_reference(causal):
    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(2, 7, 32)
    expected = reference_attention(attn, x, causal)
    torch.testing.assert_close(attn(x, is_causal=causal), expected, atol=1e-5, rtol=1e-5)
    if causal:  # an explicit boolean mask gives the same result
        mask = torch.ones(7, 7, dtype=torch.bool).tril()
        torch.testing.assert_close(attn(x, attn_mask=mask), expected, atol=1e-5, rtol=1e-5)


def test_kv_cache_matches_full_causal_forward():
    torch.manual_seed(0)
    model = Transformer(32, 2, 4, activation="quick_gelu").eval()
    x = torch.randn(2, 9, 32)
    full = model(x, is_causal=True)
    cache = KVCache()
    parts = [model(x[:, :4], is_causal=True, cache=cache)]  # the "prompt"
    parts += [model(x[:, t : t + 1], is_causal=True, cache=cache) for t in range(4, 7)]  # one token at a time
    parts.append(model(x[:, 7:], is_causal=True, cache=cache))  # two at once, after a cache
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length() == 9


@pytest.mark.parametrize("causal", [False, True])
def test_output_index_matches_full_forward(causal):
    torch.manual_seed(0)
    model = Transformer(32, 3, 4).eval()
    x = torch.randn(3, 6, 32)
    index = torch.tensor([0, 5, 2])
    full = model(x, is_causal=causal)[torch.arange(3), index]
    torch.testing.assert_close(model(x, is_causal=causal, output_index=index), full, atol=1e-5, rtol=1e-5)


def test_fused_quick_gelu_mlp_matches_the_plain_mlp_with_and_without_autograd():
    torch.manual_seed(0)
    plain, fused = MLP(16, 64, "quick_gelu").double(), FusedQuickGELUMLP(16, 64, "quick_gelu").double()
    fused.load_state_dict(plain.state_dict())  # the same parameters, the same names
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    expected = plain.fc2(plain.fc1(x) * torch.sigmoid(1.702 * plain.fc1(x)))  # the formula, written out
    torch.testing.assert_close(plain(x), expected)
    with torch.no_grad():  # the in-place path
        torch.testing.assert_close(fused(x), expected)
    xg = x.clone().requires_grad_()
    fused(xg).sum().backward()
    grad = xg.grad.clone()
    xg.grad = None
    plain(xg).sum().backward()
    torch.testing.assert_close(grad, xg.grad)
    assert isinstance(Block(16, 2, activation="quick_gelu").mlp, FusedQuickGELUMLP)
    assert type(Block(16, 2, activation="gelu").mlp) is MLP


def test_quick_gelu_formula_and_gradient():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    expected = x * torch.sigmoid(1.702 * x)
    torch.testing.assert_close(quick_gelu(x), expected)
    torch.testing.assert_close(quick_gelu(x), torch.nn.functional.silu(1.702 * x) / 1.702)  # the form the fast MLP uses
    quick_gelu(x).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    expected.sum().backward()
    torch.testing.assert_close(grad, x.grad)


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = Block(16, 2, activation="gelu")
    x = torch.randn(2, 5, 16)
    h = x + block.attn(block.norm1(x))
    torch.testing.assert_close(block(x), h + block.mlp(block.norm2(h)))


def test_patchify_linear_equals_convolution():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 48)
    weight = torch.randn(20, 3, 8, 8)
    conv = F.conv2d(images, weight, stride=8)  # (2, 20, 4, 6)
    expected = conv.flatten(2).transpose(1, 2)  # (2, 24, 20)
    torch.testing.assert_close(F.linear(patchify(images, 8), weight.flatten(1)), expected, atol=1e-4, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------ the model


def test_eot_positions_first_occurrence_and_error():
    tokens = torch.tensor([[5, 7, 2, 0, 0], [5, 2, 2, 2, 0]])
    assert eot_positions(tokens, eot_token=2).tolist() == [2, 1]
    with pytest.raises(ValueError, match="end-of-text"):
        eot_positions(torch.tensor([[5, 7, 2], [5, 6, 7]]), eot_token=2)


def test_text_pooling_uses_eot_not_argmax():
    """The course tokenizer's end token need not be the largest id: pooling must follow eot_token."""
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny(eot_token=1)).eval()
    tokens = torch.tensor([[0, 4000, 37, 1, 0, 0], [0, 12, 1, 4095, 4094, 3]])
    with torch.no_grad():
        out = model.encode_text(tokens)
        # the same rows cut right after their eot give the same embeddings (padding after eot cannot matter)
        torch.testing.assert_close(out[0], model.encode_text(tokens[:1, :4])[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1], model.encode_text(tokens[1:, :3])[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="end-of-text"):
        model.encode_text(torch.tensor([[0, 5, 6]]))
    with pytest.raises(ValueError, match="context_length"):
        model.encode_text(torch.ones(1, 33, dtype=torch.long))


def test_forward_logits_and_temperature():
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny()).eval()
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    images = torch.randn(3, 3, 32, 32)
    tokens = torch.tensor([[4094, 10, 4095], [4094, 11, 4095]])
    with torch.no_grad():
        out = model(images, tokens)
        img, txt = model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True)
        torch.testing.assert_close(out.logits_per_image, img @ txt.t() / 0.07, atol=1e-4, rtol=1e-4)
        assert out.logits_per_image.shape == (3, 2)
        torch.testing.assert_close(out.logits_per_text, out.logits_per_image.t())
        model.logit_scale.fill_(10.0)  # exp(10) would be 22026: clamped
        assert model.temperature_scale().item() == pytest.approx(100.0)


def test_clip_loss_is_symmetric_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(5, 5)
    target = torch.arange(5)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    torch.testing.assert_close(clip_loss(logits, logits.t()), expected)
    torch.testing.assert_close(clip_loss(logits), expected)
    assert clip_loss(torch.eye(4) * 100) < 1e-6


def test_zero_shot_classifier_prompt_ensembling():
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny()).eval()

    def tokenizer(texts):  # a toy tokenizer: one id per character, then eot
        rows = [[4094] + [ord(c) % 4000 for c in t][:30] + [4095] for t in texts]
        out = torch.zeros(len(rows), 32, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out

    classes, templates = ["circle", "square", "star"], ["a {}.", "a photo of a {}", "{}!"]
    weights = zero_shot_classifier(model, tokenizer, classes, templates)
    assert weights.shape == (128, 3)
    torch.testing.assert_close(weights.norm(dim=0), torch.ones(3))
    with torch.no_grad():
        emb = model.encode_text(tokenizer([t.format("square") for t in templates]), normalize=True)  # (3, E)
    torch.testing.assert_close(weights[:, 1], F.normalize(emb.mean(0), dim=0), atol=1e-5, rtol=1e-5)


def test_training_step_tiny_learns():
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny()).train()
    images = torch.randn(8, 3, 32, 32)
    tokens = torch.randint(0, 4094, (8, 32))
    tokens[:, 0], tokens[torch.arange(8), torch.randint(3, 32, (8,))] = 4094, 4095
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = clip_loss(*model(images, tokens))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in model.parameters())
    assert losses[-1] < losses[0]


# ------------------------------------------------------------------------------------- architecture from shapes


@pytest.mark.parametrize("preset", ["tiny", "vit_b_32", "vit_b_16", "vit_l_14"])
def test_config_inferred_from_openai_shapes(preset):
    cfg = getattr(CLIPConfig, preset)()
    if preset == "tiny":
        cfg = replace(cfg, vision_heads=2, text_heads=2)  # OpenAI's rule: heads = width // 64
    with torch.device("meta"):  # shapes only: no memory, no time
        sd = CLIP(cfg).to_openai_state_dict()
        sd["input_resolution"] = torch.tensor(cfg.image_size)  # extras OpenAI's files carry are ignored
        inferred, _ = convert_openai_state_dict(sd)
        model = CLIP.from_openai_state_dict(sd)
    assert replace(inferred, eot_token=cfg.eot_token) == cfg
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_unknown_keys_are_rejected():
    with torch.device("meta"):
        sd = CLIP(small_config()).to_openai_state_dict()
    sd["visual.mystery.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected keys"):
        convert_openai_state_dict(sd)


def test_fp16_weights_become_fp32_and_round_trip():
    torch.manual_seed(0)
    model = CLIP(small_config()).eval()
    sd16 = {k: v.half() for k, v in model.to_openai_state_dict().items()}
    loaded = CLIP.from_openai_state_dict(sd16)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert not loaded.training
    for k, v in loaded.to_openai_state_dict().items():
        torch.testing.assert_close(v, sd16[k].float(), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------------- parity


def _random_images(n: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-16"])
def test_parity_open_clip(name, tokens):
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    theirs = open_clip.create_model(name, pretrained=None).eval()
    ours = CLIP.from_openai_state_dict(theirs.state_dict(), activation="gelu")  # open_clip's ViT-B-* use exact GELU
    images = _random_images(2, 224)
    with torch.inference_mode():
        assert (ours.encode_image(images) - theirs.encode_image(images)).abs().max() < TOL
        assert (ours.encode_text(tokens) - theirs.encode_text(tokens)).abs().max() < TOL


def test_parity_open_clip_quickgelu_small(tokens):
    """OpenAI's activation (QuickGELU) through open_clip's own model class, at a small size."""
    pytest.importorskip("open_clip")
    from open_clip.model import CLIP as OpenCLIP

    torch.manual_seed(0)
    vision = {"layers": 2, "width": 128, "patch_size": 16, "image_size": 64}
    text = {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2}
    theirs = OpenCLIP(embed_dim=64, vision_cfg=vision, text_cfg=text, quick_gelu=True).eval()
    ours = CLIP.from_openai_state_dict(theirs.state_dict())
    assert ours.cfg.activation == "quick_gelu"
    images = _random_images(3, 64)
    with torch.inference_mode():
        assert (ours.encode_image(images) - theirs.encode_image(images)).abs().max() < TOL
        assert (ours.encode_text(tokens) - theirs.encode_text(tokens)).abs().max() < TOL
        out, ref = ours(images, tokens), theirs(images, tokens)
        if isinstance(ref, dict):  # newer open_clip returns a dict
            ref = (ref["image_features"], ref["text_features"], ref["logit_scale"])
        ref_logits = ref[2] * ref[0] @ ref[1].t()
        assert (out.logits_per_image - ref_logits).abs().max() < 1e-3  # logits are x100: same 1e-5 relative


@pytest.mark.slow
def test_parity_hugging_face(tokens):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    theirs = transformers.CLIPModel(transformers.CLIPConfig()).eval()
    ours = CLIP.from_hf_state_dict(theirs.state_dict())
    assert ours.cfg == CLIPConfig.vit_b_32()
    images = _random_images(2, 224)

    def features(out):  # transformers >= 5 returns a model output, older versions a tensor
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    with torch.inference_mode():
        assert (ours.encode_image(images) - features(theirs.get_image_features(pixel_values=images))).abs().max() < TOL
        assert (ours.encode_text(tokens) - features(theirs.get_text_features(input_ids=tokens))).abs().max() < TOL
        ref = theirs(input_ids=tokens, pixel_values=images)
        assert (ours(images, tokens).logits_per_image - ref.logits_per_image).abs().max() < 1e-3


# ------------------------------------------------------------------------------------------------ preprocessing


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (100, 90), (224, 224), (333, 500)])
def test_preprocess_matches_openai_torchvision_pipeline(size):
    T = pytest.importorskip("torchvision.transforms")
    g = torch.Generator().manual_seed(sum(size))
    image = Image.fromarray(torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8).numpy())
    reference = T.Compose([
        T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(224),
        lambda im: im.convert("RGB"),
        T.ToTensor(),
        T.Normalize(OPENAI_MEAN, OPENAI_STD),
    ])  # fmt: skip
    ours = Preprocess(224)(image)
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference(image), atol=1e-6, rtol=1e-6)


def test_preprocess_converts_grey_and_rgba_to_rgb():
    for mode in ("L", "RGBA", "P"):
        assert Preprocess(32)(Image.new(mode, (50, 40))).shape == (3, 32, 32)


# ------------------------------------------------------------------------------------------------------ loading


def test_save_and_load_our_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny()).eval()
    from mmcore.tokenizer import BPETokenizer

    captions = ["a red circle", "a blue square", "একটি লাল বৃত্ত"] * 5
    tok = BPETokenizer.train(captions, vocab_size=600)
    tok.save(tmp_path / "tokenizer")
    path = model.save(tmp_path / "ckpt" / "m.safetensors", tokenizer="../tokenizer", note="test")
    assert (tmp_path / "ckpt" / "m.json").is_file()
    loaded, preprocess, tokenizer = load(path, device="cpu")
    assert loaded.cfg == model.cfg and not loaded.training
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert preprocess.size == 32 and tokenizer.vocab_size == tok.vocab_size
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    torch.testing.assert_close(CLIP.from_checkpoint(path).logit_scale, model.logit_scale)


def test_shapes_tiny_missing_is_a_clear_error(tmp_path, monkeypatch):
    import mmcore.clip

    for name in ("shapes-tiny", "shapes-negclip", "shapes-english"):
        monkeypatch.setitem(mmcore.clip.SHIPPED, name, tmp_path / "data" / "checkpoints" / f"{name}.safetensors")
        with pytest.raises(FileNotFoundError, match=f"{name}.safetensors.*make checkpoints"):
            load(name)
    with pytest.raises(ValueError, match="unknown model"):
        load("ViT-Z/99")

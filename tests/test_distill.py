"""Tests of lesson 08's pieces: parallel captions (mmcore.data), a CLIP with another text tower
(mmcore.clip.with_text_tower), and the distillation loop (mmcore.train_distill), with its floors on the shipped
English-only teacher ``shapes-english``.
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import ddp_worker, floor_seed, free_port
from mmcore import clip, data, set_seed
from mmcore.clip import CLIP, CLIPConfig, with_text_tower
from mmcore.train_distill import DistillConfig, distill_loss, pair_batch, train_distill
from mmcore.weights import sha256_file
from mmcore.zeroshot import eval_set, evaluate_zero_shot, phrasing_report, text_to_image_recall

ROOT = Path(__file__).resolve().parents[1]
FAST = DistillConfig(teacher="shapes-tiny", steps=3, batch_size=16, warmup_steps=1, eval_every=0, eval_images=48,
                     final_eval=False, progress=False, threads=1)


@pytest.fixture(autouse=True)
def _full_size(monkeypatch):
    monkeypatch.setenv("MMCORE_QUICK", "0")  # these tests size their runs themselves


# ------------------------------------------------------------------------------------------- parallel captions


def test_parallel_captions_say_the_same_thing_in_both_languages():
    pairs = data.parallel_captions()
    assert len(pairs) == len(set(pairs)) > 2000
    heldout_words = {(s, c) for s, c in data.HELDOUT}
    for en, bn in pairs:
        words = set(re.findall(r"[a-z]+", en))
        shapes, colors = [s for s in data.SHAPES if s in words], [c for c in data.COLORS if c in words]
        assert len(shapes) == 1 and len(colors) == 1, en
        shape, color = shapes[0], colors[0]
        assert data.SHAPES[shape] in bn and data.COLORS[color] in bn, (en, bn)  # the same object in Bengali
        assert (shape, color) not in heldout_words, en  # the held-out compositions stay unseen


def test_parallel_captions_are_a_fixed_sample_and_check_their_arguments():
    assert data.parallel_captions(50) == data.parallel_captions()[:50]
    assert data.parallel_captions(50, seed=1) != data.parallel_captions(50)
    bn_en = data.parallel_captions(5, source="bn", target="en")
    assert all(any("\u0980" <= ch <= "\u09ff" for ch in b) and en.isascii() for b, en in bn_en)
    with pytest.raises(ValueError, match="positive number"):
        data.parallel_captions(0)
    with pytest.raises(ValueError, match="source"):
        data.parallel_captions(5, source="fr")


# ------------------------------------------------------------------------------------------- with_text_tower


def _tiny_clip(seed: int) -> CLIP:
    torch.manual_seed(seed)
    return CLIP(CLIPConfig.tiny(vocab_size=300, eot_token=299, context_length=16)).eval()


def test_with_text_tower_sees_with_the_model_and_reads_with_the_tower():
    teacher, other = _tiny_clip(0), _tiny_clip(1)
    paired = with_text_tower(teacher, other.text)
    images = torch.randn(3, 3, 32, 32)
    tokens = torch.randint(0, 298, (4, 16))
    tokens[:, -1] = 299
    with torch.no_grad():
        torch.testing.assert_close(paired.encode_image(images), teacher.encode_image(images))
        torch.testing.assert_close(paired.encode_text(tokens), other.encode_text(tokens))
        assert not torch.allclose(paired.encode_text(tokens), teacher.encode_text(tokens))
    assert paired.logit_scale.item() == teacher.logit_scale.item()
    with torch.no_grad():  # a copy: changing the pair changes neither source model
        paired.visual.proj.add_(1.0)
        paired.text.proj.add_(1.0)
    assert not torch.equal(paired.visual.proj, teacher.visual.proj)
    assert not torch.equal(paired.text.proj, other.text.proj)


def test_with_text_tower_refuses_what_does_not_fit():
    teacher = _tiny_clip(0)
    with pytest.raises(TypeError, match="TextTransformer"):
        with_text_tower(teacher, teacher)
    wider = CLIP(CLIPConfig.tiny(vocab_size=300, eot_token=299, context_length=16, text_width=64)).text
    with pytest.raises(ValueError, match="does not fit"):
        with_text_tower(teacher, wider)
    broken = copy.deepcopy(teacher.text)
    with torch.no_grad():
        broken.proj[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        with_text_tower(teacher, broken)


# ------------------------------------------------------------------------------------------- the pure pieces


def test_distill_loss_is_the_mean_squared_error():
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    assert distill_loss(a, b).item() == pytest.approx(((a - b) ** 2).mean().item())
    assert distill_loss(a, a).item() == 0
    with pytest.raises(ValueError, match="shape"):
        distill_loss(a, b[:4])


def test_pair_batch_is_a_pure_function_of_seed_and_step():
    first = pair_batch(0, 7, 100, 64)
    assert first == pair_batch(0, 7, 100, 64) and len(first) == 64 and all(0 <= i < 100 for i in first)
    assert first != pair_batch(0, 8, 100, 64) and first != pair_batch(1, 7, 100, 64)


def test_distill_checks_its_settings():
    with pytest.raises(ValueError, match="both 'en'"):
        train_distill(replace(FAST, target="en"))
    with pytest.raises(ValueError, match="target must be one of"):
        train_distill(replace(FAST, target="fr"))
    with pytest.raises(ValueError, match="init must be"):
        train_distill(replace(FAST, init="zeros"))


# ------------------------------------------------------------------------------------------- the loop


def test_distill_trains_only_the_student_and_keeps_the_teacher():
    teacher = clip.load("shapes-tiny", device="cpu")[0]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = train_distill(replace(FAST, steps=4), teacher=teacher, device="cpu")
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # the teacher never moves
    student = result.model
    for k, v in student.visual.state_dict().items():
        assert torch.equal(v, before[f"visual.{k}"]), k  # the image tower is the teacher's
    assert not torch.equal(student.text.token_embed.weight, before["text.token_embed.weight"])
    assert len(result.history.loss) == 4 and result.history.eval_step == [4]


def test_distill_random_init_starts_elsewhere_and_the_loss_falls():
    result = train_distill(replace(FAST, init="random", steps=60, batch_size=64, lr=2e-3, warmup_steps=5), device="cpu")
    loss = result.history.loss
    assert sum(loss[-10:]) / 10 < 0.5 * sum(loss[:5]) / 5, loss[:5] + loss[-10:]


def test_command_writes_a_checkpoint_that_clip_load_reads(tmp_path):
    out = tmp_path / "student.safetensors"
    args = ["--teacher", "shapes-tiny", "--steps", "3", "--batch-size", "16", "--eval-every", "0", "--eval-images",
            "48", "--no-final-eval", "--no-progress", "--threads", "1", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "mmcore.train", "distill", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "MMCORE_QUICK": "0"}, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["command"].startswith("python -m mmcore.train distill --teacher shapes-tiny")
    assert card["base"]["sha256"] == sha256_file(clip.SHIPPED["shapes-tiny"])
    assert card["pairs"] == len(data.parallel_captions()) and card["metrics"]["steps"] == 3
    model, _, tokenizer = clip.load(out, device="cpu")
    assert model.encode_text(tokenizer(["একটি লাল বৃত্ত"])).shape == (1, model.cfg.embed_dim)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process():
    """2 CPU processes (gloo), 8 pairs each, give the same losses and weights as one process with 16 pairs."""
    import torch.multiprocessing as mp

    single = train_distill(FAST, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        keys = ("text.proj", "text.pos_embed")
        mp.spawn(ddp_worker, args=(2, free_port(), out, train_distill, FAST, keys), nprocs=2, join=True)
        ddp = json.loads(Path(out).read_text())
    assert len(ddp["loss"]) == len(single.history.loss) == 3
    for a, b in zip(ddp["loss"], single.history.loss):
        assert abs(a - b) < 1e-6
    for name, value in ddp["state"].items():
        torch.testing.assert_close(torch.tensor(value), single.model.state_dict()[name], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------- shipped teacher, floors

FLOOR_SEED = floor_seed(2026)  # the evaluation pictures of the floor tests (MMCORE_FLOOR_SEED moves them)


@pytest.fixture(scope="module")
def english():
    return clip.load("shapes-english", device="cpu")


def test_shapes_english_never_saw_a_bengali_caption(english):
    """Every token id that only Bengali captions use still holds exactly its random initial embedding: no gradient ever
    reached it (AdamW moves no row without a gradient, and embeddings get no weight decay)."""
    model, _, tokenizer = english
    set_seed(0)  # the base run's seed: the same initialisation
    fresh = CLIP(CLIPConfig.tiny(vocab_size=tokenizer.vocab_size, eot_token=tokenizer.eot_token,
                                 context_length=tokenizer.context_length))
    pairs = data.parallel_captions()
    english_ids = {i for en, _ in pairs for i in tokenizer.encode(en)}
    bengali_only = sorted({i for _, bn in pairs for i in tokenizer.encode(bn)} - english_ids)
    assert len(bengali_only) >= 30
    trained, initial = model.text.token_embed.weight, fresh.text.token_embed.weight
    assert torch.equal(trained[bengali_only], initial[bengali_only])
    assert not torch.equal(trained[sorted(english_ids)], initial[sorted(english_ids)])


def test_shapes_english_reads_english_and_not_bengali(english):
    """600 held-out pictures (chance 2.1 %). Measured on seeds 2026, 7 and 11: English 100 % joint each time, Bengali
    0 % (its 48 class prompts nearly coincide). Floors: English >= 97 % (Wilson lower bound of 600/600 is 99.4 %),
    Bengali <= 10 % (a model that had learnt any Bengali would pass it at once)."""
    model, _, tokenizer = english
    images, attributes = eval_set("heldout", 600, FLOOR_SEED)
    en = evaluate_zero_shot(model, tokenizer, images, attributes, "en")
    bn = evaluate_zero_shot(model, tokenizer, images, attributes, "bn")
    print(f"shapes-english, seed {FLOOR_SEED}: English {en}, Bengali {bn}")
    assert en["joint"] >= 0.97 and bn["joint"] <= 0.10


@pytest.mark.slow
def test_a_short_distillation_teaches_the_teacher_bengali(english):
    """150 steps of 128 pairs (about 25 s on one thread). Measured with distillation seeds 0, 1, 2 on 300 held-out
    pictures each (seeds 2026-2028): Bengali joint zero-shot 100 % every time, the 12 unseen Bengali phrasings
    99.9-100 % on average (worst 99.0 %), recall@1 100 %, English unchanged at 100 %. Floors a few points below, where
    300 pictures leave room (the Wilson lower bound of 300/300 is 98.7 %)."""
    model, _, tokenizer = english
    seed = FLOOR_SEED - 2026
    result = train_distill(DistillConfig(steps=150, seed=seed, eval_every=0, final_eval=False, progress=False, threads=1),
                     teacher=model, device="cpu")
    images, attributes = eval_set("heldout", 300, FLOOR_SEED)
    student = result.model
    bn = evaluate_zero_shot(student, tokenizer, images, attributes, "bn")["joint"]
    en = evaluate_zero_shot(student, tokenizer, images, attributes, "en")["joint"]
    phrasings = [r["joint"] for r in phrasing_report(student, tokenizer, images, attributes, langs=["bn"])["bn"].values()]
    test_images, test_attributes = eval_set("test", 300, FLOOR_SEED)
    recall = text_to_image_recall(student, tokenizer, test_images, test_attributes, "bn", ks=(1,))[1]
    print(f"distilled (seed {seed}): Bengali {bn:.1%}, English {en:.1%}, Bengali phrasings mean "
          f"{sum(phrasings) / len(phrasings):.1%} worst {min(phrasings):.1%}, Bengali recall@1 {recall:.1%}")
    assert bn >= 0.95 and en >= 0.97 and recall >= 0.95
    assert sum(phrasings) / len(phrasings) >= 0.95 and min(phrasings) >= 0.85

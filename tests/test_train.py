"""Tests of mmcore.train_clip (the CLIP training loop, and the mmcore.train entry point) and mmcore.zeroshot (its evaluation helpers).

Every training run here is a few steps of the tiny CLIP on a batch of 16: the whole file takes seconds.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import ddp_worker, free_port
import mmcore.clip
from mmcore.clip import CLIP, CLIPConfig, clip_loss
from mmcore.data import HELDOUT, TRAIN_TEMPLATES, WATCH_SEED, caption
from mmcore.tokenizer import BPETokenizer
from mmcore.weights import load_checkpoint, sha256_file
from mmcore.train_clip import (
    CLIPTrainConfig,
    _parser,
    caption_templates,
    contrastive_loss,
    gather_with_grad,
    load_optimizer_state,
    main,
    save_optimizer_state,
    shapes_batch,
    train_clip,
)
from mmcore.images import normalize, to_tensor
from mmcore.training import (TimeBudget, budget_steps, cosine_schedule, cpu_threads, decays, default_threads, parameter_groups,
                             warmup_for)
from mmcore.zeroshot import (
    CLASSES,
    class_prompts,
    eval_set,
    evaluate_zero_shot,
    text_to_image_recall,
    zero_shot_accuracy,
)

# A few steps, no evaluation beyond the minimum: the unit-test configuration.
FAST = CLIPTrainConfig(steps=3, batch_size=16, warmup_steps=2, eval_every=0, eval_images=48, final_eval=False,
                   progress=False, threads=1)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.course()


def _tiny(tokenizer: BPETokenizer) -> CLIP:
    torch.manual_seed(0)
    return CLIP(CLIPConfig.tiny(vocab_size=tokenizer.vocab_size, eot_token=tokenizer.eot_token))


# ------------------------------------------------------------------------------------------------ schedule


def test_budget_steps_fits_the_schedule_to_the_time_left():
    # 10 steps in the 5 s since the mark (2 steps/s), 50 s left: 100 more steps
    assert budget_steps(20, 10.0, 60.0, 1000, mark=(10, 5.0)) == 120
    # the warm-up before the mark does not count: slow first steps (compiling) do not shrink the plan
    assert budget_steps(20, 30.0, 80.0, 1000, mark=(10, 25.0)) == 20 + round(2.0 * 50)
    assert budget_steps(20, 10.0, 60.0, 50, mark=(10, 5.0)) == 50  # never more than the step limit
    assert budget_steps(20, 70.0, 60.0, 1000, mark=(10, 5.0)) == 21  # over budget: at least the next step
    assert budget_steps(5, 1.0, 60.0, 1000, mark=None) == 1000  # speed not measured yet: the step limit
    assert budget_steps(10, 5.0, 60.0, 1000, mark=(10, 5.0)) == 1000  # no step since the mark


def test_time_budget_plans_until_its_time_is_spent():
    assert TimeBudget(None, 100).plan(5) == 100  # no budget: the step limit
    clock = TimeBudget(60.0, 1000)
    assert clock.plan(0) == 1000 and clock.mark is None  # speed not measured yet
    assert clock.plan(10) == 1000 and clock.mark is not None  # the mark is taken at SPEED_MARK steps
    spent = TimeBudget(1e-6, 1000)  # 60 microseconds
    time.sleep(0.01)
    assert spent.plan(3) is None


def test_warmup_is_at_most_a_fifth_of_the_run():
    assert warmup_for(10_000, 200) == 200
    assert warmup_for(500, 200) == 100
    assert warmup_for(3, 200) == 1


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    values = [cosine_schedule(s, 100, 10, 0.1) for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)  # linear warm-up
    assert values[10] == pytest.approx(1.0)
    assert values[55] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine
    assert values[100] == pytest.approx(0.1) and cosine_schedule(500, 100, 10, 0.1) == pytest.approx(0.1)
    after = values[10:]
    assert all(a >= b for a, b in zip(after, after[1:]))


# ------------------------------------------------------------------------------------------------ optimizer


def test_weight_decay_only_on_weight_matrices(tokenizer):
    model = _tiny(tokenizer)
    decayed, plain = parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    plain_names = {names[id(p)] for p in plain["params"]}
    assert decayed_names.isdisjoint(plain_names)
    assert decayed_names | plain_names == set(names.values())
    for name in ("logit_scale", "visual.class_token", "visual.pos_embed", "text.pos_embed", "text.token_embed.weight",
                 "visual.norm_pre.weight", "text.transformer.blocks.0.attn.qkv.bias"):
        assert name in plain_names, name
    for name in ("visual.proj", "text.proj", "visual.patch_weight", "text.transformer.blocks.0.mlp.fc1.weight"):
        assert name in decayed_names, name
    assert not decays("x.bias", torch.zeros(3)) and decays("x.weight", torch.zeros(3, 3))


def test_optimizer_state_round_trip_through_safetensors(tokenizer, tmp_path):
    model = _tiny(tokenizer)
    opt = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-3)
    name_of = {id(p): n for n, p in model.named_parameters()}
    names = [name_of[id(p)] for g in parameter_groups(model, 0.1) for p in g["params"]]
    model(torch.randn(2, 3, 32, 32), tokenizer(["a red circle", "একটি লাল বৃত্ত"]))[0].sum().backward()
    opt.step()
    path = save_optimizer_state(tmp_path / "opt.safetensors", opt, names)
    assert path.read_bytes()[:8]  # a safetensors file: no pickle
    fresh = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-3)
    load_optimizer_state(path, fresh, names)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i, state in a["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(b["state"][i][key], value)


# ------------------------------------------------------------------------------------------------------ data


def test_shapes_batch_is_a_pure_function_of_seed_step_and_index():
    images, captions, _ = shapes_batch(0, 7, range(16))
    images2, captions2, _ = shapes_batch(0, 7, range(8, 16))
    assert captions[8:] == captions2
    assert [im.tobytes() for im in images[8:]] == [im.tobytes() for im in images2]
    assert shapes_batch(1, 7, range(16))[1] != captions and shapes_batch(0, 8, range(16))[1] != captions
    assert images[0].size == (32, 32)


def test_training_captions_are_bilingual_and_never_use_eval_templates_or_heldout_pairs():
    _, captions, _ = shapes_batch(0, 0, range(400))
    bengali = [c for c in captions if any("\u0980" <= ch <= "\u09ff" for ch in c)]
    assert 100 < len(bengali) < 300  # about half
    eval_words = ("picture", "this is", "can be seen", "চিত্র", "এটি", "দেখা যাচ্ছে")
    assert not any(w in c for c in captions for w in eval_words)
    for shape, color in HELDOUT:
        assert not any(re.search(rf"\b{color} {shape}\b", c) for c in captions)  # ("yellow-colored star": no red star)


def test_base_templates_replay_the_stream_of_the_first_shapes_tiny_run():
    """templates="base" draws exactly what the first 1,500 steps of shapes-tiny saw (captured before the phrasing
    templates existed), so `make checkpoints` can still reproduce that run."""
    assert shapes_batch(0, 3, range(6), 8, templates="base")[1] == [
        "a large blue triangle", "উপরে একটি বড় বেগুনি বর্গ আছে", "একটি ছোট সবুজ যোগচিহ্ন", "উপরে একটি কমলা বর্গ",
        "মাঝখানে একটি বেগুনি হৃদয়", "একটি বড় হলুদ বর্গের ছবি"]
    assert caption_templates("en", "base") == TRAIN_TEMPLATES["en"][:6]
    with pytest.raises(ValueError, match="'all' or 'base'"):
        caption_templates("en", "some")


def test_varied_and_framed_captions():
    _, captions, _ = shapes_batch(0, 0, range(400), 8, frame_prob=0.5)
    assert len(set(captions)) > 300  # phrasings, word orders, everyday words around them
    assert any(c.startswith("draw ") for c in captions) and any("রঙের" in c for c in captions)
    assert shapes_batch(0, 0, range(50), 8)[1] != shapes_batch(0, 0, range(50), 8, frame_prob=0.5)[1]


def test_relation_pictures_and_hard_negatives():
    """Two-object pictures with relation captions, and per sample a near miss in the same language and template: the
    same words bound the other way round (colours swapped), the relation mirrored, or another colour."""
    batch = shapes_batch(0, 0, range(200), 8, relation_prob=0.5, hard_negatives=True)
    two = [i for i, c in enumerate(batch.captions) if any(w in c for w in ("left of", "right of", "above", "below",
                                                                          "বাঁদিকে", "ডানদিকে", "ওপরে", "নিচে"))]
    assert 60 < len(two) < 140 and len(batch.negatives) == 200
    for text, near in zip(batch.captions, batch.negatives):
        assert near != text and (any("\u0980" <= ch <= "\u09ff" for ch in near)
                                 == any("\u0980" <= ch <= "\u09ff" for ch in text))  # same language
    for i in two:  # the same multiset of words (swap) or one word changed (mirror)
        a, b = batch.captions[i].split(), batch.negatives[i].split()
        assert sorted(a) == sorted(b) or sum(x != y for x, y in zip(a, b)) <= 2
    plain = shapes_batch(0, 0, range(50), 8)
    assert plain.negatives is None
    # the near miss is drawn after the caption: the captions of a run do not change when it is switched on
    assert shapes_batch(0, 0, range(50), 8, hard_negatives=True).captions == plain.captions


def test_contrastive_loss_with_hard_negatives_by_hand():
    torch.manual_seed(0)
    img, txt, neg = (F.normalize(torch.randn(4, 8), dim=-1) for _ in range(3))
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.t()  # (4, 4)
    wide = torch.cat([logits, scale * img @ neg.t()], dim=1)  # (4, 8): each image also against the near misses
    target = torch.arange(4)
    expected = 0.5 * (F.cross_entropy(wide, target) + F.cross_entropy(logits.t(), target))
    torch.testing.assert_close(contrastive_loss(img, txt, scale, neg), expected)
    assert contrastive_loss(img, txt, scale, neg) > contrastive_loss(img, txt, scale)  # more to beat, higher loss


def test_fine_tune_with_a_frozen_image_tower_records_its_base(tmp_path):
    base = tmp_path / "base.safetensors"
    train_clip(replace(FAST, steps=2, out=str(base), save_optimizer=False), device="cpu")
    out = tmp_path / "tuned.safetensors"
    tuned = train_clip(replace(FAST, steps=2, init_from=str(base), freeze_image=True, out=str(out)), device="cpu")
    before, _, _ = mmcore.clip.load(base, device="cpu")
    after = tuned.model.state_dict()
    for name, p in before.state_dict().items():
        same = torch.equal(p, after[name])
        assert same == name.startswith("visual."), name  # the image tower is locked, the rest learnt
    card = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["base"]["sha256"] == sha256_file(base) and card["base"]["command"].startswith("mmcore.train_clip.train_clip(")
    with pytest.raises(ValueError, match="unknown CLIP checkpoint"):
        train_clip(replace(FAST, init_from=str(tmp_path / "missing.safetensors")), device="cpu")


# ------------------------------------------------------------------------------------------------------ loss


def test_contrastive_loss_matches_clip_forward(tokenizer):
    model = _tiny(tokenizer)
    images, captions, _ = shapes_batch(0, 0, range(8))
    x, t = normalize(to_tensor(images, 32)), tokenizer(captions)
    expected = clip_loss(*model(x, t))
    got = contrastive_loss(model.encode_image(x, normalize=True), model.encode_text(t, normalize=True),
                           model.temperature_scale())
    torch.testing.assert_close(got, expected)
    assert gather_with_grad(x) is x  # no process group: nothing to gather


# --------------------------------------------------------------------------------------------------- training


def test_training_is_deterministic_on_cpu_and_reduces_the_loss():
    a = train_clip(replace(FAST, steps=5, lr=3e-3), device="cpu")  # 5 steps: also what MMCORE_QUICK=1 allows
    b = train_clip(replace(FAST, steps=5, lr=3e-3), device="cpu")
    assert a.history.loss == b.history.loss
    assert a.history.step == list(range(1, 6)) and len(a.history.lr) == 5
    assert a.history.loss[-1] < a.history.loss[0]
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert a.history.eval_step == [5] and len(a.history.zero_shot_bn) == 1
    images, attributes = eval_set("heldout", FAST.eval_images, WATCH_SEED)  # what the run watched
    tokenizer = BPETokenizer.course()
    for lang, values in (("en", a.history.zero_shot), ("bn", a.history.zero_shot_bn)):
        assert values[0] == pytest.approx(evaluate_zero_shot(a.model, tokenizer, images, attributes, lang)["joint"])


def test_checkpoint_loads_with_clip_load_and_resume_continues_exactly(tmp_path):
    straight = train_clip(replace(FAST, steps=4), device="cpu")
    out = tmp_path / "run.safetensors"
    first = train_clip(replace(FAST, steps=2, out=str(out)), device="cpu")
    assert first.path == out and (tmp_path / "run.json").is_file() and (tmp_path / "run.optim.safetensors").is_file()

    card = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert card["step"] == 2 and card["seed"] == 0 and card["tokenizer"] == "course"  # found wherever the file goes
    assert card["command"].startswith("mmcore.train_clip.train_clip(") and card["training"]["batch_size"] == 16
    assert len(card["history"]["loss"]) == 2 and "created" in card
    model, preprocess, tok = mmcore.clip.load(out, device="cpu")
    assert tok.vocab_size == model.cfg.vocab_size == 2954 and preprocess.size == 32
    torch.testing.assert_close(model.state_dict()["logit_scale"], first.model.state_dict()["logit_scale"])

    resumed = train_clip(replace(FAST, steps=4, resume=str(out)), device="cpu")
    assert resumed.history.step == [1, 2, 3, 4]
    assert resumed.history.loss[:2] == pytest.approx(straight.history.loss[:2], abs=1e-4)  # the card rounds them
    assert resumed.history.loss[2:] == pytest.approx(straight.history.loss[2:], abs=1e-6)
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)


def test_time_budget_stops_early():
    result = train_clip(replace(FAST, steps=1000, max_minutes=0.02), device="cpu")
    assert 1 <= len(result.history.loss) < 1000
    assert result.history.seconds[-1] < 0.02 * 60 + 5


def test_cpu_threads_are_restored_after_training():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before and 1 <= default_threads() <= (os.cpu_count() or 1)


def test_quick_mode_shrinks_training(monkeypatch):
    monkeypatch.setenv("MMCORE_QUICK", "1")
    result = train_clip(replace(FAST, steps=50, batch_size=64), device="cpu")
    assert len(result.history.loss) == 5


def test_command_line_records_the_command(tmp_path, capsys):
    from mmcore import train

    out = tmp_path / "cli.safetensors"
    argv = ["--steps", "2", "--batch-size", "8", "--eval-every", "0", "--eval-images", "48",
            "--no-final-eval", "--no-progress", "--no-save-optimizer", "--threads", "1", "--out", str(out)]
    result = main(argv)
    assert len(result.history.loss) == 2 and not (tmp_path / "cli.optim.safetensors").exists()
    card = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["command"] == "python -m mmcore.train_clip " + " ".join(argv)
    assert card["training"]["batch_size"] == 8 and card["training"]["langs"] == ["en", "bn"]
    args = _parser("mmcore.train_clip").parse_args(["--langs", "bn", "--betas", "0.9", "0.95"])
    assert args.langs == ["bn"] and args.betas == [0.9, 0.95]
    # the one entry point for every model dispatches here and records the command as typed (as the cards do)
    again = train.main(["clip", *argv])
    assert again.history.loss == result.history.loss  # the same run
    card = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["command"] == "python -m mmcore.train clip " + " ".join(argv)
    with pytest.raises(SystemExit, match="name the model to train"):
        train.main(["--steps", "2"])
    with pytest.raises(SystemExit, match="got 'clips'"):
        train.main(["clips"])


# ------------------------------------------------------------------------------------------- DDP (two processes)


@pytest.mark.slow
@pytest.mark.parametrize("hard", [False, True], ids=["plain", "hard-negatives"])
def test_two_process_ddp_matches_one_process(hard):
    """2 CPU processes (gloo), 8 pairs each, give the same losses and weights as one process with 16 pairs; with
    two-object pictures and hard negatives too (the near misses are gathered across processes like the captions)."""
    import torch.multiprocessing as mp

    cfg = replace(FAST, relation_prob=0.5, hard_negatives=True) if hard else FAST
    single = train_clip(cfg, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        keys = ("logit_scale", "visual.proj")
        mp.spawn(ddp_worker, args=(2, free_port(), out, train_clip, cfg, keys), nprocs=2, join=True)
        ddp = json.loads(Path(out).read_text())
    assert len(ddp["loss"]) == len(single.history.loss) == 3
    for a, b in zip(ddp["loss"], single.history.loss):
        assert abs(a - b) < 1e-5
    for name, value in ddp["state"].items():
        torch.testing.assert_close(torch.tensor(value), single.model.state_dict()[name], atol=1e-5, rtol=1e-4)


def _run_training_command(launcher: list[str], args: list[str], timeout: float = 240) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMCORE_QUICK": "0"}  # the real command, not its quick form
    done = subprocess.run([*launcher, "-m", "mmcore.train", "clip", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
COMMAND_ARGS = ["--steps", "3", "--batch-size", "16", "--warmup-steps", "2", "--eval-every", "0", "--eval-images", "48",
                "--no-final-eval", "--no-progress", "--no-save-optimizer", "--threads", "1"]


def test_torchrun_command_writes_the_same_checkpoint_as_one_process(tmp_path):
    """``torchrun --nproc_per_node=2 -m mmcore.train clip`` (gloo on the CPU, process group from WORLD_SIZE): rank 0
    saves, and the weights equal those of one process with the same global batch."""
    port = f"--master_port={free_port()}"
    _run_training_command(TORCHRUN + [port], COMMAND_ARGS + ["--out", str(tmp_path / "ddp.safetensors")])
    _run_training_command([sys.executable], COMMAND_ARGS + ["--out", str(tmp_path / "one.safetensors")])
    ddp, ddp_card = load_checkpoint(tmp_path / "ddp.safetensors")
    one, _ = load_checkpoint(tmp_path / "one.safetensors")
    assert ddp.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], atol=1e-5, rtol=1e-4, msg=name)
    assert ddp_card["command"].startswith("torchrun --nproc_per_node=2 -m mmcore.train clip")


def test_torchrun_command_honours_the_time_budget_on_every_rank(tmp_path):
    """With --max-minutes both processes stop at the same step (rank 0's clock decides) and nobody hangs."""
    args = [a if a != "3" else "100000" for a in COMMAND_ARGS] + ["--max-minutes", "0.05"]
    port = f"--master_port={free_port()}"
    _run_training_command(TORCHRUN + [port], args + ["--out", str(tmp_path / "b.safetensors")], timeout=180)
    card = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert 0 < card["metrics"]["steps"] < 100000 and card["training"]["max_minutes"] == 0.05


# ------------------------------------------------------------------------------------------------ zero-shot


def test_zero_shot_accuracy_is_nearest_class():
    emb = torch.eye(3)  # (N=3, E=3)
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.9]])  # (E=3, C=2)
    assert zero_shot_accuracy(emb, weights, torch.tensor([0, 1, 1])) == 1.0
    assert zero_shot_accuracy(emb, weights, torch.tensor([1, 1, 0])) == pytest.approx(1 / 3)


def test_class_prompts_use_only_eval_templates_and_cover_size_and_position():
    assert len(CLASSES) == 48
    groups = class_prompts("heart", "green", "en")
    assert [len(g) for g in groups] == [1, 1, 10]
    assert groups[0] == ["a picture of a green heart"]
    bn = class_prompts("circle", "red", "bn")
    assert bn[0] == ["একটি লাল বৃত্তের চিত্র"]
    for lang in ("en", "bn"):
        prompts = {p for g in class_prompts("heart", "green", lang) for p in g}
        training = {caption({"shape": "heart", "color": "green", "size": size, "position": pos}, lang, template=t)
                    for t in TRAIN_TEMPLATES[lang] for size in ("small", "large")
                    for pos in ("center", "top", "bottom", "left", "right")}
        assert prompts and prompts.isdisjoint(training)


def test_text_to_image_recall_counts_every_image_with_the_caption_attributes(tokenizer):
    model = _tiny(tokenizer)
    images, attributes = eval_set("test", 40, seed=3)
    recall = text_to_image_recall(model, tokenizer, images, attributes, "en", ks=(1, 3))
    # the same numbers by brute force: one query per distinct full caption, a hit when any of the k most similar
    # images has all four attributes of the caption
    keys = ("shape", "color", "size", "position")
    queries = list(dict.fromkeys(tuple(a[k] for k in keys) for a in attributes))
    with torch.no_grad():
        text = model.eval().encode_text(tokenizer([caption(dict(zip(keys, q)), "en") for q in queries]), normalize=True)
        order = (text @ model.encode_image(images, normalize=True).t()).argsort(dim=1, descending=True)  # (Q, 40)
    for k in (1, 3):
        hits = [any(tuple(attributes[i][key] for key in keys) == q for i in order[j, :k].tolist())
                for j, q in enumerate(queries)]
        assert recall[k] == pytest.approx(sum(hits) / len(queries))

"""Tests of mmcore.compositional (lesson 07): the pairwise caption test, its interval, the material of each test in
both languages, the typographic renderer, and what the shipped CLIPs do on the tests (shapes-tiny fails binding and
relations; shapes-negclip, fine-tuned with hard negatives, passes them)."""
from __future__ import annotations

import random

import pytest
import torch

from conftest import floor_seed
from mmcore import clip, compositional
from mmcore.clip import CLIP, CLIPConfig, normalize_pixels
from mmcore.compositional import (binding_pairs, counting_pairs, negation_pairs, pairwise_scores, pairwise_test,
                                  relation_pairs, shuffle_words, typographic_pairs, wilson_interval, word_order_pairs,
                                  write_word)
from mmcore.data import RELATIONS, render
from mmcore.images import to_tensor
from mmcore.tokenizer import BPETokenizer

torch.set_num_threads(1)
BENGALI = range(0x0980, 0x0A00)
# shapes-negclip, measured on 400 pictures per test and language with seeds 0, 1, 2 (data/checkpoints/shapes-negclip.md):
# binding and relations 100 % every time, word order 90.5-95.2 %, held-out zero-shot (600 pictures) 99.8-100 %.
NEGCLIP_FLOOR = {"binding": 0.95, "relation": 0.95, "word order": 0.85, "zero-shot": 0.97}


def is_bengali(text: str) -> bool:
    return any(ord(ch) in BENGALI for ch in text)


def test_wilson_interval_against_known_values():
    # reference values: Wilson (1927), as tabulated by Newcombe (1998) for 0/10 and 5/10 (95 %)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval(200, 400)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * (0.25 / 400) ** 0.5, abs=2e-3)
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="positive"):
        wilson_interval(0, 0)


def test_pairwise_test_is_clip_cosine_by_hand():
    tokenizer = BPETokenizer.course()
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny(vocab_size=tokenizer.vocab_size, eot_token=tokenizer.eot_token, text_layers=1,
                                 vision_layers=1)).eval()
    pictures, true, false = binding_pairs(12, "en", seed=3)
    a, b = pairwise_scores(model, tokenizer, pictures, true, false, batch_size=5)  # batches of 5, 5 and 2
    with torch.no_grad():
        image = model.encode_image(normalize_pixels(to_tensor(pictures), 32), normalize=True)
        by_hand = (image * model.encode_text(tokenizer(true), normalize=True)).sum(-1)
    torch.testing.assert_close(a, by_hand, atol=1e-5, rtol=1e-4)
    result = pairwise_test(model, tokenizer, pictures, true, false)
    wins = int((a > b).sum())
    assert result.n == 12 and result.rate == wins / 12 and (result.low, result.high) == wilson_interval(wins, 12)
    assert result.margin == pytest.approx(float((a - b).mean()), abs=1e-6)
    with pytest.raises(ValueError, match="one caption pair per picture"):
        pairwise_scores(model, tokenizer, pictures, true[:-1], false)


def test_binding_and_relation_pairs_rebind_the_same_words():
    for lang in ("en", "bn"):
        pictures, true, false = binding_pairs(20, lang, seed=1)
        assert len(pictures) == len(true) == len(false) == 20 and pictures[0].size == (32, 32)
        for t, f in zip(true, false):
            assert t != f and sorted(t.split()) == sorted(f.split())  # the same words, other binding
            assert is_bengali(t) == (lang == "bn") == is_bengali(f)
        _, true, false = relation_pairs(20, lang, seed=1)
        for t, f in zip(true, false):
            changed = [(x, y) for x, y in zip(t.split(), f.split()) if x != y]
            assert len(t.split()) == len(f.split()) and 1 <= len(changed) <= 2  # "left" -> "right" (en: one word)
    _, true, false = relation_pairs(5, "bn", seed=2)
    assert all(("বাঁদিকে" in t) == ("ডানদিকে" in f) for t, f in zip(true, false))


def test_word_order_negation_counting_and_typographic_material():
    rng = random.Random(0)
    text = "a red circle to the left of a blue square"
    shuffled = shuffle_words(text, rng)
    assert shuffled != text and sorted(shuffled.split()) == sorted(text.split())
    assert shuffle_words("circle", rng) == "circle"
    _, true, false = word_order_pairs(10, "bn", seed=0)
    assert all(sorted(t.split()) == sorted(f.split()) and t != f for t, f in zip(true, false))
    _, true, false = negation_pairs(10, "en", seed=0)
    assert all(t.startswith("a ") and "that is not" in t and "that is not" in f for t, f in zip(true, false))
    _, true, false = negation_pairs(10, "bn", seed=0)
    assert all(t.endswith("নয়") and t != f for t, f in zip(true, false))
    pictures, true, false = counting_pairs(10, "en", seed=0)
    assert true[0].startswith("one ") and false[0].startswith("two ") and true[1].startswith("two ")
    assert any(t.endswith("crosses") for t in true + false) or all("cross" not in t for t in true)
    _, true, _ = counting_pairs(10, "bn", seed=0)
    assert true[0].startswith("একটি ") and true[1].startswith("দুটি ")
    pictures, true, false = typographic_pairs(10, "bn", seed=0)
    assert all(t != f and t.split()[-1] == f.split()[-1] for t, f in zip(true, false))  # same shape, other colour
    with pytest.raises(ValueError, match="lang"):
        binding_pairs(5, "fr")


def test_write_word_draws_latin_and_bengali_in_the_lower_part():
    picture = render({"shape": "circle", "color": "blue", "size": "large", "position": "center"}, 32)
    before = to_tensor([picture])[0]
    for word in ("RED", "লাল"):
        after = to_tensor([write_word(picture, word, color=(230, 40, 40))])[0]
        changed = (after - before).abs().sum(0) > 0.05  # (32, 32)
        assert changed.any() and changed[:12].sum() < changed[16:].sum(), word  # the word sits low in the picture
    assert write_word(picture, "RED").size == (32, 32) and picture.tobytes() == render(
        {"shape": "circle", "color": "blue", "size": "large", "position": "center"}, 32).tobytes()  # not in place


def test_shipped_shapes_tiny_reads_captions_as_bags_of_words():
    """The finding of lesson 07: on 400 two-object test pictures the shipped CLIP picks the right caption of a
    colour-swapped or relation-mirrored pair about as often as a coin (measured 49-53 % in both languages, seed 0),
    and it never reads "not" (negation: 0 %). The bounds are the 95 % interval of chance with room."""
    model, _, tokenizer = clip.load("shapes-tiny", device="cpu")
    seed = floor_seed(0)
    for lang in ("en", "bn"):
        binding = pairwise_test(model, tokenizer, *binding_pairs(400, lang, seed=seed))
        relation = pairwise_test(model, tokenizer, *relation_pairs(400, lang, seed=seed))
        negation = pairwise_test(model, tokenizer, *negation_pairs(400, lang, seed=seed))
        print(lang, binding, relation, negation)
        assert 0.4 <= binding.rate <= 0.62 and 0.4 <= relation.rate <= 0.62, (binding, relation)
        assert negation.rate < 0.1, negation


def test_shipped_shapes_negclip_binds_colours_and_reads_relations_and_still_classifies():
    """shapes-negclip (shapes-tiny fine-tuned with two-object pictures and hard negatives, data/checkpoints/
    shapes-negclip.md) passes the binding and relation tests that shapes-tiny fails, in both languages, and keeps
    zero-shot classification of one-object held-out compositions. Floors: see the card's measurements over seeds."""
    from mmcore import data, zeroshot

    model, _, tokenizer = clip.load("shapes-negclip", device="cpu")
    seed = floor_seed(0)
    images, attributes = zeroshot.eval_set("heldout", 300, data.EVAL_SEED + seed)
    for lang in ("en", "bn"):
        binding = pairwise_test(model, tokenizer, *binding_pairs(400, lang, seed=seed))
        relation = pairwise_test(model, tokenizer, *relation_pairs(400, lang, seed=seed))
        order = pairwise_test(model, tokenizer, *word_order_pairs(400, lang, seed=seed))
        joint = zeroshot.evaluate_zero_shot(model, tokenizer, images, attributes, lang)["joint"]
        print(lang, binding, relation, order, f"zero-shot joint {joint:.1%}")
        assert binding.rate >= NEGCLIP_FLOOR["binding"] and relation.rate >= NEGCLIP_FLOOR["relation"], (binding, relation)
        assert order.rate >= NEGCLIP_FLOOR["word order"], order
        assert joint >= NEGCLIP_FLOOR["zero-shot"], joint


def test_pair_attributes_describe_the_pictures_of_the_pair_tests():
    """pair_attributes(n) are the attributes of exactly the pictures binding/relation/word-order pairs draw."""
    from mmcore.data import caption, RELATION_TEMPLATES

    attributes = compositional.pair_attributes(30, seed=3)
    _, true, false = compositional.relation_pairs(30, "bn", seed=3)
    assert [caption(a, "bn", RELATION_TEMPLATES["bn"][0]) for a in attributes] == true
    assert all(a["color"] != a["color2"] for a in attributes) and len(attributes) == 30
    assert {a["relation"] for a in compositional.pair_attributes(200)} == set(RELATIONS)

"""Tests for the Shapes world (mmcore.data): vocabulary, splits, captions, rendering, dataset, photos."""
from __future__ import annotations

import itertools
import pickle
import random
import re
import unicodedata

import numpy as np
import pytest

from mmcore import data, images
from mmcore.data import (COLOR_RGB, COLORS, EVAL_TEMPLATES, HELDOUT, POSITIONS, RELATION_TEMPLATES, RELATIONS,
                         SHAPES, SIZES, TRAIN_TEMPLATES, ShapesDataset, caption, caption_corpus, render,
                         sample_attributes)

BENGALI = re.compile(r"[\u0980-\u09FF]")
TABLES = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS}


def every_attributes():
    """All single-object attribute dicts."""
    for shape, color, size, position in itertools.product(SHAPES, COLORS, SIZES, POSITIONS):
        yield {"shape": shape, "color": color, "size": size, "position": position}


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)  # (H, W, 3)


def object_pixels(image) -> np.ndarray:
    """Boolean (H, W) mask of the pixels far from the background (the image's median colour)."""
    values = pixels(image)
    distance = np.linalg.norm(values - np.median(values.reshape(-1, 3), axis=0), axis=-1)  # (H, W)
    return distance >= 0.7 * distance.max()


def nearest_color(rgb: np.ndarray) -> str:
    return min(COLOR_RGB, key=lambda name: np.linalg.norm(rgb - np.array(COLOR_RGB[name])))


# --------------------------------------------------------------------------------------------------------
# Vocabulary and held-out compositions
# --------------------------------------------------------------------------------------------------------


def test_vocabulary_sizes_and_bengali_words():
    assert len(SHAPES) >= 6 and len(COLORS) >= 8 and set(SIZES) == {"small", "large"}
    assert {"center", "top", "bottom", "left", "right"} <= set(POSITIONS)
    assert set(COLOR_RGB) == set(COLORS)
    for table in TABLES.values():
        assert len(set(table.values())) == len(table), "two English words share a Bengali word"
        for english, bengali in table.items():
            assert english.isascii() and english.islower()
            assert BENGALI.search(bengali) and not re.search(r"[A-Za-z]", bengali)
            assert unicodedata.is_normalized("NFC", bengali)
    assert SHAPES["circle"] == "বৃত্ত" and COLORS["red"] == "লাল" and SIZES["small"] == "ছোট"


def test_colors_are_far_apart_and_far_from_the_light_background():
    rgb = {name: np.array(value, dtype=float) for name, value in COLOR_RGB.items()}
    for a, b in itertools.combinations(rgb, 2):
        assert np.linalg.norm(rgb[a] - rgb[b]) > 80, (a, b)
    for name, value in rgb.items():  # backgrounds have every channel in [190, 255]
        assert np.linalg.norm(np.maximum(190 - value, 0)) > 80, name


def test_backgrounds_are_light_and_varied():
    corners = []
    for seed in range(30):
        image = pixels(render({"shape": "circle", "color": "black", "size": "small", "position": "center"}, 32,
                              random.Random(seed)))
        corner = image[:6, :6].reshape(-1, 3)  # (36, 3): far from the small central object
        assert corner.min() >= 190 and np.ptp(corner.mean(axis=0)) < 25
        corners.append(corner.mean(axis=0))
    assert np.ptp(np.array(corners), axis=0).min() > 10  # tints differ between images


def test_heldout_holds_one_colour_per_shape_and_keeps_every_word_in_training():
    assert {shape for shape, _ in HELDOUT} == set(SHAPES)
    assert len(HELDOUT) == len(SHAPES)
    held_colors = [color for _, color in HELDOUT]
    assert len(set(held_colors)) == len(held_colors) and set(held_colors) <= set(COLORS)
    train = set(data.compositions("train"))
    assert not train & HELDOUT
    assert train | HELDOUT == set(itertools.product(SHAPES, COLORS))
    assert {s for s, _ in train} == set(SHAPES) and {c for _, c in train} == set(COLORS)
    assert set(data.compositions("heldout")) == HELDOUT and set(data.compositions("test")) == train


# --------------------------------------------------------------------------------------------------------
# Splits and the dataset
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_training_splits_never_show_a_heldout_composition(split):
    attributes = ShapesDataset(split, n=4000, seed=1).attributes
    seen = {(a["shape"], a["color"]) for a in attributes}
    assert not seen & HELDOUT
    assert {a["shape"] for a in attributes} == set(SHAPES)
    assert {a["color"] for a in attributes} == set(COLORS)
    assert {a["size"] for a in attributes} == set(SIZES) and {a["position"] for a in attributes} == set(POSITIONS)


def test_heldout_split_shows_only_and_all_heldout_compositions():
    attributes = ShapesDataset("heldout", n=300).attributes
    assert {(a["shape"], a["color"]) for a in attributes} == HELDOUT


def test_items_are_deterministic_for_split_seed_and_index():
    first, again = ShapesDataset("train", n=12, seed=3, lang="both"), ShapesDataset("train", n=12, seed=3, lang="both")
    longer = ShapesDataset("train", n=40, seed=3, lang="both")
    for i in range(12):
        (image, text), (image2, text2), (image3, text3) = first[i], again[i], longer[i]
        assert text == text2 == text3
        assert np.array_equal(pixels(image), pixels(image2)) and np.array_equal(pixels(image), pixels(image3))
    assert first.attributes == longer.attributes[:12]
    assert np.array_equal(pixels(first[-1][0]), pixels(first[11][0]))


@pytest.mark.parametrize("other", [dict(split="train", seed=4), dict(split="test", seed=3)])
def test_another_seed_or_split_gives_other_images(other):
    base = ShapesDataset("train", n=8, seed=3)
    changed = ShapesDataset(n=8, **other)
    assert base.attributes != changed.attributes
    assert all(not np.array_equal(pixels(base[i][0]), pixels(changed[i][0])) for i in range(8))


def test_same_attributes_still_give_different_images():
    attrs = {"shape": "square", "color": "blue", "size": "large", "position": "center"}
    a, b = render(attrs, 32, random.Random(1)), render(attrs, 32, random.Random(2))
    assert not np.array_equal(pixels(a), pixels(b))
    assert np.array_equal(pixels(a), pixels(render(attrs, 32, random.Random(1))))


@pytest.mark.parametrize("size", [32, 64, 48])
def test_images_are_rgb_of_the_requested_size(size):
    dataset = ShapesDataset("test", n=3, image_size=size)
    for image, text in dataset:
        assert image.mode == "RGB" and image.size == (size, size) and text


def test_attributes_keys_length_and_index_errors():
    dataset = ShapesDataset("train", n=5)
    assert len(dataset) == 5 and len(dataset.attributes) == 5
    for attrs in dataset.attributes:
        assert set(attrs) == {"shape", "color", "size", "position"}
        assert all(attrs[key] in table for key, table in TABLES.items())
    with pytest.raises(IndexError):
        dataset[5]


def test_dataset_survives_pickling_for_dataloader_workers():
    dataset = ShapesDataset("test", n=6, lang="bn")
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy[4][1] == dataset[4][1] and np.array_equal(pixels(copy[4][0]), pixels(dataset[4][0]))


def test_transform_is_applied_to_the_image_only():
    dataset = ShapesDataset("train", n=2, image_size=40, transform=lambda image: pixels(image).transpose(2, 0, 1))
    array, text = dataset[0]
    assert isinstance(array, np.ndarray) and array.shape == (3, 40, 40)  # (C, H, W)
    assert text == ShapesDataset("train", n=2, image_size=40)[0][1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="validation"), "'train', 'test', 'heldout'"),
    (dict(lang="fr"), "'en', 'bn', 'both'"),
    (dict(n=-1), "n must be"),
    (dict(image_size=4), "image_size"),
    (dict(image_size=32.0), "image_size"),
])
def test_bad_dataset_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ShapesDataset(**kwargs)


def test_bad_arguments_of_the_functions_raise_clear_errors():
    attrs = {"shape": "circle", "color": "red", "size": "small", "position": "top"}
    with pytest.raises(ValueError, match="'en', 'bn'"):
        caption(attrs, "de")
    with pytest.raises(ValueError, match="'train', 'test', 'heldout'"):
        sample_attributes(random.Random(0), "val")
    with pytest.raises(ValueError, match="lang"):
        caption_corpus(10, langs=("en", "xx"))
    with pytest.raises(ValueError, match="image_size"):
        render(attrs, 2)


# --------------------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------------------


def test_template_sets_are_disjoint_parallel_and_complete():
    for lang in ("en", "bn"):
        assert not set(TRAIN_TEMPLATES[lang]) & set(EVAL_TEMPLATES[lang])
        assert len(TRAIN_TEMPLATES[lang]) >= 4 and len(EVAL_TEMPLATES[lang]) >= 2
    for templates in (TRAIN_TEMPLATES, EVAL_TEMPLATES, RELATION_TEMPLATES):
        assert len(templates["en"]) == len(templates["bn"])  # index i translates index i
        for en, bn in zip(templates["en"], templates["bn"]):
            fields = {re.sub("_gen$", "", f) for f in re.findall(r"{(\w+)}", bn)}
            assert set(re.findall(r"{(\w+)}", en)) == fields, (en, bn)


@pytest.mark.parametrize("lang", ["en", "bn"])
def test_every_template_names_the_attributes_it_uses(lang):
    for attrs in every_attributes():
        for template in TRAIN_TEMPLATES[lang] + EVAL_TEMPLATES[lang]:
            text = caption(attrs, lang, template=template)
            assert "{" not in text and "  " not in text
            for key, table in TABLES.items():
                word = table[attrs[key]] if lang == "bn" else attrs[key]
                if "{" + key in template:
                    assert word in text, (template, attrs)
            if lang == "bn":
                assert BENGALI.search(text) and not re.search(r"[A-Za-z]", text)


def test_bengali_captions_are_natural_sentences():
    attrs = {"shape": "circle", "color": "red", "size": "small", "position": "top"}
    assert caption(attrs, "bn") == "উপরে একটি ছোট লাল বৃত্ত"
    assert caption(attrs, "en") == "a small red circle at the top"
    assert caption(attrs, "bn", template="একটি {color} {shape_gen} ছবি") == "একটি লাল বৃত্তের ছবি"
    assert data.bn_genitive("তারা") == "তারার" and data.bn_genitive("হৃদয়") == "হৃদয়ের"


def test_english_articles_agree():
    attrs = {"shape": "heart", "color": "orange", "size": "large", "position": "left"}
    assert caption(attrs, "en", template="a {color} {shape}") == "an orange heart"
    assert caption(attrs, "en", template="a photo of a {size} {color} {shape}") == "a photo of a large orange heart"


def test_dataset_captions_come_from_training_templates_in_the_requested_language():
    for lang in ("en", "bn"):
        dataset = ShapesDataset("train", n=60, image_size=8, lang=lang)
        for i in range(len(dataset)):
            allowed = {caption(dataset.attributes[i], lang, template=t) for t in TRAIN_TEMPLATES[lang]}
            assert dataset[i][1] in allowed
    mixed = [text for _, text in ShapesDataset("train", n=40, image_size=8, lang="both")]
    assert 5 < sum(bool(BENGALI.search(text)) for text in mixed) < 35


def test_caption_draws_templates_from_rng():
    attrs = {"shape": "star", "color": "blue", "size": "large", "position": "center"}
    rng = random.Random(0)
    assert {caption(attrs, "en", rng=rng) for _ in range(200)} == {
        caption(attrs, "en", template=t) for t in TRAIN_TEMPLATES["en"]}


def test_caption_corpus_covers_every_template_language_and_word():
    corpus = caption_corpus(n=600, seed=0)
    assert len(corpus) == 600 and corpus == caption_corpus(n=600, seed=0) and corpus != caption_corpus(600, seed=1)
    text = " ".join(corpus)
    for table in TABLES.values():
        assert all(word in text for word in table.values())
    for english in list(SHAPES) + list(COLORS):
        assert english in text
    assert "to the left of" in text and "a picture of a" in text and "দেখা যাচ্ছে" in text
    assert all(not BENGALI.search(t) for t in caption_corpus(n=20, langs=("en",)))


# --------------------------------------------------------------------------------------------------------
# The renderer draws what the attributes say
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", list(SHAPES))
def test_rendered_object_has_the_requested_colour(shape):
    for i, color in enumerate(COLORS):
        attrs = {"shape": shape, "color": color, "size": "small", "position": list(POSITIONS)[i % len(POSITIONS)]}
        image = render(attrs, 32, random.Random(i))
        mean = pixels(image)[object_pixels(image)].mean(axis=0)
        assert nearest_color(mean) == color, (attrs, mean)


@pytest.mark.parametrize("position, axis, low, high", [
    ("left", 1, 0.1, 0.4), ("right", 1, 0.6, 0.9), ("top", 0, 0.1, 0.4), ("bottom", 0, 0.6, 0.9),
    ("center", 0, 0.4, 0.6), ("center", 1, 0.4, 0.6),
])
def test_rendered_object_is_at_the_requested_position(position, axis, low, high):
    for seed, shape in enumerate(SHAPES):
        for size in SIZES:
            mask = object_pixels(render({"shape": shape, "color": "blue", "size": size, "position": position}, 48,
                                        random.Random(seed)))
            centre = np.argwhere(mask).mean(axis=0)[axis] / 48  # argwhere rows are (y, x)
            assert low < centre < high, (shape, size, centre)


def test_large_objects_are_larger_than_small_ones():
    for seed, shape in enumerate(SHAPES):
        area = {size: object_pixels(render({"shape": shape, "color": "black", "size": size, "position": "center"},
                                           64, random.Random(seed))).sum() for size in SIZES}
        assert area["large"] > 1.8 * area["small"], (shape, area)


# --------------------------------------------------------------------------------------------------------
# Two objects with a relation
# --------------------------------------------------------------------------------------------------------


def test_relation_dataset_draws_both_objects_on_the_right_sides():
    dataset = ShapesDataset("train", n=40, image_size=64, relation=True, seed=2)
    for (image, text), attrs in zip(dataset, dataset.attributes):
        assert attrs["relation"] in RELATIONS and attrs["position"] == RELATIONS[attrs["relation"]]
        assert (attrs["shape"], attrs["color"]) != (attrs["shape2"], attrs["color2"])
        assert not {(attrs["shape"], attrs["color"]), (attrs["shape2"], attrs["color2"])} & HELDOUT
        assert attrs["color"] in text and attrs["color2"] in text
        if attrs["color"] == attrs["color2"]:
            continue
        values = pixels(image)
        centres = []
        for color in (attrs["color"], attrs["color2"]):
            near = np.linalg.norm(values - np.array(COLOR_RGB[color]), axis=-1) < 30  # (H, W)
            assert near.sum() > 20, (attrs, color)
            centres.append(np.argwhere(near).mean(axis=0))  # (y, x)
        dy, dx = centres[0] - centres[1]
        expected = {"left of": dx < -15, "right of": dx > 15, "above": dy < -15, "below": dy > 15}
        assert expected[attrs["relation"]], (attrs, dx, dy)


def test_relation_captions_in_both_languages():
    attrs = {"shape": "circle", "color": "red", "size": "small", "position": "left", "shape2": "square",
             "color2": "blue", "size2": "large", "position2": "right", "relation": "left of"}
    assert caption(attrs, "en") == "a red circle to the left of a blue square"
    assert caption(attrs, "bn") == "একটি নীল বর্গের বাঁদিকে একটি লাল বৃত্ত"
    assert caption(attrs, "bn", template=RELATION_TEMPLATES["bn"][1]) == (
        "একটি বড় নীল বর্গের বাঁদিকে একটি ছোট লাল বৃত্ত আছে")


def test_heldout_relation_items_use_heldout_compositions():
    for attrs in ShapesDataset("heldout", n=50, relation=True).attributes:
        assert (attrs["shape"], attrs["color"]) in HELDOUT and (attrs["shape2"], attrs["color2"]) in HELDOUT


# --------------------------------------------------------------------------------------------------------
# Photos and the re-exported loader
# --------------------------------------------------------------------------------------------------------


def test_sample_photos_are_rgb_with_bilingual_labels():
    photos = data.sample_photos()
    assert len(photos) >= 6 and len({p.name for p in photos}) == len(photos)
    for photo in photos:
        assert photo.image.mode == "RGB" and min(photo.image.size) >= 64
        assert photo.label_en.strip() and BENGALI.search(photo.label_bn)
        assert unicodedata.is_normalized("NFC", photo.label_bn)
    assert {"a cat", "একটি বিড়াল"} <= {label for p in photos for label in (p.label_en, p.label_bn)}
    assert any(np.ptp(pixels(p.image).mean(axis=(0, 1))) > 5 for p in photos)  # real colour photos, not all grey


def test_load_image_is_reexported():
    assert data.load_image is images.load_image and data.ImageLoadError is images.ImageLoadError


def test_unseen_phrasings_are_in_neither_template_set():
    """The phrasing benchmark's stand-in for a student's own words must stay unseen by training and prompts."""
    def frame(template: str) -> str:
        return re.sub(r"[^\w{} ]", "", template.lower()).strip()

    for lang in ("en", "bn"):
        unseen = {frame(t) for t in data.UNSEEN_PHRASINGS[lang]}
        assert len(unseen) == len(data.UNSEEN_PHRASINGS[lang]) >= 10
        used = {frame(t) for t in TRAIN_TEMPLATES[lang] + EVAL_TEMPLATES[lang]}
        assert not unseen & used, unseen & used
        for template in data.UNSEEN_PHRASINGS[lang]:
            assert "{shape}" in template and "{color}" in template


def test_the_first_training_templates_are_the_base_set():
    assert data.BASE_TEMPLATES == 6 and len(TRAIN_TEMPLATES["en"]) >= 3 * data.BASE_TEMPLATES
    assert TRAIN_TEMPLATES["en"][0] == "a {size} {color} {shape} {position}"  # caption()'s default, unchanged
    assert TRAIN_TEMPLATES["bn"][data.BASE_TEMPLATES - 1] == "{position} একটি {size} {color} {shape} আছে"


@pytest.mark.parametrize("lang", ["en", "bn"])
def test_filler_words_name_no_attribute_and_no_unseen_word(lang):
    words = set(data.filler_words(lang))
    assert len(words) > 100
    attribute_words = {w for table in TABLES.values() for pair in table.items() for w in pair}
    unseen = {w.strip(".,!?():") for p in data.UNSEEN_PHRASINGS[lang] + EVAL_TEMPLATES[lang] for w in p.split()}
    assert not words & attribute_words and not words & unseen
    assert "তারা" not in data.filler_words("bn") and "এটি" not in data.filler_words("bn")  # "they" is also the star; "এটি" + "একটি লাল বৃত্ত" is an evaluation prompt
    rng = random.Random(0)
    for _ in range(50):
        framed = data.frame_caption("a red circle" if lang == "en" else "একটি লাল বৃত্ত", lang, rng)
        extra = framed.replace("a red circle" if lang == "en" else "একটি লাল বৃত্ত", " ").split()
        assert 1 <= len(extra) <= 6 and all(w in words for w in extra)
    with pytest.raises(ValueError):
        data.filler_words("xx")


def test_phrased_prompts_cycle_through_the_phrasings():
    pairs = [("circle", "red"), ("star", "blue"), ("heart", "green")]
    prompts = data.phrased_prompts(pairs, per_pair=2)
    assert len(prompts) == 2 * len(pairs) * 2 and {lang for _, lang, _ in prompts} == {"en", "bn"}
    assert prompts[0] == ("a picture showing one red circle", "en", {"shape": "circle", "color": "red"})
    assert prompts[2][0] == "look, a blue star!"  # pair 1 starts where pair 0 stopped
    everything = data.phrased_prompts(pairs[:1])
    assert [p for p, _, _ in everything[:12]] == [caption({"shape": "circle", "color": "red", "size": "small",
                                                           "position": "center"}, "en", template=t)
                                                  for t in data.UNSEEN_PHRASINGS["en"]]


def test_hard_negatives_rebind_the_same_words():
    """Lesson 07's near misses: the same words bound the other way round, with Bengali case endings right."""
    from mmcore.data import flip_relation, hard_negative, swap_colors

    attrs = {"shape": "star", "color": "red", "size": "small", "position": "right", "shape2": "square",
             "color2": "blue", "size2": "large", "position2": "left", "relation": "right of"}
    en, bn = RELATION_TEMPLATES["en"][0], RELATION_TEMPLATES["bn"][0]
    assert caption(attrs, "en", en) == "a red star to the right of a blue square"
    assert caption(swap_colors(attrs), "en", en) == "a blue star to the right of a red square"
    assert caption(flip_relation(attrs), "en", en) == "a red star to the left of a blue square"
    assert caption(attrs, "bn", bn) == "একটি নীল বর্গের ডানদিকে একটি লাল তারা"
    assert caption(swap_colors(attrs), "bn", bn) == "একটি লাল বর্গের ডানদিকে একটি নীল তারা"  # genitive stays on the square
    assert caption(flip_relation(attrs), "bn", bn) == "একটি নীল বর্গের বাঁদিকে একটি লাল তারা"
    assert flip_relation(flip_relation(attrs)) == attrs and swap_colors(swap_colors(attrs)) == attrs
    rng = random.Random(0)
    for _ in range(20):
        near = hard_negative(attrs, rng)
        assert near in (swap_colors(attrs), flip_relation(attrs))
        same_colour = hard_negative({**attrs, "color2": "red"}, rng)  # a swap would change nothing: mirrored
        assert same_colour == flip_relation({**attrs, "color2": "red"})
        one = hard_negative({k: attrs[k] for k in ("shape", "color", "size", "position")}, rng)
        assert one["shape"] == "star" and one["color"] != "red"
    with pytest.raises(ValueError, match="two-object"):
        swap_colors({k: attrs[k] for k in ("shape", "color", "size", "position")})

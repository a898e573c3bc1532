"""Tests of mmcore.search: top-k maths, recall@k, indexing collections, the embedding cache, search, FAISS parity.

Most tests use :class:`ColourModel`, a deterministic stand-in for CLIP whose embedding of an image is its mean
colour and of a text the colour word it names: then retrieval results are known in advance. One smoke test runs a
tiny random CLIP end to end.
"""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from mmcore import search
from mmcore.images import to_tensor
from mmcore.search import (ImageIndex, SearchResult, build_index, cosine_topk, model_fingerprint, recall_at_k,
                           query_language, relevant_items, search_results)

HAS_FAISS = importlib.util.find_spec("faiss") is not None

RGB = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "white": (1.0, 1.0, 1.0)}
WORDS = list(RGB)  # token id i + 1 names WORDS[i]; 0 means "no colour word"


class ColourModel(nn.Module):
    """Stand-in for CLIP: an image's embedding is its mean (R, G, B), a text's is the RGB of its colour word.

    ``mix`` is a buffer (so it is part of the state dict and of the fingerprint); ``images_encoded`` counts calls.
    """

    def __init__(self, mix: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mix", torch.eye(3) + mix)  # (3, 3) colour mixing; identity by default
        self.images_encoded = 0

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.images_encoded += images.shape[0]
        return images.mean(dim=(2, 3)) @ self.mix  # (B, 3, H, W) -> (B, 3)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        table = torch.tensor([(0.0, 0.0, 0.0)] + list(RGB.values()))  # (5, 3)
        return table[tokens[:, 0]] @ self.mix  # (B, 3)


def tokenize(texts: list[str], truncate: bool = False) -> torch.Tensor:
    """(B, 1) id of the first colour word of each text."""
    ids = [next((WORDS.index(w) + 1 for w in text.lower().split() if w in WORDS), 0) for text in texts]
    return torch.tensor(ids).unsqueeze(1)


def preprocess(image: Image.Image) -> torch.Tensor:
    """PIL image -> (3, 8, 8) float tensor in [0, 1]."""
    return to_tensor(image, 8)[0]


def solid(rgb: tuple[int, int, int], size: int = 16) -> Image.Image:
    return Image.new("RGB", (size, size), rgb)


# red, green, blue, dark red, yellow, grey
COLLECTION = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 0, 0), (255, 255, 0), (100, 100, 100)]


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch) -> Path:
    """Every test gets its own, empty MMCORE_CACHE: nothing is written to the user's ~/.cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MMCORE_CACHE", str(root))
    return root


def make_index(images=None, model=None, **kwargs) -> ImageIndex:
    images = images if images is not None else [solid(c) for c in COLLECTION]
    kwargs.setdefault("progress", False)
    return build_index(images, model or ColourModel(), preprocess, tokenize, **kwargs)


# ---------------------------------------------------------------------------------------------- cosine_topk


def brute_force(queries, keys, k):
    scores = torch.nn.functional.normalize(queries.float(), dim=-1) @ torch.nn.functional.normalize(keys.float(), dim=-1).T
    return scores.sort(dim=1, descending=True)


@pytest.mark.parametrize("chunk", [1, 7, 50, 10_000])
def test_cosine_topk_matches_brute_force_for_any_chunk(chunk):
    g = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(5, 16, generator=g), torch.randn(50, 16, generator=g)
    top = cosine_topk(queries, keys, k=4, chunk=chunk)
    expected = brute_force(queries, keys, 4)
    assert top.scores.shape == top.indices.shape == (5, 4)
    torch.testing.assert_close(top.scores, expected.values[:, :4])
    assert torch.equal(top.indices, expected.indices[:, :4])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 50), chunk=st.integers(1, 45), seed=st.integers(0, 1000))
def test_cosine_topk_chunking_never_changes_the_result(n, k, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    queries, keys = torch.randn(3, 8, generator=g), torch.randn(n, 8, generator=g).half()
    whole, chunked = cosine_topk(queries, keys, k, chunk=10_000), cosine_topk(queries, keys, k, chunk=chunk)
    assert whole.indices.shape == (3, min(k, n))  # k larger than N is clipped to N
    torch.testing.assert_close(chunked.scores, whole.scores)
    assert torch.equal(chunked.indices, whole.indices)


def test_cosine_topk_normalises_and_accepts_one_query():
    keys = torch.tensor([[10.0, 0.0], [0.0, 0.1], [1.0, 1.0]])
    top = cosine_topk(torch.tensor([0.0, 5.0]), keys, k=3)  # (D,) query
    assert top.indices.tolist() == [[1, 2, 0]]
    torch.testing.assert_close(top.scores, torch.tensor([[1.0, 2**-0.5, 0.0]]))


def test_cosine_topk_errors():
    keys = torch.randn(4, 3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        cosine_topk(torch.randn(1, 3), keys, k=0)
    with pytest.raises(ValueError, match="dimensions"):
        cosine_topk(torch.randn(1, 5), keys, k=1)
    with pytest.raises(ValueError, match="non-empty"):
        cosine_topk(torch.randn(1, 3), torch.empty(0, 3), k=1)


# ---------------------------------------------------------------------------------------------- recall_at_k

# Four unit items on the plane and three queries; similarity order worked out by hand:
#   q0 = (1, 0):       x0 (1.0) > x1 (0.8) > x3 (0.0) > x2 (-1.0)
#   q1 = (0, 1):       x3 (1.0) > x1 (0.6) > x0 (0.0) > x2 (0.0 -> tie, but below x1 either way)
#   q2 = (-1, 0):      x2 (1.0) > x3 (0.0) ...
ITEMS = torch.tensor([[1.0, 0.0], [0.8, 0.6], [-1.0, 0.0], [0.0, 1.0]])
QUERIES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def test_recall_at_k_hand_computed_single_relevant():
    # q0 wants x1 (rank 2), q1 wants x3 (rank 1), q2 wants x3 (rank 2)
    recall = recall_at_k(QUERIES, ITEMS, [1, 3, 3], ks=(1, 2, 4))
    assert recall == pytest.approx({1: 1 / 3, 2: 1.0, 4: 1.0})


def test_recall_at_k_several_relevant_items_per_query():
    # q0: {x2 (rank 4), x3 (rank 3)} -> first hit at rank 3; q1: {x0, x1} -> x1 at rank 2; q2: {x2} -> rank 1
    relevant = [{2, 3}, [0, 1], (2,)]
    assert recall_at_k(QUERIES, ITEMS, relevant, ks=(1, 2, 3)) == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})
    mask = torch.zeros(3, 4, dtype=torch.bool)
    for q, items in enumerate(relevant):
        mask[q, list(items)] = True
    assert recall_at_k(QUERIES, ITEMS, mask, ks=(1, 2, 3)) == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})


def test_recall_at_k_accepts_tensors_numpy_and_k_beyond_the_index():
    assert recall_at_k(QUERIES, ITEMS.half(), torch.tensor([0, 3, 2]), ks=(1, 100)) == {1: 1.0, 100: 1.0}
    assert recall_at_k(QUERIES, ITEMS, np.array([1, 3, 3]), ks=(1,)) == pytest.approx({1: 1 / 3})
    assert recall_at_k(QUERIES, ITEMS, np.eye(3, 4, dtype=bool), ks=(1,)) == pytest.approx({1: 2 / 3})


def test_recall_at_k_errors():
    with pytest.raises(ValueError, match="no relevant item"):
        recall_at_k(QUERIES, ITEMS, [[0], [], [2]])
    with pytest.raises(ValueError, match="outside the index"):
        recall_at_k(QUERIES, ITEMS, [0, 1, 9])
    with pytest.raises(ValueError, match="3 queries"):
        recall_at_k(QUERIES, ITEMS, [0, 1])
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(QUERIES, ITEMS, torch.ones(3, 5, dtype=torch.bool))


def test_relevant_items():
    attributes = [{"color": "red", "shape": "circle"}, {"color": "blue", "shape": "circle"},
                  {"color": "red", "shape": "square"}]
    assert relevant_items(attributes, color="red") == [0, 2]
    assert relevant_items(attributes, color="red", shape="circle") == [0]
    assert relevant_items(attributes, color="green") == []


# ------------------------------------------------------------------------------------------------- search


def test_text_search_finds_the_colour():
    index = make_index()
    hits = index.search("a red square", k=2)
    assert all(isinstance(hit, SearchResult) for hit in hits)
    assert {hit.index for hit in hits} == {0, 3}  # red and dark red point in the same direction
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert index.search("something blue", k=1)[0].index == 2
    assert [hits[0].index for hits in index.search(["green", "blue"], k=1)] == [1, 2]  # a list -> one list each


def test_image_search_finds_itself_first():
    images = [solid(c) for c in COLLECTION]
    index = make_index(images)
    for i in [1, 2, 4, 5]:  # the colours with a direction of their own (red and dark red are tied)
        best = index.search(images[i], k=3)[0]
        assert best.index == i and best.score == pytest.approx(1.0, abs=1e-3)
    assert [hits[0].index for hits in index.search([images[4], images[5]], k=1)] == [4, 5]


def test_embedding_query_and_k_clipping():
    index = make_index()
    hits = index.search(torch.tensor([0.0, 0.0, 2.0]), k=100)  # k beyond the collection: clipped, all returned
    assert len(hits) == len(COLLECTION) and hits[0].index == 2
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(index.search(torch.eye(3), k=2)) == 3  # (Q, D) -> Q lists
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search("red", k=0)
    with pytest.raises(ValueError, match="dimensions"):
        index.search(torch.ones(5), k=1)


def test_path_query_is_an_image(tmp_path):
    solid((0, 0, 255)).save(tmp_path / "q.png")
    assert make_index().search(tmp_path / "q.png", k=1)[0].index == 2


def test_float16_storage_and_memory():
    index = make_index()
    assert index.embeddings.dtype == torch.float16 and index.embeddings.shape == (len(COLLECTION), 3)
    torch.testing.assert_close(index.embeddings.float().norm(dim=1), torch.ones(len(COLLECTION)), atol=1e-3, rtol=0)
    big = ImageIndex(torch.zeros(1000, 512, dtype=torch.float16))
    assert big.memory_bytes == 1000 * 512 * 2
    assert "100,000 images x 512 numbers x 2 bytes = 102.4 MB" in search.__doc__  # the figure students read
    with pytest.raises(ValueError, match="no model"):
        big.search("red")


def test_evaluate_uses_recall_at_k():
    index = make_index()
    recall = index.evaluate(["red", "green", "white"], [{0, 3}, [1], [5]], ks=(1, 2))
    # red -> red or dark red first (hit); green -> green first; white -> grey first (grey is (1,1,1) scaled)
    assert recall == {1: 1.0, 2: 1.0}
    assert index.evaluate(["blue"], [[0]], ks=(1, 6)) == {1: 0.0, 6: 1.0}


def test_search_results_for_the_widget():
    index = make_index([(solid(c), f"colour {i}") for i, c in enumerate(COLLECTION)])
    assert search_results(index, "   ", k=3) == []  # nothing typed yet
    results = search_results(index, "blue", k=2)
    assert len(results) == 2
    image, caption, score = results[0]
    assert isinstance(image, Image.Image) and image.getpixel((0, 0)) == (0, 0, 255)
    assert caption == "colour 2" and score == pytest.approx(1.0, abs=1e-3)


# --------------------------------------------------------------------------------------------- collections


def test_index_a_shapes_dataset():
    from mmcore.data import ShapesDataset

    dataset = ShapesDataset("test", n=12, image_size=32, seed=3)
    index = make_index(dataset, batch_size=5)
    assert len(index) == 12 and index.n_encoded == 12
    assert index.labels == [dataset[i][1] for i in range(12)]
    assert np.array_equal(np.asarray(index.image(7)), np.asarray(dataset[7][0]))
    with pytest.raises(TypeError, match="transform=None"):
        make_index(ShapesDataset("test", n=2, transform=preprocess))


def test_search_results_caption_shapes_pictures_in_the_language_of_the_query():
    from mmcore.data import ShapesDataset, caption

    dataset = ShapesDataset("test", n=12, image_size=32, seed=3)  # English labels
    index = make_index(dataset)
    assert index.attributes == dataset.attributes
    (_, bengali, _), = search_results(index, "লাল রঙের বৃত্ত", k=1)
    (_, english, _), = search_results(index, "red circle", k=1)
    assert query_language("লাল রঙের বৃত্ত") == "bn" and query_language("a red circle") == "en"
    assert bengali in {caption(a, "bn") for a in dataset.attributes}
    assert english in {caption(a, "en") for a in dataset.attributes}
    assert search_results(index, "red circle", k=1, lang="bn")[0][1] in {caption(a, "bn") for a in dataset.attributes}


def test_index_sample_photos_in_both_languages():
    from mmcore.data import sample_photos

    photos = sample_photos()[:3]
    english, bengali = make_index(photos), make_index(photos, lang="bn")
    assert english.labels == [p.label_en for p in photos] and bengali.labels == [p.label_bn for p in photos]
    assert english.search(photos[1].image, k=1)[0].label == photos[1].label_en


def test_unsupported_and_empty_collections(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        make_index([])
    with pytest.raises(ValueError, match="no image files"):
        make_index(tmp_path)
    with pytest.raises(NotADirectoryError):
        make_index(str(tmp_path / "missing"))
    with pytest.raises(TypeError, match="cannot index item 1"):
        make_index([solid((1, 2, 3)), 42])


def write_folder(root: Path) -> list[Path]:
    """Five good images in nested folders, two bad ones, and files that must be ignored."""
    good = [root / "a.png", root / "sub" / "b.jpg", root / "sub" / "deeper" / "c.PNG", root / "d.bmp",
            root / "e.webp"]
    for path, rgb in zip(good, COLLECTION):
        path.parent.mkdir(parents=True, exist_ok=True)
        solid(rgb).save(path)
    (root / "corrupt.png").write_bytes((root / "a.png").read_bytes()[:40])  # a truncated PNG
    (root / "sub" / "notes.jpg").write_text("this is text, not a JPEG")
    (root / "readme.txt").write_text("not an image extension: ignored")
    (root / ".hidden").mkdir()
    solid((9, 9, 9)).save(root / ".hidden" / "x.png")  # hidden folder: ignored
    return good


def test_folder_index_skips_and_reports_unreadable_files(tmp_path):
    good = write_folder(tmp_path / "photos")
    with pytest.warns(UserWarning, match="skipped 2 of 7 files") as record:
        index = make_index(tmp_path / "photos")
    assert len(record) == 1  # one summary warning, not one per file
    assert sorted(index.paths) == sorted(str(p) for p in good)
    assert sorted(Path(p).name for p, _ in index.skipped) == ["corrupt.png", "notes.jpg"]
    assert all("Cannot load image" in reason for _, reason in index.skipped)
    hit = index.search("blue", k=1)[0]
    assert Path(hit.path) == good[2]  # c.PNG is the blue one
    assert search_results(index, "blue", k=1)[0][1] == "c.PNG"
    assert index.image(hit.index).getpixel((0, 0)) == (0, 0, 255)


def test_folder_of_only_bad_files(tmp_path):
    (tmp_path / "x.jpg").write_text("text")
    with pytest.warns(UserWarning, match="skipped 1"), pytest.raises(ValueError, match="none of the 1 files"):
        make_index(tmp_path)


# -------------------------------------------------------------------------------------------------- caching


def test_cache_encodes_only_new_or_changed_files(tmp_path, cache_root):
    good = write_folder(tmp_path / "photos")
    model = ColourModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = make_index(tmp_path / "photos", model)
        assert model.images_encoded == 5 and (first.n_encoded, first.n_cached) == (5, 0)
        second = make_index(tmp_path / "photos", model)
        assert model.images_encoded == 5 and (second.n_encoded, second.n_cached) == (0, 5)  # no model call
        torch.testing.assert_close(second.embeddings, first.embeddings)

        solid((0, 255, 255)).save(good[0])  # change one file ...
        solid((255, 0, 255)).save(tmp_path / "photos" / "new.png")  # ... and add one
        third = make_index(tmp_path / "photos", model)
    assert model.images_encoded == 7 and (third.n_encoded, third.n_cached) == (2, 4)
    assert third.search("green", k=1)[0].path == str(good[1])
    files = sorted(p.relative_to(cache_root).as_posix() for p in cache_root.rglob("*") if p.is_file())
    assert len(files) == 1 and files[0].startswith("search/") and files[0].endswith(".safetensors")


def test_cache_of_in_memory_images_and_a_new_model_invalidates_it(cache_root):
    model = ColourModel()
    make_index(model=model)
    make_index(model=model)
    assert model.images_encoded == len(COLLECTION)  # pixels hashed: the second run hits the cache

    other = ColourModel(mix=0.5)  # different weights -> different fingerprint -> its own cache
    index = make_index(model=other)
    assert other.images_encoded == len(COLLECTION) and index.n_cached == 0
    assert len(list((cache_root / "search").iterdir())) == 2

    with torch.no_grad():
        model.mix.mul_(2.0)  # trained in place: the fingerprint must notice
    make_index(model=model)
    assert model.images_encoded == 2 * len(COLLECTION)


def test_cache_can_be_switched_off_or_moved(tmp_path, cache_root):
    model = ColourModel()
    make_index(model=model, cache=False)
    make_index(model=model, cache=False)
    assert model.images_encoded == 2 * len(COLLECTION) and not cache_root.exists()
    make_index(model=model, cache=tmp_path / "elsewhere")
    assert list((tmp_path / "elsewhere" / "search").glob("*.safetensors")) and not cache_root.exists()


def test_a_damaged_cache_file_is_ignored_and_rewritten(cache_root):
    model = ColourModel()
    make_index(model=model)
    (cache_file,) = (cache_root / "search").iterdir()
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable search cache"):
        index = make_index(model=model)
    assert index.n_encoded == len(COLLECTION)
    assert make_index(model=model).n_cached == len(COLLECTION)  # rewritten, readable again


def test_model_fingerprint():
    model = ColourModel()
    assert model_fingerprint(model) == model_fingerprint(model) == model_fingerprint(ColourModel())
    assert model_fingerprint(model, preprocess) != model_fingerprint(model, tokenize)
    assert model_fingerprint(model) != model_fingerprint(ColourModel(mix=0.1))

    class NoWeights:
        def encode_image(self, images):
            return images.mean(dim=(2, 3))

    with pytest.raises(TypeError, match="cache=False"):
        model_fingerprint(NoWeights())
    assert len(make_index(model=NoWeights(), cache=False)) == len(COLLECTION)
    named = NoWeights()
    named.fingerprint = "mean-colour-v1"
    assert model_fingerprint(named) == model_fingerprint(named)


# ---------------------------------------------------------------------------------------------- real CLIP


def test_tiny_clip_end_to_end():
    from mmcore.clip import CLIP, CLIPConfig, Preprocess
    from mmcore.data import ShapesDataset
    from mmcore.tokenizer import BPETokenizer

    tokenizer = BPETokenizer.course()
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny(vocab_size=tokenizer.vocab_size, context_length=tokenizer.context_length,
                                 eot_token=tokenizer.eot_token)).eval()
    dataset = ShapesDataset("test", n=10, seed=1)
    index = build_index(dataset, model, Preprocess(32), tokenizer, batch_size=4, progress=False)
    assert index.embeddings.shape == (10, model.cfg.embed_dim)
    hits = index.search("a red circle", k=3)
    assert len(hits) == 3 and hits[0].label == dataset[hits[0].index][1]
    assert max(h.score for h in index.search(dataset[4][0], k=10)) == pytest.approx(1.0, abs=1e-2)  # itself
    assert set(index.evaluate(["a red circle"], [list(range(10))], ks=(1, 10))) == {1, 10}


# ------------------------------------------------------------------------------------------------------ FAISS


def test_faiss_backend_missing_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        ImageIndex(torch.randn(4, 3), backend="faiss")
    with pytest.raises(ValueError, match="backend"):
        ImageIndex(torch.randn(4, 3), backend="annoy")


@pytest.mark.skipif(not HAS_FAISS, reason="faiss is optional: pip install faiss-cpu")
def test_faiss_backend_matches_torch():
    g = torch.Generator().manual_seed(0)
    embeddings, queries = torch.randn(3000, 64, generator=g).half(), torch.randn(20, 64, generator=g)
    exact, flat = ImageIndex(embeddings), ImageIndex(embeddings, backend="faiss")
    a, b = exact.topk(queries, 10), flat.topk(queries, 10)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
    assert [h.index for h in flat.search(queries[0], k=50)] == [h.index for h in exact.search(queries[0], k=50)]
    index = make_index(backend="faiss")
    assert index.search("blue", k=1)[0].index == 2


def test_distinct_attributes_keeps_first_seen_order_and_drops_repeats():
    a = {"shape": "circle", "color": "red"}
    b = {"color": "blue", "shape": "star"}
    same_as_a = {"color": "red", "shape": "circle"}  # same attributes, other key order
    assert search.distinct_attributes([a, b, same_as_a, b]) == [a, b]
    assert search.distinct_attributes([]) == []

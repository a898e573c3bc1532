"""The search cache does not trust its contents (issue 14): damaged rows and files, a changed preprocessing, and
builders that share one cache, in threads or processes.

Each test runs the shipped ``shapes-tiny`` CLIP on a handful of 32 px Shapes pictures saved as PNG files, with
its own cache folder (``cache=``), so each takes seconds.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import struct
import threading
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mmcore.clip
from mmcore.clip import Preprocess
from mmcore.data import ShapesDataset
from mmcore.search import EmbeddingCache, build_index, find_images, model_fingerprint

QUERY = "a red circle"


@pytest.fixture(scope="module")
def clip():
    """(model, preprocess, tokenizer) of the shipped tiny CLIP, on the CPU."""
    return mmcore.clip.load("shapes-tiny", device="cpu")


def write_pictures(folder: Path, n: int = 8, seed: int = 1) -> Path:
    """``n`` Shapes pictures (32 px) as PNG files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, _) in enumerate(ShapesDataset("test", n=n, image_size=32, seed=seed)):
        image.save(folder / f"picture-{seed}-{i}.png")
    return folder


@pytest.fixture
def pictures(tmp_path) -> Path:
    return write_pictures(tmp_path / "pictures")


def build(folder, clip, cache, preprocess=None):
    model, default_preprocess, tokenizer = clip
    return build_index(folder, model, preprocess or default_preprocess, tokenizer, cache=cache, progress=False)


def cache_file(cache: Path) -> Path:
    (path,) = (cache / "search").glob("*.safetensors")
    return path


def assert_same_results(index, fresh) -> None:
    """The index gives what a build without any cache gives (float16 rounding aside)."""
    torch.testing.assert_close(index.embeddings, fresh.embeddings, atol=2e-3, rtol=0)
    hits, expected = index.search(QUERY, k=8), fresh.search(QUERY, k=8)
    assert [h.path for h in hits] == [h.path for h in expected]
    assert all(abs(h.score - e.score) < 5e-3 for h, e in zip(hits, expected))


def build_without_warnings(folder, clip, cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good cache is read silently
        return build(folder, clip, cache)


# ----------------------------------------------------------------------------------------------- damaged rows


def test_nan_rows_are_dropped_and_encoded_again(pictures, clip, tmp_path):
    cache = tmp_path / "cache"
    build(pictures, clip, cache)
    data = load_file(str(cache_file(cache)))
    data["embeddings"][[2, 5]] = float("nan")  # two rows of (M, D)
    save_file(data, str(cache_file(cache)))

    with pytest.warns(UserWarning, match="dropped 2 damaged entries"):
        index = build(pictures, clip, cache)
    assert (index.n_cached, index.n_encoded) == (6, 2)
    assert torch.isfinite(index.embeddings.float()).all()
    assert_same_results(index, build(pictures, clip, cache=False))
    assert build_without_warnings(pictures, clip, cache).n_cached == 8  # the file was rewritten without them


def flip_bytes(path: Path, tensor: str, offsets: list[int]) -> None:
    """XOR 0xFF into bytes of one tensor's data in a safetensors file (8-byte header size, JSON header, data)."""
    raw = bytearray(path.read_bytes())
    (header_size,) = struct.unpack("<Q", raw[:8])
    start, _ = json.loads(raw[8:8 + header_size])[tensor]["data_offsets"]
    for offset in offsets:
        raw[8 + header_size + start + offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_flipped_bytes_are_caught_by_the_checksum(pictures, clip, tmp_path):
    cache = tmp_path / "cache"
    first = build(pictures, clip, cache)
    row = first.embeddings.shape[1] * 2  # bytes per float16 row
    # row 1: the low byte of one number (a tiny change); row 4: a high byte (a huge one); row 6: a digest byte
    flip_bytes(cache_file(cache), "embeddings", [1 * row + 10, 4 * row + 7])
    flip_bytes(cache_file(cache), "sha256", [6 * 32 + 3])

    with pytest.warns(UserWarning, match="dropped 3 damaged entries"):
        index = build(pictures, clip, cache)
    assert (index.n_cached, index.n_encoded) == (5, 3)
    assert_same_results(index, build(pictures, clip, cache=False))
    assert build_without_warnings(pictures, clip, cache).n_cached == 8


# ------------------------------------------------------------------------------------------- unusable files


def test_a_cache_of_the_wrong_embedding_size_is_set_aside_and_rebuilt(pictures, clip, tmp_path):
    model, preprocess, _ = clip
    cache = tmp_path / "cache"
    wrong = EmbeddingCache(model_fingerprint(model, preprocess), cache)  # a valid file, of 7-d embeddings
    for path in find_images(pictures)[:4]:
        wrong.put(hashlib.sha256(path.read_bytes()).hexdigest(), torch.nn.functional.normalize(torch.randn(7), dim=0))
    wrong.save()

    with pytest.warns(UserWarning, match="wrong-size search cache.*7-dimensional.*moved it to"):
        index = build(pictures, clip, cache)
    assert index.n_encoded == 8 and cache_file(cache).with_name(cache_file(cache).name + ".bad").exists()
    assert_same_results(index, build(pictures, clip, cache=False))
    again = build_without_warnings(pictures, clip, cache)  # later builds work, from the rebuilt cache
    assert (again.n_cached, again.embeddings.shape[1]) == (8, index.embeddings.shape[1])


def test_a_torn_cache_file_is_set_aside_and_rebuilt(pictures, clip, tmp_path):
    cache = tmp_path / "cache"
    build(pictures, clip, cache)
    path = cache_file(cache)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a write cut off half way

    with pytest.warns(UserWarning, match="unreadable search cache.*moved it to"):
        index = build(pictures, clip, cache)
    assert index.n_encoded == 8
    assert sorted(p.name for p in (cache / "search").iterdir()) == [path.name, path.name + ".bad"]  # no lock, no tmp
    assert build_without_warnings(pictures, clip, cache).n_cached == 8


# -------------------------------------------------------------------------------------------- the cache key


def test_a_changed_mean_or_std_misses_the_cache(pictures, clip, tmp_path):
    model, preprocess, _ = clip
    cache = tmp_path / "cache"
    build(pictures, clip, cache)
    same = Preprocess(preprocess.size)
    assert model_fingerprint(model, same) == model_fingerprint(model, preprocess)  # equal parameters, equal key
    assert build(pictures, clip, cache, preprocess=same).n_cached == 8

    for other in (Preprocess(preprocess.size, mean=(0.5, 0.5, 0.5)), Preprocess(preprocess.size, std=(0.5, 0.5, 0.5))):
        index = build(pictures, clip, cache, preprocess=other)
        assert index.n_cached == 0, other
        assert_same_results(index, build(pictures, clip, cache=False, preprocess=other))
    assert model_fingerprint(model, Preprocess(preprocess.size + 8)) != model_fingerprint(model, preprocess)


def test_the_key_holds_what_a_preprocessing_function_closes_over(clip):
    model, preprocess, _ = clip

    def scaled(factor):
        return lambda image: preprocess(image) * factor

    assert model_fingerprint(model, scaled(1.0)) == model_fingerprint(model, scaled(1.0))
    assert model_fingerprint(model, scaled(1.0)) != model_fingerprint(model, scaled(0.5))


# ------------------------------------------------------------------------------------------ shared caches


def test_threads_saving_at_once_leave_a_readable_file_with_every_entry(tmp_path):
    threads, rounds, rows = 4, 5, 50
    barrier, errors = threading.Barrier(threads), []

    def writer(k: int) -> None:
        try:
            for r in range(rounds):
                store = EmbeddingCache("shared", tmp_path)
                for i in range(rows):
                    store.put(hashlib.sha256(f"{k}-{r}-{i}".encode()).hexdigest(), torch.randn(16))
                barrier.wait(timeout=60)
                store.save()  # all threads at the same moment
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(EmbeddingCache("shared", tmp_path)) == threads * rounds * rows
    assert [p.name for p in (tmp_path / "search").iterdir()] == ["shared.safetensors"]


def _build_in_process(folder: str, cache: str, barrier) -> None:
    """One builder process: waits inside its first encode until the other is encoding too, so that both have read
    the (empty) cache before either saves."""
    import torch

    torch.set_num_threads(1)
    model, preprocess, tokenizer = mmcore.clip.load("shapes-tiny", device="cpu")
    encode = model.encode_image

    def encode_together(images):
        if barrier is not None:
            barrier.wait(timeout=120)
        return encode(images)

    model.encode_image = encode_together  # an instance attribute: the weights, so the fingerprint, are unchanged
    build_index(folder, model, preprocess, tokenizer, cache=cache, progress=False, batch_size=2)


def test_two_processes_building_over_one_cache_keep_every_entry(tmp_path, clip):
    folders = [write_pictures(tmp_path / f"pictures-{k}", n=4, seed=10 + k) for k in range(2)]
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [context.Process(target=_build_in_process, args=(str(folder), str(cache), barrier))
                 for folder in folders]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0, 0]

    for folder in folders:  # every picture of both processes is in the one cache file
        assert build_without_warnings(folder, clip, cache).n_cached == 4
    assert len(load_file(str(cache_file(cache)))["sha256"]) == 8

"""Fault injection: what a careless or unlucky user does to mmcore, and the clear error or the survival it must get.

Each test reproduces one case of issue 14 (downloads outside the cache, slow servers, oversized files, leftovers of
killed downloads, ...), bounded in time; servers are throwaway HTTP servers on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from mmcore.weights import DownloadError, download, safe_filename
from openai_fakes import local_server

BODY = os.urandom(64 * 1024)
BODY_SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture()
def server():
    with local_server() as handler:
        handler.files["/f.bin"] = BODY
        yield handler


# ------------------------------------------------------------------------------------------------- downloads


@pytest.mark.parametrize("name", ["../x.txt", "sub/x.txt", "..", ".", ".hidden", "a\\b", "x\0y"])
def test_download_never_writes_or_deletes_outside_the_cache(server, tmp_path, name):
    cache, outside = tmp_path / "cache", tmp_path / "x.txt"
    cache.mkdir()
    outside.write_text("a file of the user's, next to the cache")
    with pytest.raises(ValueError, match="plain file name|file name"):
        download(server.url("/f.bin"), BODY_SHA, cache_dir=cache, filename=name, progress=False)
    assert outside.read_text() == "a file of the user's, next to the cache"
    assert server.requests == []  # refused before any network traffic


def test_safe_filename_accepts_ordinary_names():
    assert safe_filename("ViT-B-32.pt") == "ViT-B-32.pt" and safe_filename("a b.bin") == "a b.bin"


def test_a_trickling_server_cannot_hold_a_download_past_its_deadline(server, tmp_path):
    started = time.monotonic()
    with pytest.raises(DownloadError, match="took more than 1 s"):
        download(server.url("/slow/f.bin"), BODY_SHA, cache_dir=tmp_path, progress=False, timeout=5, deadline=1.0)
    assert time.monotonic() - started < 5  # the body alone would take 6.4 s at 1 KiB per 0.1 s
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no partial file left


def test_a_file_larger_than_allowed_is_refused_before_its_body(server, tmp_path):
    with pytest.raises(DownloadError, match="more than the 1,000 allowed"):
        download(server.url("/f.bin"), BODY_SHA, cache_dir=tmp_path, progress=False, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_stale_part_files_of_killed_downloads_are_cleaned(server, tmp_path):
    old, fresh = tmp_path / ".f.bin.abc.part", tmp_path / ".f.bin.def.part"
    old.write_bytes(b"left by a process killed yesterday")
    fresh.write_bytes(b"another process is downloading right now")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    path = download(server.url("/f.bin"), BODY_SHA, cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == BODY and not old.exists() and fresh.exists()


# ------------------------------------------------------------------------------------------------- inputs


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a POSIX FIFO")
def test_a_fifo_is_refused_not_waited_on(tmp_path):
    from mmcore.images import ImageLoadError, load_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(fifo)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a POSIX FIFO")
def test_build_index_skips_a_fifo_with_a_reason(tmp_path):
    from PIL import Image

    from mmcore import clip as clip_module
    from mmcore.search import build_index

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    os.mkfifo(tmp_path / "pipe.png")
    model, preprocess, _ = clip_module.load("shapes-tiny", device="cpu")
    with pytest.warns(UserWarning, match="skipped 1 of 2 files"):
        index = build_index([tmp_path / "red.png", tmp_path / "pipe.png"], model, preprocess, cache=False,
                            progress=False)
    assert index.paths == [tmp_path / "red.png"] or [str(p) for p in index.paths] == [str(tmp_path / "red.png")]
    assert [reason for _, reason in index.skipped] == [f"{tmp_path / 'pipe.png'}: not a regular file (a pipe, "
                                                       "socket or device)"]


@pytest.mark.parametrize("mode", ["course", "openai"])
def test_a_lone_surrogate_is_a_clear_error_not_a_unicode_crash(mode):
    from mmcore.tokenizer import BPETokenizer

    tokenizer = BPETokenizer.course() if mode == "course" else BPETokenizer.openai()
    broken = "a red \ud83d circle"  # half of an emoji's surrogate pair, as a broken copy-paste leaves it
    with pytest.raises(ValueError, match="lone surrogate"):
        tokenizer.encode(broken)
    with pytest.raises(ValueError, match="position 6"):
        tokenizer(["a red circle", broken])
    assert tokenizer.encode("a red 😀 circle")  # a whole emoji is fine


def test_no_texts_give_no_embeddings_like_no_images():
    import torch

    from mmcore import clip as clip_module

    model, _, tokenizer = clip_module.load("shapes-tiny", device="cpu")
    assert model.encode_text(tokenizer([])).shape == (0, 128) == model.encode_image(torch.zeros(0, 3, 32, 32)).shape


# ------------------------------------------------------------------------------------------------- checkpoints


def _corrupted_copy(name: str, tmp_path: Path, change) -> Path:
    """A copy of a shipped checkpoint whose first floating tensor got ``change`` (card kept)."""
    import json

    from mmcore.weights import CHECKPOINT_DIR, load_checkpoint, save_checkpoint

    sd, card = load_checkpoint(CHECKPOINT_DIR / f"{name}.safetensors")
    first = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 4)
    sd[first] = change(sd[first].clone())
    path = save_checkpoint(tmp_path / f"{name}.safetensors", sd, card)
    assert json.loads(path.with_suffix(".json").read_text()).get("model") == card.get("model")
    return path


def _nan(t):
    t.view(-1)[3] = float("nan")
    return t


def _inf(t):
    t.view(-1)[0] = float("inf")
    return t


def _int(t):
    return t.round().to(__import__("torch").int32)


@pytest.mark.parametrize("change, message", [(_nan, "NaN or infinite"), (_inf, "NaN or infinite"), (_int, "needs")])
@pytest.mark.parametrize("name", ["shapes-tiny", "shapes-vqgan", "shapes-dalle", "shapes-unclip", "shapes-judge"])
def test_a_corrupt_checkpoint_is_refused_with_the_tensor_named(tmp_path, name, change, message):
    from mmcore import clip, dalle, judge, unclip, vqgan

    loader = {"shapes-tiny": clip.load, "shapes-vqgan": vqgan.load, "shapes-dalle": dalle.load,
              "shapes-unclip": unclip.load, "shapes-judge": judge.load}[name]
    path = _corrupted_copy(name, tmp_path, change)
    with pytest.raises(ValueError, match=f"{name}.safetensors: tensor '.*' .*{message}"):
        loader(path, device="cpu")


def test_flipped_bytes_in_a_checkpoint_are_caught_by_its_card(tmp_path):
    import shutil

    from mmcore import vqgan
    from mmcore.weights import CHECKPOINT_DIR

    for suffix in (".safetensors", ".json"):
        shutil.copy(CHECKPOINT_DIR / f"shapes-vqgan{suffix}", tmp_path / f"shapes-vqgan{suffix}")
    path = tmp_path / "shapes-vqgan.safetensors"
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x40  # one bit, deep inside a tensor: the values stay finite, only the hash can tell
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its card shapes-vqgan.json"):
        vqgan.load(path, device="cpu")
    (tmp_path / "shapes-vqgan.json").unlink()  # without its card the file loads: nothing to compare with
    assert vqgan.load(path, device="cpu") is not None


def test_a_shipped_checkpoint_copied_elsewhere_still_finds_its_tokenizer(tmp_path):
    import shutil

    from mmcore import clip as clip_module
    from mmcore.weights import CHECKPOINT_DIR

    for suffix in (".safetensors", ".json"):
        shutil.copy(CHECKPOINT_DIR / f"shapes-tiny{suffix}", tmp_path / f"my-clip{suffix}")
    model, _, tokenizer = clip_module.load(tmp_path / "my-clip.safetensors", device="cpu")
    assert tokenizer.vocab_size == model.cfg.vocab_size and tokenizer("একটি লাল বৃত্ত").shape == (1, 32)


def test_a_pickle_with_code_is_refused_without_advising_to_run_it(tmp_path):
    import pickle

    import torch

    from mmcore.weights import read_state_dict

    class Sneaky:  # unpickling it would call os.system
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2), "extra": Sneaky()}, path)
    with pytest.raises(pickle.UnpicklingError, match="refuses to run code") as caught:
        read_state_dict(path)
    assert "weights_only=False would let the file run any program" in str(caught.value)


def test_odd_image_files_get_messages_that_say_what_they_are(tmp_path):
    import io

    from PIL import Image

    from mmcore.images import ImageLoadError, load_image

    png = io.BytesIO()
    Image.new("RGB", (1, 1)).save(png, "PNG")
    empty = bytearray(png.getvalue())
    empty[16:24] = bytes(8)  # IHDR: width 0, height 0
    with pytest.raises(ImageLoadError, match="0 pixels wide or high"):
        load_image(bytes(empty))
    os.symlink(tmp_path / "b.png", tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "b.png")
    with pytest.raises(ImageLoadError, match="loop of symbolic links"):
        load_image(tmp_path / "a.png")


def test_a_typed_end_of_text_does_not_end_a_course_caption():
    from mmcore.tokenizer import BPETokenizer

    course = BPETokenizer.course()
    text = "a red <|endoftext|> circle"
    ids = course.encode(text)
    assert course.eot_token not in ids and course.sot_token not in ids  # plain text, not the special token
    assert course.decode(ids) == course.normalize(text)  # and the round trip still holds
    row = course([text])[0].tolist()
    assert row.count(course.eot_token) == 1 and row[len(ids) + 1] == course.eot_token  # the one real end
    openai = BPETokenizer.openai()
    assert openai.eot_token in openai.encode(text)  # OpenAI mode keeps OpenAI's behaviour (parity)


@pytest.mark.parametrize("classnames, templates, error, message", [
    ([], ("a photo of a {}.",), ValueError, "at least one class"),
    (["cat", None], ("a photo of a {}.",), ValueError, "non-empty string; got None"),
    (["cat", "dog"], ("a photo",), ValueError, "exactly one '{}'"),
    ("cat", ("a photo of a {}.",), TypeError, "not one string"),
    (["cat"], (), ValueError, "no templates"),
])
def test_zero_shot_classifier_input_errors(classnames, templates, error, message):
    from mmcore import clip as clip_module

    model, _, tokenizer = clip_module.load("shapes-tiny", device="cpu")
    with pytest.raises(error, match=message.replace("{", "\\{").replace("}", "\\}")):
        clip_module.zero_shot_classifier(model, tokenizer, classnames, templates)


def test_search_cuts_a_long_query_only_when_asked_and_the_search_box_says_so():
    from mmcore import clip as clip_module
    from mmcore.data import ShapesDataset
    from mmcore.search import build_index
    from mmcore.tokenizer import ContextLengthError
    from mmcore.widgets import search_box

    model, preprocess, tokenizer = clip_module.load("shapes-tiny", device="cpu")
    index = build_index(ShapesDataset("test", n=8, image_size=32, seed=1), model, preprocess, tokenizer, cache=False,
                        progress=False)
    long_query = "a red circle " + "and a very long story about it " * 6  # more than the model's 32 positions
    with pytest.raises(ContextLengthError, match="truncate=True"):
        index.search(long_query)  # as zero-shot: a clear error, not a silent cut
    assert len(index.search(long_query, truncate=True)) == 5
    box = search_box(index, k=3, lang="en")
    assert len(box.run(long_query)) == 3 and "cut to the length the model reads" in box.status.value
    box.run("a red circle")
    assert "cut to" not in box.status.value


def test_openai_mode_decodes_special_tokens_as_openai_does():
    from mmcore.tokenizer import BPETokenizer

    oa = BPETokenizer.openai()
    ids = [i for i in oa("a photo of a cat")[0].tolist() if i]
    # OpenAI's SimpleTokenizer.decode: "".join(tokens).replace("</w>", " "): no space after <|startoftext|>
    assert oa.decode(ids, skip_special_tokens=False) == "<|startoftext|>a photo of a cat <|endoftext|>"
    assert oa.decode(ids) == "a photo of a cat"


def test_an_unknown_language_is_named_not_a_key_error():
    from mmcore.zeroshot import class_prompts

    with pytest.raises(ValueError, match="lang must be one of .*got 'fr'"):
        class_prompts("circle", "red", "fr")


def test_max_pixels_none_is_not_advised_when_pil_itself_refuses():
    import struct
    import zlib

    from mmcore.images import ImageLoadError, load_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # a tiny file whose header claims 40,000 x 40,000 pixels: more than twice PIL's own limit
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    with pytest.raises(ImageLoadError, match="larger max_pixels"):
        load_image(bomb)
    with pytest.raises(ImageLoadError, match="max_pixels=None lifts only mmcore's own limit"):
        load_image(bomb, max_pixels=None)

"""Tests for mmcore.images: robust loading (every file is built here, in tmp_path), the PIL <-> tensor conversions
and CLIP's normalisation."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from mmcore import images
from mmcore.images import OPENAI_MEAN, OPENAI_STD, ImageLoadError, load_image, normalize, to_pil, to_tensor

RED, BLUE, WHITE, GREY = (220, 20, 20), (20, 20, 220), (255, 255, 255), (128, 128, 128)


def rgb(image: Image.Image, xy: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.getpixel(xy), dtype=float)


def close_to(image: Image.Image, xy: tuple[int, int], color: tuple[int, int, int], tolerance: float = 12) -> bool:
    return bool(np.abs(rgb(image, xy) - np.array(color)).max() <= tolerance)


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------------
# Every ordinary kind of file becomes an upright RGB image
# --------------------------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), GREY)
    stored.paste(RED, (0, 0, 8, 8))  # marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, quality=95, exif=exif)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (20, 40)
    assert close_to(image, (16, 3), RED, 30)  # clockwise: the top-left corner moved to the top-right
    assert close_to(image, (3, 3), GREY, 30)


def test_rgba_transparency_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (10, 10), (0, 0, 255, 0))  # fully transparent blue
    image.paste((*RED, 255), (0, 0, 5, 10))
    image.putpixel((9, 9), (0, 0, 0, 128))  # half-transparent black
    image.save(tmp_path / "logo.png")
    loaded = load_image(tmp_path / "logo.png")
    assert loaded.mode == "RGB"
    assert close_to(loaded, (2, 5), RED, 0) and close_to(loaded, (7, 5), WHITE, 0)
    assert close_to(loaded, (9, 9), (127, 127, 127), 1)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 255, 0, *RED] + [0] * (256 - 2) * 3)  # index 0 green (transparent), 1 red
    image.paste(1, (0, 0, 4, 8))
    image.save(tmp_path / "icon.png", transparency=0)
    loaded = load_image(str(tmp_path / "icon.png"))
    assert close_to(loaded, (1, 4), RED, 0) and close_to(loaded, (6, 4), WHITE, 0)


def test_palette_without_transparency(tmp_path):
    image = Image.new("RGB", (8, 8), BLUE).convert("P", palette=Image.Palette.ADAPTIVE)
    image.save(tmp_path / "flat.gif")
    assert close_to(load_image(tmp_path / "flat.gif"), (3, 3), BLUE, 0)


def test_grayscale_with_alpha(tmp_path):
    image = Image.new("LA", (6, 6), (0, 0))  # transparent black
    image.paste((50, 255), (0, 0, 3, 6))
    image.save(tmp_path / "la.png")
    loaded = load_image(tmp_path / "la.png")
    assert close_to(loaded, (1, 1), (50, 50, 50), 0) and close_to(loaded, (4, 1), WHITE, 0)


@pytest.mark.parametrize("mode, value, expected", [("L", 77, 77), ("1", 1, 255), ("1", 0, 0)])
def test_grayscale_and_bilevel(tmp_path, mode, value, expected):
    Image.new(mode, (5, 5), value).save(tmp_path / "gray.png")
    loaded = load_image(tmp_path / "gray.png")
    assert loaded.mode == "RGB" and close_to(loaded, (2, 2), (expected,) * 3, 0)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[65535, 32896], [0, 12850]], dtype=np.uint16)  # (H, W)
    Image.fromarray(values).save(tmp_path / "depth.png")
    loaded = np.asarray(load_image(tmp_path / "depth.png"))  # (H, W, 3)
    assert loaded[:, :, 0].tolist() == [[255, 128], [0, 50]]
    assert (loaded[:, :, 0] == loaded[:, :, 2]).all()


def test_dark_16_bit_png_stays_dark(tmp_path):
    values = np.full((4, 4), 200, dtype=np.uint16)  # every value small: still 16-bit data, 200 / 257 -> 1
    Image.fromarray(values).save(tmp_path / "dark.png")
    assert close_to(load_image(tmp_path / "dark.png"), (0, 0), (1, 1, 1), 0)


def test_16_bit_png_opened_as_mode_i_by_older_pillow():
    image = Image.fromarray(np.full((2, 2), 200, dtype=np.int32))  # mode "I"
    image.format = "PNG"  # what Pillow before 10 returned for a 16-bit grayscale PNG
    assert images._to_uint8(image).tolist() == [[1, 1], [1, 1]]
    image.format = "TIFF"  # a 32-bit integer image with values in 0..255 is kept as it is
    assert images._to_uint8(image).tolist() == [[200, 200], [200, 200]]


def test_float_tiff_in_unit_range(tmp_path):
    values = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "float.tif")
    loaded = np.asarray(load_image(tmp_path / "float.tif"))
    assert loaded[:, :, 1].tolist() == [[0, 128], [255, 64]]


def test_32_bit_integer_image_is_stretched(tmp_path):
    values = np.array([[-1000, 0], [500, 1000]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "int.tif")
    loaded = np.asarray(load_image(tmp_path / "int.tif"))
    assert loaded[:, :, 0].tolist() == [[0, 128], [191, 255]]


def test_cmyk_jpeg(tmp_path):
    Image.new("RGB", (16, 16), RED).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    loaded = load_image(tmp_path / "print.jpg")
    assert loaded.mode == "RGB" and close_to(loaded, (8, 8), RED, 20)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (12, 12), color) for color in (RED, BLUE, WHITE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    assert close_to(load_image(tmp_path / "anim.gif"), (6, 6), RED, 8)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp(tmp_path):
    image = Image.new("RGBA", (10, 10), (*BLUE, 255))
    image.paste((0, 0, 0, 0), (5, 0, 10, 10))
    image.save(tmp_path / "web.webp", lossless=True)
    loaded = load_image(tmp_path / "web.webp")
    assert close_to(loaded, (2, 5), BLUE, 0) and close_to(loaded, (7, 5), WHITE, 0)


def test_bytes_bytearray_and_file_objects():
    data = png_bytes(Image.new("RGB", (7, 3), BLUE))
    for source in (data, bytearray(data), memoryview(data)):
        image = load_image(source)
        assert image.size == (7, 3) and close_to(image, (1, 1), BLUE, 0)
    stream = io.BytesIO(data)
    assert load_image(stream).size == (7, 3)
    assert not stream.closed  # the caller's file object stays the caller's


def test_non_seekable_stream():
    class Pipe(io.RawIOBase):  # a stream that can only be read forwards, like a socket
        def __init__(self, data: bytes):
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self._data.read(len(buffer))
            buffer[:len(chunk)] = chunk
            return len(chunk)

    image = load_image(io.BufferedReader(Pipe(png_bytes(Image.new("RGB", (4, 4), RED)))))
    assert close_to(image, (0, 0), RED, 0)


def test_result_is_detached_from_the_file(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (6, 6), RED).save(path)
    image = load_image(path)
    path.unlink()
    assert close_to(image.resize((3, 3)), (1, 1), RED, 0)


# --------------------------------------------------------------------------------------------------------
# Every failure is an ImageLoadError that names the file, the reason and a remedy
# --------------------------------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def truncated(kind: str) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=kind)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.parametrize("name, content, reason", [
    ("empty.png", b"", "empty"),
    ("notes.jpg", "just some notes, not a picture\n".encode(), "text file"),
    ("random.bin", bytes(range(256)) * 4, "not an image format"),
    ("half.png", truncated("PNG"), "corrupt or truncated"),
    ("half.jpg", truncated("JPEG"), "corrupt or truncated"),
])
def test_bad_files(tmp_path, name, content, reason):
    path = write(tmp_path / name, content)
    with pytest.raises(ImageLoadError) as error:
        load_image(path)
    message = str(error.value)
    assert name in message and reason in message
    assert any(hint in message for hint in ("Re-download", "Use an image file"))


def test_bad_bytes_are_named_bytes():
    with pytest.raises(ImageLoadError, match="<bytes>.*truncated"):
        load_image(truncated("PNG"))
    with pytest.raises(ImageLoadError, match="<bytes>.*empty"):
        load_image(b"")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="nowhere.png.*no such file"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (100, 100), RED).save(path)
    with pytest.raises(ImageLoadError, match=r"bomb\.png.*too large.*10,000 pixels.*max_pixels"):
        load_image(path, max_pixels=5_000)
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    assert load_image(path, max_pixels=None).size == (100, 100)


def test_pils_own_bomb_error_becomes_image_load_error(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # PIL refuses above twice this
    with pytest.raises(ImageLoadError, match="huge.png.*too large"):
        load_image(path, max_pixels=None)


def test_image_load_error_is_a_value_error():
    assert issubclass(ImageLoadError, ValueError)
    with pytest.raises(TypeError, match="path, bytes or a binary file object"):
        load_image(42)


def test_no_file_handle_is_left_open(tmp_path, monkeypatch):
    good = tmp_path / "good.png"
    Image.new("RGB", (5, 5)).save(good)
    bad = write(tmp_path / "bad.png", truncated("PNG"))
    opened = []

    def recording_open(*args, **kwargs):
        opened.append(open(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(images, "open", recording_open, raising=False)  # shadows the builtin in mmcore.images
    load_image(good)
    with pytest.raises(ImageLoadError):
        load_image(bad)
    assert opened and all(handle.closed for handle in opened)


# --------------------------------------------------------------------------------------------------------
# PIL <-> tensor, and CLIP's normalisation
# --------------------------------------------------------------------------------------------------------


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_to_tensor_shapes_values_and_layout():
    image = noise_image(5, 3)
    x = to_tensor(image)  # one image: a batch of one
    assert x.shape == (1, 3, 3, 5) and x.dtype == torch.float32 and x.is_contiguous()
    expected = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)  # (3, H, W)
    assert torch.equal(x[0], expected)
    batch = to_tensor([noise_image(4, 4, seed) for seed in range(3)])
    assert batch.shape == (3, 3, 4, 4)
    for seed in range(3):  # a batch is its images, converted one by one, in order
        assert torch.equal(batch[seed], to_tensor(noise_image(4, 4, seed))[0])
    assert torch.equal(to_tensor(iter([image, image])), torch.cat([x, x]))  # any iterable of images


def test_to_tensor_converts_modes_and_resizes_with_the_chosen_filter():
    grey, rgba = Image.new("L", (6, 6), 128), Image.new("RGBA", (6, 6), (255, 0, 0, 255))
    x = to_tensor([grey, rgba])
    assert torch.equal(x[0], torch.full((3, 6, 6), 128 / 255)) and torch.equal(x[1, 0], torch.ones(6, 6))
    image = noise_image(40, 24)
    for resample in (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR):
        by_pil = np.asarray(image.resize((16, 16), resample), dtype=np.float32) / 255
        kwargs = {} if resample == Image.Resampling.BICUBIC else {"resample": resample}  # bicubic is the default
        assert torch.equal(to_tensor(image, 16, **kwargs)[0], torch.from_numpy(by_pil).permute(2, 0, 1))
    assert torch.equal(to_tensor(image.resize((16, 16)), 16), to_tensor(image.resize((16, 16))))  # right size: kept
    assert to_tensor([noise_image(8, 8), noise_image(10, 6)], size=4).shape == (2, 3, 4, 4)


def test_round_trip_is_exact_for_8_bit_images():
    pictures = [noise_image(7, 5, seed) for seed in range(4)]
    back = to_pil(to_tensor(pictures))
    assert isinstance(back, list) and len(back) == 4
    for picture, again in zip(pictures, back):
        assert again.mode == "RGB" and again.size == (7, 5)
        assert np.array_equal(np.asarray(again), np.asarray(picture))
    every_value = Image.fromarray(np.arange(256 * 3, dtype=np.uint16).reshape(16, 16, 3).astype(np.uint8))
    assert np.array_equal(np.asarray(to_pil(to_tensor(every_value)[0])), np.asarray(every_value))


def test_to_pil_follows_the_input_rank_and_clamps_and_rounds():
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 1.5]).view(1, 7).expand(3, 7)  # (3, 1, 7)
    one = to_pil(x[:, None])
    assert isinstance(one, Image.Image) and one.size == (7, 1)
    assert np.asarray(one)[0, :, 0].tolist() == [0, 0, 0, 2, 128, 255, 255]  # round half to even: 0.5 -> 0, 1.5 -> 2
    listed = to_pil(x[None, :, None])  # a batch of one is still a list
    assert isinstance(listed, list) and len(listed) == 1 and np.array_equal(np.asarray(listed[0]), np.asarray(one))
    half = x[:, None].half()  # any float dtype, computed in float32
    assert np.array_equal(np.asarray(to_pil(half)), np.asarray(to_pil(half.float())))


def test_normalize_uses_openais_constants():
    assert OPENAI_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert OPENAI_STD == (0.26862954, 0.26130258, 0.27577711)
    from mmcore import clip

    assert clip.OPENAI_MEAN is OPENAI_MEAN and clip.OPENAI_STD is OPENAI_STD  # one home, re-exported
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))  # (N, 3, H, W)
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    assert torch.equal(normalize(x), (x - mean) / std)
    assert torch.equal(normalize(x[0]), ((x - mean) / std)[0])  # one image (3, H, W)
    assert torch.allclose(normalize(mean.expand(1, 3, 2, 2)), torch.zeros(1, 3, 2, 2), atol=1e-7)
    assert torch.equal(normalize(x, (0.5,) * 3, (0.5,) * 3), (x - 0.5) / 0.5)
    assert normalize(x.double()).dtype == torch.float64


def test_to_tensor_and_normalize_are_clips_preprocess_for_square_images():
    from mmcore.clip import Preprocess

    pictures = [noise_image(32, 32, seed) for seed in range(3)]
    assert torch.equal(normalize(to_tensor(pictures, 32)), torch.stack([Preprocess(32)(p) for p in pictures]))


@pytest.mark.parametrize("bad, error, message", [
    ([], ValueError, "empty list"),
    ([Image.new("RGB", (4, 4)), Image.new("RGB", (5, 4))], ValueError, "different sizes 4x4, 5x4.*size="),
    ([Image.new("RGB", (4, 4)), "cat.png"], TypeError, "item 1 is a str"),
    (torch.rand(1, 3, 4, 4), TypeError, "tensor"),
    (np.zeros((4, 4, 3), dtype=np.uint8), TypeError, "ndarray"),
])
def test_to_tensor_errors(bad, error, message):
    with pytest.raises(error, match=message):
        to_tensor(bad)


@pytest.mark.parametrize("bad, error, message", [
    (torch.rand(1, 4, 4, 4), ValueError, r"3 \(RGB\) channels; got shape \(1, 4, 4, 4\)"),
    (torch.rand(4, 4), ValueError, "got shape"),
    (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), TypeError, "divide 8-bit pixels by 255"),
    (Image.new("RGB", (4, 4)), TypeError, "float tensor"),
])
def test_to_pil_errors(bad, error, message):
    with pytest.raises(error, match=message):
        to_pil(bad)


def test_normalize_refuses_other_channel_counts():
    with pytest.raises(ValueError, match=r"3 \(RGB\) channels; got shape \(2, 1, 4, 4\)"):
        normalize(torch.rand(2, 1, 4, 4))

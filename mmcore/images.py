"""Images in and out: robust loading, every PIL <-> tensor conversion, and CLIP's normalisation (one home).

**Loading.** Photos from phones, screenshots, scans and web downloads come in many forms: rotated by an EXIF tag,
with transparency, palette-based, grayscale, 16-bit, CMYK, animated. ``load_image`` turns each of them into a
fully loaded, upright, 8-bit RGB image, and turns every failure (missing, empty, corrupt, truncated, not an
image, absurdly large) into one exception, :class:`ImageLoadError`, whose message names the file, the reason
and what to do about it.

**Converting.** The models work on float tensors; people look at PIL images. Every module and lesson converts
with these small pure functions, so the rounding and the resampling are the same everywhere:

* :func:`to_tensor` - PIL image(s) -> a batch (N, 3, S, S) float32 in [0, 1] (optionally resized, bicubic by
  default);
* :func:`to_pil` - a float tensor in [0, 1] -> PIL RGB image(s): (N, 3, H, W) gives a list of N images,
  (3, H, W) gives one image (values clamped to [0, 1], then rounded to the nearest of 0..255);
* :func:`normalize` - CLIP's input normalisation, ``(x - mean) / std`` per channel with OpenAI's
  :data:`OPENAI_MEAN` and :data:`OPENAI_STD` (:mod:`mmcore.clip` re-exports them).

For 8-bit images the round trip is exact: ``to_pil(to_tensor(image))[0]`` has the same pixels as ``image``.
"""
from __future__ import annotations

import errno
import io
import os
import struct
import warnings
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = ["ImageLoadError", "load_image", "DEFAULT_MAX_PIXELS", "OPENAI_MEAN", "OPENAI_STD", "to_tensor", "to_pil",
           "normalize"]

#: The largest image (width x height) ``load_image`` accepts by default: PIL's own default limit, about
#: 89.5 megapixels (a 9,459 x 9,459 image). Larger files are refused as possible decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485

#: Per-channel RGB mean and standard deviation of OpenAI's CLIP training images: every CLIP input (OpenAI's
#: weights and the course's tiny models alike) is normalised with them (:func:`normalize`).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

_WHITE = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_BYTES_NAME = "<bytes>"


class ImageLoadError(ValueError):
    """An image could not be loaded; the message names the file, the reason and what to do."""


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image file as a fully decoded, upright, 8-bit RGB ``PIL.Image``.

    ``source`` is a path (``str`` or ``pathlib.Path``), the file's bytes, or a binary file object (which is left
    open: it is the caller's). The EXIF orientation is applied; transparency is composited on white; grayscale,
    1-bit, palette, CMYK and 16-bit / 32-bit integer or float images are converted (16-bit values are scaled to
    8 bits, not clipped); an animated image gives its first frame.

    ``max_pixels`` (width x height) guards against decompression bombs: a small file that claims a gigantic
    image. ``None`` switches this check off, though PIL itself still refuses images above twice its own
    ``Image.MAX_IMAGE_PIXELS``.

    Raises :class:`ImageLoadError` for a missing, empty, corrupt, truncated or non-image file, or one above
    ``max_pixels``.
    """
    name = _describe(source)
    try:
        with _binary_stream(source) as stream:
            if not stream.read(1):
                raise ImageLoadError(f"Cannot load image {name}: the file is empty (0 bytes). "
                                     "Re-download or re-export the image.")
            stream.seek(0)
            with warnings.catch_warnings():
                # Our own ``max_pixels`` check below replaces PIL's warning for large images.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream)
                _check_size(image, name, max_pixels)
                image.load()  # decode now, inside the try, so that a truncated file fails here
                return _to_rgb(image)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(f"Cannot load image {name}: no such file. Check the path and the current "
                             f"directory ({os.getcwd()}).") from None
    except IsADirectoryError:
        raise ImageLoadError(f"Cannot load image {name}: it is a directory, not a file. "
                             "Pass the path of an image file inside it.") from None
    except PermissionError:
        raise ImageLoadError(f"Cannot load image {name}: permission denied. "
                             "Check the file's permissions.") from None
    except Image.DecompressionBombError as error:
        advice = ("Resize it first, or pass a larger max_pixels if you trust the file." if max_pixels is not None else
                  "max_pixels=None lifts only mmcore's own limit; PIL still refuses this many pixels: resize the "
                  "image first (or, trusting the file, raise PIL.Image.MAX_IMAGE_PIXELS yourself).")
        raise ImageLoadError(f"Cannot load image {name}: it is too large ({error}). {advice}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"Cannot load image {name}: {_unidentified_reason(source)}. Use an image file "
                             "(JPEG, PNG, GIF, WebP, BMP, TIFF, ...).") from None
    except (OSError, SyntaxError, EOFError, ValueError, struct.error) as error:
        if getattr(error, "errno", None) == errno.ELOOP:  # a symbolic link that points (in the end) to itself
            raise ImageLoadError(f"Cannot load image {name}: it is a loop of symbolic links, not a file. "
                                 "Point the link at the image file itself.") from None
        raise ImageLoadError(f"Cannot load image {name}: the file is corrupt or truncated ({error}). "
                             "Re-download or re-export the image.") from None


def _describe(source: ImageSource) -> str:
    """How an error message names ``source``: the path, the file object's name, or ``<bytes>``."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _BYTES_NAME
    name = getattr(source, "name", None)
    return repr(name) if isinstance(name, (str, os.PathLike)) else "<file object>"


@contextmanager
def _binary_stream(source: ImageSource) -> Iterator[BinaryIO]:
    """A seekable binary stream over ``source``; a file we open here is closed on exit, a caller's is not."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.exists(path) and not os.path.isdir(path) and not os.path.isfile(path):
            # a FIFO, socket or device: opening it could block forever (a FIFO waits for a writer)
            raise ImageLoadError(f"Cannot load image {_describe(source)}: it is not a regular file (a pipe, socket "
                                 "or device). Pass the path of an image file.")
        with open(path, "rb") as stream:
            yield stream
    elif isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        seekable = getattr(source, "seekable", lambda: False)()
        yield source if seekable else io.BytesIO(source.read())
    else:
        raise TypeError(f"load_image expects a path, bytes or a binary file object, got {type(source).__name__}")


def _check_size(image: Image.Image, name: str, max_pixels: int | None) -> None:
    """Refuse an image whose header claims more than ``max_pixels`` pixels, before decoding it."""
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            f"Cannot load image {name}: it is too large ({width} x {height} = {width * height:,} pixels, "
            f"limit {max_pixels:,}); it may be a decompression bomb. Resize it first, or pass a larger "
            "max_pixels if you trust the file.")


def _unidentified_reason(source: ImageSource) -> str:
    """Why PIL could not identify ``source``: plain text gets a more specific message."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as stream:
                head = stream.read(512)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            head = bytes(source[:512])
        else:
            return "it is not an image format PIL recognises"
        if head.startswith(b"\x89PNG\r\n\x1a\n") and bytes(4) in (head[16:20], head[20:24]):  # IHDR width, height
            return "it is a PNG whose header says it is 0 pixels wide or high (an empty image)"
        head.decode("utf-8")
        return "it looks like a text file, not an image"
    except (OSError, UnicodeDecodeError):
        return "it is not an image format PIL recognises"


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation tag says; a malformed EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, struct.error):
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """An upright 8-bit RGB copy of a loaded ``image``, detached from its file."""
    upright = _upright(image)
    mode = upright.mode
    if mode in _ALPHA_MODES or "transparency" in upright.info:
        return _on_white(upright)
    if mode == "RGB":
        return upright.copy() if upright is image else upright
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(upright)).convert("RGB")
    return upright.convert("RGB")  # L, 1, P without transparency, CMYK, YCbCr, ...


def _on_white(image: Image.Image) -> Image.Image:
    """Composite an image with an alpha channel (or a transparent palette entry) on a white background."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_uint8(image: Image.Image) -> np.ndarray:
    """The pixels of a single-channel integer (``I``, ``I;16*``) or float (``F``) image scaled to uint8.

    16-bit data (``I;16*`` modes, and ``I`` from a PNG, which only arises from 16-bit PNGs) is divided by 257 so
    that 65535 becomes 255. Other ``I`` images already in 0..255 are kept, those in 0..65535 are read as 16-bit;
    floats in [0, 1] are scaled by 255; anything else is stretched from its minimum to its maximum.
    """
    values = np.asarray(image, dtype=np.float64)  # (H, W)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    sixteen_bit = image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG")
    if sixteen_bit or (image.mode == "I" and 0 <= low and 255 < high <= 65535):
        scaled = values / 257.0
    elif image.mode == "I" and 0 <= low and high <= 255:
        scaled = values
    elif image.mode == "F" and 0 <= low and high <= 1:
        scaled = values * 255.0
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------- PIL <-> tensor


def to_tensor(images: Image.Image | Sequence[Image.Image], size: int | None = None,
              resample: int = Image.Resampling.BICUBIC) -> Tensor:
    """PIL image(s) -> one batch (N, 3, S, S) float32 in [0, 1]; a single image gives a batch of one (N = 1).

    Each image is converted to RGB first (grayscale, palette, RGBA, CMYK, ...: PIL's ``convert("RGB")``; use
    :func:`load_image` for files with transparency or an EXIF rotation), then, if ``size`` is given and the image
    is not already ``size`` x ``size``, resized to that square with ``resample`` (PIL's bicubic filter by default,
    as OpenAI's CLIP preprocessing; pass ``Image.Resampling.BILINEAR`` for bilinear). Without ``size`` all images
    must have the same size. Pixel value ``v`` (0..255) becomes ``v / 255`` exactly as float32 computes it.
    The result is contiguous (``.contiguous(memory_format=torch.channels_last)`` gives the layout convolutions on
    the CPU prefer).

    Raises ``ValueError`` for an empty list or images of different sizes without ``size``, ``TypeError`` for an
    item that is not a PIL image.
    """
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (Tensor, np.ndarray)):
        raise TypeError(f"to_tensor converts PIL images; got a {type(images).__name__} (a tensor or an array "
                        "already holds pixels)")
    images = list(images)
    if not images:
        raise ValueError("to_tensor needs at least one image; got an empty list")
    arrays = []
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"item {i} is a {type(image).__name__}; to_tensor converts PIL images")
        image = image.convert("RGB")
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), resample)
        arrays.append(np.asarray(image, dtype=np.uint8))  # (H, W, 3)
    sizes = sorted({a.shape[1::-1] for a in arrays})  # (W, H) as PIL names them
    if len(sizes) > 1:
        raise ValueError(f"images of different sizes {', '.join(f'{w}x{h}' for w, h in sizes)}: pass size=... to "
                         "resize them all to one square")
    pixels = torch.from_numpy(np.stack(arrays))  # (N, S, S, 3) uint8
    return pixels.permute(0, 3, 1, 2).contiguous().float().div_(255)  # (N, S, S, 3) -> (N, 3, S, S) in [0, 1]


def to_pil(images: Tensor) -> Image.Image | list[Image.Image]:
    """A float tensor in [0, 1] -> PIL RGB image(s). The output follows the input's rank:
    a batch (N, 3, H, W) gives a list of N images (even for N = 1), one image (3, H, W) gives one image.

    Values are clamped to [0, 1], scaled by 255 and rounded to the nearest integer (halves to even, as
    ``torch.round``); any float dtype and device is accepted (computed in float32 on the tensor's device).
    Raises ``ValueError`` for another shape or channel count, ``TypeError`` for an integer tensor.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"to_pil converts a float tensor (N, 3, H, W) or (3, H, W); got a {type(images).__name__}")
    _check_rgb(images, "to_pil")
    if not images.is_floating_point():
        raise TypeError(f"to_pil expects floats in [0, 1]; got dtype {images.dtype} (divide 8-bit pixels by 255)")
    batch = images if images.ndim == 4 else images[None]  # (N, 3, H, W)
    pixels = (batch.detach().float().clamp(0, 1) * 255).round().byte()  # (N, 3, H, W) uint8
    array = pixels.permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, 3)
    pil = [Image.fromarray(np.ascontiguousarray(a), "RGB") for a in array]
    return pil if images.ndim == 4 else pil[0]


def normalize(images: Tensor, mean: Sequence[float] | Tensor = OPENAI_MEAN,
              std: Sequence[float] | Tensor = OPENAI_STD) -> Tensor:
    """CLIP's input normalisation: ``(images - mean) / std`` per RGB channel, same shape.

    ``images`` (N, 3, H, W) or (3, H, W) float in [0, 1]; ``mean`` and ``std`` default to OpenAI's (override
    them, e.g. ``(0.5,) * 3``, for a model trained that way). They are taken in the images' dtype and device.
    """
    _check_rgb(images, "normalize")
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)  # (3, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)  # (3, 1, 1)
    return (images - mean) / std


def _check_rgb(images: Tensor, name: str) -> None:
    """Raise a clear ``ValueError`` unless ``images`` is (N, 3, H, W) or (3, H, W)."""
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"{name} expects (N, 3, H, W) or (3, H, W) with 3 (RGB) channels; got shape "
                         f"{tuple(images.shape)}")

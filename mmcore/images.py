"""Robust image loading: any ordinary image file a student has becomes an RGB ``PIL.Image``.

Photos from phones, screenshots, scans and web downloads come in many forms: rotated by an EXIF tag,
with transparency, palette-based, grayscale, 16-bit, CMYK, animated. ``load_image`` turns each of them into a
fully loaded, upright, 8-bit RGB image, and turns every failure (missing, empty, corrupt, truncated, not an
image, absurdly large) into one exception, :class:`ImageLoadError`, whose message names the file, the reason
and what to do about it.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "load_image", "DEFAULT_MAX_PIXELS"]

#: The largest image (width x height) ``load_image`` accepts by default: PIL's own default limit, about
#: 89.5 megapixels (a 9,459 x 9,459 image). Larger files are refused as possible decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485

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
        raise ImageLoadError(f"Cannot load image {name}: it is too large ({error}). "
                             "Resize it first, or pass a larger max_pixels if you trust the file.") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"Cannot load image {name}: {_unidentified_reason(source)}. Use an image file "
                             "(JPEG, PNG, GIF, WebP, BMP, TIFF, ...).") from None
    except (OSError, SyntaxError, EOFError, ValueError, struct.error) as error:
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
        with open(source, "rb") as stream:
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

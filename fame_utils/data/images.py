"""Robust image loading: every file becomes an 8-bit RGB PIL image or a clear :class:`ImageLoadError`.

What converts (any mode Pillow decodes):

- 8-bit grey (``L``, ``1``), palette, RGB, YCbCr, CMYK: Pillow's conversion to RGB.
- Transparency (``LA`` 2-channel, ``RGBA`` 4-channel, ``PA``, a palette's transparent colour): composited on white.
- 16-bit grey (``I;16*``) and 32-bit integer grey (``I``) with values in [0, 65535]: v → round(v / 257).
- 32-bit float grey (``F``, e.g. a float32 TIFF): values must be finite and in [0, 1]; x → round(255·x).

What is refused, with the file named: float data outside [0, 1] or with NaN/inf, integer data outside
[0, 65535], modes Pillow cannot convert to RGB (e.g. ``LAB``), TIFFs whose samples Pillow cannot decode
(float64, float16, multi-channel float), images above Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``), missing, empty, truncated or corrupt files, and images whose shorter
side is below ``min_side``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MIN_IMAGE_SIDE", "ImageLoadError", "load_image", "to_rgb"]

MIN_IMAGE_SIDE = 32
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class ImageLoadError(ValueError):
    """An image file is missing, empty, truncated, not an image, too large or too small, or holds values
    that have no 8-bit RGB meaning (the message names the file and what to do)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB by the rules in this module's docstring.

    Raises:
        TypeError: ``image`` is not a PIL image.
        ValueError: float values outside [0, 1] or not finite, integer values outside [0, 65535], or a
            mode Pillow cannot convert to RGB.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}; load files with fame_utils.data.load_image.")
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        return _grey_to_rgb(_checked(np.asarray(image, dtype=np.float64), 0.0, 65535.0, "integer", "save it as 8- or 16-bit") / 257.0)
    if image.mode == "F":
        return _grey_to_rgb(_checked(np.asarray(image, dtype=np.float64), 0.0, 1.0, "float", "rescale it to [0, 1] or save it as 8-bit") * 255.0)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _checked(values: np.ndarray, low: float, high: float, kind: str, advice: str) -> np.ndarray:
    """``values`` if all are finite and within [low, high]; otherwise a ValueError naming what was found."""
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(f"{int((~finite).sum())} pixel value(s) are NaN or infinite; {advice}.")
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(
            f"{kind} pixel values span [{values.min():g}, {values.max():g}], outside [{low:g}, {high:g}] where they have a "
            f"defined 8-bit meaning; {advice}."
        )
    return values


def _grey_to_rgb(scaled: np.ndarray) -> Image.Image:
    grey = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def load_image(path: str | Path, min_side: int = MIN_IMAGE_SIDE) -> Image.Image:
    """Load ``path`` as an upright 8-bit RGB PIL image (conversion rules in this module's docstring).

    Applies the EXIF orientation tag.

    Raises:
        ImageLoadError: the file is missing, empty, not an image, truncated/corrupt, above Pillow's
            decompression-bomb limit, holds values without an 8-bit meaning, or its shorter side is below
            ``min_side`` pixels. The message names the file and the problem.
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or pathlib.Path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: file not found. Check the path (relative paths start at {Path.cwd()}).")
    if not path.is_file():
        raise ImageLoadError(f"{path}: is a directory, not an image file.")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: file is empty (0 bytes); re-copy or re-download it.")
    upright = _decode(path)
    try:
        rgb = to_rgb(upright)
    except ValueError as error:
        raise ImageLoadError(f"{path}: cannot convert the {upright.mode} image to 8-bit RGB: {error}") from error
    if min(rgb.size) < min_side:
        raise ImageLoadError(
            f"{path}: image is too small ({rgb.width}x{rgb.height} px); the shorter side must be at least {min_side} px."
        )
    return rgb


def _decode(path: Path) -> Image.Image:
    """Open, decode and rotate upright; Pillow's decompression-bomb warning counts as an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                upright = ImageOps.exif_transpose(opened)
                upright.load()
        return upright
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(
            f"{path}: too many pixels to open safely ({error}); Pillow's limit is PIL.Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS} pixels. If you trust the file, downscale it or raise that limit."
        ) from error
    except UnidentifiedImageError as error:
        if _starts_like_tiff(path):
            raise ImageLoadError(
                f"{path}: a TIFF whose samples Pillow cannot decode (e.g. float64, float16 or multi-channel float); "
                "save it as 8- or 16-bit integers, or as single-channel float32 in [0, 1]."
            ) from error
        raise ImageLoadError(f"{path}: not an image file Pillow can read (unknown format).") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageLoadError(f"{path}: truncated or corrupt image data ({error}).") from error


def _starts_like_tiff(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) in _TIFF_MAGIC

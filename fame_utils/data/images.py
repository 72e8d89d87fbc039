"""Robust image loading: every file becomes an 8-bit RGB PIL image or a clear :class:`ImageLoadError`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MIN_IMAGE_SIDE", "ImageLoadError", "load_image", "to_rgb"]

MIN_IMAGE_SIDE = 32
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageLoadError(ValueError):
    """An image file is missing, empty, truncated, not an image, or too small to explain."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Transparency (RGBA, LA, palette with a transparent colour) is composited on white; 16-bit
    grey values v are mapped to round(v / 257); CMYK and other colour spaces use Pillow's conversion.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "F":
        grey = np.clip(np.round(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | Path, min_side: int = MIN_IMAGE_SIDE) -> Image.Image:
    """Load ``path`` as an upright 8-bit RGB PIL image.

    Handles grayscale, RGBA/LA (composited on white), palette, CMYK, 16-bit PNG and the EXIF
    orientation tag.

    Raises:
        ImageLoadError: the file is missing, empty, not an image, truncated/corrupt, or its shorter
            side is below ``min_side`` pixels. The message names the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: file not found. Check the path (relative paths start at {Path.cwd()}).")
    if not path.is_file():
        raise ImageLoadError(f"{path}: is a directory, not an image file.")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: file is empty (0 bytes); re-copy or re-download it.")
    try:
        with Image.open(path) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            rgb = to_rgb(upright)
            rgb.load()
    except UnidentifiedImageError as error:
        raise ImageLoadError(f"{path}: not an image file Pillow can read (unknown format).") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"{path}: truncated or corrupt image data ({error}).") from error
    if min(rgb.size) < min_side:
        raise ImageLoadError(
            f"{path}: image is too small ({rgb.width}x{rgb.height} px); the shorter side must be at least {min_side} px."
        )
    return rgb

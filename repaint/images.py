"""Reading images and fitting them to a model's square resolution.

Choice: an image is centre-cropped to a square, then resized (Lanczos); a mask image takes
the same crop and a nearest-neighbour resize, so it stays binary. Preset masks are made at the
model's resolution directly, so their patterns (alternate lines, x2 grids) are exact.

Colours are read as a viewer shows them: an embedded ICC profile (Adobe RGB, Display P3, a CMYK or grey profile) is
converted to sRGB, as browsers do, so the page and the API see the same pixels; results are sRGB.
"""

from __future__ import annotations

import io
import logging
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_PIXELS",
    "center_crop_box",
    "fit_image",
    "fit_mask",
    "from_tensor",
    "open_image",
    "to_rgb",
    "to_tensor",
    "upright_size",
]

#: Largest image accepted, in pixels, checked from the file's header before anything is decoded (so memory stays
#: bounded: at most 150 MB of RGB); the image is then decoded at its full size.
MAX_PIXELS = 50_000_000
#: Longer side an image is reduced to before it is fitted to a model (full-size results keep the full size).
WORKING_SIDE = 2048


def open_image(source) -> Image.Image:
    """Open a path, bytes, binary file or PIL image, refusing non-images and decompression bombs with a
    ValueError."""
    if source is None:
        raise ValueError("no image given: upload or pick an image first")
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise ValueError(f"an image array must be uint8 (H, W) or (H, W, C), got {source.dtype} {source.shape}")
        img = Image.fromarray(source)
    else:
        data = (
            io.BytesIO(source)
            if isinstance(source, (bytes, bytearray))
            else source
            if hasattr(source, "read")
            else Path(source)
        )
        # The size is checked from the header, before anything is decoded. PIL's own limit (a process-wide setting,
        # not changed here: threads share it) raises beyond twice its MAX_IMAGE_PIXELS while reading the header.
        try:
            img = Image.open(data)  # reads the header only
            if img.width * img.height > MAX_PIXELS:
                raise Image.DecompressionBombError(f"{img.width}x{img.height}")
            img.load()  # at its full size, so a mask drawn on the photo fits it
        except Image.DecompressionBombError as e:
            raise ValueError(f"image too large: more than {MAX_PIXELS:,} pixels ({e})") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as e:  # the reason without the file's path
            why = "not a format PIL reads" if isinstance(e, UnidentifiedImageError) else (e.strerror or str(e))
            raise ValueError(f"not a readable image file: {why}") from None
    if img.width * img.height > MAX_PIXELS:
        raise ValueError(f"image too large: {img.width}x{img.height} is more than {MAX_PIXELS:,} pixels")
    if min(img.size) < 1:
        raise ValueError(f"image is empty: {img.width}x{img.height}")
    return img


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _as_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """``img`` (8-bit, any mode) with its embedded ICC profile ``icc`` converted to sRGB (Pillow's ImageCms, the
    profile's perceptual intent, as a browser shows it): RGB, or RGBA keeping the alpha channel. Without a profile,
    or with one that does not fit the pixels (a broken file, an RGB profile on a grey image), the values are kept,
    as viewers keep them."""
    if not icc:
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    alpha = img.getchannel("A") if img.mode in ("RGBA", "LA", "PA") else None
    base = img.convert({"RGBA": "RGB", "LA": "L", "PA": "RGB", "1": "L"}.get(img.mode, img.mode))
    try:
        out = ImageCms.profileToProfile(base, ImageCms.ImageCmsProfile(io.BytesIO(icc)), _srgb(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        log.warning("colour profile ignored (%s): the image's values are used as they are", e)
        return img
    if alpha is not None:
        out.putalpha(alpha)
    return out


def to_rgb(img: Image.Image, max_side: int | None = WORKING_SIDE) -> Image.Image:
    """Upright sRGB: EXIF rotation applied, 16-bit scaled, an ICC profile converted to sRGB, CMYK converted,
    transparency over white (reduced to ``max_side`` then; None keeps the full size)."""
    icc = img.info.get("icc_profile")
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / scale * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    img = _as_srgb(img, icc)
    if max_side is not None and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square crop box (left, top, right, bottom) of a width x height image."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def fit_image(img: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size``: uint8 (size, size, 3)."""
    img = to_rgb(img)
    img = img.crop(center_crop_box(*img.size))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


def upright_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of ``img`` once its EXIF orientation is applied."""
    swap = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    return (img.height, img.width) if swap else img.size


def fit_mask(mask: np.ndarray, image_size: tuple[int, int], size: int) -> np.ndarray:
    """Fit a bool mask of an upright image of ``image_size`` (width, height) like :func:`fit_image`."""
    h, w = mask.shape
    if (w, h) != tuple(image_size):
        raise ValueError(f"the mask is {w}x{h} but the image is {image_size[0]}x{image_size[1]}: they must match")
    m = Image.fromarray(mask.astype(np.uint8) * 255).crop(center_crop_box(w, h))
    if m.size != (size, size):
        m = m.resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(m) >= 128


def save_png(image, dest, compress_level: int = 6) -> None:
    """Write ``image`` (a PIL image or a uint8 array) to ``dest`` (a path or a binary file) as a PNG tagged sRGB
    (an sRGB chunk, rendering intent 0: PNG spec 11.3.3.5): every image is made sRGB on reading (:func:`to_rgb`),
    so the results are, and a viewer that manages colour need not guess."""
    info = PngImagePlugin.PngInfo()
    info.add(b"sRGB", b"\x00")
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    img.save(dest, format="PNG", pnginfo=info, compress_level=compress_level)


def to_tensor(image: np.ndarray, device=None) -> torch.Tensor:
    """uint8 (H, W, 3) or (B, H, W, 3) -> float32 (1 or B, 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device=device)
    t = t[None] if t.ndim == 3 else t
    return (t.permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()


def from_tensor(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), rounded."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

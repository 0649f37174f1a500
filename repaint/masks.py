"""Mask presets and mask files. Convention everywhere: True / white = pixel to fill.

Each preset is a generator ``(height, width, seed) -> bool array (height, width)``;
the deterministic ones ignore the seed. RePaint's own mask files are *keep* masks
(white = keep): read them with ``load_mask(..., keep=True)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageOps

__all__ = ["PRESETS", "DESCRIPTIONS", "RANDOM", "is_random", "load_mask", "preset"]

MaskFn = Callable[[int, int, int], np.ndarray]


def _rows(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(h)[:, None], np.arange(w)[None, :]


def every_second_line(h: int, w: int, seed: int = 0) -> np.ndarray:
    """The paper's alternating lines: odd rows are filled, even rows kept (1/2 to fill)."""
    r, c = _rows(h, w)
    return np.broadcast_to(r % 2 == 1, (h, w)).copy()


def super_resolution_2x(h: int, w: int, seed: int = 0) -> np.ndarray:
    """x2 nearest-neighbour super-resolution: known only where row and column are both even (3/4 to fill)."""
    r, c = _rows(h, w)
    return ~((r % 2 == 0) & (c % 2 == 0))


def left_half(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Fill the left half (columns < w // 2)."""
    return np.broadcast_to(_rows(h, w)[1] < w // 2, (h, w)).copy()


def right_half(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Fill the right half (columns >= w // 2)."""
    return ~left_half(h, w)


def top_half(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Fill the top half (rows < h // 2)."""
    return np.broadcast_to(_rows(h, w)[0] < h // 2, (h, w)).copy()


def bottom_half(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Fill the bottom half (rows >= h // 2)."""
    return ~top_half(h, w)


def center_box(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Fill a centred box of half the height and half the width (1/4 to fill)."""
    r, c = _rows(h, w)
    return (r >= h // 4) & (r < h // 4 + h // 2) & (c >= w // 4) & (c < w // 4 + w // 2)


def expand(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Outpainting: only the centred box of half height and width is known (3/4 to fill)."""
    return ~center_box(h, w)


def _strokes(h: int, w: int, seed: int, n: tuple[int, int], width: tuple[float, float], length: float) -> np.ndarray:
    """Random brush strokes in the spirit of LaMa's masks: polylines of random width with round joints."""
    rng = np.random.default_rng(seed)
    size = min(h, w)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(n[0], n[1] + 1)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        stroke_w = max(1, int(rng.uniform(*width) * size))
        for _ in range(rng.integers(2, 6)):
            angle = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(0.3, 1.0) * length * size
            nx = float(np.clip(x + step * np.cos(angle), 0, w - 1))
            ny = float(np.clip(y + step * np.sin(angle), 0, h - 1))
            draw.line([(x, y), (nx, ny)], fill=255, width=stroke_w)
            r = stroke_w / 2
            draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
            x, y = nx, ny
    return np.asarray(canvas) > 0


def thick(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Thick random brush strokes (LaMa 'thick'-like: widths 8-20% of the image side)."""
    return _strokes(h, w, seed, n=(1, 4), width=(0.08, 0.2), length=0.35)


def thin(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Thin random brush strokes (LaMa 'thin'-like: widths 2-6% of the image side)."""
    return _strokes(h, w, seed, n=(3, 8), width=(0.02, 0.06), length=0.4)


def wide(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Wide masks: one to three large random boxes (LaMa 'wide'-like), 25-50% of each side."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        bh, bw = int(rng.uniform(0.25, 0.5) * h), int(rng.uniform(0.25, 0.5) * w)
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        m[y : y + bh, x : x + bw] = True
    return m


PRESETS: dict[str, MaskFn] = {
    "every_second_line": every_second_line,
    "super_resolution_2x": super_resolution_2x,
    "left_half": left_half,
    "right_half": right_half,
    "top_half": top_half,
    "bottom_half": bottom_half,
    "expand": expand,
    "center_box": center_box,
    "thick": thick,
    "thin": thin,
    "wide": wide,
}
#: The presets drawn at random from the seed: each sample of a batch draws its own mask, from its own seed.
RANDOM = frozenset({"thick", "thin", "wide"})
DESCRIPTIONS: dict[str, str] = {name: (fn.__doc__ or "").split(":")[0].split(" (")[0] for name, fn in PRESETS.items()}


def preset(name: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    """The preset mask ``name`` at ``height`` x ``width`` (True = fill)."""
    if name not in PRESETS:
        raise ValueError(f"unknown mask preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name](height, width, seed)


def is_random(mask) -> bool:
    """Whether ``mask`` names a random preset (:data:`RANDOM`): its region depends on the seed."""
    return isinstance(mask, str) and mask in RANDOM


def load_mask(source, *, keep: bool = False, invert: bool = False) -> np.ndarray:
    """Read a mask from a PIL image, a file path, bytes, a binary file or an array: True = fill.

    Images are made upright by their own EXIF orientation, as images are. Any mode: where the alpha channel
    varies, opaque (alpha >= 128) is the region; otherwise the grey level, white (>= 128) is the region.
    Arrays: bool as is, numbers > 0.5 (floats) or >= 128 (integers). The region is filled, unless
    ``keep=True`` (RePaint's own keep masks: white = keep). ``invert`` flips the result once more.
    """
    if isinstance(source, np.ndarray):
        a = source
        if a.ndim == 3:
            a = a.max(axis=2) if a.shape[2] != 4 or np.ptp(a[..., 3]) == 0 else a[..., 3]
        if a.ndim != 2:
            raise ValueError(f"a mask array must be (H, W) or (H, W, C), got shape {source.shape}")
        region = a if a.dtype == bool else (a > 0.5 if np.issubdtype(a.dtype, np.floating) else a >= 128)
    else:
        from .images import open_image  # a file or bytes: refused past images.MAX_PIXELS, as an image is

        img = source if isinstance(source, Image.Image) else open_image(source)
        img = ImageOps.exif_transpose(img)  # upright, as the image it belongs to is made (images.to_rgb)
        alpha = img.getchannel("A") if "A" in img.getbands() else None
        if img.mode == "P" and "transparency" in img.info:
            alpha = img.convert("RGBA").getchannel("A")
        if alpha is not None and alpha.getextrema()[0] != alpha.getextrema()[1]:
            region = np.asarray(alpha) >= 128
        else:
            if img.mode.startswith("I;16"):
                region = np.asarray(img, dtype=np.int64) >= 32768
            else:
                region = np.asarray(img.convert("L")) >= 128
    region = np.asarray(region, dtype=bool)
    return region ^ keep ^ invert

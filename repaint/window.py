"""Results at the input's own size: inpaint a square window around the mask, then paste the fill back.

As image editors do (IOPaint's "crop" strategy): the smallest square holding the mask's bounding box plus a margin
of context, at least the model's resolution where the image allows it (so context is not enlarged), placed inside
the image. The window is resized to the model's resolution, the model fills it, and the fill is resized back
(Lanczos) and written into the original **only where the mask is**: every other pixel is the input's own.

When the box plus its margin is wider (or taller) than the image's short side, the margin shrinks to fit it, down
to a quarter of itself (``MIN_CONTEXT``); a box wider than that still gets the quarter margin, and the square
reaches past the image, centred on it along that side. The part outside the image is *padding marked as unknown*:
the model fills it along with the mask, and it is cut off afterwards. So no context is invented, and the model
always sees the context the image has around the mask.

What the model is told it knows is known: a model pixel is known only if every image pixel it overlaps (by area,
at any scale) is known and inside the image, and a known model pixel's value is computed from known image pixels
only (Lanczos where the filter's whole reach is known, else the mean of the image pixels under it). Nothing under
the mask, and nothing of the padding, reaches the model.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image

from .images import center_crop_box

__all__ = ["MARGIN", "Window", "centre_window", "mask_window", "model_input", "paste_fill", "spread"]

#: Context around the mask's box, as a fraction of the box's longer side (and at least MIN_MARGIN pixels).
MARGIN = 0.5
MIN_MARGIN = 16
#: The least part of the margin kept when the square does not fit the image's short side.
MIN_CONTEXT = 0.25
#: Lanczos' reach, in source pixels per output pixel of scale (PIL's LANCZOS is Lanczos-3).
LANCZOS_SUPPORT = 3.0


class Window(NamedTuple):
    """A square of ``side`` pixels at (left, top) in image pixels; it may reach outside the image (padding)."""

    left: int
    top: int
    side: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.left + self.side, self.top + self.side

    def overlap(self, height: int, width: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """(image slices, window slices) of the part of the window inside a height x width image."""
        x0, y0 = max(self.left, 0), max(self.top, 0)
        x1, y1 = min(self.left + self.side, width), min(self.top + self.side, height)
        return (
            (slice(y0, y1), slice(x0, x1)),
            (slice(y0 - self.top, y1 - self.top), slice(x0 - self.left, x1 - self.left)),
        )


def _place(lo: int, hi: int, side: int, size: int) -> int:
    """Start of a span of ``side`` holding [lo, hi), inside [0, size) if it fits, else centred on it."""
    if side > size:
        return (size - side) // 2
    return min(max((lo + hi - side) // 2, 0), size - side)


def mask_window(mask: np.ndarray, resolution: int, margin: float = MARGIN) -> Window:
    """The square window around the True pixels of ``mask`` (bool (H, W)), see the module's docstring."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("empty mask: nothing to fill")
    h, w = mask.shape
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box = int(max(bottom - top, right - left))
    pad = max(MIN_MARGIN, round(margin * box))
    side = max(
        min(box + 2 * pad, min(h, w)),  # the margin shrinks to fit the short side,
        box + 2 * math.ceil(MIN_CONTEXT * pad),  # never below a quarter of itself (then past the image),
        min(resolution, h, w),
    )  # and context is seen at its native size where the image allows
    return Window(_place(left, right, side, w), _place(top, bottom, side, h), int(side))


def centre_window(width: int, height: int) -> Window:
    """The centred square crop (what the model sees at its own resolution) as a window."""
    left, top, right, _ = center_crop_box(width, height)
    return Window(left, top, right - left)


def spread(small: np.ndarray, window: Window, height: int, width: int) -> np.ndarray:
    """A bool mask made for the model (R, R) laid over ``window`` of a height x width image (nearest): bool (H, W),
    False outside the window. It maps back to ``small`` exactly when fitted to the model's resolution."""
    big = (
        np.asarray(
            Image.fromarray(small.astype(np.uint8) * 255).resize((window.side, window.side), Image.Resampling.NEAREST)
        )
        >= 128
    )
    out = np.zeros((height, width), dtype=bool)
    inside, part = window.overlap(height, width)
    out[inside] = big[part]
    return out


def _spans(side: int, resolution: int, reach: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``resolution`` model pixels along ``side`` image pixels: the image pixels [lo, hi) it overlaps
    (``reach`` 0: by area, in exact integer arithmetic), or a superset of those a resampling filter reaching
    ``reach`` source pixels per unit of scale around its centre reads (PIL's ``precompute_coeffs``)."""
    k = np.arange(resolution, dtype=np.int64)
    if not reach:
        return k * side // resolution, -(-(k + 1) * side // resolution)
    scale = side / resolution
    centre, half = (k + 0.5) * scale, reach * max(scale, 1.0)
    return (
        np.clip(np.floor(centre - half), 0, side).astype(np.int64),
        np.clip(np.ceil(centre + half) + 1, 0, side).astype(np.int64),
    )


def _any_under(flags: np.ndarray, spans: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """bool (S, S) -> bool (R, R): whether any flag is set in each model pixel's rows x columns of ``spans``."""
    lo, hi = spans
    starts = np.stack([lo, np.minimum(hi, flags.shape[0])], axis=1).ravel()  # [lo, hi) pairs for reduceat
    padded = np.pad(flags, ((0, 1), (0, 1)))  # hi may be S: reduceat needs an index inside the array
    rows = np.logical_or.reduceat(padded, starts, axis=0)[::2]
    return np.logical_or.reduceat(rows, starts, axis=1)[:, ::2]


def model_input(rgb: np.ndarray, mask: np.ndarray, window: Window, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The window of ``rgb`` (uint8 (H, W, 3)) and ``mask`` at the model's resolution: (uint8 (R, R, 3), bool (R, R)).

    A model pixel is to fill if any image pixel it overlaps is (or lies outside the image), so every pixel the model
    is told it knows is really known. A known model pixel is the Lanczos resize of the window where that filter
    reads known image pixels only, else the mean of the image pixels under it (PIL's BOX, which reads only pixels
    the model pixel overlaps); model pixels to fill are black. Nothing under the mask or outside the image is
    used."""
    size = (resolution, resolution)
    unknown = np.ones((window.side, window.side), bool)  # padding outside the image is unknown
    inside, part = window.overlap(*mask.shape)
    unknown[part] = mask[inside]
    fill = _any_under(unknown, _spans(window.side, resolution))
    crop = Image.fromarray(rgb).crop(window.box)
    near = _any_under(unknown, _spans(window.side, resolution, LANCZOS_SUPPORT))  # Lanczos reads unknown pixels
    small = np.asarray(crop.resize(size, Image.Resampling.LANCZOS), dtype=np.uint8).copy()
    small[near] = np.asarray(crop.resize(size, Image.Resampling.BOX))[near]
    small[fill] = 0
    return small, fill


def paste_fill(rgb: np.ndarray, mask: np.ndarray, window: Window, filled: np.ndarray) -> np.ndarray:
    """``rgb`` with the pixels under ``mask`` taken from ``filled`` (the model's output for ``window``), resized
    back to the window; every pixel outside the mask is ``rgb``'s own. uint8 (H, W, 3)."""
    big = np.asarray(Image.fromarray(filled).resize((window.side, window.side), Image.Resampling.LANCZOS))
    out = rgb.copy()
    inside, part = window.overlap(*mask.shape)
    m = mask[inside]
    out[inside][m] = big[part][m]
    return out

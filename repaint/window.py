"""Results at the input's own size: inpaint a square window around the mask, then paste the fill back.

As image editors do (IOPaint's "crop" strategy): the smallest square holding the mask's bounding box plus a margin
of context, at least the model's resolution where the image allows it (so context is not enlarged), placed inside
the image. The window is resized to the model's resolution (Lanczos), the model fills it, and the fill is resized
back (Lanczos) and written into the original **only where the mask is**: every other pixel is the input's own.

When the mask's box plus margin is wider (or taller) than the image, the window still is that square, centred on the
image along that side, and the part outside the image is *padding marked as unknown*: the model fills it along
with the mask, and it is cut off afterwards. So no context is invented and none is dropped.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from .images import center_crop_box

__all__ = ["MARGIN", "Window", "centre_window", "mask_window", "model_input", "paste_fill", "spread"]

#: Context around the mask's box, as a fraction of the box's longer side (and at least MIN_MARGIN pixels).
MARGIN = 0.5
MIN_MARGIN = 16


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
        return ((slice(y0, y1), slice(x0, x1)),
                (slice(y0 - self.top, y1 - self.top), slice(x0 - self.left, x1 - self.left)))


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
    box = max(bottom - top, right - left)
    side = box + 2 * max(MIN_MARGIN, round(margin * box))
    side = max(min(side, min(h, w)), box, min(resolution, h, w))  # context at native size when the image allows
    return Window(_place(left, right, side, w), _place(top, bottom, side, h), int(side))


def centre_window(width: int, height: int) -> Window:
    """The centred square crop (what the model sees at its own resolution) as a window."""
    left, top, right, _ = center_crop_box(width, height)
    return Window(left, top, right - left)


def spread(small: np.ndarray, window: Window, height: int, width: int) -> np.ndarray:
    """A bool mask made for the model (R, R) laid over ``window`` of a height x width image (nearest): bool (H, W),
    False outside the window. It maps back to ``small`` exactly when fitted to the model's resolution."""
    big = np.asarray(Image.fromarray(small.astype(np.uint8) * 255).resize((window.side, window.side),
                                                                           Image.Resampling.NEAREST)) >= 128
    out = np.zeros((height, width), dtype=bool)
    inside, part = window.overlap(height, width)
    out[inside] = big[part]
    return out


def model_input(rgb: np.ndarray, mask: np.ndarray, window: Window, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The window of ``rgb`` (uint8 (H, W, 3)) and ``mask`` at the model's resolution: (uint8 (R, R, 3), bool (R, R)).

    A model pixel is to fill if any image pixel under it is (or lies outside the image), so every pixel the model
    is told it knows is really known."""
    size = (resolution, resolution)
    img = Image.fromarray(rgb).crop(window.box).resize(size, Image.Resampling.LANCZOS)
    unknown = np.ones((window.side, window.side), np.float32)  # padding outside the image is unknown
    inside, part = window.overlap(*mask.shape)
    unknown[part] = mask[inside]
    fill = np.asarray(Image.fromarray(unknown, mode="F").resize(size, Image.Resampling.BOX)) > 0
    return np.asarray(img, dtype=np.uint8).copy(), fill


def paste_fill(rgb: np.ndarray, mask: np.ndarray, window: Window, filled: np.ndarray) -> np.ndarray:
    """``rgb`` with the pixels under ``mask`` taken from ``filled`` (the model's output for ``window``), resized
    back to the window; every pixel outside the mask is ``rgb``'s own. uint8 (H, W, 3)."""
    big = np.asarray(Image.fromarray(filled).resize((window.side, window.side), Image.Resampling.LANCZOS))
    out = rgb.copy()
    inside, part = window.overlap(*mask.shape)
    m = mask[inside]
    out[inside][m] = big[part][m]
    return out

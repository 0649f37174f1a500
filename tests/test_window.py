"""Full-size results: the window around the mask, and the fill pasted back into the original.

Oracles: the input image itself (every pixel outside the mask must equal it, at its size and orientation), and
closed-form window geometry (the mask's box, the margin, the image's bounds).
"""

import numpy as np
import pytest
import torch
from _tiny import tiny_pipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import repaint
from repaint import window

FAST = dict(steps=5, jump_length=5, jump_n_sample=1)


def noise_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_window_holds_the_mask_with_context_inside_the_image():
    mask = np.zeros((480, 640), bool)
    mask[400:440, 580:620] = True  # a 40x40 object near the bottom right corner
    win = window.mask_window(mask, 32)
    left, top, right, bottom = win.box
    assert left >= 0 and top >= 0 and right <= 640 and bottom <= 480  # inside the image
    assert left <= 580 and top <= 400 and right >= 620 and bottom >= 440  # holds the box
    assert win.side == 40 + 2 * max(window.MIN_MARGIN, round(window.MARGIN * 40))  # box plus margin each side
    big = window.mask_window(mask, 256)
    assert big.side == 256 and big.box[2] <= 640 and big.box[3] <= 480  # at least the model's size: no enlarging


def test_a_mask_as_wide_as_the_short_side_keeps_its_context():
    """The issue's case: a uniform red 640x427 photo with columns 105-535 masked (every row). The square cannot keep
    its whole margin inside the image: it keeps a part of it and reaches past the image (padding, unknown), so the
    model sees red on both sides of the mask, at the red of the photo, and the padding is to fill."""
    rgb = np.zeros((427, 640, 3), np.uint8)
    rgb[..., 0] = 200
    mask = np.zeros((427, 640), bool)
    mask[:, 105:535] = True
    win = window.mask_window(mask, 256)
    left, top, right, bottom = win.box
    assert left < 105 and right > 535 and top < 0 and bottom > 427  # context left and right, padding above/below
    small, fill = window.model_input(rgb, mask, win, 256)
    scale = win.side / 256
    cols = left + (np.arange(256) + 1) * scale <= 105, left + np.arange(256) * scale >= 535  # model columns beside
    assert (~fill[:, cols[0]]).any() and (~fill[:, cols[1]]).any()
    assert (small[~fill] == (200, 0, 0)).all()
    rows = (top + (np.arange(256) + 1) * scale <= 0) | (top + np.arange(256) * scale >= 427)  # all padding
    assert rows.any() and fill[rows].all()


def test_padding_never_shifts_known_pixels():
    """Where the square reaches past the image, what the crop pads with is not context: a uniform grey image gives
    known model pixels of exactly its grey (a Lanczos resize of the black padding moved them by up to 13 levels)."""
    rgb = np.full((40, 100, 3), 200, np.uint8)
    mask = np.zeros((40, 100), bool)
    mask[10:20, 5:95] = True
    win = window.mask_window(mask, 32)
    assert win.top < 0  # beyond the image
    small, fill = window.model_input(rgb, mask, win, 30)
    assert (~fill).any() and (small[~fill] == 200).all()


def _overlap_matrix(side: int, resolution: int) -> np.ndarray:
    """(R, S) bool: model pixel k's span [k S / R, (k + 1) S / R) and image pixel i's [i, i + 1) share some area."""
    k, i = np.arange(resolution)[:, None], np.arange(side)[None, :]
    return (i * resolution < (k + 1) * side) & ((i + 1) * resolution > k * side)


@st.composite
def windows(draw):
    """An image size, a sparse random mask on it, a window anywhere over it (partly outside it too), a resolution."""
    h, w = draw(st.integers(1, 60)), draw(st.integers(1, 60))
    side = draw(st.integers(1, 90))
    win = window.Window(draw(st.integers(-side + 1, w - 1)), draw(st.integers(-side + 1, h - 1)), side)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = rng.random((h, w)) < draw(st.sampled_from([0.0, 0.002, 0.02, 0.2]))
    return mask, win, draw(st.integers(1, 48)), rng


@settings(max_examples=200, deadline=None)
@given(windows())
def test_a_model_pixel_is_known_only_if_every_image_pixel_it_overlaps_is(case):
    """At every scale (integer or not, down or up): a model pixel is to fill exactly when it overlaps, by area, a
    masked image pixel or the outside of the image. Oracle: the overlap matrix in integer arithmetic."""
    mask, win, resolution, rng = case
    h, w = mask.shape
    unknown = np.ones((win.side, win.side), bool)
    ys, xs = np.arange(win.top, win.top + win.side), np.arange(win.left, win.left + win.side)
    inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
    unknown[inside] = mask[np.ix_(ys[(ys >= 0) & (ys < h)], xs[(xs >= 0) & (xs < w)])].ravel()
    o = _overlap_matrix(win.side, resolution).astype(np.int64)
    _, fill = window.model_input(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mask, win, resolution)
    assert (fill == (o @ unknown @ o.T > 0)).all()


@settings(max_examples=150, deadline=None)
@given(windows(), st.integers(1, 30))
def test_hidden_and_invented_pixels_never_reach_the_model(case, border):
    """What is under the mask, and whatever lies outside the image, never reaches the model: the same image with
    its masked pixels black, then white and the image set inside a larger canvas of noise (which is masked), gives
    the model the same input, pixel for pixel."""
    mask, win, resolution, rng = case
    h, w = mask.shape
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    rgb[mask] = 0
    canvas = rng.integers(0, 256, (h + 2 * border, w + 2 * border, 3), dtype=np.uint8)
    canvas[border : border + h, border : border + w] = np.where(mask[..., None], 255, rgb)
    big_mask = np.ones(canvas.shape[:2], bool)
    big_mask[border : border + h, border : border + w] = mask
    moved = window.Window(win.left + border, win.top + border, win.side)
    small, fill = window.model_input(rgb, mask, win, resolution)
    small2, fill2 = window.model_input(canvas, big_mask, moved, resolution)
    assert (fill == fill2).all() and (small == small2).all()


@st.composite
def boxes(draw):
    """An image size and a rectangular mask in it."""
    h, w = draw(st.integers(1, 400)), draw(st.integers(1, 400))
    top, left = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
    return h, w, (top, draw(st.integers(top + 1, h)), left, draw(st.integers(left + 1, w)))


@settings(max_examples=200, deadline=None)
@given(boxes(), st.sampled_from([32, 64, 256]))
def test_known_context_around_the_mask_reaches_the_model(case, resolution):
    """On each side of the mask's box where the image has context, the window holds at least two model pixels'
    worth of it (or all of it), and where that makes a whole model pixel of known image, the model is told it
    knows it (a mask as wide as the short side used to get a window of the box alone, all unknown)."""
    h, w, (top, bottom, left, right) = case
    mask = np.zeros((h, w), bool)
    mask[top:bottom, left:right] = True
    win = window.mask_window(mask, resolution)
    scale = win.side / resolution
    x0, y0, x1, y1 = win.box
    for have, got in [
        (left, left - max(x0, 0)),
        (w - right, min(x1, w) - right),
        (top, top - max(y0, 0)),
        (h - bottom, min(y1, h) - bottom),
    ]:
        assert got >= min(have, 2 * scale), (have, got, win)
    _, fill = window.model_input(np.zeros((h, w, 3), np.uint8), mask, win, resolution)
    k = np.arange(resolution)
    lo_x, hi_x, lo_y, hi_y = x0 + k * scale, x0 + (k + 1) * scale, y0 + k * scale, y0 + (k + 1) * scale
    cells_in_image = ((lo_y >= 0) & (hi_y <= h))[:, None] & ((lo_x >= 0) & (hi_x <= w))[None, :]
    for beside in [hi_x <= left, lo_x >= right]:  # whole model columns left and right of the box, in the image
        if (cells_in_image & beside[None, :]).any():
            assert (~fill & beside[None, :]).any()
    for beside in [hi_y <= top, lo_y >= bottom]:
        if (cells_in_image & beside[:, None]).any():
            assert (~fill & beside[:, None]).any()


@pytest.mark.parametrize("w, h", [(640, 480), (480, 640)])
def test_a_corner_mask_comes_back_at_full_size_unchanged_outside(bundled, tmp_path, w, h):
    rgb = noise_image(w, h, 2)
    mask = np.zeros((h, w), bool)
    mask[h - 70 : h - 20, w - 90 : w - 30] = True
    image_path, mask_path = tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(rgb).save(image_path)
    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
    for out in bundled.inpaint(str(image_path), str(mask_path), full_size=True, num_samples=2, **FAST):
        a = np.asarray(out)
        assert a.shape == (h, w, 3)
        assert (a[~mask] == rgb[~mask]).all()
        assert (a[mask] != rgb[mask]).any()  # filled


def test_an_exif_rotated_photo_comes_back_upright_at_its_size(bundled, tmp_path):
    upright = noise_image(60, 40, 3)  # 60 wide, 40 tall as seen
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # the camera's raw pixels: 40x60
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": undoes ROTATE_90
    path = tmp_path / "photo.png"
    stored.save(path, exif=exif)
    mask = np.zeros((40, 60), bool)
    mask[5:15, 40:55] = True  # drawn on the upright photo
    (out,) = bundled.inpaint(str(path), mask, full_size=True, **FAST)
    a = np.asarray(out)
    assert a.shape == (40, 60, 3)
    assert (a[~mask] == upright[~mask]).all()


def test_a_full_size_preset_changes_only_its_pixels(bundled, tmp_path):
    rgb = noise_image(300, 200, 4)
    path = tmp_path / "in.png"
    Image.fromarray(rgb).save(path)
    (full,) = bundled.inpaint(str(path), "left_half", full_size=True, **FAST)
    (small,) = bundled.inpaint(str(path), "left_half", **FAST)
    a = np.asarray(full)
    assert a.shape == (200, 300, 3) and np.asarray(small).shape == (32, 32, 3)
    win = window.centre_window(300, 200)
    m = window.spread(repaint.masks.PRESETS["left_half"](32, 32, 0), win, 200, 300)
    assert m[:, :50].sum() == 0 and m[:, 50:150].all() and not m[:, 150:].any()  # the left half of the square
    assert (a[~m] == rgb[~m]).all()


@pytest.fixture
def tiny():
    """A tiny random 32x32 UNet on one torch thread (on a loaded 2-core machine, two threads made each of its calls
    about 50x slower); the test's thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_pipe(32)
    torch.set_num_threads(threads)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(boxes(), st.integers(0, 2**32 - 1), st.booleans())
def test_outside_the_mask_a_full_size_result_is_the_input(tiny, case, seed, ragged):
    """The README's promise, through the real pipeline (a tiny random 32x32 UNet, few steps) at any size, aspect and
    mask box, rectangular or ragged: a full-size result has the input's size, and every pixel outside the mask is
    the input's own."""
    h, w, (top, bottom, left, right) = case
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[top:bottom, left:right] = True
    if ragged:
        mask &= rng.random((h, w)) < 0.7
    if not mask.any():
        mask[top, left] = True
    (out,) = tiny.inpaint(rgb, mask, full_size=True, steps=2, jump_length=1, jump_n_sample=1, seed=seed % 1000)
    a = np.asarray(out)
    assert a.shape == (h, w, 3)
    assert (a[~mask] == rgb[~mask]).all()

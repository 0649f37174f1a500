"""Full-size results: the window around the mask, and the fill pasted back into the original.

Oracles: the input image itself (every pixel outside the mask must equal it, at its size and orientation), and
closed-form window geometry (the mask's box, the margin, the image's bounds).
"""

import numpy as np
import pytest
from PIL import Image

import repaint
from repaint import window

FAST = dict(steps=5, jump_length=5, jump_n_sample=1)


@pytest.fixture(scope="module")
def pipe():
    return repaint.load("bundled", device="cpu")


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


def test_a_mask_wider_than_the_short_side_pads_with_unknown_pixels():
    mask = np.zeros((40, 100), bool)
    mask[10:20, 5:95] = True  # 90 px wide, the image is 40 px tall
    win = window.mask_window(mask, 32)
    assert win.side == 90 and win.top == (40 - 90) // 2  # centred on the image vertically, beyond it
    rgb = noise_image(100, 40)
    small, fill = window.model_input(rgb, mask, win, 30)  # 3 image pixels per model pixel
    rows = fill.all(axis=1)
    pad_top, pad_bottom = -win.top, win.side + win.top - 40  # padding rows, in image pixels
    assert rows[: pad_top // 3].all() and rows[30 - pad_bottom // 3 :].all()  # padding is unknown
    assert small.shape == (30, 30, 3)


def test_known_model_pixels_are_entirely_known_in_the_image():
    """A model pixel is told 'known' only if every image pixel under it is (here 4x4 image pixels per model pixel)."""
    rng = np.random.default_rng(1)
    mask = rng.random((128, 128)) < 0.02
    win = window.Window(0, 0, 128)
    _, fill = window.model_input(noise_image(128, 128), mask, win, 32)
    any_under = mask.reshape(32, 4, 32, 4).any(axis=(1, 3))
    assert (fill == any_under).all()


@pytest.mark.parametrize("w, h", [(640, 480), (480, 640)])
def test_a_corner_mask_comes_back_at_full_size_unchanged_outside(pipe, tmp_path, w, h):
    rgb = noise_image(w, h, 2)
    mask = np.zeros((h, w), bool)
    mask[h - 70 : h - 20, w - 90 : w - 30] = True
    image_path, mask_path = tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(rgb).save(image_path)
    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
    for out in pipe.inpaint(str(image_path), str(mask_path), full_size=True, num_samples=2, **FAST):
        a = np.asarray(out)
        assert a.shape == (h, w, 3)
        assert (a[~mask] == rgb[~mask]).all()
        assert (a[mask] != rgb[mask]).any()  # filled


def test_an_exif_rotated_photo_comes_back_upright_at_its_size(pipe, tmp_path):
    upright = noise_image(60, 40, 3)  # 60 wide, 40 tall as seen
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # the camera's raw pixels: 40x60
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": undoes ROTATE_90
    path = tmp_path / "photo.png"
    stored.save(path, exif=exif)
    mask = np.zeros((40, 60), bool)
    mask[5:15, 40:55] = True  # drawn on the upright photo
    (out,) = pipe.inpaint(str(path), mask, full_size=True, **FAST)
    a = np.asarray(out)
    assert a.shape == (40, 60, 3)
    assert (a[~mask] == upright[~mask]).all()


def test_a_full_size_preset_changes_only_its_pixels(pipe, tmp_path):
    rgb = noise_image(300, 200, 4)
    path = tmp_path / "in.png"
    Image.fromarray(rgb).save(path)
    (full,) = pipe.inpaint(str(path), "left_half", full_size=True, **FAST)
    (small,) = pipe.inpaint(str(path), "left_half", **FAST)
    a = np.asarray(full)
    assert a.shape == (200, 300, 3) and np.asarray(small).shape == (32, 32, 3)
    win = window.centre_window(300, 200)
    m = window.spread(repaint.masks.PRESETS["left_half"](32, 32, 0), win, 200, 300)
    assert m[:, :50].sum() == 0 and m[:, 50:150].all() and not m[:, 150:].any()  # the left half of the square
    assert (a[~m] == rgb[~m]).all()

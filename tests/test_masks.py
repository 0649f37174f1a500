import numpy as np
import pytest
from PIL import Image

from repaint import masks


def test_every_second_line_pattern():
    m = masks.preset("every_second_line", 6, 4)
    assert m.dtype == bool and m.shape == (6, 4)
    assert m[1::2].all() and not m[0::2].any()
    assert m.mean() == 0.5


def test_super_resolution_2x_exactly_three_quarters():
    m = masks.preset("super_resolution_2x", 8, 8)
    assert not m[0::2, 0::2].any()
    assert m[1::2].all() and m[:, 1::2].all()
    assert m.mean() == 0.75


@pytest.mark.parametrize(
    "name,region",
    [
        ("left_half", (slice(None), slice(0, 4))),
        ("right_half", (slice(None), slice(4, 8))),
        ("top_half", (slice(0, 4), slice(None))),
        ("bottom_half", (slice(4, 8), slice(None))),
        ("center_box", (slice(2, 6), slice(2, 6))),
    ],
)
def test_box_presets_exact(name, region):
    m = masks.preset(name, 8, 8)
    expect = np.zeros((8, 8), dtype=bool)
    expect[region] = True
    assert np.array_equal(m, expect)


def test_expand_keeps_only_the_centre():
    m = masks.preset("expand", 8, 8)
    assert np.array_equal(~m, masks.preset("center_box", 8, 8))
    assert m.mean() == 0.75


@pytest.mark.parametrize("name,low,high", [("thick", 0.05, 0.7), ("thin", 0.02, 0.5), ("wide", 0.05, 0.8)])
def test_random_presets_seeded_and_plausible(name, low, high):
    ratios = [masks.preset(name, 64, 64, seed).mean() for seed in range(20)]
    assert low < np.mean(ratios) < high
    assert np.array_equal(masks.preset(name, 64, 64, 3), masks.preset(name, 64, 64, 3))
    assert not np.array_equal(masks.preset(name, 64, 64, 3), masks.preset(name, 64, 64, 4))


def test_thin_is_thinner_than_thick():
    thin = np.mean([masks.preset("thin", 128, 128, s).mean() for s in range(20)])
    thick = np.mean([masks.preset("thick", 128, 128, s).mean() for s in range(20)])
    assert thin < thick


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="every_second_line"):
        masks.preset("nope", 8, 8)


def _region():
    r = np.zeros((4, 6), dtype=bool)
    r[1:3, 2:5] = True
    return r


@pytest.mark.parametrize("mode", ["1", "L", "RGB", "P", "I;16"])
def test_load_mask_white_is_fill(mode):
    r = _region()
    img = Image.fromarray(r.astype(np.uint8) * 255).convert(mode)
    if mode == "I;16":
        img = Image.fromarray(r.astype(np.uint16) * 65535)
    assert np.array_equal(masks.load_mask(img), r)


def test_load_mask_alpha_is_fill():
    r = _region()
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 2] = 255  # blue paint everywhere, but only opaque where painted
    rgba[..., 3] = r * 255
    assert np.array_equal(masks.load_mask(Image.fromarray(rgba, "RGBA")), r)
    la = Image.fromarray(rgba, "RGBA").convert("LA")
    assert np.array_equal(masks.load_mask(la), r)


def test_opaque_black_and_white_rgba_uses_grey_level():
    r = _region()
    img = Image.fromarray(r.astype(np.uint8) * 255).convert("RGBA")
    assert np.array_equal(masks.load_mask(img), r)


def test_keep_flag_and_invert():
    r = _region()
    img = Image.fromarray(r.astype(np.uint8) * 255)
    assert np.array_equal(masks.load_mask(img, keep=True), ~r)
    assert np.array_equal(masks.load_mask(img, invert=True), ~r)
    assert np.array_equal(masks.load_mask(img, keep=True, invert=True), r)


def test_load_mask_arrays(tmp_path):
    r = _region()
    assert np.array_equal(masks.load_mask(r), r)
    assert np.array_equal(masks.load_mask(r.astype(np.float32)), r)
    assert np.array_equal(masks.load_mask(r.astype(np.uint8) * 255), r)
    Image.fromarray(r.astype(np.uint8) * 255).save(tmp_path / "m.png")
    assert np.array_equal(masks.load_mask(tmp_path / "m.png"), r)

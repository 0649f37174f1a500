"""Preprocessing of any image a visitor may upload: modes, sizes, orientation, bombs, garbage."""

import io

import numpy as np
import pytest
from _tiny import tiny_pipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from repaint import images


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipe()


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1", "RGB"])
def test_modes_are_converted_not_rejected(pipe, mode):
    base = Image.new("RGB", (20, 20), (200, 100, 50))
    img = Image.fromarray(np.full((20, 20), 40000, np.uint16)) if mode == "I;16" else base.convert(mode)
    rgb, m = pipe.prepare(img, "left_half")
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8 and m.shape == (16, 16)
    if mode == "I;16":
        assert (rgb == round(40000 / 65535 * 255)).all()


def test_transparency_is_composited_over_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert (np.asarray(images.to_rgb(rgba)) == 255).all()


def test_exif_rotation_is_applied(pipe):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white, stored landscape
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = images.open_image(_png(img, "JPEG", exif=exif.tobytes(), quality=100))
    assert images.upright_size(loaded) == (10, 20)
    upright = np.asarray(images.to_rgb(loaded))
    assert upright.shape == (20, 10, 3)
    assert upright[:8].mean() > 200 and upright[-8:].mean() < 50  # white ended on top
    mask = np.zeros((20, 10), bool)  # a mask drawn on the upright image has the upright size
    pipe.prepare(loaded, mask)


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (300, 1), (3, 2)])
def test_tiny_and_thin_images(pipe, size):
    rgb, m = pipe.prepare(Image.new("RGB", size, (9, 9, 9)), "center_box")
    assert rgb.shape == (16, 16, 3) and (rgb == 9).all()


def test_huge_image_is_reduced_first():
    img = images.to_rgb(Image.new("RGB", (6000, 3000)))
    assert max(img.size) == images.WORKING_SIDE


def test_max_pixels_boundary_is_the_documented_50_megapixels():
    """README: images over 50 megapixels are refused. Exactly 50,000,000 is read, one pixel more is not."""
    assert images.MAX_PIXELS == 50_000_000
    assert images.open_image(_png(Image.new("1", (10_000, 5_000)))).size == (10_000, 5_000)
    with pytest.raises(ValueError, match="more than 50,000,000 pixels"):
        images.open_image(_png(Image.new("1", (50_000_001, 1))))


def _exif_rotated(upright: Image.Image, path, orientation: int = 6):
    """Save ``upright`` as a camera does: pixels stored turned, with the EXIF tag that turns them back."""
    undo = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright.transpose(undo).save(path, exif=exif)
    return str(path)


@pytest.mark.parametrize("orientation", [6, 8, 3])
@pytest.mark.parametrize("width", [16, 24])
def test_exif_rotated_mask_file_lands_on_the_same_pixels(pipe, tmp_path, orientation, width):
    """An image and its mask file, both stored turned with an EXIF orientation: the mask is turned like the image,
    so the fill covers the image's red region (left 4 columns of the centred 16x16 crop) and nothing else."""
    left = (width - 16) // 2
    red = np.zeros((16, width, 3), np.uint8)
    red[..., 2] = 255
    red[:, : left + 4] = (255, 0, 0)
    white = np.zeros((16, width), np.uint8)
    white[:, : left + 4] = 255
    image = _exif_rotated(Image.fromarray(red), tmp_path / "image.png", orientation)
    mask = _exif_rotated(Image.fromarray(white), tmp_path / "mask.png", orientation)
    rgb, m = pipe.prepare(image, mask)
    assert (rgb[:, :4] == (255, 0, 0)).all() and (rgb[:, 4:] == (0, 0, 255)).all()
    assert m[:, :4].all() and not m[:, 4:].any()


def test_decompression_bomb_refused():
    bomb = _png(Image.new("1", (12000, 12000)))  # 144 Mpx, a few kB on disk
    with pytest.raises(ValueError, match="image too large"):
        images.open_image(bomb)


@pytest.mark.parametrize("data", [b"", b"not an image at all", _png(Image.new("RGB", (8, 8)))[:40]])
def test_garbage_refused(data):
    with pytest.raises(ValueError, match="not a readable image"):
        images.open_image(data)


def test_no_image():
    with pytest.raises(ValueError, match="no image given"):
        images.open_image(None)


MODES = ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=st.integers(1, 80), h=st.integers(1, 80), mode=st.sampled_from(MODES), fill=st.floats(0, 1),
       seed=st.integers(0, 2**16), as_file=st.booleans())
def test_preprocessing_property(pipe, w, h, mode, fill, seed, as_file):
    """Any size and mode, any mask of that size: a (16, 16, 3) uint8 image and a (16, 16) bool mask, or a
    ValueError; a mask that is all fill or all keep stays so."""
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode != "I;16" else Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    mask = rng.random((h, w)) < fill
    source = _png(img, "TIFF") if as_file else img
    rgb, m = pipe.prepare(source, mask)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert m.shape == (16, 16) and m.dtype == bool
    if mask.all():
        assert m.all()
    if not mask.any():
        assert not m.any()

"""Preprocessing of any image a visitor may upload: modes, sizes, orientation, bombs, garbage."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from repaint import images, masks


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


def test_decompression_bomb_refused(tmp_path):
    bomb = _png(Image.new("1", (12000, 12000)))  # 144 Mpx, a few kB on disk
    with pytest.raises(ValueError, match="image too large"):
        images.open_image(bomb)
    (tmp_path / "mask.png").write_bytes(bomb)  # a mask file is read the same way, by the package or on its own
    for source in (bomb, tmp_path / "mask.png", str(tmp_path / "mask.png"), io.BytesIO(bomb)):
        with pytest.raises(ValueError, match="image too large"):
            masks.load_mask(source)
    small = _png(Image.new("L", (3, 2), 255))
    assert masks.load_mask(io.BytesIO(small)).all() and masks.load_mask(small).shape == (2, 3)  # as Image.open reads


@pytest.mark.parametrize("data", [b"", b"not an image at all", _png(Image.new("RGB", (8, 8)))[:40]])
def test_garbage_refused(data):
    with pytest.raises(ValueError, match="not a readable image"):
        images.open_image(data)


def test_no_image():
    with pytest.raises(ValueError, match="no image given"):
        images.open_image(None)


MODES = ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    w=st.integers(1, 80),
    h=st.integers(1, 80),
    mode=st.sampled_from(MODES),
    fill=st.floats(0, 1),
    seed=st.integers(0, 2**16),
    as_file=st.booleans(),
)
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


def _jpeg(w: int, h: int, **kw) -> bytes:
    """A real photo-sized JPEG: smooth gradients, so its decoded pixels are easy to check for a halved decode."""
    arr = np.empty((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w).astype(np.uint8)
    arr[..., 1] = np.linspace(0, 255, h).astype(np.uint8)[:, None]
    arr[..., 2] = 128
    return _png(Image.fromarray(arr), "JPEG", quality=85, **kw)


def test_a_large_jpeg_is_read_at_its_full_size(pipe):
    """A JPEG with both sides >= 4096 (a phone photo) comes back at its own size, not a reduced decode: a mask drawn
    at that size fits it, and a full-size result has it."""
    data = _jpeg(4100, 4097)
    assert images.open_image(data).size == (4100, 4097)
    mask = np.zeros((4097, 4100), bool)
    mask[2000:2040, 3000:3050] = True
    (out,) = pipe.inpaint(data, mask, full_size=True, steps=2, jump_length=1, jump_n_sample=1)
    assert out.size == (4100, 4097)
    changed = (np.asarray(out) != np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))).any(axis=-1)
    assert not (changed & ~mask).any()


def test_too_many_pixels_are_refused_from_the_header_before_decoding(monkeypatch):
    """Memory stays bounded by the pixel count, read from the file's header: the pixels are never decoded."""
    from PIL import ImageFile

    data = _jpeg(4100, 4097)
    monkeypatch.setattr(images, "MAX_PIXELS", 4096 * 4096)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded an image over the limit"))
    with pytest.raises(ValueError, match="image too large"):
        images.open_image(data)


#: Adobe RGB (1998), by its specification: gamma 563/256, primaries and D65 white as RGB -> XYZ; and sRGB's
#: XYZ -> linear RGB and transfer curve (IEC 61966-2-1). A closed form, independent of ImageCms / LittleCMS.
ADOBE_TO_XYZ = np.array(
    [[0.5767309, 0.1855540, 0.1881852], [0.2973769, 0.6273491, 0.0752741], [0.0270343, 0.0706872, 0.9911085]]
)
XYZ_TO_SRGB = np.array(
    [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]]
)


def adobe_rgb_to_srgb(a: np.ndarray) -> np.ndarray:
    lin = np.clip((a / 255.0) ** (563 / 256) @ (XYZ_TO_SRGB @ ADOBE_TO_XYZ).T, 0, 1)
    return np.round(255 * np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)).astype(int)


ROCKET = "examples/rocket.jpg"


def test_an_adobe_rgb_photo_is_read_as_srgb():
    """examples/rocket.jpg carries an Adobe RGB (1998) profile: it is read as a browser shows it, in sRGB (within
    one level of the closed form: LittleCMS interpolates its 8-bit transforms), over the photo and the whole cube of
    RGB values; the raw values differ by up to 55 levels."""
    raw = Image.open(ROCKET)
    icc = raw.info["icc_profile"]
    assert b"Adobe RGB (1998)" in icc
    raw_rgb = np.asarray(raw.convert("RGB"))
    ours = np.asarray(images.to_rgb(images.open_image(ROCKET), max_side=None)).astype(int)
    assert np.abs(ours - adobe_rgb_to_srgb(raw_rgb)).max() <= 1
    assert np.abs(ours - raw_rgb).max() >= 40  # so the profile really was applied
    cube = np.stack(np.meshgrid(*[np.arange(0, 256, 5)] * 3, indexing="ij"), -1).reshape(-1, 52, 3).astype(np.uint8)
    img = Image.fromarray(cube)
    img.info["icc_profile"] = icc
    assert np.abs(np.asarray(images.to_rgb(img, max_side=None)).astype(int) - adobe_rgb_to_srgb(cube)).max() <= 1


@pytest.mark.parametrize("mode", ["RGBA", "P", "RGB"])
def test_a_profile_is_applied_in_every_mode_and_keeps_transparency(mode):
    """Palette and transparent images with a profile: the same sRGB colours as the RGB image; alpha still composites
    over white (white is white in both spaces)."""
    cube = np.stack(np.meshgrid(*[np.arange(0, 256, 51)] * 3, indexing="ij"), -1).reshape(-1, 6, 3).astype(np.uint8)
    img = Image.fromarray(cube).convert(mode)
    img.info["icc_profile"] = Image.open(ROCKET).info["icc_profile"]
    assert np.abs(np.asarray(images.to_rgb(img)).astype(int) - adobe_rgb_to_srgb(cube)).max() <= 1
    if mode == "RGBA":
        clear = Image.new("RGBA", (4, 4), (10, 200, 30, 0))
        clear.info["icc_profile"] = img.info["icc_profile"]
        assert (np.asarray(images.to_rgb(clear)) == 255).all()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_file_without_a_profile_keeps_its_values(fmt):
    arr = np.random.default_rng(5).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    data = _png(Image.fromarray(arr), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert (np.asarray(images.to_rgb(images.open_image(data))) == decoded).all()


def test_a_broken_profile_keeps_the_values(caplog):
    img = Image.new("RGB", (4, 4), (12, 34, 56))
    img.info["icc_profile"] = b"not a profile"
    assert (np.asarray(images.to_rgb(img)) == (12, 34, 56)).all()
    assert "colour profile ignored" in caplog.text


def test_the_api_sees_a_profiled_photo_as_the_page_does(pipe):
    """Through the API (a file path, as the CLI and the app's API pass it): the model's input and a full-size
    result's known pixels are the photo in sRGB, not its raw Adobe RGB values."""
    srgb = adobe_rgb_to_srgb(np.asarray(Image.open(ROCKET).convert("RGB")))
    rgb, _ = pipe.prepare(ROCKET, "center_box")
    expect = images.fit_image(Image.fromarray(srgb.astype(np.uint8)), 16)
    assert np.abs(rgb.astype(int) - expect).max() <= 1
    mask = np.zeros(srgb.shape[:2], bool)
    mask[100:140, 300:380] = True
    (out,) = pipe.inpaint(ROCKET, mask, full_size=True, steps=2, jump_length=1, jump_n_sample=1)
    assert np.abs(np.asarray(out)[~mask].astype(int) - srgb[~mask]).max() <= 1


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_save_png_keeps_the_pixels_and_tags_them_srgb(tmp_path, mode):
    """PNG spec 11.3.3.5: an sRGB chunk of one byte, the rendering intent (0: perceptual), before the image data."""
    a = (np.random.default_rng(0).random((5, 7, len(mode))) * 255).astype(np.uint8).squeeze()
    images.save_png(a, tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    at = data.index(b"sRGB")
    assert data[at - 4 : at] == (1).to_bytes(4, "big") and data[at + 4] == 0 and at < data.index(b"IDAT")
    back = Image.open(tmp_path / "a.png")
    assert back.mode == mode and back.info["srgb"] == 0 and np.array_equal(np.asarray(back), a)

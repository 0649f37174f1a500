"""Helpers of the browser tests (Playwright driving Debian's headless Chromium): where things are, and what a visitor
does on the page. The fixtures (``url``, ``browser``, ``orange``) are in conftest.py."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

import app
from repaint.space import pictures

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BLUE = np.array(app.pictures.MASK_RGBA[:3], float)
ALPHA = app.pictures.MASK_RGBA[3] / 255
ORANGE = (230, 140, 40)
# the editor's own overlays (tool bars, label), hidden for the canvas screenshots
HIDE = "#editor .toolbar-wrap, #editor .icon-button-wrapper, #editor label {visibility: hidden !important}"

#: The marks of a browser test module: ``pytestmark = MARKS``.
MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def open_page(browser, url, width=1400, height=1300):
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.set_default_timeout(60_000)
    pg.goto(url)
    pg.wait_for_selector("#editor")
    return pg


def upload(pg, path):
    pg.wait_for_timeout(1000)  # the editor is ready to take a file
    pg.locator("#editor input[type=file]").first.set_input_files(str(path))
    pg.locator("#editor canvas").first.wait_for(state="visible")
    pg.wait_for_function("() => !document.querySelector('#editor').innerText.includes('Upload an image')")
    pg.wait_for_timeout(1500)


def editor_shot(pg) -> np.ndarray:
    shot = pg.locator("#editor canvas").first.screenshot()
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)


def pick_preset(pg, label, before: np.ndarray | None = None):
    """Picks the preset and waits for its layer: blue paint on the canvas, or (``before``: the canvas before, for an
    image that is blue itself, like a sky) a change from it."""
    pg.locator("#preset input").fill(label)  # typed: a click on a long list may land on the canvas under it
    pg.locator("#preset input").press("Enter")
    pg.wait_for_function("label => document.querySelector('#preset input').value === label", arg=label)
    for _ in range(40):  # the layer comes back from the server (a large one takes a while to encode and draw)
        pg.wait_for_timeout(500)
        shot = editor_shot(pg)
        if before is not None and shot.shape == before.shape:
            if (np.abs(shot - before).max(axis=2) > 25).mean() > 0.01:
                break
        elif ((shot[..., 2] - shot[..., 0] > 0) & (shot.max(axis=2) - shot.min(axis=2) > 25)).mean() > 0.01:
            break
    pg.wait_for_timeout(1000)


def canvas_shot(pg, name) -> np.ndarray:
    """The editor's canvas as the visitor sees it (overlays hidden, pointer away), int (H, W, 3)."""
    pan = pg.get_by_role("button", name="Pan", exact=True).first
    if pan.is_enabled():
        pan.click()  # no brush outline under the pointer
    pg.mouse.move(1, 1)
    style = pg.add_style_tag(content=HIDE)
    pg.wait_for_timeout(300)
    path = ARTIFACTS / name
    pg.locator("#editor canvas").first.screenshot(path=str(path))
    style.evaluate("s => s.remove()")
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def image_box(shot: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of what is drawn on the canvas (the test images have coloured edges)."""
    drawn = shot.max(axis=2) - shot.min(axis=2) > 25  # coloured: not the white canvas nor its grey frame
    rows, cols = np.flatnonzero(drawn.sum(1) > 3), np.flatnonzero(drawn.sum(0) > 3)
    assert rows.size and cols.size, "nothing drawn on the canvas"
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


def interior(mask: np.ndarray, px: int = 3) -> np.ndarray:
    """``mask`` shrunk by ``px`` pixels (edges are antialiased)."""
    im = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(2 * px + 1))
    return np.asarray(im) > 0


def assert_layer(shot: np.ndarray, image: np.ndarray, mask: np.ndarray):
    """The canvas shows ``image`` (uint8 (h, w, 3)) with ``mask`` (bool (h, w)) in the layer's blue over it, and
    nothing blue outside the image."""
    left, top, right, bottom = image_box(shot)
    h, w = mask.shape
    assert abs((right - left) / (bottom - top) - w / h) < 0.03, (
        "drawn area is not the image's shape",
        (left, top, right, bottom),
        (w, h),
    )
    size = (right - left, bottom - top)
    img = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)).astype(float)
    m = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    want = np.where(m[..., None], (1 - ALPHA) * img + ALPHA * BLUE, img)
    err = np.abs(shot[top:bottom, left:right] - want).max(axis=2)
    for region, what in ((interior(m), "blue where the mask is"), (interior(~m), "the image elsewhere")):
        if region.any():
            ok = (err[region] < 30).mean()
            assert ok > 0.97, f"{what}: only {ok:.1%} of the pixels match"
    outside = np.ones(shot.shape[:2], bool)
    outside[top:bottom, left:right] = False
    bluish = (shot[..., 2] - shot[..., 0] > 60) & outside
    assert not bluish.any(), f"{bluish.sum()} blue pixels outside the image"
    return left, top, right, bottom


def preset_at(name, image, seed=0, model="bundled"):
    h, w = image.shape[:2]
    return pictures.preset_mask(name, w, h, app.SERVICE.cache.model_resolution(model), seed)


def read_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def settings(pg, **values):
    for elem_id, value in values.items():
        box = pg.locator(f"#{elem_id} input[type=number]")
        box.fill(str(value))
        box.press("Enter")
    pg.wait_for_timeout(500)


def send_photo(pg, path):
    with pg.expect_file_chooser() as chooser:
        pg.locator("#photo").click()
    chooser.value.set_files(str(path))


def stroke(pg, canvas_box, points):
    pg.get_by_role("button", name="Brush", exact=True).first.click()
    pg.mouse.move(*points[0])
    pg.mouse.down()
    for p in points[1:]:
        pg.mouse.move(*p, steps=5)
    pg.mouse.up()
    pg.wait_for_timeout(500)


def wait_status(pg, pattern, timeout=180_000):
    pg.wait_for_function(
        "p => new RegExp(p).test(document.querySelector('#status').innerText)", arg=pattern, timeout=timeout
    )
    return pg.locator("#status").inner_text()


def result_size(pg) -> list[int]:
    """The first result's pixel size, once the browser has loaded it (the status says Done a moment before)."""
    pg.wait_for_function(
        "() => { const i = document.querySelector('#results img'); return i && i.complete && i.naturalWidth > 0; }"
    )
    return pg.evaluate(
        "() => { const i = document.querySelector('#results img'); return [i.naturalWidth, i.naturalHeight]; }"
    )


def alert(pg, timeout=30_000) -> str:
    pg.wait_for_selector("#page-alert", timeout=timeout)
    return pg.locator("#page-alert").inner_text()

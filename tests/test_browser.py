"""End to end in a real browser: Playwright drives Debian's headless Chromium against the app served in-process.

The editor's canvas is checked pixel by pixel: where a preset (or an example's preset) is, the screenshot shows the
image under the semi-transparent blue layer; elsewhere the image as it is; outside the image no blue at all. Then
a run is checked to use exactly the mask shown. Screenshots go to tests/artifacts/.
Run with ``pytest -m browser tests/test_browser.py``.
"""

import numpy as np
import pytest
from _browser import (
    ALPHA,
    ARTIFACTS,
    BLUE,
    EXAMPLES,
    MARKS,
    ORANGE,
    assert_layer,
    canvas_shot,
    editor_shot,
    open_page,
    pick_preset,
    preset_at,
    read_rgb,
    upload,
)
from PIL import Image

from repaint.space import pictures

pytestmark = MARKS


@pytest.fixture
def page(browser, url):
    pg = open_page(browser, url)
    yield pg
    pg.close()


@pytest.fixture
def masks_used(monkeypatch):
    """The masks the server read from the editor, in order (the run's own function, recorded)."""
    seen, read = [], pictures.mask_from_editor

    def recording(value):
        seen.append(read(value))
        return seen[-1]

    monkeypatch.setattr(pictures, "mask_from_editor", recording)
    return seen


@pytest.mark.parametrize(
    "label, name",
    [("Left half", "left_half"), ("Every second line", "every_second_line"), ("Centre box", "center_box")],
)
def test_preset_is_drawn_exactly_over_a_non_square_image(page, orange, label, name):
    upload(page, orange)
    pick_preset(page, label)
    image = read_rgb(orange)
    assert_layer(canvas_shot(page, f"preset_{name}.png"), image, preset_at(name, image))


@pytest.mark.parametrize("size", [(32, 32), (512, 512), (1024, 768)])
def test_preset_is_drawn_exactly_at_every_image_size(page, tmp_path, size):
    path = tmp_path / "photo.png"
    Image.new("RGB", size, ORANGE).save(path)
    upload(page, path)
    pick_preset(page, "x2 super-resolution")  # the finest pattern: every second pixel of every second row known
    image = read_rgb(path)
    assert_layer(
        canvas_shot(page, f"preset_sr_{size[0]}x{size[1]}.png"), image, preset_at("super_resolution_2x", image)
    )


def run_and_wait(pg):
    pg.locator("#run").click()
    pg.wait_for_function("() => /Done|Error|rror/.test(document.querySelector('#status').innerText)", timeout=120_000)
    status = pg.locator("#status").inner_text()
    assert status.startswith("Done"), status


def test_example_row_shows_its_preset_and_runs(page, masks_used):
    page.locator("#examples table tbody tr, #examples .gallery-item").first.click()
    page.wait_for_timeout(3000)  # the image, then the preset layer over it
    image = read_rgb(EXAMPLES / "face1.png")
    shot = canvas_shot(page, "example_row.png")
    assert_layer(shot, image, preset_at("every_second_line", image, seed=1))
    run_and_wait(page)  # untouched, the editor's value holds only the layer: the run uses the image shown
    assert (masks_used[-1] == preset_at("every_second_line", image, seed=1)).all()


def test_upload_then_two_presets_run_without_a_stroke(page, orange, masks_used):
    upload(page, orange)
    pick_preset(page, "Left half")
    pick_preset(page, "Top half")  # a second preset replaces the first, with no stroke in between
    image = read_rgb(orange)
    assert_layer(canvas_shot(page, "two_presets.png"), image, preset_at("top_half", image))
    for elem_id, value in (("steps", 5), ("jump", 5), ("resample", 1)):
        box_in = page.locator(f"#{elem_id} input[type=number]")
        box_in.fill(str(value))
        box_in.press("Enter")
    run_and_wait(page)
    assert (masks_used[-1] == preset_at("top_half", image)).all()


def test_paint_and_erase_after_a_preset_is_what_runs(page, orange, masks_used):
    pg = page
    upload(pg, orange)
    pick_preset(pg, "Left half")
    image = read_rgb(orange)
    shot = canvas_shot(pg, "paint_0_preset.png")
    left, top, right, bottom = assert_layer(shot, image, preset_at("left_half", image))
    box = pg.locator("#editor canvas").first.bounding_box()
    scale = (right - left) / image.shape[1]

    def to_screen(x, y):
        return box["x"] + left + x * scale, box["y"] + top + y * scale

    def stroke(tool, y, x0, x1):
        pg.get_by_role("button", name=tool, exact=True).first.click()
        pg.mouse.move(*to_screen(x0, y))
        pg.mouse.down()
        for k in range(1, 11):
            pg.mouse.move(*to_screen(x0 + (x1 - x0) * k / 10, y))
        pg.mouse.up()
        pg.wait_for_timeout(500)

    stroke("Brush", 40, 200, 280)  # on the orange right part
    stroke("Erase", 150, 55, 145)  # across the blue left half of the centre square
    pg.wait_for_timeout(1500)
    shot = canvas_shot(pg, "paint_1_painted_erased.png")
    at = lambda x, y: shot[int(top + y * scale), int(left + x * scale)]  # noqa: E731
    for x in (210, 240, 270):
        assert np.abs(at(x, 40) - ((1 - ALPHA) * np.array(ORANGE) + ALPHA * BLUE)).max() < 30, "stroke not blue"
    for x in (70, 100, 130):
        assert np.abs(at(x, 150) - ORANGE).max() < 30, "erased part still blue"
    shown = preset_at("left_half", image)
    assert np.abs(at(100, 60) - ((1 - ALPHA) * np.array(ORANGE) + ALPHA * BLUE)).max() < 30, "preset lost"

    for elem_id, value in (("steps", 5), ("jump", 5), ("resample", 1)):
        box_in = pg.locator(f"#{elem_id} input[type=number]")
        box_in.fill(str(value))
        box_in.press("Enter")
    pg.locator("#run").click()
    pg.wait_for_function("() => document.querySelector('#status').innerText.includes('Done')", timeout=120_000)
    used = masks_used[-1]
    assert used.shape == shown.shape
    assert used[35:46, 210:271].all()  # the stroke
    assert not used[150, 60:141].any()  # the erased line
    keep = shown.copy()
    keep[100:200] = False  # the preset away from the erased band is all there
    assert used[keep].all()
    pg.screenshot(path=str(ARTIFACTS / "paint_2_result.png"), full_page=True)


def test_phone_width(browser, url, orange):
    pg = open_page(browser, url, width=400, height=900)
    try:
        upload(pg, orange)
        pick_preset(pg, "Left half")
        image = read_rgb(orange)
        shot = canvas_shot(pg, "phone_preset.png")
        assert shot.shape[1] <= 400
        assert_layer(shot, image, preset_at("left_half", image))
        pg.screenshot(path=str(ARTIFACTS / "phone_page.png"), full_page=True)
        width = pg.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 400, f"the page scrolls sideways ({width} px)"
    finally:
        pg.close()


def test_a_profiled_photo_runs_on_the_pixels_the_page_shows_and_the_api_reads(page, monkeypatch):
    """examples/rocket.jpg is Adobe RGB: the browser shows it in sRGB and sends the editor's image in sRGB; the
    API and CLI read the file through repaint.images, which converts the profile the same way. Measured here: the
    editor's image is within 1 level of what the API reads, and 55 levels off the file's raw values."""
    from repaint import images

    seen, read = [], pictures.editor_image
    monkeypatch.setattr(pictures, "editor_image", lambda value: seen.append(read(value)) or seen[-1])
    upload(page, EXAMPLES / "rocket.jpg")
    pick_preset(page, "Left half", before=editor_shot(page))  # a blue sky: wait for the layer to change the canvas
    for elem_id, value in (("steps", 5), ("jump", 5), ("resample", 1)):
        box_in = page.locator(f"#{elem_id} input[type=number]")
        box_in.fill(str(value))
        box_in.press("Enter")
    run_and_wait(page)
    shown = seen[-1][..., :3].astype(int)
    api = np.asarray(images.to_rgb(images.open_image(EXAMPLES / "rocket.jpg"), max_side=None)).astype(int)
    assert shown.shape == api.shape and np.abs(shown - api).max() <= 1
    assert np.abs(shown - read_rgb(EXAMPLES / "rocket.jpg")).max() > 40

"""Issue 21 in a real browser (Playwright, Debian's headless Chromium): a phone photo goes through the page, strokes
outside a preset's square are used, what the browser alone sees (a refused upload, an unreadable file) is said in
the page, Stop says what happened, and (issue 27) the status says when other runs share the model. Run with
``pytest -m browser tests/test_browser_visitor.py``."""

import time

import numpy as np
import pytest
from _browser import (
    ARTIFACTS,
    MARKS,
    alert,
    canvas_shot,
    image_box,
    open_page,
    pick_preset,
    result_size,
    send_photo,
    settings,
    stroke,
    upload,
    wait_status,
)
from _page import photo
from PIL import Image

import app

pytestmark = MARKS


@pytest.fixture
def page(browser, url):  # noqa: F811
    pg = open_page(browser, url, width=1280, height=900)
    yield pg
    pg.close()


def test_a_phone_photo_is_shown_painted_and_filled_at_full_size(page, tmp_path):
    """A 4000x3000 JPEG (12 MP) through the Upload button: shown in the editor, painted, Inpaint at T=10 gives a
    4000x3000 result; the time from click to result is printed (issue 21 asks for about 30 s or less)."""
    path = photo(tmp_path / "phone.jpg")
    assert path.stat().st_size > 2_000_000  # a 12 MP phone JPEG's size
    send_photo(page, path)
    page.wait_for_function("() => !document.querySelector('#editor').innerText.includes('Upload an image')")
    page.wait_for_timeout(2000)
    shot = canvas_shot(page, "phone_photo_editor.png")
    left, top, right, bottom = image_box(shot)
    assert abs((right - left) / (bottom - top) - 4 / 3) < 0.03  # the photo's shape
    mid = (top + bottom) // 2
    red = np.median(shot[mid - 5 : mid + 5, left + 5 : left + 15], axis=(0, 1))
    green = np.median(shot[mid - 5 : mid + 5, right - 15 : right - 5], axis=(0, 1))
    assert red[0] > 150 and red[1] < 80 and green[1] > 150 and green[0] < 80, (red, green)  # the photo's colours
    box = page.locator("#editor canvas").first.bounding_box()
    y = box["y"] + (top + bottom) / 2
    stroke(page, box, [(box["x"] + left + (right - left) * f, y) for f in (0.3, 0.5, 0.7)])
    settings(page, steps=10)
    start = time.perf_counter()
    page.locator("#run").click()
    status = wait_status(page, "Done|rror")
    seconds = time.perf_counter() - start
    print(f"\nphone photo 4000x3000, T=10 j=10 r=10, bundled: {seconds:.1f} s from click to result")
    assert status.startswith("Done"), status
    assert result_size(page) == [4000, 3000]
    page.screenshot(path=str(ARTIFACTS / "phone_photo_done.png"), full_page=True)


def test_a_file_over_the_limit_is_said_in_the_page(page, tmp_path):
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)).save(big, compress_level=1)
    assert big.stat().st_size > 32 * 2**20
    send_photo(page, big)
    text = alert(page)
    assert "too large" in text and "32 MB" in text
    banner = page.locator("#page-alert").bounding_box()
    assert banner["y"] <= 1 and banner["width"] >= 1200  # across the top of the first screen


def test_an_upload_refused_by_the_server_is_said_in_the_page(page):
    """The editor's PNG sent at a run passes no size check in the browser: the server's HTTP 413 is said. Sent here
    by XHR, which no fetch wrapper sees (gradio's client binds fetch before the page's script runs)."""
    status = page.evaluate("""() => new Promise((done) => {
        const form = new FormData();
        form.append("files", new Blob([new Uint8Array(33 * 2 ** 20)], {type: "image/png"}), "editor.png");
        const xhr = new XMLHttpRequest();
        xhr.open("POST", "gradio_api/upload");
        xhr.onloadend = () => done(xhr.status);
        xhr.send(form);
    })""")
    assert status == 413
    text = alert(page)
    assert "too large" in text and "32 MB" in text and app.PHOTO_BUTTON in text


def test_an_unreadable_file_dropped_on_the_editor_is_said_in_the_page(page, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    page.wait_for_timeout(1000)
    page.locator("#editor input[type=file]").first.set_input_files(str(bad))
    assert '"broken.png" could not be read as an image' in alert(page)


def test_an_unreadable_photo_is_said_in_the_page(page, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    send_photo(page, bad)
    page.wait_for_function(
        "() => document.body.innerText.includes('The photo could not be read as an image')", timeout=30_000
    )


def test_a_stroke_outside_a_presets_square_is_used(page, orange):  # noqa: F811
    upload(page, orange)
    pick_preset(page, "Left half")
    shot = canvas_shot(page, "outside_square.png")
    left, top, right, bottom = image_box(shot)
    box = page.locator("#editor canvas").first.bounding_box()
    scale = (right - left) / 300
    at = lambda x, y: (box["x"] + left + x * scale, box["y"] + top + y * scale)  # noqa: E731
    stroke(page, box, [at(10, 100), at(30, 100), at(40, 100)])  # left of the centred 200x200 square
    settings(page, steps=5, jump=5, resample=1)
    page.locator("#run").click()
    page.wait_for_function("() => document.body.innerText.includes('You painted outside')", timeout=60_000)
    assert wait_status(page, "Done|rror").startswith("Done")
    assert result_size(page) == [300, 200]  # the photo's size: the stroke was used


def test_stop_says_what_happened(page, orange):  # noqa: F811
    page.locator("#stop").click()
    assert wait_status(page, "Nothing to stop", 10_000)
    upload(page, orange)
    pick_preset(page, "Left half")
    settings(page, steps=1000, jump=10, resample=10)
    page.locator("#run").click()
    wait_status(page, "Step ", 60_000)
    page.locator("#stop").click()
    status = wait_status(page, "Stopped as you asked", 30_000)
    assert "model calls" in status
    page.wait_for_timeout(1000)
    assert page.locator(".toast-title", has_text="Error").count() == 0
    assert wait_status(page, "Stopped as you asked", 1000)  # it stays


def test_the_status_says_how_many_other_runs_share_the_model(page, url, orange):  # noqa: F811
    """Issue 27: while another visitor's run is under way, the page's step status says that it shares the model."""
    from conftest import wait_until
    from gradio_client import Client, handle_file

    other = Client(url, verbose=False).submit(
        handle_file(str(orange)),
        "left_half",
        api_name="/inpaint",
        model="bundled",
        steps=250,
        jump_length=10,
        jump_n_sample=10,
        seed=0,
        num_samples=1,
        compare=False,
    )
    try:
        assert wait_until(lambda: app.SERVICE.runner.sharing("bundled")[0] == 1, 60), "the other run did not start"
        upload(page, orange)
        pick_preset(page, "Left half")
        settings(page, steps=50, jump=5, resample=5)
        page.locator("#run").click()
        status = wait_status(page, "^Step |Done|rror", 60_000)
        assert status.startswith("Step ") and status.endswith(" 1 other run shares the model now."), status
    finally:
        other.cancel()
    assert wait_status(page, "Done|rror").startswith("Done")


def test_compare_with_r1_is_refused_in_the_page(page, orange):  # noqa: F811
    upload(page, orange)
    pick_preset(page, "Left half")
    settings(page, steps=5, jump=5, resample=1)
    page.locator("#compare input").check()
    page.locator("#run").click()
    page.wait_for_function("() => document.body.innerText.includes('Compare needs r')", timeout=30_000)


def test_an_unloadable_model_sends_the_chooser_back(page, monkeypatch):
    import repaint

    def fail(name, *a, **k):
        raise repaint.ModelLoadError("the Hub could not be reached")

    monkeypatch.setattr(repaint, "load", fail)
    monkeypatch.delitem(app.SERVICE.cache.models, "cifar10", raising=False)
    page.locator("#model input").fill("cifar10")
    page.locator("#model input").press("Enter")
    page.wait_for_function("() => document.body.innerText.includes('Back to bundled')", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#model input').value.startsWith('bundled')")
    assert "model calls" in page.locator("#estimate").inner_text()
    assert "Error" not in page.locator("#estimate").inner_text()


# ------------------------------------------------------------------------------------------- the page's layout
def visible(pg, selector) -> bool:
    return pg.locator(selector).first.is_visible()


def sample_run(pg, samples=2):
    """A face with its top half to fill (filled pixels on both sides of the slider), T=20, bundled: about 5 s."""
    upload(pg, app.EXAMPLES_DIR / "face1.png")
    pick_preset(pg, "Top half")
    settings(pg, steps=20, jump=5, resample=2, samples=samples)
    pg.locator("#run").click()
    assert wait_status(pg, "Done|rror").startswith("Done")
    pg.wait_for_selector("#slider img")
    pg.wait_for_timeout(1500)


def slider_pixels(pg) -> np.ndarray:
    return np.asarray(Image.open(__import__("io").BytesIO(pg.locator("#slider").screenshot())).convert("RGB"))


def test_results_appear_after_a_run_and_the_examples_are_in_the_first_screen(page):
    page.screenshot(path=str(ARTIFACTS / "page_1280_before.png"), full_page=True)
    assert page.locator("#examples").bounding_box()["y"] < 1000, "the Examples are pushed down"
    fits = page.evaluate(
        "() => { const t = document.querySelector('#examples table'); "
        "return t.getBoundingClientRect().right <= document.querySelector('#examples')"
        ".getBoundingClientRect().right + 1; }"
    )
    assert fits, "the Examples table is wider than the page (its last column cut off)"
    for panel in ("#preview", "#results", "#side", "#slider", "#animation", "#downloads"):
        assert not visible(page, panel), f"{panel} shown, empty, before a run"
    sample_run(page)
    for panel in ("#preview", "#results", "#side", "#slider", "#animation", "#downloads"):
        assert visible(page, panel), f"{panel} missing after a run"
    page.screenshot(path=str(ARTIFACTS / "page_1280_after.png"), full_page=True)


def test_the_slider_is_labelled_and_shows_the_sample_chosen(page):
    sample_run(page)
    box = page.locator("#slider").bounding_box()
    for text, left in (("before", True), ("after", False)):
        label = page.locator("#slider-labels", has_text=text).get_by_text(text).bounding_box()
        assert label and (label["x"] + label["width"] / 2 < box["x"] + box["width"] / 2) == left, (text, label)
        assert box["y"] - 60 < label["y"] < box["y"], "not right above the slider"
    first = slider_pixels(page)
    page.locator("#sample").get_by_text("2 (seed 1)").click()
    page.wait_for_timeout(2000)
    second = slider_pixels(page)
    assert first.shape == second.shape and np.abs(first.astype(int) - second).max(axis=2).mean() > 2, "same picture"


def test_a_phone_reads_the_downloads_and_does_not_scroll_sideways(browser, url):  # noqa: F811
    pg = open_page(browser, url, width=400, height=850)
    try:
        pg.screenshot(path=str(ARTIFACTS / "page_400_before.png"), full_page=True)
        sample_run(pg)
        pg.screenshot(path=str(ARTIFACTS / "page_400_after.png"), full_page=True)
        names = pg.evaluate("""() => [...document.querySelectorAll('#downloads td.filename')].map(td => {
            const r = td.getBoundingClientRect();
            return [td.innerText.replace(/\\s/g, ''), td.scrollWidth <= td.clientWidth, r.width]; })""")
        assert names and all(name.endswith((".png", ".gif")) and fits and w > 150 for name, fits, w in names), names
        one_line = pg.evaluate("""() => [...document.querySelectorAll('#downloads td.filename')].map(td => {
            const [s, e] = [td.querySelector('.stem'), td.querySelector('.ext')].map(x => x.getBoundingClientRect());
            return s.height <= 1.2 * e.height && Math.abs(s.bottom - e.bottom) < 2 && e.left >= s.right - 1; })""")
        assert all(one_line), "a file name (repaint_bundled_n2_seed0.png) is broken over lines at 400 px"
        for panel in ("#preview", "#results"):  # one above the other, each the page's width (not 160 px each)
            assert pg.locator(panel).bounding_box()["width"] > 300, panel
        assert pg.evaluate("() => document.documentElement.scrollWidth") <= 400, "the page scrolls sideways"
    finally:
        pg.close()


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_empty_editor_shows_no_square_and_no_zoom(browser, url, theme):  # noqa: F811
    pg = open_page(browser, f"{url}?__theme={theme}", width=1280, height=900)
    try:
        pg.wait_for_timeout(1500)
        word = pg.locator("#editor").get_by_text("or", exact=True)
        box = word.bounding_box()
        shot = np.asarray(
            Image.open(
                __import__("io").BytesIO(
                    pg.screenshot(
                        clip={
                            "x": box["x"] - 10,
                            "y": box["y"] - 10,
                            "width": box["width"] + 20,
                            "height": box["height"] + 20,
                        }
                    )
                )
            ).convert("RGB")
        ).astype(int)
        background = np.median(shot.reshape(-1, 3), axis=0)  # the editor's own fill around the word
        if theme == "dark":
            assert background.max() < 80, background
            assert (shot.min(axis=2) > 200).mean() < 0.02, "a white patch around the 'or'"
        zoom = pg.locator("#editor").get_by_text("1000%")
        assert not any(zoom.nth(i).is_visible() for i in range(zoom.count())), "the empty editor shows 1000%"
        pg.screenshot(path=str(ARTIFACTS / f"empty_editor_{theme}.png"))
    finally:
        pg.close()

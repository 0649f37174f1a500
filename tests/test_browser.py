"""End to end in a real browser: Playwright drives Debian's headless Chromium against the app served in-process.

Upload an image, paint a stroke with the brush and inpaint it, then pick a preset and inpaint again with small
settings; screenshots go to tests/artifacts/. Run with ``pytest -m browser tests/test_browser.py``.
"""

import socket
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def url():
    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                    **app.LAUNCH_KWARGS)
    try:
        yield app.demo.local_url
    finally:
        app.demo.close()


@pytest.fixture(scope="module")
def page(url):
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1400, "height": 1300})
        pg.set_default_timeout(60_000)
        pg.goto(url)
        pg.wait_for_selector("#editor")
        yield pg
        browser.close()


def set_slider(pg, elem_id: str, value: int):
    box = pg.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def run_and_wait(pg, shot: str):
    """Click Inpaint and wait for this run's results (a new gallery image: every run writes a new folder)."""
    old = pg.evaluate("() => { const i = document.querySelector('#results img'); return i ? i.src : ''; }")
    old_side = pg.evaluate("() => { const i = document.querySelector('#side img'); return i ? i.src : ''; }")
    pg.locator("#run").click()
    pg.wait_for_function(
        """old => { const i = document.querySelector('#results img');
                    const status = document.querySelector('#status').innerText;
                    return i && i.src && i.src !== old && status.includes('Done'); }""",
        arg=old, timeout=120_000)
    img = pg.locator("#results img").first
    img.wait_for(state="visible")
    pg.wait_for_function(
        """old => { const s = document.querySelector('#side img');
                    return s && s.src !== old && Array.from(document.images).every(i => i.complete); }""",
        arg=old_side)
    pg.wait_for_timeout(500)
    pg.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    return img


def test_draw_and_preset_inpaint(page):
    pg = page
    with pg.expect_file_chooser() as chooser:
        pg.get_by_label("Click to upload or drop files").first.click()
    chooser.value.set_files(str(Path(__file__).resolve().parents[1] / "examples" / "face1.png"))
    canvas = pg.locator("#editor canvas").first
    canvas.wait_for(state="visible")
    pg.wait_for_timeout(1000)

    pg.get_by_role("button", name="Brush", exact=True).first.click()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    pg.mouse.move(cx - 80, cy - 20)
    pg.mouse.down()
    for k in range(1, 11):
        pg.mouse.move(cx - 80 + 16 * k, cy - 20 + 4 * k)
    pg.mouse.up()
    pg.wait_for_timeout(500)
    pg.screenshot(path=str(ARTIFACTS / "1_drawn.png"))

    for elem_id, value in (("steps", 10), ("jump", 5), ("resample", 2)):
        set_slider(pg, elem_id, value)
    pg.wait_for_function("() => document.querySelector('#estimate').innerText.includes('model calls')")
    img = run_and_wait(pg, "2_drawn_result.png")
    assert img.get_attribute("src")
    status = pg.locator("#status").inner_text()
    assert "Done" in status, status

    pg.locator("#preset input").click()
    pg.get_by_role("option", name="Centre box").click()
    pg.wait_for_timeout(1500)  # the preset layer is put into the editor
    pg.screenshot(path=str(ARTIFACTS / "3_preset.png"))
    pg.locator("#compare input").check()
    img = run_and_wait(pg, "4_preset_compare_result.png")
    assert pg.locator("#results img").count() >= 2  # n=2 and n=1
    assert pg.locator("#animation img").count() == 1

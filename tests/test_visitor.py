"""What a visitor meets (issue 21), without a browser: phone photos, strokes outside a preset's square, Compare with
r=1, Stop, bad API values, a model that cannot be loaded. Through the handlers and through gradio_client."""

import io

import numpy as np
import pytest
from _page import photo, ui_request
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
import repaint
from repaint import space
from repaint.space import pictures

SMALL = dict(model="bundled", steps=10, jump_length=5, jump_n_sample=2, seed=3, num_samples=1)
pytestmark = pytest.mark.usefixtures("service")  # each test its own Service (conftest.py)


def last(gen):
    """(status, first result as an array or None): the handler's last output, its result read at "Done" before the
    files are deleted (Gradio copies them at each yield; closing the handler deletes them)."""
    for out in gen:
        if str(out["status"]).startswith("Done"):
            return out["status"], np.asarray(Image.open(out["downloads"][0]).convert("RGB"))
    return out["status"], None


def run_page(value, preset, *, original=None, shown=None, compare=False, r=2, session="t", **kw):
    return app.run(
        value,
        preset,
        "bundled",
        10,
        5,
        r,
        3,
        False,
        1,
        compare,
        False,
        ui_request(session),
        shown=shown,
        original=original,
        **kw,
    )


# ------------------------------------------------------------------------------------------- phone photos
def test_a_phone_photo_is_shown_as_a_small_copy_and_runs_at_full_size(tmp_path):
    path = photo(tmp_path / "phone.jpg", exif_rotate=True)
    value, original = app.load_photo(str(path))
    shown = value["background"]
    assert max(shown.shape[:2]) == pictures.DISPLAY_SIDE and shown.shape[:2] == (800, 600)  # upright: portrait
    assert original["size"] == (3000, 4000)
    # the visitor paints a box on the copy; the run reads the original and the mask scaled up to it
    layer = np.zeros((*shown.shape[:2], 4), np.uint8)
    layer[400:600, 300:500] = app.pictures.MASK_RGBA
    editor = {"background": shown, "layers": [layer], "composite": None}
    status, result = last(run_page(editor, app.DRAW, original=original))
    assert status.startswith("Done"), status
    assert result.shape == (4000, 3000, 3)  # the photo's own size
    full = np.asarray(repaint.images.to_rgb(repaint.images.open_image(path), max_side=None))
    m = np.asarray(Image.fromarray(layer[..., 3] > 0).resize((3000, 4000), Image.Resampling.NEAREST))
    assert (result[~m] == full[~m]).all()  # every pixel outside the mask is the original's, at full resolution
    assert (np.abs(result[m].astype(int) - full[m]).max(axis=1) > 0).mean() > 0.5  # the box was filled


def test_another_image_in_the_editor_is_not_swapped_for_the_photo(tmp_path, face):
    _, original = app.load_photo(str(photo(tmp_path / "phone.jpg", (800, 600))))
    bg = np.asarray(Image.open(face).convert("RGB"))
    mask = np.zeros(bg.shape[:2], bool)
    image, same = pictures.full_size_input(bg, mask, original)
    assert image is bg and same is mask


def test_an_unreadable_or_huge_photo_is_a_clear_error(tmp_path):
    import gradio as gr

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(gr.Error, match="photo could not be read as an image"):
        app.load_photo(str(bad))
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 6000)).save(huge)  # 54 MP
    with pytest.raises(gr.Error, match=r"photo is 9000x6000 \(54 megapixels\).*at most 50 megapixels"):
        app.load_photo(str(huge))


# ------------------------------------------------------------------------------------------- strokes off the square
def test_strokes_outside_a_presets_square_are_used(face):
    wide = np.full((64, 128, 3), 200, np.uint8)
    wide[:, :, 1] = np.arange(128, dtype=np.uint8)[None, :]  # a gradient: the fill differs from it
    value = {"background": wide, "layers": []}
    layer = app.editor_with_preset(value, "left_half", "bundled", 0)["layers"][0].copy()
    layer[20:40, 2:20] = app.pictures.MASK_RGBA  # a stroke in the left margin, outside the centred 64x64 square
    editor = {"background": wide, "layers": [layer], "composite": None}
    status, result = last(run_page(editor, "left_half"))
    assert status.startswith("Done"), status
    assert result.shape == (64, 128, 3)  # the photo's size, not the model's square
    assert (result[20:40, 2:20] != wide[20:40, 2:20]).any(axis=2).mean() > 0.5  # the stroke was filled
    untouched = np.ones((64, 128), bool)
    untouched[20:40, 2:20] = False
    untouched[:, 32:64] = False  # the preset's half of the square
    assert (result[untouched] == wide[untouched]).all()


def test_a_preset_alone_still_gives_the_models_square(face):
    bg = np.asarray(Image.open(face).convert("RGB"))
    value = app.editor_with_preset({"background": bg, "layers": []}, "left_half", "bundled", 0)
    status, result = last(run_page({**value, "background": bg}, "left_half"))
    assert result.shape[:2] == (32, 32), status


def test_comparing_two_samples_labels_the_slider_n1_nr_and_offers_each_sample(face):
    """Compare, 2 samples, r=2: the slider's sides say n=1 and n=2, the chooser offers both samples, and each
    sample's pair is that sample's n=1 and n=2 results (the files the run wrote, as the gallery lists them)."""
    bg = np.asarray(Image.open(face).convert("RGB"))
    value = {**app.editor_with_preset({"background": bg, "layers": []}, "left_half", "bundled", 0), "background": bg}
    for out in app.run(value, "left_half", "bundled", 10, 5, 2, 3, False, 2, True, False, ui_request("cmp")):
        if str(out["status"]).startswith("Done"):
            gallery, labels, chooser, kept = out["gallery"], out["slider_labels"], out["sample"], out["pairs"]
            files = {caption: np.asarray(Image.open(path).convert("RGB")) for path, caption in gallery}
            break
    assert "n=1" in labels and "n=2" in labels and "before" not in labels
    assert chooser["visible"] and [v for _, v in chooser["choices"]] == [0, 1] and "seed 4" in chooser["choices"][1][0]
    pairs = [app.page.show_sample(i, kept) for i in range(2)]  # what the chooser puts in the slider
    assert app.page.show_sample(2, kept) == app.page.show_sample(None, kept) == app.gr.skip()
    for i, (plain, resampled) in enumerate(pairs):
        n1 = next(a for c, a in files.items() if "n=1" in c and f"seed {3 + i}" in c)
        n2 = next(a for c, a in files.items() if "n=2" in c and f"seed {3 + i}" in c)
        assert (np.asarray(plain)[..., :3] == n1).all() and (np.asarray(resampled)[..., :3] == n2).all()
    assert not (np.asarray(pairs[0][1]) == np.asarray(pairs[1][1])).all()  # two samples, two pictures


# ------------------------------------------------------------------------------------------- compare with r = 1
def test_compare_with_r1_is_refused_in_the_page_and_the_api(client, face):
    import gradio as gr

    bg = np.asarray(Image.open(face).convert("RGB"))
    value = {**app.editor_with_preset({"background": bg, "layers": []}, "left_half", "bundled", 0), "background": bg}
    with pytest.raises(gr.Error, match="Compare needs r"):
        last(run_page(value, "left_half", compare=True, r=1))
    with pytest.raises(AppError, match="Compare needs r"):
        client.predict(
            handle_file(str(face)), "left_half", api_name="/inpaint", compare=True, **{**SMALL, "jump_n_sample": 1}
        )


# ------------------------------------------------------------------------------------------- Stop
def test_stop_with_nothing_running_says_so():
    assert app.stop_run(ui_request("idle")) == "Nothing to stop: no run is in progress."


def test_a_stop_ends_the_run_with_a_status_not_an_error(face):
    request = ui_request("test-stop-status")
    bg = np.asarray(Image.open(face).convert("RGB"))
    value = {**app.editor_with_preset({"background": bg, "layers": []}, "left_half", "bundled", 0), "background": bg}
    gen = app.run(value, "left_half", "bundled", 200, 10, 10, 0, False, 1, False, False, request)
    next(gen)
    next(gen)
    assert app.stop_run(request).startswith("Stopping")
    outs = list(gen)  # no gr.Error
    status = outs[-1]["status"]
    assert status.startswith("Stopped as you asked, after ") and "of 1,910 model calls" in status
    assert app.stop_run(request) == "Nothing to stop: no run is in progress."  # and the flag is gone


# ------------------------------------------------------------------------------------------- bad API values
def test_corrupt_image_and_non_number_settings_get_the_apps_message(client, face, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    good = io.BytesIO()
    Image.open(face).save(good, format="PNG")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG signature, then noise
    corrupt.write_bytes(good.getvalue()[:200])  # a cut PNG
    for path in (corrupt, garbage):
        with pytest.raises(AppError, match="(not a readable image file|could not be read as an image)"):
            client.predict(handle_file(str(path)), "left_half", api_name="/inpaint", compare=False, **SMALL)
    for name in ("steps", "jump_n_sample", "seed"):
        with pytest.raises(AppError, match=f"{name} must be a whole number, got 'abc'"):
            client.predict(
                handle_file(str(face)), "left_half", api_name="/inpaint", compare=False, **{**SMALL, name: "abc"}
            )
    out = client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", compare=False, **SMALL)
    assert len(out) == 1  # and the server goes on serving


# ------------------------------------------------------------------------------------------- a model that fails
def test_a_model_that_cannot_be_loaded_sends_the_chooser_back(monkeypatch):
    def fail(name, *a, **k):
        raise repaint.ModelLoadError("the Hub could not be reached")

    warnings = []
    monkeypatch.setattr(repaint, "load", fail)
    monkeypatch.setattr(app.gr, "Warning", warnings.append)
    changed = app.on_model_change("cifar10", 10, 5, 2, 1, False)
    estimate, chooser = changed["estimate"], changed["model"]
    assert chooser == "bundled"
    assert "model calls" in estimate and "Error" not in estimate
    assert "Could not load model 'cifar10'" in warnings[0] and warnings[0].endswith("Back to bundled.")
    assert app.on_model_change("bundled", 10, 5, 2, 1, False)["model"] == "bundled"


def test_serving_refuses_compare_r1_with_the_reason():
    with pytest.raises(space.ServeError, match="both results would be the same"):
        space.check_compare(repaint.Settings(jump_n_sample=1, compare=True))
    space.check_compare(repaint.Settings(jump_n_sample=1, compare=False))
    space.check_compare(repaint.Settings(jump_n_sample=2, compare=True))

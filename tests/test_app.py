"""The Space (app.py): its helpers, and the ``inpaint`` API endpoint through gradio_client on a live server.

Runs on the bundled model (tests/conftest.py puts a tiny random model in its place while the trained weights
are absent) with small settings, so the whole file takes well under a minute on a CPU.
"""

import socket

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
import repaint

SMALL = dict(model="bundled", steps=10, jump_length=5, jump_n_sample=2, seed=3, num_samples=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client():
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                    **app.LAUNCH_KWARGS)
    try:
        yield Client(app.demo.local_url, verbose=False)
    finally:
        app.demo.close()


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "face.png"
    Image.open(app.EXAMPLES_DIR / "face1.png").save(path)
    return path


def paths(result):
    return [r["image"] if isinstance(r, dict) else r[0] for r in result]


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ------------------------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("size", [(256, 256), (300, 200), (37, 53), (32, 32)])
@pytest.mark.parametrize("name", ["every_second_line", "super_resolution_2x", "left_half", "thin", "expand"])
def test_preset_layer_maps_back_to_the_model_preset_exactly(size, name):
    w, h = size
    bg = np.zeros((h, w, 4), np.uint8)
    value = app.editor_with_preset({"background": bg, "layers": []}, name, "bundled", 5)
    layer = value["layers"][0]
    assert layer.shape == (h, w, 4)  # exactly the background's size
    mask = app.mask_from_editor(value)
    assert mask.shape == (h, w)
    _, fitted = app.get_model("bundled").prepare(bg[..., :3].copy(), mask)
    assert (fitted == repaint.masks.PRESETS[name](32, 32, 5)).all()


def test_mask_from_editor_reads_any_paint_in_any_layer():
    bg = np.full((40, 60, 4), 255, np.uint8)
    a = np.zeros((40, 60, 4), np.uint8)
    a[5, 7, 3] = 1  # faint antialiased edge counts
    b = np.zeros((40, 60, 4), np.uint8)
    b[10:12, 20:30] = (30, 90, 255, 128)  # the semi-transparent brush
    b[30, 30, :3] = 255  # colour without alpha is no paint
    m = app.mask_from_editor({"background": bg, "layers": [a, b], "composite": None})
    assert m.shape == (40, 60) and m.sum() == 1 + 20 and m[5, 7] and m[10:12, 20:30].all() and not m[30, 30]
    assert not app.mask_from_editor({"background": bg, "layers": []}).any()
    small = np.zeros((20, 30, 4), np.uint8)  # a layer of another size is scaled to the background
    small[:10, :15, 3] = 255
    assert app.mask_from_editor({"background": bg, "layers": [small]})[:20, :30].all()


def test_editor_without_image_is_an_error():
    import gradio as gr

    for value in (None, {"background": None, "layers": []}):
        with pytest.raises(gr.Error, match="No image"):
            app.mask_from_editor(value)


def test_draw_clears_and_refresh_keeps_a_drawing():
    bg = np.zeros((64, 64, 4), np.uint8)
    drawn = np.zeros((64, 64, 4), np.uint8)
    drawn[3, 3, 3] = 255
    v = {"background": bg, "layers": [drawn]}
    assert not app.editor_with_preset(v, app.DRAW, "bundled", 0)["layers"][0].any()
    assert app.refresh_preset(v, app.DRAW, "bundled", 0) == {"__type__": "update"}  # gr.skip()


def test_duration_grows_with_work_and_is_capped():
    d_small = app.gpu_duration("bundled", None, None, 10, 5, 2, 0, 1, False, False)
    d_big = app.gpu_duration("bundled", None, None, 250, 10, 10, 0, 4, True, False)
    assert app.GPU_MARGIN_S <= d_small < d_big <= app.GPU_CAP_S
    huge = app.gpu_duration("bundled", None, None, 1000, 1, 20, 0, 16, True, False)
    assert huge == app.GPU_CAP_S
    calls = app.model_calls(250, 10, 10)
    assert calls == app.get_model("bundled").model_calls(250, 10, 10)
    assert f"{calls:,} model calls" in app.estimate_text("bundled", 250, 10, 10, 1, False)


def test_request_that_cannot_fit_the_gpu_cap_is_refused(monkeypatch):
    import gradio as gr

    monkeypatch.setattr(app, "HAS_GPU", True)
    monkeypatch.setitem(app._call_s, "bundled", 1.0)
    with pytest.raises(gr.Error, match="smaller|fewer"):
        app.check_fits("bundled", 250, 10, 10, 1, False)
    app.check_fits("bundled", 10, 5, 2, 1, False)


def test_unknown_model_is_refused():
    import gradio as gr

    with pytest.raises(gr.Error, match="unknown model"):
        app.get_model("../../etc")


def test_failed_load_is_an_error_and_other_models_still_work(monkeypatch):
    import gradio as gr

    def fail(name, *a, **k):
        raise repaint.ModelLoadError(f"model {name!r}: the Hub could not be reached")

    monkeypatch.setattr(repaint, "load", fail)
    monkeypatch.delitem(app._models, "cifar10", raising=False)
    with pytest.raises(gr.Error, match="Could not load model 'cifar10'"):
        app.get_model("cifar10")
    assert app.get_model("bundled") is app._models["bundled"]


def test_default_falls_back_to_bundled_with_a_notice(monkeypatch):
    def fail(name, *a, **k):
        raise repaint.ModelLoadError("the Hub could not be reached")

    monkeypatch.setattr(repaint, "load", fail)
    monkeypatch.setattr(app, "HAS_GPU", True)
    monkeypatch.delenv(app.MODEL_ENV, raising=False)
    monkeypatch.delitem(app._models, "celebahq", raising=False)
    name, notice = app.pick_default_model()
    assert name == "bundled" and "bundled" in notice and "Hub" in notice


def test_ui_handler_streams_previews_then_results(face):
    class Request:
        session_hash = "test-ui"

    bg = np.asarray(Image.open(face).convert("RGBA"))
    value = app.editor_with_preset({"background": bg, "layers": []}, "left_half", "bundled", 0)
    outs = list(app.run(value, "bundled", 20, 5, 2, 7, False, 2, True, False, Request()))
    previews = [o[1] for o in outs if isinstance(o[1], np.ndarray)]
    assert len(previews) >= 5  # streamed during the run
    status, _, gallery, _, slider, gif, files, seed = outs[-1]
    assert "Done" in status and seed == 7 and len(gallery) == 4  # 2 resampled + 2 plain
    assert all(f.endswith((".png", ".gif")) for f in files)
    frames = Image.open(gif).n_frames
    assert 5 <= frames <= app.ANIMATION_FRAMES + 1
    known = ~repaint.masks.PRESETS["left_half"](32, 32, 0)
    rgb, _ = app.get_model("bundled").prepare(str(face), "left_half")
    for path, _ in gallery:
        assert (read(path)[known] == rgb[known]).all()


def test_stop_cancels_within_one_step(face):
    class Request:
        session_hash = "test-stop"

    bg = np.asarray(Image.open(face).convert("RGBA"))
    value = app.editor_with_preset({"background": bg, "layers": []}, "left_half", "bundled", 0)
    gen = app.run(value, "bundled", 200, 10, 10, 0, False, 1, False, False, Request())
    next(gen)  # started
    next(gen)  # first preview
    app.stop_run(Request())
    import gradio as gr

    with pytest.raises(gr.Error, match="Stopped"):
        for _ in gen:
            pass


# ------------------------------------------------------------------------------------------- live API
def test_api_with_a_preset(client, face):
    out = client.predict(handle_file(str(face)), "every_second_line", api_name="/inpaint", compare=False,
                         **{k: v for k, v in SMALL.items()})
    (path,) = paths(out)
    res = read(path)
    assert res.shape == (32, 32, 3)
    rgb, _ = app.get_model("bundled").prepare(str(face), "every_second_line")
    known = ~repaint.masks.PRESETS["every_second_line"](32, 32, 0)
    assert (res[known] == rgb[known]).all()  # PNG end to end: known pixels exact


def test_api_with_a_drawn_mask_file(client, face, tmp_path):
    mask = np.zeros((256, 256, 4), np.uint8)
    mask[64:192, 64:192] = (30, 90, 255, 128)  # painted like the editor's brush
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    out = client.predict(handle_file(str(face)), handle_file(str(mask_path)), api_name="/inpaint", compare=False,
                         **{**SMALL, "num_samples": 2})
    assert len(paths(out)) == 2
    res = read(paths(out)[0])
    rgb, m = app.get_model("bundled").prepare(str(face), str(mask_path))
    assert m.sum() == 16 * 16 and (res[~m] == rgb[~m]).all()


def test_api_compare(client, face):
    out = client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", compare=True, **SMALL)
    caps = [r["caption"] for r in out]
    assert len(out) == 2 and caps[0].startswith("n=2") and caps[1].startswith("n=1")
    same = app.get_model("bundled").compare(str(face), "left_half", steps=10, jump_length=5, jump_n_sample=2,
                                            seed=3)
    assert (read(paths(out)[0]) == np.asarray(same[0][0])).all()
    assert (read(paths(out)[1]) == np.asarray(same[1][0])).all()


def test_api_bad_inputs_are_clear_errors(client, face, tmp_path):
    empty = tmp_path / "empty.png"
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(empty)
    cases = [
        (dict(image=None, mask="left_half"), "No image"),
        (dict(image=handle_file(str(face)), mask=handle_file(str(empty))), "Empty mask"),
        (dict(image=handle_file(str(face)), mask="left_half", model="no_such_model"), "unknown model"),
        (dict(image=handle_file(str(face)), mask="zigzag"), "unknown mask preset"),
        (dict(image=handle_file(str(face)), mask="left_half", steps=5, jump_length=9), "jump_length"),
    ]
    for kwargs, message in cases:
        args = {**SMALL, "compare": False, **kwargs}
        with pytest.raises(AppError, match=message):
            client.predict(args.pop("image"), args.pop("mask"), api_name="/inpaint", **args)


def test_examples_exist_and_load_their_preset_into_the_editor():
    rows = app.examples_rows()
    assert len(rows) >= 4
    for image, preset, model, *_ in rows:
        bg = np.asarray(Image.open(image).convert("RGBA"))
        value = app.load_example({"background": bg, "layers": [], "composite": None}, preset, model, 10, 5, 2,
                                 0, 1, False)
        assert value["layers"][0].shape == bg.shape and app.mask_from_editor(value).any()
    assert (app.EXAMPLES_DIR / "LICENSES.md").is_file()

"""The Space (app.py): its helpers, and the ``inpaint`` API endpoint through gradio_client on a live server.

Runs on the bundled model with small settings, so the whole file takes well under a minute on a CPU.
"""

from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
from _hub_repos import COMMIT, ddpm_repo, write_hub_cache
from _page import left_half_editor, ui_request
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
import repaint
from repaint import space
from repaint.sampler import call_ticks
from repaint.space import ServeError, files, pictures

SMALL = dict(model="bundled", steps=10, jump_length=5, jump_n_sample=2, seed=3, num_samples=1)
pytestmark = pytest.mark.usefixtures("service")  # each test its own Service (conftest.py)


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
    assert value["background"] is None  # the layer only: the browser keeps its image (see editor_with_preset)
    value["background"] = bg
    layer = value["layers"][0]
    assert layer.shape == (h, w, 4)  # exactly the background's size
    mask = pictures.mask_from_editor(value)
    assert mask.shape == (h, w)
    _, fitted = app.SERVICE.cache.get_model("bundled").prepare(bg[..., :3].copy(), mask)
    assert (fitted == repaint.masks.PRESETS[name](32, 32, 5)).all()


def test_draw_clears_and_refresh_keeps_a_drawing():
    bg = np.zeros((64, 64, 4), np.uint8)
    drawn = np.zeros((64, 64, 4), np.uint8)
    drawn[3, 3, 3] = 255
    v = {"background": bg, "layers": [drawn]}
    assert not app.editor_with_preset(v, app.DRAW, "bundled", 0)["layers"][0].any()
    kept = files.hold(bg, pictures.background_key(v))
    assert app.sync_preset(v, "left_half", "bundled", 0, kept) == (app.gr.skip(), app.gr.skip())  # same image: kept
    assert app.sync_preset(v, app.DRAW, "bundled", 0, None)[0] == {"__type__": "update"}  # drawing: kept
    other = {"background": np.full((64, 64, 4), 200, np.uint8), "layers": [drawn]}
    value, shown = app.sync_preset(other, "left_half", "bundled", 0, kept)
    assert value["layers"][0][..., 3].any()  # new image: preset, and remembered (a file) in place of the old one
    assert np.array_equal(files.held(shown), other["background"]) and files.held(kept) is None


def test_a_session_keeps_its_image_as_a_file_deleted_with_its_state(tmp_path):
    """What a session keeps of the editor's image is a file, not an array in the server's memory: the state's
    delete_callback (its time-to-live, the session's end) deletes it, and past the bytes limit the oldest go first."""
    big = np.zeros((100, 100, 4), np.uint8)
    first = files.hold(big, [1], root=tmp_path, bytes_max=100_000)
    second = files.hold(big + 1, [2], root=tmp_path, bytes_max=100_000)  # 2 x 40 kB: both kept
    third = files.hold(big + 2, [3], root=tmp_path, bytes_max=100_000)  # the oldest goes
    assert [files.held(h, tmp_path) is None for h in (first, second, third)] == [True, False, False]
    files.release(third, tmp_path)
    assert files.held(third, tmp_path) is None and files.held(second, tmp_path)[0, 0, 0] == 1
    files.release({"path": str(tmp_path.parent / "elsewhere.npy")}, tmp_path)  # nothing outside its folder
    demo = app.build_demo()
    shown = next(b for b in demo.blocks.values() if isinstance(b, app.gr.State) and b.delete_callback is files.release)
    assert shown.time_to_live == files.SESSION_TTL_S


def test_a_sessions_slider_pairs_are_a_file_replaced_by_its_next_run(face):
    """Every sample's before/after pair is what the chooser shows later: the session keeps them as one file (not
    arrays in memory), the next run's replace it (the old file deleted) and the state's delete_callback deletes it."""
    from pathlib import Path

    bg = np.asarray(Image.open(face).convert("RGB"))
    value = {**app.editor_with_preset({"background": bg, "layers": []}, "left_half", "bundled", 0), "background": bg}
    kept = None
    for seed in (0, 1):
        *_, last = app.run(
            value, "left_half", "bundled", 4, 2, 1, seed, False, 2, False, False, ui_request("pairs"), pairs=kept
        )
        assert last["status"].startswith("Done") and set(last["pairs"]) == {"path", "key"}
        if kept is not None:
            assert not Path(kept["path"]).exists(), "the first run's pairs are deleted by the second's"
        kept = last["pairs"]
        assert [np.array_equal(app.page.show_sample(i, kept)[1], last["slider"][1]) for i in (0, 1)] == [True, False]
    states = [b for b in app.build_demo().blocks.values() if isinstance(b, app.gr.State)]
    held = [b.time_to_live for b in states if b.delete_callback is files.release]
    assert held == [files.SESSION_TTL_S] * 2  # shown's and pairs'
    files.release(kept)
    assert not Path(kept["path"]).exists() and app.page.show_sample(0, kept) == app.gr.skip()


def test_a_value_with_only_the_preset_layer_runs_on_the_image_the_editor_shows(face):
    """The value the app sets holds only the layer (gradio 6.31.0 doubles a layer sent with its background), and the
    browser sends it back unchanged until the visitor paints: the run, and a second preset, use the kept image."""
    bg = np.asarray(Image.open(face).convert("RGBA"))
    value, shown = app.sync_preset({"background": bg, "layers": [], "composite": None}, "left_half", "bundled", 0, None)
    assert value["background"] is None and np.array_equal(files.held(shown), bg)
    again, kept = app.redraw_preset(value, "top_half", "bundled", 0, shown)  # a second preset, no stroke between
    assert kept == {"__type__": "update"}  # the layer-only value: the kept image stays
    assert (
        pictures.mask_from_editor({**again, "background": bg})
        == pictures.preset_mask("top_half", *bg.shape[1::-1], 32, 0)
    ).all()
    *_, last = app.run(
        value, "left_half", "bundled", 4, 2, 1, 0, False, 1, False, False, ui_request("layer"), None, shown
    )
    assert last["status"].startswith("Done")
    with pytest.raises(Exception, match="No image"):  # a cleared editor is not run on the old image
        next(
            app.run(
                {"background": None, "layers": [], "composite": None},
                "left_half",
                "bundled",
                4,
                2,
                1,
                0,
                False,
                1,
                False,
                False,
                ui_request("layer2"),
                None,
                shown,
            )
        )


def test_a_preset_picked_before_the_uploads_sync_ran_keeps_the_image_for_the_run(face):
    """The browser test's race: a large upload's sync_preset is still pending when the visitor picks a preset; the
    app's layer-only value then fires an editor event that supersedes it (trigger_mode "always_last"), so the upload
    was never recorded and the run said "No image". The preset's handler sees the image, and records it."""
    bg = np.asarray(Image.open(face).convert("RGBA"))
    value, shown = app.redraw_preset(
        {"background": bg, "layers": [], "composite": None}, "left_half", "bundled", 0, None
    )  # no sync_preset ran: nothing recorded yet
    assert value["background"] is None and np.array_equal(files.held(shown), bg)
    assert app.sync_preset(value, "left_half", "bundled", 0, None) == (app.gr.skip(), app.gr.skip())  # superseding
    *_, last = app.run(
        value, "left_half", "bundled", 4, 2, 1, 0, False, 1, False, False, ui_request("race"), None, shown
    )
    assert last["status"].startswith("Done")


def test_the_editors_mask_is_one_mask_for_all_samples(face):
    """A preset put into the editor is a drawn mask, drawn once: every sample keeps the same pixels, the ones the
    editor shows as kept (the API's preset name instead gives each sample its own random mask, from its seed)."""
    bg = np.asarray(Image.open(face).convert("RGBA"))
    value = {**app.editor_with_preset({"background": bg, "layers": []}, "thick", "bundled", 0), "background": bg}
    gen = app.run(value, "thick", "bundled", 4, 2, 1, 5, False, 3, False, False, ui_request("shared-mask"))
    out = next(x for x in gen if x["status"].startswith("Done"))
    results = [read(path) for path, _ in out["gallery"]]  # read before the generator ends (it deletes the files)
    gen.close()
    rgb, fill = app.SERVICE.cache.get_model("bundled").prepare(bg[..., :3].copy(), pictures.mask_from_editor(value))
    assert len(results) == 3 and not np.array_equal(fill, repaint.masks.preset("thick", 32, 32, 6))
    for got in results:
        assert np.array_equal(got[~fill], rgb[~fill])


def test_duration_grows_with_work_and_is_capped():
    d_small = app.SERVICE.slot.gpu_duration(
        space.Request(
            model="bundled",
            settings=repaint.Settings(steps=10, jump_length=5, jump_n_sample=2, num_samples=1, seed=0, compare=False),
        )
    )
    d_big = app.SERVICE.slot.gpu_duration(
        space.Request(
            model="bundled",
            settings=repaint.Settings(steps=250, jump_length=10, jump_n_sample=10, num_samples=4, seed=0, compare=True),
        )
    )
    assert space.GPU_MARGIN_S <= d_small < d_big <= space.GPU_CAP_S
    huge = app.SERVICE.slot.gpu_duration(
        space.Request(
            model="bundled",
            settings=repaint.Settings(
                steps=1000, jump_length=1, jump_n_sample=20, num_samples=16, seed=0, compare=True
            ),
        )
    )
    assert huge == space.GPU_CAP_S
    calls = repaint.count_model_calls(250, 10, 10)
    assert calls == app.SERVICE.cache.get_model("bundled").model_calls(250, 10, 10)
    assert f"{calls:,} model calls" in app.estimate_text("bundled", 250, 10, 10, 1, False)


def test_a_request_is_one_picklable_value(face):
    """A run's settings cross to the ZeroGPU worker as one value."""
    import pickle

    req = space.Request(
        model="bundled",
        settings=repaint.Settings(steps=10, jump_length=5, jump_n_sample=2, num_samples=2, seed=3, compare=True),
        image=np.zeros((8, 8, 3), np.uint8),
        mask=np.eye(8, dtype=bool),
    )
    back = pickle.loads(pickle.dumps(req))
    assert back.settings == req.settings and (back.mask == req.mask).all() and back.settings.rows == 4


def test_request_that_cannot_fit_the_gpu_cap_is_refused(monkeypatch):

    monkeypatch.setattr(app.SERVICE.slot, "has_gpu", True)
    monkeypatch.setitem(app.SERVICE.timing.call_s, "bundled", 1.0)
    with pytest.raises(ServeError, match="smaller|fewer"):
        app.SERVICE.slot.check_fits(
            space.Request(model="bundled", settings=repaint.Settings(steps=250, jump_length=10, jump_n_sample=10))
        )
    app.SERVICE.slot.check_fits(
        space.Request(model="bundled", settings=repaint.Settings(steps=10, jump_length=5, jump_n_sample=2))
    )


def test_unknown_model_is_refused():

    with pytest.raises(ServeError, match="unknown model"):
        app.SERVICE.cache.get_model("../../etc")


def test_failed_load_is_an_error_and_other_models_still_work(monkeypatch):

    def fail(name, *a, **k):
        raise repaint.ModelLoadError(f"model {name!r}: the Hub could not be reached")

    monkeypatch.setattr(repaint, "load", fail)
    monkeypatch.delitem(app.SERVICE.cache.models, "cifar10", raising=False)
    with pytest.raises(ServeError, match="Could not load model 'cifar10'"):
        app.SERVICE.cache.get_model("cifar10")
    assert app.SERVICE.cache.get_model("bundled") is app.SERVICE.cache.models["bundled"]


def test_default_falls_back_to_bundled_with_a_notice(monkeypatch):
    """The real loading path, offline with nothing cached (the suite's environment): the notice says why."""
    monkeypatch.setattr(app.SERVICE.slot, "has_gpu", True)
    monkeypatch.delitem(app.SERVICE.cache.models, "celebahq", raising=False)
    name, notice = app.SERVICE.pick_default("", app.GPU_MODEL, app.OFFLINE_MODEL, app.MODEL_ENV)
    assert name == "bundled" and "The default model 'celebahq' could not be loaded" in notice
    assert "not in the local cache" in notice and "Using the **bundled** model" in notice


def test_ui_handler_streams_previews_then_results(face, monkeypatch):
    # previews at most every PREVIEW_INTERVAL_S: how many a 35-call run shows depends on the machine's speed (4 on a
    # fast moment, a failure of ">= 5"); without the interval, every frame the run makes is one
    monkeypatch.setattr("repaint.space.streams.PREVIEW_INTERVAL_S", 0.0)
    request = ui_request("test-ui")
    value = left_half_editor(face)
    gen = app.run(value, "left_half", "bundled", 20, 5, 2, 7, False, 2, True, False, request)
    outs = []
    for out in gen:  # Gradio copies the files of each yield before it asks for the next one
        outs.append(out)
        if "Done" in out["status"]:
            break
    previews = [o["preview"] for o in outs if isinstance(o["preview"], np.ndarray)]
    assert len(previews) >= 5  # streamed during the run
    status, gallery, slider, gif, files, seed = (
        outs[-1][k] for k in ("status", "gallery", "slider", "animation", "downloads", "seed")
    )
    assert "Done" in status and seed == 7 and len(gallery) == 4  # 2 resampled + 2 plain
    assert all(f.endswith((".png", ".gif")) for f in files)
    frames = Image.open(gif).n_frames
    assert 5 <= frames <= space.ANIMATION_FRAMES + 1
    known = ~repaint.masks.PRESETS["left_half"](32, 32, 0)
    rgb, _ = app.SERVICE.cache.get_model("bundled").prepare(str(face), "left_half")
    for path, _ in gallery:
        assert (read(path)[known] == rgb[known]).all()
    folder = Path(files[0]).parent
    assert folder.parent == app.RESULTS_DIR
    assert list(gen) == [] and not folder.exists()  # the run's folder is deleted once Gradio has its files


def test_ui_and_api_share_the_checks(client, face, tmp_path):
    """A mask outside the centred square is empty to the model at its own size (the API's size="model"), and filled
    at full size (the API's default for a mask file, and the page's); too many samples are refused: the same message
    from the UI handler and from the API."""
    import gradio as gr

    wide = np.full((32, 64, 4), 255, np.uint8)
    margin = np.zeros_like(wide)
    margin[:, :8] = (30, 90, 255, 128)  # painted in the left margin, which the centre crop drops
    value = {"background": wide, "layers": [margin], "composite": None}
    gen = app.run(value, "left_half", "bundled", 10, 5, 2, 0, False, 1, False, False, ui_request("test-crop"))
    assert next(gen)["status"].startswith("Starting")  # the page uses strokes outside a preset's square (issue 21)
    gen.close()
    image, mask = tmp_path / "wide.png", tmp_path / "margin.png"
    Image.fromarray(wide[..., :3]).save(image)
    Image.fromarray(margin[..., 3]).save(mask)
    with pytest.raises(AppError, match="nothing to fill inside the centred square"):
        client.predict(
            handle_file(str(image)),
            handle_file(str(mask)),
            api_name="/inpaint",
            **{**SMALL, "compare": False, "size": "model"},
        )
    (path,) = paths(
        client.predict(
            handle_file(str(image)), handle_file(str(mask)), api_name="/inpaint", **{**SMALL, "compare": False}
        )
    )  # a mask file: full size by default
    res = read(path)
    assert res.shape == (32, 64, 3) and (res[:, 8:] == wide[:, 8:, :3]).all()
    too_many = app.SAMPLES_MAX + 1
    with pytest.raises(gr.Error, match=f"at most {app.SAMPLES_MAX}"):
        next(
            app.run(
                left_half_editor(face),
                "left_half",
                "bundled",
                10,
                5,
                2,
                0,
                False,
                too_many,
                False,
                False,
                ui_request("test-many"),
            )
        )
    with pytest.raises(AppError, match=f"at most {app.SAMPLES_MAX}"):
        client.predict(
            handle_file(str(face)),
            "left_half",
            api_name="/inpaint",
            **{**SMALL, "compare": False, "num_samples": too_many},
        )


def test_a_drawn_mask_comes_back_at_the_photo_size(tmp_path):
    """The UI with Draw: results, slider and downloads at the photo's own size, unchanged outside the mask."""
    photo = np.random.default_rng(5).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    layer = np.zeros((120, 200, 4), np.uint8)
    layer[90:110, 160:190] = (30, 90, 255, 128)  # an object in a corner
    value = {"background": photo, "layers": [layer], "composite": None}
    gen = app.run(value, app.DRAW, "bundled", 10, 5, 2, 0, False, 1, True, False, ui_request("test-full"))
    last = next(out for out in gen if "Done" in out["status"])  # its files live until the next step
    status, gallery, slider, files = (last[k] for k in ("status", "gallery", "slider", "downloads"))
    assert "Done" in status and len(gallery) == 2
    drawn = layer[..., 3] > 0
    assert all(read(path).shape == (120, 200, 3) for path in files if path.endswith(".png"))
    assert slider[0].shape == slider[1].shape == (120, 200, 3)
    for a in slider:
        assert (a[~drawn] == photo[~drawn]).all()


class StandInSpaces:
    """A stand-in for Hugging Face's ``spaces`` package: ``GPU(duration=f)`` records ``f``'s arguments and answer
    for each call, then runs the function, as ZeroGPU does before it asks for a slot."""

    def __init__(self):
        self.calls = []

    def GPU(self, duration):  # noqa: N802 - the real package's name
        def wrap(fn):
            def run(*args, **kwargs):
                self.calls.append((args, kwargs, duration(*args, **kwargs)))
                yield from fn(*args, **kwargs)

            return run

        return wrap


@pytest.fixture
def zerogpu(monkeypatch, make_service):
    """The app as on ZeroGPU: a stand-in ``spaces``, and a per-call time that is a guess until a run measures it."""
    fake = StandInSpaces()
    service = make_service(on_zerogpu=True, duration_factor=1.0)
    monkeypatch.setitem(service.timing.call_s, "bundled", 5.0)  # a wrong guess, refreshed by the first run
    recorded = []
    real = fake.GPU(duration=service.slot.gpu_duration)(app.gpu_run)

    def spy(*args):
        recorded.append(args)
        yield from real(*args)

    monkeypatch.setattr(app, "gpu_run", spy)
    return fake, recorded, service


def test_zerogpu_duration_gets_the_handlers_arguments_and_time_is_refreshed(zerogpu, face):
    fake, recorded, service = zerogpu
    steps, j, r, samples = 10, 5, 2, 2
    guess = service.timing.call_s["bundled"]
    list(
        app.run(
            left_half_editor(face),
            "left_half",
            "bundled",
            steps,
            j,
            r,
            0,
            False,
            samples,
            True,
            False,
            ui_request("zgpu-ui"),
        )
    )
    ((args, kwargs, seconds),) = fake.calls
    assert args == recorded[0] and kwargs == {}  # exactly what the handler passed to the GPU function
    # the rows of each call as the sampler plans them: 4 while the n=1 chains call too, else 2; on a GPU a call of
    # n rows costs 1 + 0.5 (n - 1) calls of one
    ticks = call_ticks([repaint.count_model_calls(steps, j, r), repaint.count_model_calls(steps, j, 1)])
    cost = sum(1 + space.GPU_BATCH_COST * (samples * len(active) - 1) for active in ticks)
    want = min(space.GPU_CAP_S, int(np.ceil(guess * cost + space.GPU_MARGIN_S)))
    assert seconds == want
    after_ui = service.timing.call_seconds("bundled", 1)
    assert after_ui < 1.0  # measured by the run (the bundled model is ms per call): the guess weighs nothing
    service.timing.run_s.clear()
    list(app.api_inpaint(str(face), "left_half", "bundled", steps, j, r, 0, 1, False))
    assert len(fake.calls) == 2 and fake.calls[1][0] == recorded[1]
    assert service.timing.call_seconds("bundled", 1) < 1.0  # the API path refreshes it too


def test_stop_cancels_within_one_step(face):
    request = ui_request("test-stop")
    value = left_half_editor(face)
    gen = app.run(value, "left_half", "bundled", 200, 10, 10, 0, False, 1, False, False, request)
    next(gen)  # started
    next(gen)  # first preview
    app.stop_run(request)
    outs = list(gen)  # a Stop the visitor asked for ends the run with a status, not an error (issue 21)
    assert len(outs) <= 2 and outs[-1]["status"].startswith("Stopped as you asked")


# ------------------------------------------------------------------------------------------- live API
def test_api_with_a_preset(client, face):
    out = client.predict(
        handle_file(str(face)),
        "every_second_line",
        api_name="/inpaint",
        compare=False,
        **{k: v for k, v in SMALL.items()},
    )
    (path,) = paths(out)
    res = read(path)
    assert res.shape == (32, 32, 3) and Image.open(path).info.get("srgb") == 0  # tagged sRGB, as the pixels are
    rgb, _ = app.SERVICE.cache.get_model("bundled").prepare(str(face), "every_second_line")
    known = ~repaint.masks.PRESETS["every_second_line"](32, 32, 0)
    assert (res[known] == rgb[known]).all()  # PNG end to end: known pixels exact


def test_api_with_a_drawn_mask_file(client, face, tmp_path):
    mask = np.zeros((256, 256, 4), np.uint8)
    mask[64:192, 64:192] = (30, 90, 255, 128)  # painted like the editor's brush
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    out = client.predict(
        handle_file(str(face)),
        handle_file(str(mask_path)),
        api_name="/inpaint",
        compare=False,
        **{**SMALL, "num_samples": 2},
    )
    assert len(paths(out)) == 2
    res = read(paths(out)[0])  # a mask file: the image's own size by default
    painted = mask[..., 3] > 0
    assert res.shape == (256, 256, 3) and (res[~painted] == read(face)[~painted]).all()


def test_api_compare(client, face):
    out = client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", compare=True, **SMALL)
    caps = [r["caption"] for r in out]
    assert len(out) == 2 and caps[0].startswith("n=2") and caps[1].startswith("n=1")
    same = app.SERVICE.cache.get_model("bundled").compare(
        str(face), "left_half", steps=10, jump_length=5, jump_n_sample=2, seed=3
    )
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


@pytest.mark.parametrize("has_gpu", [False, True])
def test_examples_exist_and_load_their_preset_into_the_editor(monkeypatch, has_gpu):
    monkeypatch.setattr(app, "HAS_GPU", has_gpu)  # the GPU rows too (their models are never loaded here)
    rows = app.examples_rows()
    assert len(rows) == (10 if has_gpu else 4)
    licences = (app.EXAMPLES_DIR / "LICENSES.md").read_text()
    for image, preset, model, *_, class_label in rows:
        assert Path(image).name in licences and model in repaint.MODELS
        assert class_label is None or 0 <= class_label < repaint.MODELS[model].num_classes
        bg = np.asarray(Image.open(image).convert("RGBA"))
        value, _ = app.sync_preset({"background": bg, "layers": [], "composite": None}, preset, model, 0, None)
        value["background"] = bg
        assert value["layers"][0].shape == bg.shape and pictures.mask_from_editor(value).any()


# ------------------------------------------------------------------------------------------- faults and safety
def run_workers():
    return app.SERVICE.runner.running()


def test_stop_ends_the_worker_within_one_model_call_and_frees_the_run(face, monkeypatch):
    import gc
    import weakref

    request = ui_request("test-stop-free")
    inp = app.SERVICE.cache.get_model("bundled")
    calls, refs = [], []
    eps = inp.eps

    def counting_eps(x, t):
        calls.append(1)
        refs.append(weakref.ref(x))
        return eps(x, t)

    monkeypatch.setattr(inp, "eps", counting_eps)
    value = left_half_editor(face)
    gen = app.run(value, "left_half", "bundled", 250, 10, 10, 0, False, 1, False, False, request)
    next(gen)  # started
    next(gen)  # first preview: the worker is running
    assert run_workers() and "test-stop-free" in app.SERVICE.runner.stop_flags
    app.stop_run(request)
    at_stop = len(calls)
    outs = list(gen)  # a Stop the visitor asked for: a last status, not an error (issue 21)
    assert outs[-1]["status"].startswith("Stopped as you asked")
    assert len(calls) - at_stop <= 1  # the call in flight, then the callback raises
    assert not run_workers()  # the worker ended
    assert "test-stop-free" not in app.SERVICE.runner.stop_flags
    del gen, outs
    gc.collect()
    assert refs and all(r() is None for r in refs)  # none of the run's tensors is kept


def test_closing_the_run_generator_stops_the_worker(face):
    """What Gradio does when a client cancels or disconnects: it closes the handler's generator."""
    request = ui_request("test-close")
    value = left_half_editor(face)
    for handler in (
        app.run(value, "left_half", "bundled", 250, 10, 10, 0, False, 1, False, False, request),
        app.api_inpaint(str(face), "left_half", "bundled", 250, 10, 10, 0, 1, False),
    ):
        next(handler)
        next(handler)
        assert run_workers()
        handler.close()
        assert not run_workers() and "test-close" not in app.SERVICE.runner.stop_flags


@pytest.fixture
def hub_cache(monkeypatch, tmp_path):
    """An empty Hub cache of the test's own, read offline by the real loading code (the suite is offline, conftest):
    ``write_hub_cache(hub_cache, repo_id, files)`` puts a repository in it."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


@pytest.fixture
def broken_model(monkeypatch, hub_cache):
    """A registry entry 'broken' (repository test/broken) whose download in the Hub cache holds only its
    model_index.json; returns the snapshot folder, where a test puts other files."""
    monkeypatch.setitem(repaint.models.MODELS, "broken", repaint.ModelInfo("broken", "test/broken", 32, "test"))
    monkeypatch.delitem(app.SERVICE.cache.models, "broken", raising=False)
    write_hub_cache(hub_cache, "test/broken", {"model_index.json": ddpm_repo("test/broken")["model_index.json"]})
    return hub_cache / "models--test--broken" / "snapshots" / COMMIT


def test_missing_files_are_a_clear_error_and_bundled_keeps_serving(broken_model, face):

    with pytest.raises(ServeError, match=r"Could not load model 'broken'.*not in the local cache.*Other models"):
        app.SERVICE.cache.get_model("broken")
    assert "broken" not in app.SERVICE.cache.models
    assert app.SERVICE.cache.get_model("bundled").inpaint(
        str(face), "left_half", steps=5, jump_length=2, jump_n_sample=1
    )


def test_corrupt_weights_are_a_clear_error_and_bundled_keeps_serving(broken_model, face):

    for f in ("config.json", "scheduler_config.json"):
        (broken_model / f).write_bytes((repaint.models.BUNDLED_DIR / f).read_bytes())
    (broken_model / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00garbage, not safetensors" * 10)
    with pytest.raises(ServeError, match=r"Could not load model 'broken'.*cannot read"):
        app.SERVICE.cache.get_model("broken")
    assert "broken" not in app.SERVICE.cache.models
    assert app.SERVICE.cache.get_model("bundled").inpaint(
        str(face), "left_half", steps=5, jump_length=2, jump_n_sample=1
    )


def test_offline_hub_is_a_clear_error_and_bundled_keeps_serving(monkeypatch):
    """The real loading path with nothing cached and no Hub (the suite runs offline, tests/conftest.py)."""
    monkeypatch.delitem(app.SERVICE.cache.models, "celebahq", raising=False)
    with pytest.raises(ServeError, match=r"Could not load model 'celebahq'.*not in the local cache.*'bundled'"):
        app.SERVICE.cache.get_model("celebahq")
    assert app.SERVICE.cache.get_model("bundled") is app.SERVICE.cache.models["bundled"]


HUB_OK = ["google/ddpm-cifar10-32", "a/b", "Some-User_1/model.v2"]
HUB_BAD = [
    "../etc",
    "a/../b",
    "/etc/passwd",
    "a/b/c",
    "a//b",
    "a/.b",
    "a/b.",
    "a/b..c",
    "a/--b",
    ".a/b",
    "a\\b",
    "a/b\n",
    "a /b",
    "a",
    "",
    "x" * 97 + "/b",
    None,
    3,
]


def test_hub_ids_are_refused_unless_allowed(monkeypatch):

    monkeypatch.setattr(app.SERVICE.cache, "allow_hub_ids", False)
    for name in HUB_OK + HUB_BAD:
        with pytest.raises(ServeError, match="unknown model"):
            app.SERVICE.cache.check_model_name(name)
    assert app.SERVICE.cache.check_model_name("bundled") == "bundled"


def test_allowed_hub_ids_are_strict_and_only_downloaded(monkeypatch, tmp_path, hub_cache):

    monkeypatch.setattr(app.SERVICE.cache, "allow_hub_ids", True)
    for name in HUB_OK:
        assert app.SERVICE.cache.check_model_name(name) == name
    for name in HUB_BAD:
        with pytest.raises(ServeError, match="unknown model"):
            app.SERVICE.cache.check_model_name(name)
    # a local folder of the same name is never read: a Hub id only goes to the Hub
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").symlink_to(repaint.models.BUNDLED_DIR)
    with pytest.raises(ServeError, match="Could not load model 'a/b'.*is not in the local cache"):
        app.SERVICE.cache.get_model("a/b")  # the real loading code, offline with an empty cache (hub_cache)
    assert "a/b" not in app.SERVICE.cache.models


@pytest.mark.heavy
def test_hub_ids_in_the_dropdown_only_when_the_variable_is_set():
    import os
    import subprocess
    import sys

    code = (
        "import app; d = next(b for b in app.demo.blocks.values() if getattr(b, 'elem_id', None) == 'model'); "
        "print(app.ALLOW_HUB_IDS, d.allow_custom_value, app.SERVICE.cache.check_model_name('someone/model'))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", app.HUB_IDS_ENV: "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=app.HERE, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.split()[-3:] == ["True", "True", "someone/model"], out.stderr[-2000:]
    model = next(b for b in app.demo.blocks.values() if getattr(b, "elem_id", None) == "model")
    assert not app.ALLOW_HUB_IDS and not model.allow_custom_value


def test_old_result_folders_are_swept(tmp_path, monkeypatch):
    import os
    import time

    old, new, other = tmp_path / "run_old", tmp_path / "run_new", tmp_path / "keep_me"
    for d in (old, new, other):
        d.mkdir()
        (d / "x.png").write_bytes(b"png")
    past = time.time() - space.RESULTS_MAX_AGE_S - 60
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    fresh = space.new_results_dir(tmp_path)  # sweeps first
    assert not old.exists() and new.exists() and other.exists() and fresh.parent == tmp_path


def test_api_leaves_no_result_folder(client, face):
    before = set(app.RESULTS_DIR.iterdir()) if app.RESULTS_DIR.is_dir() else set()
    out = client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", compare=True, **SMALL)
    assert len(paths(out)) == 2 and all(Path(p).is_file() for p in paths(out))  # the client's downloads
    assert set(app.RESULTS_DIR.iterdir()) <= before


def test_api_mask_paths_outside_the_upload_cache_are_refused(client, face, tmp_path):
    import gradio as gr

    cache = Path(gr.utils.get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "secret.png"
    Image.new("L", (256, 256), 255).save(outside)
    link = cache / f"link_{tmp_path.name}.png"
    link.symlink_to(outside)
    try:
        for path in (
            str(outside),
            str(cache / ".." / ".." / outside.relative_to("/")),
            str(link),
            "/etc/passwd",
            "",
            5,
        ):
            with pytest.raises(AppError, match="not uploaded"):
                client.predict(handle_file(str(face)), {"path": path}, api_name="/inpaint", compare=False, **SMALL)
    finally:
        link.unlink()


def test_api_hub_ids_follow_the_variable(client, face, monkeypatch, hub_cache):
    args = {**SMALL, "model": "someone/model", "compare": False}
    monkeypatch.setattr(app.SERVICE.cache, "allow_hub_ids", False)
    with pytest.raises(AppError, match="unknown model 'someone/model'"):
        client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", **args)
    monkeypatch.setattr(app.SERVICE.cache, "allow_hub_ids", True)
    with pytest.raises(AppError, match="Could not load model 'someone/model'.*not in the local cache"):
        client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", **args)
    with pytest.raises(AppError, match="unknown model"):
        client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", **{**args, "model": "../x/y"})


def test_full_mask_is_announced(monkeypatch):
    said = []
    monkeypatch.setattr(app.gr, "Info", lambda message, *a, **k: said.append(message))
    image = np.zeros((32, 32, 3), np.uint8)
    app.check_request(
        space.Request(
            model="bundled",
            settings=repaint.Settings(steps=10, jump_length=5, jump_n_sample=2),
            image=image,
            mask=np.ones((32, 32), bool),
        )
    )
    app.check_request(
        space.Request(
            model="bundled",
            settings=repaint.Settings(steps=10, jump_length=5, jump_n_sample=2),
            image=image,
            mask=np.eye(32, dtype=bool),
        )
    )
    assert said == [app.FULL_MASK_NOTE]


def test_only_inpaint_is_public_and_the_example_client_runs(client, face):
    """``/inpaint`` is the one endpoint a script sees, and examples/client.py (what docs/space.md shows) runs
    against this test's server and prints its result's path."""
    import subprocess
    import sys

    info = client.view_api(print_info=False, return_format="dict")
    assert list(info["named_endpoints"]) == ["/inpaint"] and not info["unnamed_endpoints"]
    script = app.HERE / "examples" / "client.py"
    done = subprocess.run(
        [sys.executable, str(script), client.src, str(face)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = done.stdout.split()
    assert read(path).shape == (32, 32, 3)


# ------------------------------------------------------------------------------------------- class-conditional models
@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    """A tiny class-conditional guided-diffusion model (10 classes), converted and loaded as the app would."""
    from _adm import save_checkpoint, tiny_options

    from repaint import convert

    tmp = tmp_path_factory.mktemp("cc")
    over = dict(class_cond=True)
    ckpt, _, o = save_checkpoint(tmp / "tiny.pt", **over)
    folder = repaint.convert_adm(
        ckpt, tmp / "tiny", **{k: v for k, v in tiny_options(**over).items() if v != convert.DEFAULTS[k]}
    )
    inp = repaint.load(folder, device="cpu")
    assert inp.num_classes == 1000  # guided-diffusion's class embedding always has ImageNet's 1000 rows
    return inp


@pytest.fixture
def with_class_model(monkeypatch, service, class_model):
    monkeypatch.setitem(
        repaint.models.MODELS, "tinycc", repaint.ModelInfo("tinycc", None, 16, "test", gpu_only=False, num_classes=1000)
    )
    service.cache.models["tinycc"], service.timing.call_s["tinycc"] = class_model, 0.001
    return class_model


def api_arrays(*args) -> list[np.ndarray]:
    """The images api_inpaint returns, read before it deletes their folder (once the server has copied them)."""
    for out in app.api_inpaint(*args):
        if isinstance(out, list):
            return [read(path) for path, _ in out]
    raise AssertionError("no results")


def test_class_label_reaches_the_model_on_the_api_and_ui_paths(with_class_model, face):
    inp, settings = with_class_model, dict(steps=4, jump_length=2, jump_n_sample=1, seed=5, num_samples=2)
    out = api_arrays(str(face), "left_half", "tinycc", 4, 2, 1, 5, 2, False, "model", 7)
    want = inp.inpaint(str(face), "left_half", class_label=7, **settings)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(out, want, strict=True))
    other = inp.inpaint(str(face), "left_half", class_label=8, **settings)
    assert not np.array_equal(np.asarray(other[0]), out[0])  # the label changes the filling
    random = api_arrays(str(face), "left_half", "tinycc", 4, 2, 1, 5, 2, False, "model", None)
    drawn = inp.inpaint(str(face), "left_half", **settings)  # unset: one class per sample, drawn from its seed
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(random, drawn, strict=True))
    assert [i.info["class_label"] for i in drawn] == inp.class_labels([5, 6])
    *_, last = app.run(
        left_half_editor(face), "left_half", "tinycc", 4, 2, 1, 5, False, 1, False, False, ui_request("cc"), 7
    )
    assert "class 7" in last["status"]
    assert app.on_model_change("tinycc", 4, 2, 1, 1, False)["class_label"]["visible"] is True
    assert app.on_model_change("bundled", 4, 2, 1, 1, False)["class_label"]["visible"] is False


def test_class_label_is_refused_for_an_unconditional_model_and_ignored_from_a_hidden_box(face):
    with pytest.raises(Exception, match="not class-conditional"):
        api_arrays(str(face), "left_half", "bundled", 4, 2, 1, 0, 1, False, "model", 3)
    # The UI's class box is hidden for an unconditional model; a value left in it from an example is not used.
    *_, last = app.run(
        left_half_editor(face), "left_half", "bundled", 4, 2, 1, 0, False, 1, False, False, ui_request("cc2"), 504
    )
    assert last["status"].startswith("Done") and "class" not in last["status"]


# ------------------------------------------------------------------------------------------- classifier guidance
@pytest.fixture
def with_guided_model(monkeypatch, service, class_model, tmp_path):
    """The tiny class-conditional model guided by a tiny classifier (guided-diffusion's, converted), as 'tinyg'."""
    import torch
    from _adm import classifier_folder, tiny_classifier

    from repaint.classifier import read_classifier

    inp = repaint.Inpainter(class_model.unet, class_model.scheduler_config, "tinyg")
    folder = classifier_folder(tmp_path, tiny_classifier(head_channels=64))
    inp.attach_classifier(read_classifier(folder, torch.float32).eval().requires_grad_(False))
    monkeypatch.setitem(
        repaint.models.MODELS,
        "tinyg",
        repaint.ModelInfo("tinyg", None, 16, "test", gpu_only=False, num_classes=1000, classifier="imagenet256"),
    )
    service.cache.models["tinyg"], service.timing.call_s["tinyg"] = inp, 0.001
    return inp


def test_classifier_scale_reaches_the_sampler_on_the_api_and_ui_paths(with_guided_model, face):
    inp = with_guided_model
    settings = dict(steps=4, jump_length=2, jump_n_sample=1, seed=5, num_samples=1, class_label=7)
    out = api_arrays(str(face), "left_half", "tinyg", 4, 2, 1, 5, 1, False, "model", 7, 3.0)
    (want,) = inp.inpaint(str(face), "left_half", classifier_scale=3.0, **settings)
    assert np.array_equal(out[0], np.asarray(want))
    default = api_arrays(str(face), "left_half", "tinyg", 4, 2, 1, 5, 1, False, "model", 7, None)
    (one,) = inp.inpaint(str(face), "left_half", classifier_scale=1.0, **settings)  # unset: the paper's 1
    (zero,) = inp.inpaint(str(face), "left_half", classifier_scale=0.0, **settings)
    assert np.array_equal(default[0], np.asarray(one)) and not np.array_equal(default[0], np.asarray(zero))
    with pytest.raises(Exception, match="classifier_scale"):
        api_arrays(str(face), "left_half", "tinyg", 4, 2, 1, 5, 1, False, "model", 7, -2)
    with pytest.raises(Exception, match="has no classifier"):
        api_arrays(str(face), "left_half", "bundled", 4, 2, 1, 5, 1, False, "model", None, 1.0)
    *_, last = app.run(
        left_half_editor(face),
        "left_half",
        "tinyg",
        4,
        2,
        1,
        5,
        False,
        1,
        False,
        False,
        ui_request("g"),
        class_label=7,
        classifier_scale=0.0,
    )
    assert last["status"].startswith("Done")
    # the page shows the scale only for a model with a classifier; a value left in a hidden one is not used
    assert app.on_model_change("tinyg", 4, 2, 1, 1, False)["classifier_scale"]["visible"] is True
    assert app.on_model_change("bundled", 4, 2, 1, 1, False)["classifier_scale"]["visible"] is False
    *_, last = app.run(
        left_half_editor(face),
        "left_half",
        "bundled",
        4,
        2,
        1,
        0,
        False,
        1,
        False,
        False,
        ui_request("g2"),
        class_label=None,
        classifier_scale=2.0,
    )
    assert last["status"].startswith("Done")

"""RePaint inpainting demo (Lugmayr et al., CVPR 2022): a Gradio Space around the ``repaint`` package.

Layout and events only; the serving (models, estimates, the worker, result files) is ``repaint.serving`` and the
pictures ``repaint.pictures``. Runs on ZeroGPU, a GPU or a CPU (then the offline ``bundled`` model is the default).
``python app.py`` serves it locally, ``python app.py --share`` also opens a temporary public link.
"""

from __future__ import annotations

try:  # ZeroGPU needs ``spaces`` imported before torch; elsewhere the decorator is a no-op
    import spaces
except ImportError:  # pragma: no cover - plain installs without the HF Spaces package
    spaces = None

import argparse
import functools
import inspect
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

import repaint
from repaint import pictures, serving
from repaint.serving import ServeError, fmt_seconds, model_calls

# ----------------------------------------------------------------------------------------------- constants
TITLE = "RePaint: inpainting with denoising diffusion"
HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
ON_ZEROGPU = bool(spaces is not None and getattr(spaces.config.Config, "zero_gpu", False))
HAS_GPU = ON_ZEROGPU or torch.cuda.is_available()
GPU_MODEL, OFFLINE_MODEL = "celebahq", "bundled"  # defaults on a GPU, and on a CPU or without the Hub
MODEL_ENV = "REPAINT_MODEL"  # environment variable overriding the default model
HUB_IDS_ENV = "REPAINT_ALLOW_HUB_IDS"  # "1": any Hub id ``owner/name`` may be asked for, not only registry names
ALLOW_HUB_IDS = os.environ.get(HUB_IDS_ENV, "").strip().lower() in ("1", "true", "yes")
DEFAULT_STEPS, DEFAULT_JUMP, DEFAULT_RESAMPLE = 250, 10, 10  # the paper's T, j and r (its n)
STEPS_MAX, JUMP_MAX, RESAMPLE_MAX, SAMPLES_MAX, SEED_MAX = 1000, 50, 20, 4, 2**31 - 1
PREVIEW_TILE = 128  # pixel height of the live preview
MAX_FILE_SIZE = "10mb"
QUEUE_MAX = 32  # requests waiting at once; more are refused with "Queue is full"
CONCURRENCY = 1  # one model per process; runs queue
DELETE_CACHE = (1800, 3600)  # every 30 min delete cached files older than 1 h
CSS = "#results img, #slider img, #preview img, #side img, #animation img {image-rendering: pixelated}"
BRUSH = gr.Brush(default_size=24, colors=[("#1e5aff", 0.5)], default_color=("#1e5aff", 0.5), color_mode="fixed")
MASK_RGBA = pictures.MASK_RGBA
DRAW = "draw"
PRESET_CHOICES = [("Draw it yourself", DRAW)] + [(label, name) for name, label in (
    ("every_second_line", "Every second line"), ("super_resolution_2x", "x2 super-resolution"),
    ("left_half", "Left half"), ("right_half", "Right half"), ("top_half", "Top half"), ("bottom_half", "Bottom half"),
    ("expand", "Expand (outpaint)"), ("center_box", "Centre box"), ("thick", "Thick strokes"),
    ("thin", "Thin strokes"), ("wide", "Wide boxes"))]
SIZES = ("auto", "full", "model")  # the API's result size: auto = full for a mask file, the model's for a preset
RESULTS_DIR = serving.RESULTS_DIR  # one folder per run, deleted once Gradio has copied the files
FULL_MASK_NOTE = "The mask covers the whole image: nothing is known, so this is unconditional generation."

log = logging.getLogger("repaint.app")
SERVICE = serving.Service(has_gpu=HAS_GPU, on_zerogpu=ON_ZEROGPU, allow_hub_ids=ALLOW_HUB_IDS)


def visible_errors(fn):
    """Handlers raise ServeError for the visitor; Gradio shows only gr.Error's message."""
    def convert(e):
        return gr.Error(str(e))

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ServeError as e:
                raise convert(e) from None
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ServeError as e:
            raise convert(e) from None
    return plain


# ----------------------------------------------------------------------------------------------- the editor
def editor_with_preset(value, preset: str, model: str, seed: int):
    """The preset as the editor's only layer, at the background's size (cleared for Draw)."""
    if not isinstance(value, dict) or pictures.as_array(value.get("background")) is None:
        return gr.skip()
    h, w = pictures.editor_image(value).shape[:2]
    if preset in (DRAW, None):
        layer = np.zeros((h, w, 4), dtype=np.uint8)
    else:
        layer = pictures.mask_layer(pictures.preset_mask(preset, w, h, SERVICE.model_resolution(model), seed))
    # Only the layer: re-sending the background makes gradio 6.31.0 reload the image and, racing that load, add the
    # layer twice (add_layers_from_url runs again when the image becomes ready), so erasing removed only one copy.
    return {"background": None, "layers": [layer], "composite": None}


mask_from_editor = pictures.mask_from_editor  # looked up here at each run (the browser test records it)


@visible_errors
def sync_preset(value, preset: str, model: str, seed: int, shown):
    """On any editor event: draw the preset over a *new* background (an upload, an example); the same background
    (a stroke, an erase, or the value this handler just set) is left alone, so painting on a preset keeps it and
    setting the value cannot loop. Returns (editor value or gr.skip(), the background the editor now shows): the
    value this app sets carries only the layer, so the server keeps the background for the run."""
    key = pictures.background_key(value)
    if key is None:  # the value this app just set (a layer only, see editor_with_preset)
        return gr.skip(), gr.skip()
    background = pictures.as_array(value["background"])
    if pictures.same_background(key, pictures.background_key({"background": shown})) or preset in (DRAW, None):
        return gr.skip(), background
    return editor_with_preset(value, preset, model, seed), background


@visible_errors
def redraw_preset(value, preset: str, model: str, seed: int, shown):
    """After the visitor changed the preset, model (resolution) or seed: the preset drawn anew (Draw clears it)."""
    return editor_with_preset(pictures.with_background(value, shown), preset, model, seed)


# ----------------------------------------------------------------------------------------------- handlers
def _gpu_run(*args):
    yield from SERVICE.run(*args)


def gpu_runner(spaces_module):
    """The model run, in a ZeroGPU slot sized per request where ``spaces`` is there (elsewhere as it is)."""
    if spaces_module is None:
        return _gpu_run
    return spaces_module.GPU(duration=lambda *args: SERVICE.gpu_duration(*args))(_gpu_run)


gpu_run = gpu_runner(spaces)


@visible_errors
def estimate_text(name, steps, jump_length, jump_n_sample, num_samples, compare) -> str:
    return SERVICE.estimate_text(name, steps, jump_length, jump_n_sample, num_samples, compare)


@visible_errors
def on_model_change(name, steps, jump_length, jump_n_sample, num_samples, compare):
    """The estimate for the newly chosen model (loaded now: an error if it cannot be), and the class box shown only
    for a class-conditional model."""
    SERVICE.get_model(name)
    return (SERVICE.estimate_text(name, steps, jump_length, jump_n_sample, num_samples, compare),
            gr.update(visible=SERVICE.num_classes(name) > 0))


def class_label_of(name: str, value) -> int | None:
    """The class box's value for a class-conditional model (empty: a random class per sample); None otherwise."""
    if value is None or value == "" or not SERVICE.num_classes(name):
        return None
    return int(value)


def check_request(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare, invert=False,
                  full_size=False, class_label=None):
    inp, big, small = SERVICE.check_request(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples,
                                            compare, invert, full_size, SAMPLES_MAX, class_label)
    if small[1].all():
        gr.Info(FULL_MASK_NOTE)
    return inp, big


def finish(name, inp, big, res, plain, frames, levels, steps, jump_n_sample, seed, class_label, spent,
           out_dir: Path):
    """The final outputs of :func:`run`, files written to ``out_dir``."""
    masked = pictures.show_mask(*big)
    gallery = serving.save_results(out_dir, f"repaint_{name}_", res, plain, jump_n_sample, seed)
    files = [path for path, _ in gallery]
    Image.fromarray(masked).save(out_dir / "input_masked.png")
    files.append(str(out_dir / "input_masked.png"))
    tile = max(2 * pictures.ANIMATION_TILE, inp.resolution)
    shown = [masked, plain[0], res[0]] if plain else [masked, res[0]]
    side_label = f"masked input | n=1 | n={jump_n_sample}" if plain else "masked input | result"
    gif = pictures.make_animation(frames, levels, steps, [0, len(res)] if plain else [0], out_dir / "process.gif")
    files.append(str(gif))
    labels = inp.class_labels([seed + i for i in range(len(res))], class_label)
    classes = f", class {', '.join(map(str, labels))}" if labels else ""
    status = (f"Done in **{fmt_seconds(spent)}** ({len(levels):,} model calls, {name}, seed {seed}{classes}). "
              f"Known pixels are kept exactly; downloads are lossless PNG.")
    return (status, gr.skip(), gallery, gr.update(value=pictures.strip(shown, tile), label=side_label),
            (plain[0], res[0]) if plain else (masked, res[0]), str(gif), files, seed)


@visible_errors
def run(editor, preset, model, steps, jump_length, jump_n_sample, seed, randomize, num_samples, compare, invert,
        request: gr.Request, class_label=None, shown=None,
        progress=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a tracker
    """The UI handler: streams progress and previews, then the results (a drawn mask: at the image's own size).
    ``shown``: the background the editor shows, for a value that carries only the preset layer."""
    editor = pictures.with_background(editor, shown)
    steps, jump_length, jump_n_sample, num_samples = (int(v) for v in (steps, jump_length, jump_n_sample, num_samples))
    compare, invert, full = bool(compare), bool(invert), preset in (DRAW, None)
    name = SERVICE.check_model_name(model)
    label = class_label_of(name, class_label)
    image, mask = pictures.editor_image(editor), mask_from_editor(editor)
    if not (mask ^ invert).any():
        raise ServeError("Empty mask: paint the region to fill with the brush, or pick a mask preset.")
    inp, big = check_request(name, image, mask, steps, jump_length, jump_n_sample, 0, num_samples, compare, invert,
                             full, label)
    seed = int(np.random.default_rng().integers(0, SEED_MAX)) if randomize else int(seed)
    key = getattr(request, "session_hash", None) or str(id(request))
    flag = SERVICE.stop_flags[key] = threading.Event()
    nothing = gr.skip()
    est = SERVICE.estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare)
    yield (f"Starting: {model_calls(steps, jump_length, jump_n_sample):,} model calls, about "
           f"{fmt_seconds(est or 0)}...", None, nothing, nothing, nothing, nothing, nothing, seed)
    start, frames, levels, stopped = time.perf_counter(), [], [], False
    try:
        for ev in gpu_run(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare, invert,
                          full, key, label):
            if ev[0] == "done":
                _, res, plain, per_call = ev
                SERVICE.note_run(name, per_call, serving.batch_rows(num_samples, compare))
                continue
            _, tick, total, lv, xt, x0 = ev
            levels.append(lv)
            if xt is not None:
                frames.append((tick, xt, x0))
                spent = time.perf_counter() - start
                progress((tick + 1, total), desc="Inpainting")
                yield (f"Step {tick + 1:,}/{total:,} - {fmt_seconds(spent)} elapsed, ETA "
                       f"{fmt_seconds(spent / (tick + 1) * (total - tick - 1))}",
                       pictures.strip(list(x0), PREVIEW_TILE), nothing, nothing, nothing, nothing, nothing, seed)
    except InterruptedError:
        stopped = True
    finally:
        if SERVICE.stop_flags.get(key) is flag:  # not a newer run's flag of the same session
            del SERVICE.stop_flags[key]
    if stopped:  # raised here, not in ``except``: no traceback keeps the run's tensors alive
        frames = levels = None
        raise gr.Error("Stopped.")
    out_dir = serving.new_results_dir(RESULTS_DIR)
    try:
        yield finish(name, inp, big, res, plain, frames, levels, steps, jump_n_sample, seed, label,
                     time.perf_counter() - start, out_dir)
    finally:  # Gradio has copied the files into its cache by the time it asks for more (or closes us)
        shutil.rmtree(out_dir, ignore_errors=True)



def stop_run(request: gr.Request):
    SERVICE.stop(getattr(request, "session_hash", None))
    return "Stopping..."


def uploaded_path(value) -> str:
    """The path of a file the client uploaded (a FileData dict), refused unless it lies in Gradio's upload cache:
    no path a client names reaches the file system otherwise."""
    path = value.get("path") if isinstance(value, dict) else None
    resolved = Path(path).resolve() if isinstance(path, str) and path and "\0" not in path else None
    if resolved is None or Path(gr.utils.get_upload_folder()).resolve() not in resolved.parents \
            or not resolved.is_file():
        raise ServeError("The mask file was not uploaded; pass it with gradio_client.handle_file(path).")
    return str(resolved)


@visible_errors
def api_inpaint(image, mask, model, steps, jump_length, jump_n_sample, seed, num_samples, compare, size="auto",
                class_label=None):
    """Inpaint ``image`` (a file) where ``mask`` says: a preset name (see repaint.masks.PRESETS) or a mask file
    (white or opaque = fill, same size as the image). Returns the results as PNG files; with ``compare``,
    the n = r results first, then the n = 1 results from the same seeds. ``size``: "full" (the image's own size,
    filled through a window around the mask), "model" (the centred square at the model's resolution) or "auto"
    (full for a mask file, the model's for a preset). ``class_label``: a class-conditional model's class (imagenet:
    0-999) for every sample; empty, each sample draws a random class from its seed.

    A generator (it yields nothing until the results) so that Gradio closes it when the client cancels or
    disconnects, which stops the model at its next call; a plain function would run on to the end."""
    name = SERVICE.check_model_name(model)
    if image is None:
        raise ServeError("No image: pass an image file.")
    if mask is None or (isinstance(mask, str) and not mask.strip()):
        raise ServeError("No mask: pass a preset name or a mask file.")
    if isinstance(mask, dict):
        mask = uploaded_path(mask)
    elif isinstance(mask, str) and mask.strip() in repaint.masks.PRESETS:
        mask = mask.strip()
    else:
        raise ServeError(f"unknown mask preset {str(mask)[:40]!r}; choose one of: {', '.join(repaint.masks.PRESETS)}, "
                         f"or pass a mask file with handle_file")
    if size not in SIZES:
        raise ServeError(f"size must be one of {', '.join(SIZES)}, got {str(size)[:20]!r}")
    full = size == "full" or (size == "auto" and mask not in repaint.masks.PRESETS)
    steps, jump_length, jump_n_sample, seed, num_samples = (int(v) for v in (steps, jump_length, jump_n_sample, seed,
                                                                             num_samples))
    label = None if class_label is None else int(class_label)
    check_request(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, bool(compare), False, full,
                  label)
    for ev in gpu_run(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, bool(compare), False,
                      full, None, label):
        if ev[0] == "done":
            res, plain = ev[1], ev[2]
            SERVICE.note_run(name, ev[3], serving.batch_rows(num_samples, bool(compare)))
        elif ev[4] is not None:
            yield gr.skip()  # a chance for Gradio to notice a cancel or a lost client (and close us)
    out_dir = serving.new_results_dir(RESULTS_DIR)
    try:
        yield serving.save_results(out_dir, "", res, plain, jump_n_sample, seed)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- layout
DEFAULT_MODEL, NOTICE = SERVICE.pick_default(os.environ.get(MODEL_ENV, "").strip(), GPU_MODEL, OFFLINE_MODEL,
                                             MODEL_ENV)


def examples_rows() -> list[list]:
    """gr.Examples rows: image, preset, model, T, j, r, seed, samples, compare, class (None: random or none)."""
    face1, face2, astronaut = (str(EXAMPLES_DIR / f) for f in ("face1.png", "face2.png", "astronaut.png"))
    rows = [[face1, "every_second_line", OFFLINE_MODEL, 50, 5, 5, 1, 2, False, None],
            [face2, "super_resolution_2x", OFFLINE_MODEL, 50, 5, 5, 2, 2, False, None],
            [face1, "left_half", OFFLINE_MODEL, 100, 10, 5, 3, 2, False, None],
            [face2, "expand", OFFLINE_MODEL, 100, 10, 10, 4, 1, True, None]]
    if HAS_GPU:
        rows += [[astronaut, "every_second_line", "celebahq", 250, 10, 10, 0, 1, False, None],
                 [astronaut, "super_resolution_2x", "celebahq", 250, 10, 10, 0, 1, False, None],
                 [str(EXAMPLES_DIR / "cat.png"), "bottom_half", "cat", 250, 10, 10, 0, 1, False, None],
                 [astronaut, "center_box", "celebahq", 100, 10, 10, 0, 1, True, None],
                 # The paper's own models (guided-diffusion checkpoints, downloaded and converted on first use):
                 # a scene with wide strokes (Places2), and the class-conditional ImageNet model told it is a
                 # coffee mug (class 504) with the centre of the cup to fill.
                 [str(EXAMPLES_DIR / "rocket.jpg"), "thick", "places2", 250, 10, 10, 0, 1, False, None],
                 [str(EXAMPLES_DIR / "coffee.png"), "center_box", "imagenet", 250, 10, 10, 0, 1, False, 504]]
    return [r for r in rows if Path(r[0]).is_file()]


def build_demo() -> gr.Blocks:
    """The page: a new Blocks each call (tests serve their own), queued. One public endpoint: ``inpaint``."""
    private = dict(api_visibility="private", show_progress="hidden")
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            f"# {TITLE}\n[RePaint](https://arxiv.org/abs/2201.09865) (Lugmayr et al., CVPR 2022) fills a masked "
            "region with an *unconditional* diffusion model: at every step the known pixels are re-noised from the "
            "input, and **resampling** (going back *j* steps, *r* times) lets the filled part agree with them. Paint "
            "the region to fill in blue (the result keeps your photo's size), or pick a preset (the model's square).")
        gr.Markdown(NOTICE, visible=bool(NOTICE), elem_id="notice")
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                editor = gr.ImageEditor(
                    label="Image - paint the region to fill", type="numpy", image_mode="RGBA", format="png",
                    brush=BRUSH, eraser=gr.Eraser(default_size=24), layers=False, transforms=(), height=480,
                    sources=("upload", "clipboard"), elem_id="editor",
                    # gradio 6.31.0: a layer sent from the backend is sized from the bounds of the image container,
                    # which also hold the brush's invisible preview sprite of canvas_size (800x800 by default); an
                    # image under 800 px then gets its layer centred in an 800x800 texture, off the image (an
                    # older form: gradio #7258 / PR #7959). A 1x1 canvas_size places it exactly at every size.
                    canvas_size=(1, 1))
                shown = gr.State(None)  # the editor's background (a value the app sets carries only the layer)
                with gr.Row():
                    preset = gr.Dropdown(PRESET_CHOICES, value=DRAW, label="Mask", scale=2, elem_id="preset",
                                         info="a preset goes into the editor as a layer you can edit")
                    invert = gr.Checkbox(False, label="Invert: keep the painted region, fill the rest", scale=1)
            with gr.Column(scale=2, min_width=300):
                model = gr.Dropdown(serving.model_choices(HAS_GPU), value=DEFAULT_MODEL, label="Model", elem_id="model",
                                    allow_custom_value=ALLOW_HUB_IDS,
                                    info="Or type a Hugging Face Hub id, owner/name." if ALLOW_HUB_IDS else None)
                with gr.Accordion("Model details", open=False):
                    gr.Markdown(serving.model_table())
                steps = gr.Slider(1, STEPS_MAX, DEFAULT_STEPS, step=1, label="Steps T", elem_id="steps")
                jump_length = gr.Slider(1, JUMP_MAX, DEFAULT_JUMP, step=1, label="Jump length j", elem_id="jump")
                jump_n_sample = gr.Slider(1, RESAMPLE_MAX, DEFAULT_RESAMPLE, step=1, elem_id="resample",
                                          label="Resamplings r (the paper's n)")
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=SEED_MAX)
                    randomize = gr.Checkbox(False, label="Random seed")
                num_samples = gr.Slider(1, SAMPLES_MAX, 1, step=1, label="Samples", elem_id="samples")
                class_label = gr.Number(None, label="Class (ImageNet index 0-999; empty: a random class per sample)",
                                        precision=0, minimum=0, maximum=999, elem_id="class",
                                        visible=SERVICE.num_classes(DEFAULT_MODEL) > 0)
                compare = gr.Checkbox(False, label="Compare n=1 vs n>1 (same seeds, one batched run)",
                                      elem_id="compare")
                estimate = gr.Markdown(SERVICE.estimate_text(DEFAULT_MODEL, DEFAULT_STEPS, DEFAULT_JUMP,
                                                             DEFAULT_RESAMPLE, 1, False), elem_id="estimate")
                with gr.Row():
                    run_btn = gr.Button("Inpaint", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
        status = gr.Markdown("", elem_id="status")
        with gr.Row():
            preview = gr.Image(label="Predicted x0 while running", format="png", interactive=False,
                               elem_id="preview")
            gallery = gr.Gallery(label="Results (PNG)", format="png", columns=4, elem_id="results",
                                 interactive=False)
        with gr.Row():
            side = gr.Image(label="Side by side", format="png", interactive=False, elem_id="side")
            slider = gr.ImageSlider(label="Before / after (n=1 / n>1 when comparing)", format="png",
                                    interactive=False, elem_id="slider")
        with gr.Row():
            animation = gr.Image(label="The process: x_t, predicted x0, and the noise level", type="filepath",
                                 interactive=False, elem_id="animation")
            downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        gr.DeepLinkButton()
        gr.Examples(examples_rows(), inputs=[editor, preset, model, steps, jump_length, jump_n_sample, seed,
                                             num_samples, compare, class_label],
                    cache_examples=False, api_visibility="private",  # the editor's events add the preset
                    label="Examples (the README's cases): click one, then Inpaint", elem_id="examples")
        with gr.Row(visible=False):  # the components of the ``inpaint`` API endpoint (gradio_client)
            api_inputs = [gr.Image(type="filepath", label="image", format="png"),
                          gr.JSON(label="mask: a preset name or handle_file(mask path)"), gr.Textbox(label="model"),
                          gr.Number(DEFAULT_STEPS, label="steps", precision=0),
                          gr.Number(DEFAULT_JUMP, label="jump_length", precision=0),
                          gr.Number(DEFAULT_RESAMPLE, label="jump_n_sample", precision=0),
                          gr.Number(0, label="seed", precision=0), gr.Number(1, label="num_samples", precision=0),
                          gr.Checkbox(False, label="compare"), gr.Radio(list(SIZES), value="auto", label="size"),
                          gr.Number(None, label="class_label", precision=0)]
            api_out = gr.Gallery(format="png", label="results")
            api_btn = gr.Button()

        # --------------------------------------------------------------------------------------- events
        settings = [model, steps, jump_length, jump_n_sample, num_samples, compare]
        gr.on([c.change for c in settings[1:]], estimate_text, settings, estimate, queue=False, **private)
        model.change(on_model_change, settings, [estimate, class_label], **private)
        for trigger in (preset.input, model.input, seed.input):  # the visitor's changes: the preset drawn anew
            trigger(redraw_preset, [editor, preset, model, seed, shown], editor, **private)
        # A value set from the backend fires .upload again (an endless redraw, cf. gradio #7502), an example's image
        # fires .upload/.input, and after an example a visitor's upload fired no .upload: all go to the guard.
        gr.on([editor.upload, editor.change, editor.input], sync_preset, [editor, preset, model, seed, shown],
              [editor, shown], trigger_mode="always_last", **private)
        run_event = run_btn.click(
            run, [editor, preset, model, steps, jump_length, jump_n_sample, seed, randomize, num_samples, compare,
                  invert, class_label, shown], [status, preview, gallery, side, slider, animation, downloads, seed],
            api_visibility="private")
        stop_btn.click(stop_run, None, status, cancels=[run_event], queue=False, api_visibility="private")
        api_btn.click(api_inpaint, api_inputs, api_out, api_name="inpaint")
    demo.queue(max_size=QUEUE_MAX, default_concurrency_limit=CONCURRENCY)
    return demo


demo = build_demo()
LAUNCH_KWARGS = dict(max_file_size=MAX_FILE_SIZE, css=CSS, allowed_paths=[str(EXAMPLES_DIR)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--share", action="store_true", help="also open a temporary public link")
    parser.add_argument("--host", default=None, help="server name, e.g. 0.0.0.0")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if not HAS_GPU and "OMP_NUM_THREADS" not in os.environ:
        # One core is left to the server: with torch on every core, its event loop and the run's hand-offs preempt
        # the model's threads mid-operation (2 cores, bundled model, T=50, j=5, r=5, 2 samples: 7.7-8.0 s per API
        # request with 2 threads, 4.6-4.8 s with 1; the sampler alone takes 3.0 s and 3.8 s).
        torch.set_num_threads(max(1, torch.get_num_threads() - 1))
    demo.launch(share=args.share, server_name=args.host, server_port=args.port, **LAUNCH_KWARGS)

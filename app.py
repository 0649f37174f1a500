"""RePaint inpainting demo (Lugmayr et al., CVPR 2022), a Gradio Space: constants, loading, layout and events; the
serving chain (requests, checks, the GPU run, results) is ``repaint.space``, the pictures ``repaint.space.pictures``.
Runs on ZeroGPU, a GPU or a CPU (then the offline ``bundled`` model is the default). ``python app.py`` serves it
locally; ``--share`` also opens a temporary public link."""

from __future__ import annotations

try:  # ZeroGPU needs ``spaces`` imported before torch; elsewhere the decorator is a no-op
    import spaces
except ImportError:  # pragma: no cover - plain installs without the HF Spaces package
    spaces = None

import argparse
import logging
import os
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from repaint.space import errors, files, offer, page, pictures, requests, service, streams, zerogpu

# ----------------------------------------------------------------------------------------------- constants
TITLE = "RePaint: inpainting with denoising diffusion"
HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
ON_ZEROGPU = bool(spaces is not None and getattr(spaces.config.Config, "zero_gpu", False))
HAS_GPU = ON_ZEROGPU or torch.cuda.is_available()
GPU_MODEL, OFFLINE_MODEL = "celebahq", "bundled"  # defaults on a GPU, and on a CPU or without the Hub
MODEL_ENV = "REPAINT_MODEL"  # environment variable overriding the default model
MODELS_ENV = "REPAINT_MODELS"  # the models offered, e.g. "celebahq,places2,bundled" (default: offer.offered_models)
HUB_IDS_ENV = "REPAINT_ALLOW_HUB_IDS"  # "1": any Hub id ``owner/name`` may be asked for (not on ZeroGPU: Service)
ALLOW_HUB_IDS = os.environ.get(HUB_IDS_ENV, "").strip().lower() in ("1", "true", "yes") and not ON_ZEROGPU
PAPER = (250, 10, 10)  # the paper's T, j and r (its n): the defaults, except on ZeroGPU ("Paper settings" there)
STEPS_MAX, JUMP_MAX, RESAMPLE_MAX, SAMPLES_MAX, SEED_MAX = 1000, 50, 20, 4, 2**31 - 1
PREVIEW_TILE = 128  # pixel height of the live preview
MAX_FILE_SIZE = "32mb"  # per upload: disk and memory are shared (a 50 MP JPEG fits; the editor gets a copy)
PHOTO_BUTTON = "Upload a photo (any size)"
QUEUE_MAX = 32  # requests waiting at once; more are refused with "Queue is full"
CONCURRENCY = 8 if ON_ZEROGPU else 1  # ZeroGPU: each run its own GPU worker; elsewhere one model per process
DELETE_CACHE = (1800, 3600)  # every 30 min delete cached files older than 1 h
CSS = page.CSS
BRUSH = gr.Brush(default_size=24, colors=[("#1e5aff", 0.5)], default_color=("#1e5aff", 0.5), color_mode="fixed")
DRAW = "draw"
PRESET_CHOICES = [("Draw it yourself", DRAW)] + [(label, name) for name, label in pictures.PRESET_LABELS.items()]
RESULTS_DIR = files.RESULTS_DIR  # one folder per run, deleted once Gradio has copied the files
FULL_MASK_NOTE = "The mask covers the whole image: nothing is known, so this is unconditional generation."

SERVICE = service.Service(
    has_gpu=HAS_GPU,
    on_zerogpu=ON_ZEROGPU,
    allow_hub_ids=ALLOW_HUB_IDS,
    offered=offer.offered_models(os.environ.get(MODELS_ENV), HAS_GPU, ON_ZEROGPU),
)
visible_errors = errors.visible(gr.Error)  # a handler's ServeError: a gr.Error with its message


# ----------------------------------------------------------------------------------------------- the editor
def editor_with_preset(value, preset: str, model: str, seed: int):
    """The preset as the editor's only layer, at the background's size (cleared for Draw)."""
    draw = preset in (DRAW, None)
    value = pictures.preset_value(value, None if draw else preset, 0 if draw else SERVICE.model_resolution(model), seed)
    return gr.skip() if value is None else value


mask_from_editor = pictures.mask_from_editor  # looked up here at each run (the browser test records it)


@visible_errors
def sync_preset(value, preset: str, model: str, seed: int, shown):
    """On any editor event: the preset drawn over a *new* background (an upload, an example), the same one left
    alone (see pictures.editor_event). Returns (editor value or gr.skip(), the background the editor now shows)."""
    redraw, background = pictures.editor_event(value, shown, preset in (DRAW, None))
    if background is None:  # the value this app just set (a layer only, see editor_with_preset)
        return gr.skip(), gr.skip()
    return (editor_with_preset(value, preset, model, seed) if redraw else gr.skip()), background


@visible_errors
def redraw_preset(value, preset: str, model: str, seed: int, shown):
    """The visitor changed the preset, model or seed: (the preset drawn anew, pictures.carried_background)."""
    background = pictures.carried_background(value)
    return editor_with_preset(
        pictures.with_background(value, shown), preset, model, seed
    ), gr.skip() if background is None else background


# ----------------------------------------------------------------------------------------------- handlers
@visible_errors  # inside the GPU function: gr.Error is the one error ZeroGPU hands on with its message
def _gpu_run(req: requests.Request):
    yield from SERVICE.run(req)


def gpu_runner(spaces_module):
    """The model run, in a ZeroGPU slot sized per request where ``spaces`` is there (elsewhere as it is)."""
    return _gpu_run if spaces_module is None else spaces_module.GPU(duration=SERVICE.gpu_duration)(_gpu_run)


gpu_run = gpu_runner(spaces)


def estimate_text(model, steps, jump_length, jump_n_sample, num_samples, compare):
    """The estimate of the settings shown (a function of app.py's, so that runs' re-timing is read each time)."""
    return SERVICE.estimate_text(model, steps, jump_length, jump_n_sample, num_samples, compare)


def on_model_change(name, steps, jump_length, jump_n_sample, num_samples, compare):
    """Estimate, class box, guidance scale (a model with a classifier), on ZeroGPU T, j, r fitting the slot; a model
    that fails to load: warned, chooser back."""
    name = SERVICE.usable_model(name, gr.Warning)
    fit = service.fitting_settings(SERVICE, name, zerogpu.ZEROGPU_SLOT_S) if ON_ZEROGPU else [gr.skip()] * 3
    return (
        SERVICE.estimate_text(
            name, *(fit if ON_ZEROGPU else (steps, jump_length, jump_n_sample)), num_samples, compare
        ),
        gr.update(visible=SERVICE.num_classes(name) > 0),
        gr.update(visible=SERVICE.has_classifier(name)),
        *fit,
        name,
    )


def check_request(req: requests.Request) -> requests.Checked:  # a mask over everything: the visitor is told
    return SERVICE.check_request(req, SAMPLES_MAX, on_full_mask=lambda: gr.Info(FULL_MASK_NOTE))


@visible_errors
def run(
    editor,
    preset,
    model,
    steps,
    jump_length,
    jump_n_sample,
    seed,
    randomize,
    num_samples,
    compare,
    invert,
    request: gr.Request,
    class_label=None,
    shown=None,
    original=None,
    classifier_scale=None,
    progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a tracker
):
    """The UI handler: progress and previews (the results area shown), then the results, the slider's labels and
    the samples it can show. ``shown``: the editor's background (see pictures)."""
    editor, key = pictures.with_background(editor, shown), getattr(request, "session_hash", None) or str(id(request))
    seed = int(np.random.default_rng().integers(0, SEED_MAX)) if randomize else int(seed)
    image, mask, full = pictures.page_input(
        editor,
        mask_from_editor(editor),
        preset in (DRAW, None),
        original,
        on_outside=lambda: gr.Info(pictures.OUTSIDE_SQUARE_NOTE),
    )
    req = SERVICE.page_request(
        image,
        mask,
        model,
        steps,
        jump_length,
        jump_n_sample,
        seed,
        num_samples,
        compare,
        invert,
        full,
        class_label,
        classifier_scale,
        key,
    )
    checked, flag, nothing, show = check_request(req), SERVICE.stop_flag(key), gr.skip(), gr.update(visible=True)
    try:
        events = streams.page_stream(SERVICE, gpu_run, req, checked, flag, RESULTS_DIR, PREVIEW_TILE)
        for kind, out in streams.until_stopped(events, flag):
            if kind == "status":  # a Stop too: its status, the preview cleared
                if out[2]:
                    progress(out[2], desc="Inpainting")
                yield out[0], out[1], nothing, nothing, nothing, nothing, nothing, seed, show, *[nothing] * 3
            else:
                yield (
                    out["status"],
                    nothing,
                    out["gallery"],
                    gr.update(value=out["side"], label=out["side_label"]),
                    out["slider"],
                    out["gif"],
                    out["files"],
                    seed,
                    show,
                    page.slider_labels(*out["slider_labels"]),
                    page.sample_choices(len(out["pairs"]), seed),
                    out["pairs"],
                )
    finally:
        SERVICE.drop_flag(key, flag)


def stop_run(request: gr.Request):  # the run itself then says that it stopped
    return streams.STOPPING if SERVICE.stop(getattr(request, "session_hash", None)) else streams.NOTHING_TO_STOP


load_photo = visible_errors(pictures.photo_for_editor)  # the editor gets a copy of a photo, the run the original


@visible_errors
def api_inpaint(
    image,
    mask,
    model,
    steps,
    jump_length,
    jump_n_sample,
    seed,
    num_samples,
    compare,
    size="auto",
    class_label=None,
    classifier_scale=None,
):
    """Inpaint ``image`` (a file) where ``mask`` says: a preset name (see repaint.masks.PRESETS) or a mask file
    (white or opaque = fill, same size as the image). Returns the results as PNG files; with ``compare``,
    the n = r results first, then the n = 1 results from the same seeds. ``size``: "full" (the image's own size,
    filled through a window around the mask), "model" (the centred square at the model's resolution) or "auto"
    (full for a mask file, the model's for a preset). ``class_label``: a class-conditional model's class (imagenet:
    0-999) for every sample; empty, each sample draws a random class from its seed. ``classifier_scale``: classifier
    guidance for a model with a classifier (imagenet; empty: 1, the paper's setting; 0: unguided). A generator:
    Gradio closes it when the client cancels or disconnects, which stops the model at its next call."""
    req = SERVICE.api_request(
        image,
        mask,
        model,
        steps,
        jump_length,
        jump_n_sample,
        seed,
        num_samples,
        compare,
        size,
        class_label,
        classifier_scale,
        upload_folder=gr.utils.get_upload_folder(),
    )
    check_request(req)
    for out in streams.api_stream(SERVICE, gpu_run, req, RESULTS_DIR):
        yield gr.skip() if out is None else out  # a skip: a chance for Gradio to notice a cancel or a lost client


# ----------------------------------------------------------------------------------------------- loading
# On ZeroGPU every offered model is placed on "cuda" here, in the main thread before launch (see Service.start).
DEFAULT_MODEL, NOTICE, (DEFAULT_STEPS, DEFAULT_JUMP, DEFAULT_RESAMPLE) = SERVICE.start(
    os.environ.get(MODEL_ENV, "").strip(), GPU_MODEL, OFFLINE_MODEL, MODEL_ENV, PAPER, server=__name__ == "__main__"
)


# ----------------------------------------------------------------------------------------------- layout
def examples_rows() -> list[list]:  # the README's cases, those whose model is offered here
    return page.examples_rows(EXAMPLES_DIR, OFFLINE_MODEL, HAS_GPU, SERVICE.offered)


def build_demo() -> gr.Blocks:
    """The page: a new Blocks each call (tests serve their own), queued. One public endpoint: ``inpaint``."""
    private = dict(api_visibility="private", show_progress="hidden")
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            f"# {TITLE}\n[RePaint](https://arxiv.org/abs/2201.09865) (Lugmayr et al., CVPR 2022) fills a masked "
            "region with an *unconditional* diffusion model: at every step the known pixels are re-noised from the "
            "input, and **resampling** (going back *j* steps, *r* times) lets the filled part agree with them. Paint "
            "the region to fill in blue (the result keeps your photo's size), or pick a preset (the model's square)."
        )
        gr.Markdown(NOTICE, visible=bool(NOTICE), elem_id="notice")
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                editor = gr.ImageEditor(
                    label="Image - paint the region to fill",
                    type="numpy",
                    image_mode="RGBA",
                    format="png",
                    brush=BRUSH,
                    eraser=gr.Eraser(default_size=24),
                    layers=False,
                    transforms=(),
                    height=480,
                    sources=("upload", "clipboard"),
                    elem_id="editor",
                    # gradio 6.31.0 sizes a layer sent from the backend from the image container's bounds, which
                    # hold the brush's preview sprite of canvas_size: a 1x1 one places it at every size (pictures)
                    canvas_size=(1, 1),
                )
                # the editor's background (a value the app sets carries only the layer); an uploaded photo's file
                shown, original = gr.State(None), gr.State(None)  # (the editor shows a copy, the run uses the file)
                photo = gr.UploadButton(PHOTO_BUTTON, file_types=["image"], size="sm", elem_id="photo")
                with gr.Row():
                    preset = gr.Dropdown(
                        PRESET_CHOICES,
                        value=DRAW,
                        label="Mask",
                        scale=2,
                        elem_id="preset",
                        info="a preset goes into the editor as a layer you can edit",
                    )
                    invert = gr.Checkbox(False, label="Invert: keep the painted region, fill the rest", scale=1)
            with gr.Column(scale=2, min_width=300):
                model = gr.Dropdown(
                    offer.model_choices(HAS_GPU, SERVICE.offered),
                    value=DEFAULT_MODEL,
                    label="Model",
                    elem_id="model",
                    allow_custom_value=SERVICE.allow_hub_ids,
                    info="Or type a Hugging Face Hub id, owner/name." if ALLOW_HUB_IDS else None,
                )
                with gr.Accordion("Model details", open=False):
                    gr.Markdown(offer.model_table())
                steps = gr.Slider(1, STEPS_MAX, DEFAULT_STEPS, step=1, label="Steps T", elem_id="steps")
                jump_length = gr.Slider(1, JUMP_MAX, DEFAULT_JUMP, step=1, label="Jump length j", elem_id="jump")
                jump_n_sample = gr.Slider(
                    1, RESAMPLE_MAX, DEFAULT_RESAMPLE, step=1, elem_id="resample", label="Resamplings r (the paper's n)"
                )
                with gr.Row():  # one row: the Examples stay in the first screen
                    with gr.Column(min_width=120):
                        seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=SEED_MAX)
                        randomize = gr.Checkbox(False, label="Random seed")
                    num_samples = gr.Slider(1, SAMPLES_MAX, 1, step=1, label="Samples", elem_id="samples")
                class_label = gr.Number(
                    None,
                    label="Class (ImageNet index 0-999; empty: a random class per sample)",
                    precision=0,
                    minimum=0,
                    maximum=999,
                    elem_id="class",
                    visible=SERVICE.num_classes(DEFAULT_MODEL) > 0,
                )
                classifier_scale = gr.Slider(
                    0,
                    10,
                    1.0,
                    step=0.5,
                    elem_id="guidance",
                    label="Classifier guidance scale (the paper: 1; 0: unguided)",
                    visible=SERVICE.has_classifier(DEFAULT_MODEL),
                )
                compare = gr.Checkbox(
                    False,
                    label="Compare n=1 vs n>1 (same seeds, one batched run)",
                    info=page.COMPARE_INFO,
                    elem_id="compare",
                )
                estimate = gr.Markdown(
                    SERVICE.estimate_text(DEFAULT_MODEL, DEFAULT_STEPS, DEFAULT_JUMP, DEFAULT_RESAMPLE, 1, False),
                    elem_id="estimate",
                )
                paper_btn = gr.Button("Paper settings (T=250, j=10, r=10)", size="sm", elem_id="paper")
                with gr.Row():
                    run_btn = gr.Button("Inpaint", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                status = gr.Markdown("", elem_id="status")
        # the results, out of the way (Examples in the first screen) until a run shows them
        with gr.Column(visible=False, elem_id="results-area") as results_area:
            with gr.Row():  # min_width: on a phone one above the other, each the page's width
                preview = gr.Image(
                    label="Predicted x0 while running",
                    format="png",
                    interactive=False,
                    elem_id="preview",
                    min_width=300,
                )
                gallery = gr.Gallery(
                    label="Results (PNG)", format="png", columns=4, elem_id="results", interactive=False, min_width=300
                )
            with gr.Row():
                side = gr.Image(label="Side by side", format="png", interactive=False, elem_id="side")
                with gr.Column():
                    slider_labels = gr.HTML(page.slider_labels("before", "after"), elem_id="slider-labels")
                    slider = gr.ImageSlider(label="Before / after", format="png", interactive=False, elem_id="slider")
                    sample = gr.Radio([], label="Sample shown", visible=False, elem_id="sample")
                    pairs = gr.State(None)  # every sample's slider pair (streams.page_results)
            with gr.Row():  # min_width: on a phone each gets the full width (the file names are readable)
                animation = gr.Image(
                    label="The process: x_t, predicted x0, and the noise level",
                    type="filepath",
                    interactive=False,
                    elem_id="animation",
                    min_width=300,
                )
                downloads = gr.File(
                    label="Downloads", file_count="multiple", interactive=False, min_width=300, elem_id="downloads"
                )
        gr.Examples(
            examples_rows(),
            inputs=[editor, preset, model, steps, jump_length, jump_n_sample, seed, num_samples, compare, class_label],
            cache_examples=False,
            api_visibility="private",  # the editor's events add the preset
            label="Examples (the README's cases): click one, then Inpaint",
            elem_id="examples",
        )
        gr.DeepLinkButton()
        with gr.Row(visible=False):  # the components of the ``inpaint`` API endpoint (gradio_client)
            api_inputs = page.api_inputs(DEFAULT_STEPS, DEFAULT_JUMP, DEFAULT_RESAMPLE, requests.SIZES)
            api_out = gr.Gallery(format="png", label="results")
            api_btn = gr.Button()
        # --------------------------------------------------------------------------------------- events
        settings = [model, steps, jump_length, jump_n_sample, num_samples, compare]
        gr.on([demo.load, *(c.change for c in settings[1:])], estimate_text, settings, estimate, queue=False, **private)
        model.change(
            on_model_change,
            settings,
            [estimate, class_label, classifier_scale, steps, jump_length, jump_n_sample, model],
            **private,
        )
        paper_btn.click(lambda: PAPER, None, [steps, jump_length, jump_n_sample], queue=False, **private)
        for trigger in (preset.input, model.input, seed.input):  # the visitor's changes: the preset drawn anew
            trigger(redraw_preset, [editor, preset, model, seed, shown], [editor, shown], **private)
        # A value set from the backend fires .upload again (an endless redraw, cf. gradio #7502), an example's image
        # fires .upload/.input, and after an example a visitor's upload fired no .upload: all go to the guard.
        gr.on(
            [editor.upload, editor.change, editor.input],
            sync_preset,
            [editor, preset, model, seed, shown],
            [editor, shown],
            trigger_mode="always_last",
            **private,
        )
        run_btn.click(
            run,
            [
                editor,
                preset,
                model,
                steps,
                jump_length,
                jump_n_sample,
                seed,
                randomize,
                num_samples,
                compare,
                invert,
                class_label,
                shown,
                original,
                classifier_scale,
            ],
            [
                status,
                preview,
                gallery,
                side,
                slider,
                animation,
                downloads,
                seed,
                results_area,
                slider_labels,
                sample,
                pairs,
            ],
            api_visibility="private",
        ).then(estimate_text, settings, estimate, queue=False, **private)
        sample.input(page.show_sample, [sample, pairs], slider, queue=False, **private)
        stop_btn.click(stop_run, None, status, queue=False, api_visibility="private")  # the run ends itself
        photo.upload(load_photo, photo, [editor, original], **private)
        api_btn.click(api_inpaint, api_inputs, api_out, api_name="inpaint")
    demo.queue(max_size=QUEUE_MAX, default_concurrency_limit=CONCURRENCY)
    return demo


demo = build_demo()
LAUNCH_KWARGS = dict(
    max_file_size=MAX_FILE_SIZE, css=CSS, allowed_paths=[str(EXAMPLES_DIR)], head=page.head(MAX_FILE_SIZE, PHOTO_BUTTON)
)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--share", action="store_true", help="also open a temporary public link")
    parser.add_argument("--host", default=None, help="server name, e.g. 0.0.0.0")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    demo.launch(share=args.share, server_name=args.host, server_port=args.port, **LAUNCH_KWARGS)

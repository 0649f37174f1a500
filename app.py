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

from repaint import Settings
from repaint.space import (
    clients,
    errors,
    files,
    limits,
    offer,
    page,
    pictures,
    requests,
    service,
    streams,
    visitors,
    zerogpu,
)

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
PAPER = Settings(steps=250, jump_length=10, jump_n_sample=10)  # the defaults, except on ZeroGPU ("Paper settings")
STEPS_MAX, JUMP_MAX, RESAMPLE_MAX, SAMPLES_MAX, SEED_MAX = 1000, 50, 20, 4, 2**31 - 1
PREVIEW_TILE = 128  # pixel height of the live preview
MAX_FILE_SIZE = "32mb"  # per upload: disk and memory are shared (a 50 MP JPEG fits; the editor gets a copy)
PHOTO_BUTTON = "Upload a photo (any size)"
QUEUE_MAX = 32  # requests waiting at once; more are refused with "Queue is full"
# runs at once: on ZeroGPU each in a GPU worker of its own; elsewhere the runs of one model share its calls (a crowd,
# repaint.crowd), at most crowd.ROWS_MAX rows per call, the runs taking turns past that
CONCURRENCY = 8 if ON_ZEROGPU else 16
DELETE_CACHE = (1800, 3600)  # every 30 min delete cached files older than 1 h
CSS = page.CSS
BRUSH = gr.Brush(default_size=24, colors=[("#1e5aff", 0.5)], default_color=("#1e5aff", 0.5), color_mode="fixed")
DRAW = "draw"
PRESET_CHOICES = [("Draw it yourself", DRAW)] + [(label, name) for name, label in pictures.PRESET_LABELS.items()]
RESULTS_DIR = files.RESULTS_DIR  # one folder per run, deleted once Gradio has copied the files
FULL_MASK_NOTE = "The mask covers the whole image: nothing is known, so this is unconditional generation."
INTRO = (
    f"# {TITLE}\n[RePaint](https://arxiv.org/abs/2201.09865) (Lugmayr et al., CVPR 2022) fills a masked region with "
    "an *unconditional* diffusion model: at every step the known pixels are re-noised from the input, and "
    "**resampling** (going back *j* steps, *r* times) lets the filled part agree with them. Paint the region to fill "
    "in blue (the result keeps your photo's size), or pick a preset (the model's square)."
)

SERVICE = service.Service(
    limits=limits.Limits.from_env(),
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
    value = pictures.preset_value(
        value, None if draw else preset, 0 if draw else SERVICE.cache.model_resolution(model), seed
    )
    return gr.skip() if value is None else value


def kept(background, key, shown):
    """What the session keeps of the editor's image ``background`` (``key``: its pictures.background_key) for its
    runs (a file, files.hold), in place of ``shown`` (deleted); gr.skip() when there is none or it is the same
    image."""
    if key is None or pictures.same_background(key, pictures.kept_key(shown)):
        return gr.skip()
    files.release(shown)
    return files.hold(background, key)


@visible_errors
def sync_preset(value, preset: str, model: str, seed: int, shown):
    """On any editor event: the preset drawn over a *new* background (an upload, an example), the same one left
    alone (see pictures.editor_event). Returns (editor value or gr.skip(), what the session keeps of the image)."""
    redraw, background, key = pictures.editor_event(value, shown, preset in (DRAW, None))
    if background is None:  # the value this app just set (a layer only, see editor_with_preset)
        return gr.skip(), gr.skip()
    return (editor_with_preset(value, preset, model, seed) if redraw else gr.skip()), kept(background, key, shown)


@visible_errors
def redraw_preset(value, preset: str, model: str, seed: int, shown):
    """The visitor changed the preset, model or seed: (the preset drawn anew, pictures.carried_background kept)."""
    background, key = pictures.carried_background(value), pictures.background_key(value)
    drawn = editor_with_preset(pictures.with_background(value, shown), preset, model, seed)
    return drawn, kept(background, key, shown)


# ----------------------------------------------------------------------------------------------- handlers
@visible_errors  # inside the GPU function: gr.Error is the one error ZeroGPU hands on with its message
def gpu_run(req: requests.Request):
    """The model run: in a ZeroGPU slot sized per request where spaces is there (elsewhere as it is)."""
    yield from SERVICE.runner.run(req)


if spaces is not None:
    gpu_run = spaces.GPU(duration=SERVICE.slot.gpu_duration)(gpu_run)


def estimate_text(model, steps, jump_length, jump_n_sample, num_samples, compare):
    """The estimate of the settings shown (a function of app.py's, so that runs' re-timing is read each time)."""
    try:
        settings = service.form_settings(steps, jump_length, jump_n_sample, num_samples, compare)
    except (TypeError, ValueError) as e:
        return f"Settings not valid: {e}"
    return SERVICE.estimate_text(model, settings)


def on_model_change(name, steps, jump_length, jump_n_sample, num_samples, compare) -> dict:
    """Estimate, class box, guidance scale (a model with a classifier), on ZeroGPU T, j, r fitting the slot; a model
    that fails to load: warned, chooser back."""
    name = SERVICE.cache.usable_model(name, gr.Warning)
    out = dict(model=name)
    if ON_ZEROGPU:
        fit = SERVICE.slot.fitting_settings(name, zerogpu.ZEROGPU_SLOT_S)
        out |= dict(steps=fit.steps, jump_length=fit.jump_length, jump_n_sample=fit.jump_n_sample)
        steps, jump_length, jump_n_sample = fit.steps, fit.jump_length, fit.jump_n_sample
    return out | dict(
        estimate=estimate_text(name, steps, jump_length, jump_n_sample, num_samples, compare),
        class_label=gr.update(visible=SERVICE.cache.num_classes(name) > 0),
        classifier_scale=gr.update(visible=SERVICE.cache.has_classifier(name)),
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
    pairs=None,
    progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a tracker
):
    """The UI handler: progress and previews (the results area shown), then the results, the slider's labels and
    the samples it can show, each keyed by its component's name (RUN_OUTPUTS). ``shown``: the editor's background
    (see pictures)."""
    editor, key = pictures.with_background(editor, shown), getattr(request, "session_hash", None) or str(id(request))
    seed = int(np.random.default_rng().integers(0, SEED_MAX)) if randomize else int(seed)
    draw, outside = preset in (DRAW, None), lambda: gr.Info(pictures.OUTSIDE_SQUARE_NOTE)
    image, mask, full = pictures.page_input(editor, pictures.mask_from_editor(editor), draw, original, outside)
    settings = service.form_settings(
        steps, jump_length, jump_n_sample, num_samples, compare, seed, class_label, classifier_scale
    )
    req = SERVICE.page_request(
        image=image, mask=mask, model=model, settings=settings, invert=invert, full_size=full, stop_key=key
    )
    checked = check_request(req)
    with SERVICE.runner.stop_flag(key) as flag, clients.READERS.watching(request, flag):  # Stop, or the page gone
        events = streams.page_stream(SERVICE, gpu_run, req, checked, flag, RESULTS_DIR, PREVIEW_TILE)
        every_time = dict(seed=seed, results_area=gr.update(visible=True))  # the seed run, the results area shown
        yield from run_events(streams.until_stopped(events, flag), every_time, progress, seed, pairs)


def run_events(events, every_time: dict, progress, seed: int, pairs=None):
    """The page's values of a run's events (page.keyed names them); ``pairs``: the session's slider pairs so far,
    replaced by the results'."""
    for ev in events:
        if isinstance(ev, streams.Status):  # a Stop too: its status, the preview cleared
            if ev.calls:
                progress(ev.calls, desc="Inpainting")
            yield every_time | dict(status=ev.text, preview=ev.preview)
        else:
            yield every_time | page.results_values(ev, seed, pairs)


def stop_run(request: gr.Request):  # the run itself then says that it stopped
    stopped = SERVICE.runner.stop(getattr(request, "session_hash", None))
    return streams.STOPPING if stopped else streams.NOTHING_TO_STOP


@visible_errors
def load_photo(path) -> tuple[dict, dict]:
    """The editor gets a copy of an uploaded photo, the run the original."""
    return pictures.photo_for_editor(path, SERVICE.limits.pixels_max)


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
    request: gr.Request = None,
    progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a tracker
):
    """Inpaint ``image`` (a file) where ``mask`` says: a preset name (see repaint.masks.PRESETS) or a mask file
    (white or opaque = fill, same size as the image). Returns the results as PNG files; with ``compare``,
    the n = r results first, then the n = 1 results from the same seeds. ``size``: "full" (the image's own size,
    filled through a window around the mask), "model" (the centred square at the model's resolution) or "auto"
    (full for a mask file, the model's for a preset). ``class_label``: a class-conditional model's class (imagenet:
    0-999) for every sample; empty, each sample draws a random class from its seed. ``classifier_scale``: classifier
    guidance for a model with a classifier (imagenet; empty: 1, the paper's setting; 0: unguided). A generator:
    A client that disconnects or stops reading stops the model at its next call; one that cancels, at the next of
    its progress messages (about a second). They say what the page's status says: the estimate first (with the runs
    that share the model), then the steps."""
    settings = service.form_settings(
        steps, jump_length, jump_n_sample, num_samples, compare, seed, class_label, classifier_scale
    )
    key = f"api-{getattr(request, 'session_hash', None) or id(request)}"
    req = SERVICE.api_request(
        image=image,
        mask=mask,
        model=model,
        settings=settings,
        size=size,
        upload_folder=gr.utils.get_upload_folder(),
        stop_key=key,
    )
    check_request(req)
    with SERVICE.runner.stop_flag(key) as flag, clients.READERS.watching(request, flag):  # the client gone
        for out in streams.api_stream(SERVICE, gpu_run, req, flag, RESULTS_DIR):
            if isinstance(out, streams.Status):
                progress(out.calls or (0, req.settings.calls), desc=out.text)
                yield gr.skip()  # a chance for Gradio to notice a cancel
            else:
                yield out


# ----------------------------------------------------------------------------------------------- loading
# On ZeroGPU every offered model is placed on "cuda" here, in the main thread before launch (see Service.start).
DEFAULT_MODEL, NOTICE, DEFAULTS = SERVICE.start(
    os.environ.get(MODEL_ENV, "").strip(), GPU_MODEL, OFFLINE_MODEL, MODEL_ENV, PAPER, server=__name__ == "__main__"
)


# ----------------------------------------------------------------------------------------------- layout
def examples_rows() -> list[list]:  # the README's cases, those whose model is offered here
    return page.examples_rows(EXAMPLES_DIR, OFFLINE_MODEL, HAS_GPU, SERVICE.cache.offered)


RUN_OUTPUTS = (  # what a run sets, by name (page.keyed)
    [
        "status",
        "preview",
        "gallery",
        "side",
        "slider",
        "animation",
        "downloads",
        "seed",
        "results_area",
        "slider_labels",
        "sample",
        "pairs",
    ]
)
RUN_INPUTS = [
    "editor",
    "preset",
    "model",
    "steps",
    "jump_length",
    "jump_n_sample",
    "seed",
    "randomize",
    "num_samples",
    "compare",
    "invert",
    "class_label",
    "shown",
    "original",
    "classifier_scale",
    "pairs",
]
SETTINGS = ["model", "steps", "jump_length", "jump_n_sample", "num_samples", "compare"]  # what the estimate reads
EXAMPLE_INPUTS = [
    "editor",
    "preset",
    "model",
    "steps",
    "jump_length",
    "jump_n_sample",
    "seed",
    "num_samples",
    "compare",
    "class_label",
]
MODEL_OUTPUTS = ["estimate", "class_label", "classifier_scale", "steps", "jump_length", "jump_n_sample", "model"]


def image_column(c: dict) -> None:
    """The editor, the photo button and the mask's choices."""
    c["editor"] = page.image_editor("Image - paint the region to fill", BRUSH, SERVICE.limits.pixels_max)
    # the editor's background (a value the app sets carries only the layer); an uploaded photo's file (the editor
    # shows a copy, the run uses the file)
    # what a session keeps of its images, each for SESSION_TTL_S after it last changed: the editor's image as a file
    # (deleted with the state), the original of an uploaded photo (a file of Gradio's upload cache)
    c["shown"] = gr.State(None, time_to_live=files.SESSION_TTL_S, delete_callback=files.release)
    c["original"] = gr.State(None, time_to_live=files.SESSION_TTL_S)
    c["photo"] = gr.UploadButton(PHOTO_BUTTON, file_types=["image"], size="sm", elem_id="photo")
    with gr.Row():
        mask_info = "a preset goes into the editor as a layer you can edit"
        c["preset"] = page.known_choice(
            gr.Dropdown(PRESET_CHOICES, value=DRAW, label="Mask", scale=2, elem_id="preset", info=mask_info)
        )
        c["invert"] = gr.Checkbox(False, label="Invert: keep the painted region, fill the rest", scale=1)


def settings_column(c: dict) -> None:
    """The model, the sampler's settings, the estimate and the buttons."""
    c["model"] = page.known_choice(
        gr.Dropdown(
            offer.model_choices(HAS_GPU, SERVICE.cache.offered),
            value=DEFAULT_MODEL,
            label="Model",
            elem_id="model",
            allow_custom_value=SERVICE.cache.allow_hub_ids,
            info="Or type a Hugging Face Hub id, owner/name." if ALLOW_HUB_IDS else None,
        )
    )
    with gr.Accordion("Model details", open=False):
        gr.Markdown(offer.model_table())
    c["steps"] = gr.Slider(1, STEPS_MAX, DEFAULTS.steps, step=1, label="Steps T", elem_id="steps")
    c["jump_length"] = gr.Slider(1, JUMP_MAX, DEFAULTS.jump_length, step=1, label="Jump length j", elem_id="jump")
    resample_label = "Resamplings r (the paper's n)"
    c["jump_n_sample"] = gr.Slider(
        1, RESAMPLE_MAX, DEFAULTS.jump_n_sample, step=1, elem_id="resample", label=resample_label
    )
    with gr.Row():  # one row: the Examples stay in the first screen
        with gr.Column(min_width=120):
            c["seed"] = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=SEED_MAX)
            c["randomize"] = gr.Checkbox(False, label="Random seed")
        c["num_samples"] = gr.Slider(1, SAMPLES_MAX, 1, step=1, label="Samples", elem_id="samples")
    c["class_label"] = gr.Number(
        None,
        label="Class (ImageNet index 0-999; empty: a random class per sample)",
        precision=0,
        minimum=0,
        maximum=999,
        elem_id="class",
        visible=SERVICE.cache.num_classes(DEFAULT_MODEL) > 0,
    )
    c["classifier_scale"] = gr.Slider(
        0,
        10,
        1.0,
        step=0.5,
        elem_id="guidance",
        label="Classifier guidance scale (the paper: 1; 0: unguided)",
        visible=SERVICE.cache.has_classifier(DEFAULT_MODEL),
    )
    compare_label = "Compare n=1 vs n>1 (same seeds, one batched run)"
    c["compare"] = gr.Checkbox(False, label=compare_label, info=page.COMPARE_INFO, elem_id="compare")
    c["estimate"] = gr.Markdown(
        SERVICE.estimate_text(DEFAULT_MODEL, DEFAULTS.replace(compare=False)), elem_id="estimate"
    )
    c["paper"] = gr.Button("Paper settings (T=250, j=10, r=10)", size="sm", elem_id="paper")
    with gr.Row():
        c["run"] = gr.Button("Inpaint", variant="primary", elem_id="run")
        c["stop"] = gr.Button("Stop", variant="stop", elem_id="stop")
    c["status"] = gr.Markdown("", elem_id="status")


def events(demo: gr.Blocks, c: dict) -> None:
    """What each click and change does."""
    private = dict(api_visibility="private", show_progress="hidden")
    settings, estimate = [c[n] for n in SETTINGS], c["estimate"]
    gr.on([demo.load, *(x.change for x in settings[1:])], estimate_text, settings, estimate, queue=False, **private)
    c["model"].change(page.keyed(on_model_change, MODEL_OUTPUTS), settings, [c[n] for n in MODEL_OUTPUTS], **private)
    paper = [c["steps"], c["jump_length"], c["jump_n_sample"]]
    c["paper"].click(lambda: (PAPER.steps, PAPER.jump_length, PAPER.jump_n_sample), None, paper, queue=False, **private)
    editor_inputs = [c[n] for n in ("editor", "preset", "model", "seed", "shown")]
    for trigger in (c["preset"].input, c["model"].input, c["seed"].input):  # the visitor's changes: drawn anew
        trigger(redraw_preset, editor_inputs, [c["editor"], c["shown"]], **private)
    # A value set from the backend fires .upload again (an endless redraw, cf. gradio #7502), an example's image
    # fires .upload/.input, and after an example a visitor's upload fired no .upload: all go to the guard.
    editor = c["editor"]
    gr.on(
        [editor.upload, editor.change, editor.input],
        sync_preset,
        editor_inputs,
        [editor, c["shown"]],
        trigger_mode="always_last",
        **private,
    )
    inputs, outputs = [c[n] for n in RUN_INPUTS], [c[n] for n in RUN_OUTPUTS]
    run_ = dict(api_visibility="private", concurrency_id=visitors.RUN_CONCURRENCY)  # one limit with /inpaint's
    clicked = c["run"].click(page.keyed(run, RUN_OUTPUTS), inputs, outputs, **run_)
    clicked.then(estimate_text, settings, estimate, queue=False, **private)
    c["sample"].input(page.show_sample, [c["sample"], c["pairs"]], c["slider"], queue=False, **private)
    c["stop"].click(stop_run, None, c["status"], queue=False, api_visibility="private")  # the run ends itself
    c["photo"].upload(load_photo, c["photo"], [editor, c["original"]], **private)


def build_demo(queue_max: int = QUEUE_MAX) -> gr.Blocks:
    """The page: a new Blocks each call (tests serve their own), its queue holding ``queue_max`` waiting runs, one
    per visitor. One public endpoint: ``inpaint``."""
    c: dict = {}  # the page's components by name
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(NOTICE, visible=bool(NOTICE), elem_id="notice")
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                image_column(c)
            with gr.Column(scale=2, min_width=300):
                settings_column(c)
        page.results_area(c)
        gr.Examples(
            examples_rows(),
            inputs=[c[n] for n in EXAMPLE_INPUTS],  # page.examples_rows' columns
            cache_examples=False,
            api_visibility="private",  # the editor's events add the preset
            label="Examples (the README's cases): click one, then Inpaint",
            elem_id="examples",
        )
        gr.DeepLinkButton()
        with gr.Row(visible=False):  # the components of the ``inpaint`` API endpoint (gradio_client)
            api_inputs = page.api_inputs(
                DEFAULTS.steps, DEFAULTS.jump_length, DEFAULTS.jump_n_sample, requests.SIZES, SERVICE.limits.pixels_max
            )
            api_out = gr.Gallery(format="png", label="results")
            gr.Button().click(
                api_inpaint, api_inputs, api_out, api_name="inpaint", concurrency_id=visitors.RUN_CONCURRENCY
            )
        events(demo, c)
    demo.queue(max_size=queue_max, default_concurrency_limit=CONCURRENCY)
    visitors.guard_queue(demo, stopping=lambda session: SERVICE.runner.stopping(session))
    files.sweep_deep_links_on_schedule(gr.utils.get_upload_folder(), *DELETE_CACHE)  # as delete_cache sweeps
    clients.READERS.add(demo)  # from now on, how long each session's messages stay unread
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

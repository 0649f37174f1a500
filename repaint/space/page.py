"""The page's Gradio parts that are neither layout nor machinery: input components that answer a bad value with a
clear message instead of Gradio's generic one, and the page's script, which says in the page what the browser
alone sees (an upload refused as too large, a file the editor cannot read). Imported by app.py only."""

from __future__ import annotations

import functools
import html
import inspect

import gradio as gr
import numpy as np

from .editor import guard_editor, guard_image
from .errors import echo
from .files import SESSION_TTL_S, held, hold, release

__all__ = [
    "COMPARE_INFO",
    "CSS",
    "api_inputs",
    "examples_rows",
    "head",
    "image_editor",
    "keyed",
    "known_choice",
    "results_values",
    "readable_image",
    "results_area",
    "sample_choices",
    "show_sample",
    "slider_labels",
    "whole_number",
]

COMPARE_INFO = (
    "n=1: one pass, no resampling; n=r (r>1): every j steps are re-noised and run again r times, so the "
    "fill agrees with what is around it (the paper's n)"
)

CSS = """
#results img, #slider img, #preview img, #side img, #animation img {image-rendering: pixelated}
/* the slider's two sides, named above it (gr.ImageSlider has no labels of its own) */
#slider-labels .sides {display: flex; justify-content: space-between; font-weight: 600; padding: 0 8px}
/* gradio 6.31's empty editor shows its 1x1 canvas (see app: canvas_size) zoomed to "1000%": a white square over the
   upload prompt's "or" (seen in dark mode) and that zoom in the tool bar; both hidden until there is an image */
#editor .image-container:has(.empty) canvas, #editor .image-container:has(.empty) .zoom-number {visibility: hidden}
/* a phone: the downloads' names wrap, not cut to ".p" (gradio 6.31 ends the name's stem with an ellipsis) */
#downloads .filename {flex: 1 1 auto; flex-wrap: wrap; overflow-wrap: anywhere}
#downloads .filename .stem {white-space: normal; overflow: visible}
#downloads .download {min-width: 0; width: auto; white-space: nowrap}
#downloads td:has(> .label-clear-button) {display: none} /* results: there is nothing to remove */
/* the Examples' headers wrap, so the table fits the page's width (its last column was cut off at 1280 px) */
#examples th, #examples th * {white-space: normal}
"""


def keyed(fn, names: list[str]):
    """``fn`` (a handler, plain or a generator) returns or yields {name: value}; Gradio gets the values in ``names``'
    order (its outputs'), gr.skip() for a name not given. The signature stays ``fn``'s (Gradio reads it for
    gr.Request and gr.Progress)."""

    def ordered(values: dict) -> tuple:
        unknown = set(values) - set(names)
        if unknown:
            raise KeyError(f"{fn.__name__} gave values for {sorted(unknown)}, not among its outputs")
        return tuple(values.get(name, gr.skip()) for name in names)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args, **kwargs):
            for values in fn(*args, **kwargs):
                yield ordered(values)

        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        return ordered(fn(*args, **kwargs))

    return plain


def results_values(results: dict, seed: int, pairs=None) -> dict:
    """A finished page run's values (:func:`repaint.space.streams.page_results`), keyed by the page's components.
    Every sample's slider pair is kept as one file (:func:`~.files.hold`) in place of the session's ``pairs``."""
    release(pairs)
    return dict(
        status=results["status"],
        preview=gr.skip(),
        gallery=results["gallery"],
        side=gr.update(value=results["side"], label=results["side_label"]),
        slider=results["slider"],
        animation=results["gif"],
        downloads=results["files"],
        slider_labels=slider_labels(*results["slider_labels"]),
        sample=sample_choices(len(results["pairs"]), seed),
        pairs=hold(np.stack([np.stack(pair) for pair in results["pairs"]]), "pairs"),
    )


def image_editor(label: str, brush: gr.Brush, pixels_max: int) -> gr.ImageEditor:
    """The page's editor: one layer to paint on with ``brush``, no transforms, its inputs guarded
    (:func:`repaint.space.editor.guard_editor`: images of at most ``pixels_max`` pixels, a bounded layer index)."""
    return guard_editor(
        gr.ImageEditor(
            label=label,
            type="numpy",
            image_mode="RGBA",
            format="png",
            brush=brush,
            eraser=gr.Eraser(default_size=24),
            layers=False,
            transforms=(),
            height=480,
            sources=("upload", "clipboard"),
            elem_id="editor",
            # gradio 6.31.0 sizes a layer sent from the backend from the image container's bounds, which hold the
            # brush's preview sprite of canvas_size: a 1x1 one places it at every size (pictures)
            canvas_size=(1, 1),
        ),
        pixels_max,
    )


def results_area(c: dict) -> None:
    """The results, out of the way (the Examples in the first screen) until a run shows them."""
    with gr.Column(visible=False, elem_id="results-area") as c["results_area"]:
        with gr.Row():  # min_width: on a phone one above the other, each the page's width
            c["preview"] = gr.Image(
                label="Predicted x0 while running", format="png", interactive=False, elem_id="preview", min_width=300
            )
            c["gallery"] = gr.Gallery(
                label="Results (PNG)", format="png", columns=4, elem_id="results", interactive=False, min_width=300
            )
        with gr.Row():
            c["side"] = gr.Image(label="Side by side", format="png", interactive=False, elem_id="side")
            with gr.Column():
                c["slider_labels"] = gr.HTML(slider_labels("before", "after"), elem_id="slider-labels")
                c["slider"] = gr.ImageSlider(label="Before / after", format="png", interactive=False, elem_id="slider")
                c["sample"] = gr.Radio([], label="Sample shown", visible=False, elem_id="sample")
                # every sample's slider pair (repaint.space.streams.page_results): view copies, as a file
                c["pairs"] = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=release)
        with gr.Row():  # min_width: on a phone each gets the full width (the file names are readable)
            c["animation"] = gr.Image(
                label="The process: x_t, predicted x0, and the noise level",
                type="filepath",
                interactive=False,
                elem_id="animation",
                min_width=300,
            )
            c["downloads"] = gr.File(
                label="Downloads", file_count="multiple", interactive=False, min_width=300, elem_id="downloads"
            )


def slider_labels(before: str, after: str) -> str:
    """The HTML naming the before/after slider's left and right sides."""
    return f'<div class="sides"><span>\u25c0 {before}</span><span>{after} \u25b6</span></div>'


def sample_choices(count: int, seed: int) -> dict:
    """The "Sample shown" chooser after a run of ``count`` samples (shown only for several): sample i, seed + i."""
    return gr.update(choices=[(f"{i + 1} (seed {seed + i})", i) for i in range(count)], value=0, visible=count > 1)


def show_sample(index, pairs):
    """The slider's pair for the sample the visitor chose (``pairs``: every sample's, kept by :func:`results_values`;
    nothing once they are deleted)."""
    kept = None if index is None else held(pairs)
    if kept is None or not 0 <= int(index) < len(kept):
        return gr.skip()
    return tuple(kept[int(index)])


def examples_rows(folder, offline: str, has_gpu: bool, offered) -> list[list]:
    """gr.Examples rows: image, preset, model, T, j, r, seed, samples, compare, class (None: random or none); those
    whose image is in ``folder`` and whose model is ``offered``."""
    rows = [
        ["face1.png", "every_second_line", offline, 50, 5, 5, 1, 2, False, None],
        ["face2.png", "super_resolution_2x", offline, 50, 5, 5, 2, 2, False, None],
        ["face1.png", "left_half", offline, 100, 10, 5, 3, 2, False, None],
        ["face2.png", "expand", offline, 100, 10, 10, 4, 1, True, None],
    ]
    if has_gpu:
        rows += [
            ["astronaut.png", "every_second_line", "celebahq", 250, 10, 10, 0, 1, False, None],
            ["astronaut.png", "super_resolution_2x", "celebahq", 250, 10, 10, 0, 1, False, None],
            ["cat.png", "bottom_half", "cat", 250, 10, 10, 0, 1, False, None],
            ["astronaut.png", "center_box", "celebahq", 100, 10, 10, 0, 1, True, None],
            # the paper's own models: a scene (Places2); ImageNet told it is a coffee mug (class 504)
            ["rocket.jpg", "thick", "places2", 250, 10, 10, 0, 1, False, None],
            ["coffee.png", "center_box", "imagenet", 250, 10, 10, 0, 1, False, 504],
        ]
    return [[str(folder / r[0]), *r[1:]] for r in rows if (folder / r[0]).is_file() and r[2] in offered]


def _refused_as(component, errors, message_of):
    """``component`` whose preprocess, where Gradio's raises one of ``errors``, raises a gr.Error with the app's
    message ``message_of(payload, error)`` instead, raised outside the ``except`` (no chained traceback). Wrapped
    on the instance: a subclass would make Gradio write a .pyi file."""
    plain = component.preprocess

    def preprocess(payload):
        try:
            return plain(payload)
        except errors as e:
            message = message_of(payload, e)
        raise gr.Error(message)

    component.preprocess = preprocess
    return component


def whole_number(component: gr.Number, must: str = "a whole number") -> gr.Number:
    """``component`` (a gr.Number) with a bad value (``steps="abc"`` from a client) refused by a gr.Error naming the
    input and the value, escaped (:func:`echo`), not Gradio's "The upstream Gradio app has raised an exception"."""
    return _refused_as(
        component,
        (TypeError, ValueError, OverflowError),
        lambda p, e: f"{component.label} must be {must}, got {echo(p)}",
    )


def known_choice(component):
    """``component`` (a gr.Dropdown or gr.Radio) with a value outside its choices refused by a gr.Error that repeats
    it escaped (:func:`echo`): Gradio's own check (gradio 6.31.0) puts the raw value in its message, which the page
    shows as HTML."""
    return _refused_as(component, gr.Error, lambda p, e: f"{component.label} must be one of its choices, got {echo(p)}")


def readable_image(component: gr.Image) -> gr.Image:
    """``component`` (a gr.Image) with an unreadable file (a corrupt PNG) refused by a gr.Error saying so (Gradio's
    own gr.Error passes on, escaped)."""

    def message_of(payload, e: Exception) -> str:
        if isinstance(e, gr.Error):
            return html.escape(e.message, quote=False)
        return (
            f"The {component.label} file could not be read as an image ({type(e).__name__}): it is damaged or not an "
            "image. Send a PNG, JPEG or WebP file."
        )

    return _refused_as(component, Exception, message_of)  # PIL raises many kinds for a damaged file


def api_inputs(steps: int, jump_length: int, jump_n_sample: int, sizes, pixels_max: int) -> list:
    """The components of the ``inpaint`` API endpoint, in its argument order (see app.api_inpaint)."""

    def number(value, label):
        return whole_number(gr.Number(value, label=label, precision=0))

    return [
        readable_image(guard_image(gr.Image(type="filepath", label="image", format="png"), pixels_max)),
        gr.JSON(label="mask: a preset name or handle_file(mask path)"),
        gr.Textbox(label="model"),
        number(steps, "steps"),
        number(jump_length, "jump_length"),
        number(jump_n_sample, "jump_n_sample"),
        number(0, "seed"),
        number(1, "num_samples"),
        gr.Checkbox(False, label="compare"),
        known_choice(gr.Radio(list(sizes), value="auto", label="size")),
        number(None, "class_label"),
        whole_number(gr.Number(None, label="classifier_scale"), "a number"),
    ]


# What the browser alone sees, said in a banner (#page-alert): a file over the size limit (gradio 6.31.0 refuses one
# picked on an upload button with a terse toast, and the editor's PNG sent at a run with only an HTTP 413 in the
# console), or a file the editor cannot read (an empty editor). Gradio inserts this script after its client has bound
# window.fetch, so a fetch wrapper would see nothing: the 413s are read from the resource timings instead
# (responseStatus, Chromium 109+), which list every request, made before this script ran (buffered) or by XHR too.
_SCRIPT = """<script>
(() => {
  const say = (text) => {
    let el = document.getElementById("page-alert");
    if (!el) {
      el = document.createElement("div");
      el.id = "page-alert";
      el.setAttribute("role", "alert");
      el.title = "click to close";
      el.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:10000;padding:10px 16px;" +
        "background:#b91c1c;color:#fff;font:15px/1.4 sans-serif;cursor:pointer";
      el.onclick = () => el.remove();
      document.body.appendChild(el);
    }
    el.textContent = text;
  };
  const refused = (list) => {
    for (const e of list.getEntries()) {
      if (e.responseStatus === 413 && e.name.includes("/upload")) say(%(too_big)s);
    }
  };
  try { new PerformanceObserver(refused).observe({type: "resource", buffered: true}); } catch (e) {}
  const check = async (files, editor) => {
    for (const f of files || []) {
      if (f.size > %(limit_bytes)d) {
        say(`"${f.name}" (${(f.size / 1048576).toFixed(0)} MB) ` + %(file_too_big)s);
        continue;
      }
      if (!editor) continue;
      if (f.type && !f.type.startsWith("image/")) { say(`"${f.name}" is not an image: ` + %(unreadable)s); continue; }
      try { (await createImageBitmap(f)).close(); }
      catch (e) { say(`"${f.name}" could not be read as an image: ` + %(unreadable)s); }
    }
  };
  document.addEventListener("change", (e) => {  // any upload (the photo button's input lies outside #photo)
    const t = e.target;
    if (t instanceof HTMLInputElement && t.type === "file") check(t.files, !!t.closest("#editor"));
  }, true);
  document.addEventListener("drop", (e) => {
    if (e.target.closest && e.target.closest(".gradio-container")) {
      check(e.dataTransfer && e.dataTransfer.files, !!e.target.closest("#editor"));
    }
  }, true);
})();
</script>"""


def head(limit: str, photo_button: str) -> str:
    """The page's <head> script, its messages naming the upload ``limit`` (as launch's max_file_size: "32mb") and
    the button that takes photos."""
    import json

    from gradio.utils import _parse_file_size  # how launch reads the same string

    limit_bytes, limit = _parse_file_size(limit), limit.upper().replace("MB", " MB")
    too_big = (
        f"This file is too large to send: the server takes files up to {limit} (memory and disk are shared "
        f"by every visitor). The editor sends an image as PNG, so a large photo dropped on it can exceed "
        f"that: use the \u201c{photo_button}\u201d button, which sends the photo as it is, or a smaller image."
    )
    file_too_big = (
        f"is too large to send: the server takes files up to {limit} (memory and disk are shared by "
        f"every visitor). Send a smaller image: a phone photo as JPEG is a few MB."
    )
    unreadable = "it is damaged or not a format the browser can show. Try a PNG, JPEG or WebP file."
    return _SCRIPT % {
        "too_big": json.dumps(too_big),
        "unreadable": json.dumps(unreadable),
        "limit_bytes": limit_bytes,
        "file_too_big": json.dumps(file_too_big),
    }

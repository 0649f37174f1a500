"""RePaint inpainting demo (Lugmayr et al., CVPR 2022): a Gradio Space around the ``repaint`` package.

Runs on ZeroGPU, on a normal GPU and on a CPU (then the offline ``bundled`` 32x32 model is the default).
``python app.py`` serves it locally, ``python app.py --share`` also opens a temporary public link.
"""

from __future__ import annotations

try:  # ZeroGPU needs ``spaces`` imported before torch; elsewhere the decorator is a no-op
    import spaces
except ImportError:  # pragma: no cover - plain installs without the HF Spaces package
    spaces = None

import argparse
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageDraw

import repaint
from repaint import masks as rmasks
from repaint.bench import call_time
from repaint.images import center_crop_box, from_tensor

# ----------------------------------------------------------------------------------------------- constants
TITLE = "RePaint: inpainting with denoising diffusion"
HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"

ON_ZEROGPU = bool(spaces is not None and getattr(spaces.config.Config, "zero_gpu", False))
HAS_GPU = ON_ZEROGPU or torch.cuda.is_available()
GPU_MODEL = "celebahq"  # default on a GPU, when it loads
OFFLINE_MODEL = "bundled"  # default on a CPU, or when the Hub cannot be reached
MODEL_ENV = "REPAINT_MODEL"  # environment variable overriding the default model
HUB_IDS_ENV = "REPAINT_ALLOW_HUB_IDS"  # "1": any Hub id ``owner/name`` may be asked for, not only registry names
ALLOW_HUB_IDS = os.environ.get(HUB_IDS_ENV, "").strip().lower() in ("1", "true", "yes")
# owner/name as the Hub spells it: letters, digits, '-', '_', '.'; no '..' or '--', no leading/trailing '.'/'-'
HUB_ID_RE = re.compile(r"(?!.*(\.\.|--))([A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)/"
                       r"([A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)")
HUB_MODELS_MAX = 2  # Hub models (not in the registry) kept loaded at once; the oldest is dropped first
HUB_RESOLUTION_MAX = 512  # larger Hub models are refused (time and memory)

DEFAULT_STEPS, DEFAULT_JUMP, DEFAULT_RESAMPLE = 250, 10, 10  # the paper's T, j and r (its n)
STEPS_MAX, JUMP_MAX, RESAMPLE_MAX = 1000, 50, 20
SAMPLES_MAX = 4
SEED_MAX = 2**31 - 1

GPU_CAP_S = 300  # longest GPU slot a request may ask for
GPU_MARGIN_S = 15  # added to the estimate (start-up, transfers, image encoding)
TIMING_CALLS = 3  # forward calls timed once per model at load
GPU_BATCH_COST = 0.5  # extra cost of each further batch row on a GPU, relative to one row (CPU: 1.0)
ZEROGPU_CALL_S = {256: 0.04, 32: 0.01}  # per-call guess on ZeroGPU, where the main process has no GPU to time

ANIMATION_FRAMES = 48  # frames of the process GIF (and streamed previews)
ANIMATION_TILE = 128  # pixel size of one image tile in the GIF
ANIMATION_PLOT_H = 56  # height of the noise-level plot under the GIF
PREVIEW_TILE = 128  # pixel size of one tile of the live preview
MAX_FILE_SIZE = "10mb"
QUEUE_MAX = 32  # requests waiting at once; more are refused with "Queue is full"
CONCURRENCY = 1  # one model per process; runs queue
DELETE_CACHE = (1800, 3600)  # every 30 min delete cached files older than 1 h
# Result files are written here, one folder per run, and the folder is deleted as soon as Gradio has copied the
# files into its own cache (which DELETE_CACHE cleans); folders left by a crash are swept after RESULTS_MAX_AGE_S.
# Outside Gradio's cache on purpose: files already in it are served in place, not copied.
RESULTS_DIR = Path(tempfile.gettempdir()) / "repaint_results"
RESULTS_MAX_AGE_S = DELETE_CACHE[1]
WORKER_JOIN_S = 1.0  # how long closing a run waits for its worker thread (it stops at its next model call)

CSS = "#results img, #slider img, #preview img, #side img, #animation img {image-rendering: pixelated}"

MASK_RGBA = (30, 90, 255, 128)  # the paper's blue, semi-transparent
BRUSH = gr.Brush(default_size=24, colors=[("#1e5aff", 0.5)], default_color=("#1e5aff", 0.5), color_mode="fixed")

DRAW = "draw"
PRESET_CHOICES = [  # (label, value): value is None for drawing, else a repaint.masks preset name
    ("Draw it yourself", DRAW),
    ("Every second line", "every_second_line"),
    ("x2 super-resolution", "super_resolution_2x"),
    ("Left half", "left_half"),
    ("Right half", "right_half"),
    ("Top half", "top_half"),
    ("Bottom half", "bottom_half"),
    ("Expand (outpaint)", "expand"),
    ("Centre box", "center_box"),
    ("Thick strokes", "thick"),
    ("Thin strokes", "thin"),
    ("Wide boxes", "wide"),
]

log = logging.getLogger("repaint.app")


def model_label(name: str) -> str:
    r = repaint.MODELS[name].resolution
    return f"{name} ({r}x{r}, fast, offline)" if name == OFFLINE_MODEL else f"{name} ({r}x{r})"


MODEL_CHOICES = [(model_label(n), n) for n in repaint.MODELS]


# ----------------------------------------------------------------------------------------------- models
_models: dict[str, repaint.Inpainter] = {}
_call_s: dict[str, float] = {}  # measured seconds per forward call (batch of one)
_load_lock = threading.Lock()


def is_hub_id(name) -> bool:
    """A well-formed Hub repository id ``owner/name`` (no paths, no '..'), not a registry name."""
    return isinstance(name, str) and name not in repaint.MODELS and HUB_ID_RE.fullmatch(name) is not None


def check_model_name(name) -> str:
    """``name`` if it may be loaded: a registry name, or (only with REPAINT_ALLOW_HUB_IDS=1) a Hub id."""
    if isinstance(name, str) and name in repaint.MODELS:
        return name
    if ALLOW_HUB_IDS and is_hub_id(name):
        return name
    shown = repr(name)[:80]  # echo at most a short, quoted prefix of what was sent
    extra = " or a Hugging Face Hub id owner/name" if ALLOW_HUB_IDS else ""
    raise gr.Error(f"unknown model {shown}: choose one of {', '.join(repaint.MODELS)}{extra}")


def model_resolution(name: str) -> int:
    """The model's image size (a Hub model is loaded to learn it)."""
    name = check_model_name(name)
    return repaint.MODELS[name].resolution if name in repaint.MODELS else get_model(name).resolution


def _load(name: str) -> repaint.Inpainter:
    """repaint.load for a registry name; a Hub id is only ever downloaded (never read as a local folder)."""
    if name in repaint.MODELS:
        return repaint.load(name)
    inp = repaint.load_hub(name)
    if inp.resolution > HUB_RESOLUTION_MAX:
        raise repaint.ModelLoadError(f"model {name!r} is {inp.resolution}x{inp.resolution}; at most "
                                     f"{HUB_RESOLUTION_MAX}x{HUB_RESOLUTION_MAX} is served here")
    return inp


def time_calls(inp: repaint.Inpainter, n: int = TIMING_CALLS) -> float:
    """Seconds per forward call of a batch of one: the median of ``n`` calls after one warm-up call."""
    if ON_ZEROGPU:  # no GPU in the main process: a guess, refined after each run
        return ZEROGPU_CALL_S.get(inp.resolution, 0.05)
    return call_time(inp, 1, repeats=n, warmup=1)


def get_model(name: str) -> repaint.Inpainter:
    """The loaded model ``name`` (loaded once per process); a failed load raises gr.Error."""
    check_model_name(name)
    inp = _models.get(name)
    if inp is not None:
        return inp
    with _load_lock:
        if name not in _models:
            try:
                inp = _load(name)
                per_call = time_calls(inp)
            except repaint.ModelLoadError as e:
                raise gr.Error(f"Could not load model {name!r}: {e}. Other models still work.") from None
            except Exception as e:  # noqa: BLE001 - anything else a load can raise must not kill the app
                log.exception("loading %s failed", name)
                raise gr.Error(f"Could not load model {name!r} ({type(e).__name__}). Other models still work.") \
                    from None
            hub = [n for n in _models if n not in repaint.MODELS]
            if name not in repaint.MODELS and len(hub) >= HUB_MODELS_MAX:
                for old in hub[: len(hub) - HUB_MODELS_MAX + 1]:  # oldest first (dicts keep insertion order)
                    _models.pop(old, None)
                    _call_s.pop(old, None)
            _call_s[name] = per_call
            _models[name] = inp
            log.info("loaded %s (%.4f s per call)", name, _call_s[name])
        return _models[name]


def pick_default_model() -> tuple[str, str]:
    """(default model, notice shown on the page, or '')."""
    wanted = os.environ.get(MODEL_ENV, "").strip()
    if wanted and wanted not in repaint.MODELS and not (ALLOW_HUB_IDS and is_hub_id(wanted)):
        notice = f"{MODEL_ENV}={wanted!r} is not a known model; "
        wanted = ""
    else:
        notice = ""
    first = wanted or (GPU_MODEL if HAS_GPU else OFFLINE_MODEL)
    try:
        get_model(first)
        if notice:
            notice += f"using {first!r}."
        elif first == OFFLINE_MODEL and not wanted:
            notice = "No GPU here: the default is the fast offline **bundled** model (32x32 cartoon faces)."
        return first, notice
    except gr.Error as e:
        reason = str(e.message if hasattr(e, "message") else e)
    if first == OFFLINE_MODEL:
        return OFFLINE_MODEL, f"The bundled model could not be loaded: {reason}"
    notice = (f"Model {first!r} could not be loaded (the Hugging Face Hub could not be reached?): {reason} "
              f"Using the offline **bundled** model instead.")
    try:
        get_model(OFFLINE_MODEL)
    except gr.Error as e:
        notice += f" It failed too: {e}"
    return OFFLINE_MODEL, notice


# ----------------------------------------------------------------------------------------------- mask helpers
def preset_mask(name: str, width: int, height: int, resolution: int, seed: int = 0) -> np.ndarray:
    """A preset as the model will see it, drawn at an image of ``width`` x ``height``: bool (height, width).

    The preset is made at the model's resolution and scaled (nearest) onto the image's centred square crop,
    the part the model sees; so it maps back to the model's resolution exactly. Outside the crop: False.
    """
    if name not in rmasks.PRESETS:
        raise gr.Error(f"unknown mask preset {name!r}; choose one of: {', '.join(rmasks.PRESETS)}")
    small = rmasks.PRESETS[name](resolution, resolution, int(seed))
    left, top, right, bottom = center_crop_box(width, height)
    side = right - left
    big = Image.fromarray(small.astype(np.uint8) * 255).resize((side, side), Image.Resampling.NEAREST)
    out = np.zeros((height, width), dtype=bool)
    out[top:bottom, left:right] = np.asarray(big) >= 128
    return out


def mask_layer(mask: np.ndarray) -> np.ndarray:
    """A bool mask as an RGBA editor layer: the region in semi-transparent blue, the rest transparent."""
    layer = np.zeros((*mask.shape, 4), dtype=np.uint8)
    layer[mask] = MASK_RGBA
    return layer


def _as_array(img) -> np.ndarray | None:
    if img is None:
        return None
    if isinstance(img, (str, Path)):
        img = Image.open(img)
    if isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGBA"))
    return np.asarray(img)


def editor_image(value) -> np.ndarray:
    """The background image of an editor value (uint8 RGB or RGBA); gr.Error when there is none."""
    bg = _as_array(value.get("background")) if isinstance(value, dict) else None
    if bg is None or bg.size == 0:
        raise gr.Error("No image: upload or pick an image first (or click an example).")
    return bg


def mask_from_editor(value) -> np.ndarray:
    """The region to fill, read from the alpha of the editor's layers: any paint = fill; bool (H, W) of the
    background's size (a layer of another size is scaled to it, nearest)."""
    bg = editor_image(value)
    h, w = bg.shape[:2]
    region = np.zeros((h, w), dtype=bool)
    for layer in value.get("layers") or []:
        a = _as_array(layer)
        if a is None or a.ndim != 3 or a.shape[2] != 4:
            continue
        paint = a[..., 3] > 0
        if paint.shape != (h, w):
            paint = np.asarray(Image.fromarray(paint).resize((w, h), Image.Resampling.NEAREST))
        region |= paint
    return region


def editor_with_preset(value, preset: str, model: str, seed: int):
    """The editor value with its layer replaced by ``preset`` at the background's size (or cleared for Draw)."""
    if not isinstance(value, dict) or _as_array(value.get("background")) is None:
        return gr.skip()
    bg = editor_image(value)
    h, w = bg.shape[:2]
    if preset == DRAW or preset is None:
        layer = np.zeros((h, w, 4), dtype=np.uint8)
    else:
        layer = mask_layer(preset_mask(preset, w, h, model_resolution(model), seed))
    # Only the layer: re-sending the background makes gradio 6.31.0 reload the image and, racing that load, add the
    # layer twice (add_layers_from_url runs again when the image becomes ready), so erasing removed only one copy.
    return {"background": None, "layers": [layer], "composite": None}


def background_key(value) -> list | None:
    """A coarse fingerprint of the editor's background (its size and an 8x8 thumbnail), or None without one: it
    tells a new image from the same image sent back by the browser after a stroke (which may differ slightly)."""
    bg = _as_array(value.get("background")) if isinstance(value, dict) else None
    if bg is None or bg.size == 0:
        return None
    thumb = Image.fromarray(bg[..., :3] if bg.ndim == 3 else bg).convert("L").resize((8, 8), Image.Resampling.BOX)
    return [*bg.shape[:2], *np.asarray(thumb).ravel().tolist()]


def same_background(a: list | None, b: list | None, tolerance: int = 12) -> bool:
    return a is not None and b is not None and a[:2] == b[:2] and max(abs(x - y) for x, y in zip(a, b)) <= tolerance


def sync_preset(value, preset: str, model: str, seed: int, drawn_for: list | None):
    """On any editor change: draw the preset over a *new* background (an upload, an example); the same background
    (a stroke, an erase, or the value this handler just set) is left alone, so painting on a preset keeps it and
    setting the value cannot loop. Returns (editor value or gr.skip(), the background the layer belongs to)."""
    key = background_key(value)
    if key is None:  # the value this app just set (a layer only, see editor_with_preset)
        return gr.skip(), gr.skip()
    if same_background(key, drawn_for) or preset == DRAW or preset is None:
        return gr.skip(), key
    return editor_with_preset(value, preset, model, seed), key


def redraw_preset(value, preset: str, model: str, seed: int):
    """After the visitor changed the preset, model (resolution) or seed: the preset drawn anew (Draw clears it)."""
    return editor_with_preset(value, preset, model, seed), background_key(value) or gr.skip()


# ----------------------------------------------------------------------------------------------- estimates
def batch_rows(num_samples: int, compare: bool) -> int:
    return int(num_samples) * (2 if compare else 1)


def call_seconds(name: str, rows: int) -> float | None:
    """Estimated seconds per batched model call of ``rows`` rows, from the time measured at load."""
    one = _call_s.get(name)
    if one is None:
        return None
    inp = _models.get(name)
    per_row = GPU_BATCH_COST if (ON_ZEROGPU or (inp is not None and inp.device.type == "cuda")) else 1.0
    return one * (1 + per_row * (rows - 1))


def model_calls(steps, jump_length, jump_n_sample) -> int:
    return repaint.count_model_calls(int(steps), int(jump_length), int(jump_n_sample))


def estimate_seconds(name: str, steps, jump_length, jump_n_sample, num_samples, compare) -> float | None:
    per = call_seconds(name, batch_rows(num_samples, compare))
    return None if per is None else per * model_calls(steps, jump_length, jump_n_sample)


def gpu_duration(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare, invert,
                 stop_key=None) -> int:
    """ZeroGPU slot length for a request: its model calls times the measured per-call time, plus a margin,
    capped at GPU_CAP_S (requests that cannot fit are refused before, see :func:`check_fits`)."""
    est = estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare)
    if est is None:
        est = model_calls(steps, jump_length, jump_n_sample) * ZEROGPU_CALL_S.get(256)
    return int(min(GPU_CAP_S, math.ceil(est + GPU_MARGIN_S)))


def check_fits(name, steps, jump_length, jump_n_sample, num_samples, compare) -> None:
    if not HAS_GPU:
        return  # a CPU has no slot to fit; the estimate is shown instead
    est = estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare) or 0.0
    if est + GPU_MARGIN_S > GPU_CAP_S:
        raise gr.Error(
            f"This run needs about {fmt_seconds(est)} of GPU time, more than the {GPU_CAP_S} s allowed per "
            f"request. Use fewer steps T, a smaller resample count r, a longer jump length j, fewer samples, "
            f"or turn off the comparison.")


def fmt_seconds(s: float) -> str:
    if s < 1:
        return f"{s:.2f} s"
    if s < 90:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min"


def estimate_text(name, steps, jump_length, jump_n_sample, num_samples, compare) -> str:
    try:
        calls = model_calls(steps, jump_length, jump_n_sample)
    except (ValueError, TypeError) as e:
        return f"Settings not valid: {e}"
    rows = batch_rows(num_samples, compare)
    text = f"**{calls:,} model calls** (batch of {rows})"
    est = estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare)
    if est is None:
        return text + " - time unknown until the model is loaded."
    where = "ZeroGPU (guess)" if ON_ZEROGPU else str(_models[name].device)
    text += f" - about **{fmt_seconds(est)}** on {where} ({_call_s[name] * 1000:.1f} ms per call measured)."
    if HAS_GPU and est + GPU_MARGIN_S > GPU_CAP_S:
        text += f" Too long for the {GPU_CAP_S} s limit: reduce T, r or the samples."
    return text


def on_model_change(name, steps, jump_length, jump_n_sample, num_samples, compare):
    get_model(name)  # gr.Error if it cannot be loaded
    return estimate_text(name, steps, jump_length, jump_n_sample, num_samples, compare)


# ----------------------------------------------------------------------------------------------- pictures
def strip(images: list[np.ndarray], tile: int) -> np.ndarray:
    """Images side by side, each scaled to ``tile`` pixels (nearest when enlarging)."""
    tiles = []
    for a in images:
        im = Image.fromarray(a)
        method = Image.Resampling.NEAREST if im.width <= tile else Image.Resampling.LANCZOS
        tiles.append(np.asarray(im.resize((tile, tile), method)))
    return np.concatenate(tiles, axis=1)


def show_mask(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The input as the model sees it: the region to fill in the paper's blue."""
    out = rgb.copy()
    out[mask] = (np.array(MASK_RGBA[:3]) * 0.75 + 255 * 0.25).astype(np.uint8)
    return out


def level_plot(levels: list[list[int]], width: int, steps: int, cursor: int, rows: list[int]) -> Image.Image:
    """The respaced noise level of the chains ``rows`` over the ticks, with a cursor at tick ``cursor``."""
    h = ANIMATION_PLOT_H
    im = Image.new("RGB", (width, h), (255, 255, 255))
    d = ImageDraw.Draw(im)
    n = len(levels)
    colours = [(30, 90, 255), (230, 120, 20)]
    top, bottom = 4, h - 12
    for k, row in enumerate(rows):
        pts = []
        for x in range(width):
            i = min(n - 1, x * n // width)
            lv = max(levels[i][row], 0)
            pts.append((x, bottom - (bottom - top) * lv / max(steps - 1, 1)))
        d.line(pts, fill=colours[k % 2], width=1)
    cx = min(width - 1, cursor * width // max(n, 1))
    d.line([(cx, 0), (cx, h)], fill=(200, 0, 0), width=1)
    d.text((3, h - 11), "noise level t over time", fill=(60, 60, 60))
    return im


def make_animation(frames: list[tuple[int, np.ndarray, np.ndarray]], levels: list[list[int]], steps: int,
                   rows: list[int], path: Path) -> Path:
    """GIF of the process: for each chain in ``rows`` x_t and predicted x0, and the noise level plotted under."""
    pics = []
    for tick, xt, x0 in frames:
        top = np.concatenate([strip([xt[r], x0[r]], ANIMATION_TILE) for r in rows], axis=0)
        plot = level_plot(levels, top.shape[1], steps, tick, rows)
        frame = Image.new("RGB", (top.shape[1], top.shape[0] + plot.height), (255, 255, 255))
        frame.paste(Image.fromarray(top), (0, 0))
        frame.paste(plot, (0, top.shape[0]))
        pics.append(frame)
    durations = [80] * (len(pics) - 1) + [1500]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=durations, loop=0, optimize=True)
    return path


# ----------------------------------------------------------------------------------------------- running
_stop_flags: dict[str, threading.Event] = {}  # session -> its Stop flag, only while that session's run runs
WORKER_NAME = "repaint-worker"


def new_results_dir() -> Path:
    """A fresh folder for one run's files under RESULTS_DIR (old ones swept first)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    sweep_results()
    return Path(tempfile.mkdtemp(prefix="run_", dir=RESULTS_DIR))


def sweep_results(max_age_s: float = RESULTS_MAX_AGE_S) -> int:
    """Deletes result folders older than ``max_age_s`` (left by a crash or a closed server); how many."""
    if not RESULTS_DIR.is_dir():
        return 0
    n, now = 0, time.time()
    for d in RESULTS_DIR.iterdir():
        try:
            if d.name.startswith("run_") and now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        except OSError:
            pass
    return n


def _sample_every(total: int) -> int:
    return max(1, math.ceil(total / ANIMATION_FRAMES))


def _gpu_run(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare, invert,
             stop_key=None):
    """Runs the sampler in a worker thread; yields ("tick", tick, total, levels, x_t, x0) every few ticks (uint8
    arrays) and at the end ("done", results, plains, seconds per call). Only picklable values are yielded."""
    inp = get_model(name)
    total = inp.model_calls(steps, jump_length, jump_n_sample)
    every = _sample_every(total)
    events: queue.Queue = queue.Queue()
    stop = _stop_flags.get(stop_key) if stop_key else None
    closed = threading.Event()

    def callback(tick, levels, x, x0):
        if closed.is_set() or (stop is not None and stop.is_set()):
            raise InterruptedError("stopped")
        pic = tick % every == 0 or tick == total - 1
        events.put(("tick", tick, total, levels, from_tensor(x) if pic else None, from_tensor(x0) if pic else None))

    def work():
        try:
            fn = inp.compare if compare else inp.inpaint
            out = fn(image, mask, steps=steps, jump_length=jump_length, jump_n_sample=jump_n_sample, seed=seed,
                     num_samples=num_samples, callback=callback, invert=invert)
            events.put(("result", out))
        except BaseException as e:  # noqa: BLE001 - handed to the generator
            events.put(("error", e))

    start = time.perf_counter()
    worker = threading.Thread(target=work, daemon=True, name=WORKER_NAME)
    worker.start()
    try:
        while True:
            ev = events.get()
            if ev[0] == "tick":
                yield ev
            elif ev[0] == "error":
                raise ev[1]
            else:
                out = ev[1]
                res, plain = out if compare else (out, [])
                spent = time.perf_counter() - start
                yield ("done", [np.asarray(i) for i in res], [np.asarray(i) for i in plain],
                       spent / max(total, 1))
                return
    finally:
        # Closed early (Stop, cancel, client gone): the callback raises at the next model call, ending the worker.
        # Gradio closes generators on its event loop, so this waits only briefly; the thread ends by itself.
        closed.set()
        worker.join(timeout=WORKER_JOIN_S)


# ZeroGPU slot sized per request (a no-op off ZeroGPU); the CPU checks in prepare_request come first
gpu_run = spaces.GPU(duration=gpu_duration)(_gpu_run) if spaces is not None else _gpu_run


FULL_MASK_NOTE = "The mask covers the whole image: nothing is known, so this is unconditional generation."


def note_full_mask(m: np.ndarray) -> None:
    """Tell the visitor when nothing is known (the run is then plain unconditional sampling)."""
    if m.all():
        gr.Info(FULL_MASK_NOTE)


def check_request(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare, invert=False):
    """The checks every handler runs before a GPU is requested: settings, the mask as the model sees it (after the
    centre crop), the time limit. Returns the model, the fitted RGB input and its fill mask."""
    inp = get_model(name)
    try:
        inp.check_settings(steps, jump_length, jump_n_sample, seed, num_samples)
        if num_samples > SAMPLES_MAX:
            raise ValueError(f"num_samples must be at most {SAMPLES_MAX} here, got {num_samples}")
        rgb, m = inp.prepare(image, mask, invert=invert, seed=seed)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    if not m.any():
        raise gr.Error("Empty mask: nothing to fill inside the centred square the model sees. Paint the region to "
                       "fill (white or opaque) inside it, or pick a preset.")
    check_fits(name, steps, jump_length, jump_n_sample, num_samples, compare)
    note_full_mask(m)
    return inp, rgb, m


def prepare_request(editor, model, steps, jump_length, jump_n_sample, num_samples, compare, invert):
    """The UI's checks: an image, a painted mask, then :func:`check_request`."""
    name = check_model_name(model)
    image = editor_image(editor)
    mask = mask_from_editor(editor)
    if not (mask ^ bool(invert)).any():
        raise gr.Error("Empty mask: paint the region to fill with the brush, or pick a mask preset.")
    inp, rgb, m = check_request(name, image, mask, steps, jump_length, jump_n_sample, 0, num_samples, compare, invert)
    return name, inp, image, mask, rgb, m


def run(editor, model, steps, jump_length, jump_n_sample, seed, randomize, num_samples, compare, invert,
        request: gr.Request, progress=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a tracker
    """The UI handler: streams progress and previews, then the results (all images as PNG)."""
    steps, jump_length, jump_n_sample = int(steps), int(jump_length), int(jump_n_sample)
    num_samples = int(num_samples)
    compare = bool(compare)
    name, inp, image, mask, rgb, m = prepare_request(editor, model, steps, jump_length, jump_n_sample,
                                                     num_samples, compare, invert)
    seed = int(np.random.default_rng().integers(0, SEED_MAX)) if randomize else int(seed)
    key = getattr(request, "session_hash", None) or str(id(request))
    flag = _stop_flags[key] = threading.Event()
    nothing = gr.skip()
    est = estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare)
    yield (f"Starting: {model_calls(steps, jump_length, jump_n_sample):,} model calls, about "
           f"{fmt_seconds(est or 0)}...", None, nothing, nothing, nothing, nothing, nothing, seed)
    start = time.perf_counter()
    frames, levels = [], []
    stopped = error = None
    try:
        for ev in gpu_run(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare,
                          bool(invert), key):
            if ev[0] == "tick":
                _, tick, total, lv, xt, x0 = ev
                levels.append(lv)
                if xt is None:
                    continue
                frames.append((tick, xt, x0))
                spent = time.perf_counter() - start
                eta = spent / (tick + 1) * (total - tick - 1)
                progress((tick + 1, total), desc="Inpainting")
                yield (f"Step {tick + 1:,}/{total:,} - {fmt_seconds(spent)} elapsed, ETA {fmt_seconds(eta)}",
                       strip(list(x0), PREVIEW_TILE), nothing, nothing, nothing, nothing, nothing, seed)
            else:
                _, res, plain, per_call = ev
                if ON_ZEROGPU:
                    _call_s[name] = per_call / (1 + GPU_BATCH_COST * (batch_rows(num_samples, compare) - 1))
    except InterruptedError:
        stopped = True
    except ValueError as e:
        error = str(e)
    finally:
        if _stop_flags.get(key) is flag:  # not a newer run's flag of the same session
            del _stop_flags[key]
    if stopped or error:  # raised here, not in ``except``: no traceback keeps the run's tensors alive
        frames = levels = None
        raise gr.Error("Stopped." if stopped else error)
    spent = time.perf_counter() - start
    out_dir = new_results_dir()
    try:
        yield finish(name, inp, rgb, m, res, plain, frames, levels, steps, jump_n_sample, seed, spent, out_dir)
    finally:  # Gradio has copied the files into its cache by the time it asks for more (or closes us)
        shutil.rmtree(out_dir, ignore_errors=True)


def save_results(out_dir: Path, prefix: str, res, plain, jump_n_sample: int, seed: int) -> list[tuple[str, str]]:
    """Writes the n=r results, then the n=1 results, as PNGs: (path, caption) pairs, sample i with seed + i."""
    saved = []
    for n, arrays in ((jump_n_sample, res), (1, plain)):
        for i, a in enumerate(arrays):
            path = out_dir / f"{prefix}n{n}_seed{seed + i}.png"
            Image.fromarray(a).save(path)
            saved.append((str(path), f"n={n}, seed {seed + i}"))
    return saved


def finish(name, inp, rgb, m, res, plain, frames, levels, steps, jump_n_sample, seed, spent, out_dir: Path):
    """The final outputs of :func:`run`, files written to ``out_dir``."""
    masked = show_mask(rgb, m)
    gallery = save_results(out_dir, f"repaint_{name}_", res, plain, jump_n_sample, seed)
    files = [path for path, _ in gallery]
    input_path = out_dir / "input_masked.png"
    Image.fromarray(masked).save(input_path)
    files.append(str(input_path))
    if plain:
        side = strip([masked, plain[0], res[0]], max(ANIMATION_TILE * 2, inp.resolution))
        slider = (plain[0], res[0])
        side_label = f"masked input | n=1 | n={jump_n_sample}"
    else:
        side = strip([masked, res[0]], max(ANIMATION_TILE * 2, inp.resolution))
        slider = (masked, res[0])
        side_label = "masked input | result"
    rows = [0, len(res)] if plain else [0]
    gif = make_animation(frames, levels, steps, rows, out_dir / "process.gif") if frames else None
    if gif:
        files.append(str(gif))
    status = (f"Done in **{fmt_seconds(spent)}** ({len(levels):,} model calls, {name}, seed {seed}). "
              f"Known pixels are kept exactly; downloads are lossless PNG.")
    return (status, gr.skip(), gallery, gr.update(value=side, label=side_label), slider,
            str(gif) if gif else None, files, seed)


def stop_run(request: gr.Request):
    key = getattr(request, "session_hash", None)
    if key in _stop_flags:
        _stop_flags[key].set()
    return "Stopping..."


def uploaded_path(value) -> str:
    """The path of a file the client uploaded (a FileData dict), refused unless it lies in Gradio's upload cache:
    no path a client names reaches the file system otherwise."""
    path = value.get("path") if isinstance(value, dict) else None
    if not isinstance(path, str) or not path or "\0" in path:
        raise gr.Error("The mask file was not uploaded; pass it with gradio_client.handle_file(path).")
    cache = Path(gr.utils.get_upload_folder()).resolve()
    resolved = Path(path).resolve()  # symlinks and '..' resolved before the check
    if cache not in resolved.parents or not resolved.is_file():
        raise gr.Error("The mask file was not uploaded; pass it with gradio_client.handle_file(path).")
    return str(resolved)


def api_inpaint(image, mask, model, steps, jump_length, jump_n_sample, seed, num_samples, compare):
    """Inpaint ``image`` (a file) where ``mask`` says: a preset name (see repaint.masks.PRESETS) or a mask file
    (white or opaque = fill, same size as the image). Returns the results as PNG files; with ``compare``,
    the n = r results first, then the n = 1 results from the same seeds.

    A generator (it yields nothing until the results) so that Gradio closes it when the client cancels or
    disconnects, which stops the model at its next call; a plain function would run on to the end."""
    name = check_model_name(model)
    if image is None:
        raise gr.Error("No image: pass an image file.")
    if mask is None or (isinstance(mask, str) and not mask.strip()):
        raise gr.Error("No mask: pass a preset name or a mask file.")
    if isinstance(mask, dict):
        mask = uploaded_path(mask)
    elif isinstance(mask, str):
        mask = mask.strip()
        if mask not in rmasks.PRESETS:
            raise gr.Error(f"unknown mask preset {mask[:40]!r}; choose one of: {', '.join(rmasks.PRESETS)}, "
                           f"or pass a mask file with handle_file")
    else:
        raise gr.Error("mask must be a preset name or a mask file")
    steps, jump_length, jump_n_sample, seed, num_samples = (int(v) for v in (steps, jump_length, jump_n_sample, seed,
                                                                             num_samples))
    check_request(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, bool(compare))
    res = plain = error = None
    try:
        for ev in gpu_run(name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, bool(compare),
                          False, None):
            if ev[0] == "done":
                res, plain = ev[1], ev[2]
            elif ev[4] is not None:
                yield gr.skip()  # a chance for Gradio to notice a cancel or a lost client (and close us)
    except ValueError as e:
        error = str(e)
    if error:
        raise gr.Error(error)
    out_dir = new_results_dir()
    try:
        yield save_results(out_dir, "", res, plain or [], jump_n_sample, seed)
    finally:  # Gradio has copied the files into its cache by the time it asks for more (or closes us)
        shutil.rmtree(out_dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- layout
DEFAULT_MODEL, NOTICE = pick_default_model()


def examples_rows() -> list[list]:
    """gr.Examples rows: image, preset, model, T, j, r, seed, samples, compare."""
    face = str(EXAMPLES_DIR / "face1.png")
    rows = [
        [face, "every_second_line", OFFLINE_MODEL, 50, 5, 5, 1, 2, False],
        [str(EXAMPLES_DIR / "face2.png"), "super_resolution_2x", OFFLINE_MODEL, 50, 5, 5, 2, 2, False],
        [face, "left_half", OFFLINE_MODEL, 100, 10, 5, 3, 2, False],
        [str(EXAMPLES_DIR / "face2.png"), "expand", OFFLINE_MODEL, 100, 10, 10, 4, 1, True],
    ]
    if HAS_GPU:
        rows += [
            [str(EXAMPLES_DIR / "astronaut.png"), "every_second_line", "celebahq", 250, 10, 10, 0, 1, False],
            [str(EXAMPLES_DIR / "astronaut.png"), "super_resolution_2x", "celebahq", 250, 10, 10, 0, 1, False],
            [str(EXAMPLES_DIR / "cat.png"), "bottom_half", "cat", 250, 10, 10, 0, 1, False],
            [str(EXAMPLES_DIR / "astronaut.png"), "center_box", "celebahq", 100, 10, 10, 0, 1, True],
        ]
    return [r for r in rows if Path(r[0]).is_file()]


def build_demo() -> gr.Blocks:
    """The page: a new Blocks each call (tests serve their own), queued."""
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            f"# {TITLE}\n"
            "[RePaint](https://arxiv.org/abs/2201.09865) (Lugmayr et al., CVPR 2022) fills a masked region with an "
            "*unconditional* diffusion model: at every step the known pixels are re-noised from the input, and "
            "**resampling** (going back *j* steps, *r* times) lets the filled part agree with them. Paint the region "
            "to fill in blue, or pick a preset.")
        gr.Markdown(NOTICE, visible=bool(NOTICE), elem_id="notice")
        with gr.Row():
            with gr.Column(scale=3):
                editor = gr.ImageEditor(
                    label="Image - paint the region to fill", type="numpy", image_mode="RGBA", format="png",
                    brush=BRUSH, eraser=gr.Eraser(default_size=24), layers=False, transforms=(), height=480,
                    sources=("upload", "clipboard"), elem_id="editor",
                    # gradio 6.31.0: a layer sent from the backend is sized from the bounds of the image container,
                    # which also hold the brush's invisible preview sprite of canvas_size (800x800 by default); an
                    # image under 800 px then gets its layer centred in an 800x800 texture, off the image (an older
                    # form: gradio #7258 / PR #7959). A 1x1 canvas_size places it exactly at every image size.
                    canvas_size=(1, 1))
                drawn_for = gr.State(None)  # background_key of the image the preset layer was drawn for
                with gr.Row():
                    preset = gr.Dropdown(PRESET_CHOICES, value=DRAW, label="Mask", scale=2, elem_id="preset",
                                         info="a preset goes into the editor as a layer you can edit")
                    invert = gr.Checkbox(False, label="Invert: keep the painted region, fill the rest", scale=1)
            with gr.Column(scale=2):
                model = gr.Dropdown(MODEL_CHOICES, value=DEFAULT_MODEL, label="Model", elem_id="model",
                                    allow_custom_value=ALLOW_HUB_IDS,
                                    info=" ".join(f"**{n}**: {m.description}" for n, m in repaint.MODELS.items())
                                    + (" Or type a Hugging Face Hub id, owner/name." if ALLOW_HUB_IDS else ""))
                steps = gr.Slider(1, STEPS_MAX, DEFAULT_STEPS, step=1, label="Steps T", elem_id="steps")
                jump_length = gr.Slider(1, JUMP_MAX, DEFAULT_JUMP, step=1, label="Jump length j", elem_id="jump")
                jump_n_sample = gr.Slider(1, RESAMPLE_MAX, DEFAULT_RESAMPLE, step=1, elem_id="resample",
                                          label="Resamplings r (the paper's n)")
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=SEED_MAX)
                    randomize = gr.Checkbox(False, label="Random seed")
                num_samples = gr.Slider(1, SAMPLES_MAX, 1, step=1, label="Samples", elem_id="samples")
                compare = gr.Checkbox(False, label="Compare n=1 vs n>1 (same seeds, one batched run)",
                                      elem_id="compare")
                estimate = gr.Markdown(estimate_text(DEFAULT_MODEL, DEFAULT_STEPS, DEFAULT_JUMP, DEFAULT_RESAMPLE, 1,
                                                     False), elem_id="estimate")
                with gr.Row():
                    run_btn = gr.Button("Inpaint", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
        status = gr.Markdown("", elem_id="status")
        with gr.Row():
            preview = gr.Image(label="Predicted x0 while running", format="png", interactive=False, elem_id="preview")
            gallery = gr.Gallery(label="Results (PNG)", format="png", columns=4, elem_id="results", interactive=False)
        with gr.Row():
            side = gr.Image(label="Side by side", format="png", interactive=False, elem_id="side")
            slider = gr.ImageSlider(label="Before / after (n=1 / n>1 when comparing)", format="png",
                                    interactive=False, elem_id="slider")
        with gr.Row():
            animation = gr.Image(label="The process: x_t, predicted x0, and the noise level", type="filepath",
                                 interactive=False, elem_id="animation")
            downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
        gr.DeepLinkButton()
        gr.Examples(examples_rows(), inputs=[editor, preset, model, steps, jump_length, jump_n_sample, seed,
                                             num_samples, compare],
                    cache_examples=False, api_visibility="private",  # the editor's .change adds the preset
                    label="Examples (the README's cases): click one, then Inpaint", elem_id="examples")

        # Hidden components of the ``inpaint`` API endpoint (gradio_client)
        with gr.Row(visible=False):
            api_image = gr.Image(type="filepath", label="image", format="png")
            api_mask = gr.JSON(label="mask: a preset name or handle_file(mask path)")
            api_model = gr.Textbox(label="model")
            api_steps = gr.Number(DEFAULT_STEPS, label="steps", precision=0)
            api_jump = gr.Number(DEFAULT_JUMP, label="jump_length", precision=0)
            api_resample = gr.Number(DEFAULT_RESAMPLE, label="jump_n_sample", precision=0)
            api_seed = gr.Number(0, label="seed", precision=0)
            api_samples = gr.Number(1, label="num_samples", precision=0)
            api_compare = gr.Checkbox(False, label="compare")
            api_out = gr.Gallery(format="png", label="results")
            api_btn = gr.Button()

        # ------------------------------------------------------------------------------------------- events
        settings = [model, steps, jump_length, jump_n_sample, num_samples, compare]
        for comp in (steps, jump_length, jump_n_sample, num_samples, compare):
            comp.change(estimate_text, settings, estimate, show_progress="hidden", queue=False)
        model.change(on_model_change, settings, estimate)
        # user changes only (.input, not .change): an example sets all of them at once and loads its own mask
        for trigger in (preset.input, model.input, seed.input):
            trigger(redraw_preset, [editor, preset, model, seed], [editor, drawn_for], show_progress="hidden",
                    api_visibility="private")
        # A value set from the backend fires .upload again (an endless redraw, cf. gradio #7502), and after an
        # example a visitor's upload fired none: sync_preset redraws only for a new background.
        # an example's image fires .upload/.input only, a visitor's stroke .change/.input: all go through the guard
        gr.on([editor.upload, editor.change, editor.input], sync_preset, [editor, preset, model, seed, drawn_for],
              [editor, drawn_for], show_progress="hidden", api_visibility="private", trigger_mode="always_last")
        run_event = run_btn.click(
            run, [editor, model, steps, jump_length, jump_n_sample, seed, randomize, num_samples, compare, invert],
            [status, preview, gallery, side, slider, animation, downloads, seed], api_visibility="private")
        stop_btn.click(stop_run, None, status, cancels=[run_event], queue=False)
        api_btn.click(api_inpaint, [api_image, api_mask, api_model, api_steps, api_jump, api_resample, api_seed,
                                    api_samples, api_compare], api_out, api_name="inpaint")
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

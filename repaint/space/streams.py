"""The serving chain the page's handler and ``/inpaint`` go through: a checked request run by the GPU function, its
ticks turned into the page's status and previews, Stop, and its results turned into files and page values."""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..images import save_png
from . import pictures
from .errors import Stopped
from .estimate import fmt_seconds
from .files import PNG_LEVEL, RESULTS_DIR, new_results_dir, save_results
from .requests import Checked, Finished, Request

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)

PREVIEW_INTERVAL_S = 0.5  # the page's live preview at most this often: each is a PNG the browser fetches in turn

STOPPING, NOTHING_TO_STOP = "Stopping at the next model call...", "Nothing to stop: no run is in progress."


def stopped_text(ticks: int, total: int, seconds: float) -> str:
    """The status after a Stop the visitor asked for (not an error: nothing failed)."""
    return (
        f"Stopped as you asked, after {ticks:,} of {total:,} model calls ({fmt_seconds(seconds)}); nothing was "
        f"saved. Press Inpaint to run again."
    )


def stream(service: Service, gpu_run, req: Request, stop: threading.Event | None = None):
    """The run both handlers share after :meth:`Service.check_request`: ``gpu_run(req)`` (the GPU function: in a
    ZeroGPU worker there), its per-call time noted, ``stop`` looked at after every event. Yields ("tick", tick,
    total, seconds so far, x0 or None) per model call, then ("done", :class:`Finished`). Stop closes the GPU
    function's generator (which ends its run, in this process or in the worker) and raises :class:`Stopped`."""
    start, frames, levels, finished = time.perf_counter(), [], [], None
    if service.on_zerogpu and req.slot_s is None:  # the slot's seconds cross to the worker with the request
        req = dataclasses.replace(req, slot_s=service.gpu_duration(req))
    gen = gpu_run(req)
    try:
        for ev in gen:
            if stop is not None and stop.is_set():
                break
            if ev[0] == "spent":  # the run stopped short of its slot's end: its per-call time sizes later slots
                service.note_run(req, ev[1])
                continue
            if ev[0] == "done":
                service.note_run(req, ev[3])
                finished = Finished(req, ev[1], ev[2], frames, levels, ev[3] * len(levels))
                continue
            _, tick, total, lv, xt, x0 = ev
            levels.append(lv)
            if xt is not None:
                frames.append((tick, xt, x0))
            yield "tick", tick, total, time.perf_counter() - start, x0
    finally:
        gen.close()
    if finished is None:  # raised here, not in an ``except``: no traceback keeps the run's tensors alive
        raise Stopped("Stopped.")
    finished.seconds = time.perf_counter() - start
    yield "done", finished


def page_stream(
    service: Service,
    gpu_run,
    req: Request,
    checked: Checked,
    stop: threading.Event | None,
    results_dir: Path = RESULTS_DIR,
    preview_height: int = 128,
):
    """The page's run: yields ("status", (text, preview strip or None, (done, total) or None)) while it runs, then
    ("done", :func:`page_results`), whose files are deleted when the caller asks for more (or closes this).
    Previews come at most every PREVIEW_INTERVAL_S; the run's time outside its model calls is noted for the
    estimates (:meth:`Service.note_page_run`)."""
    start, shown = time.perf_counter(), -math.inf
    wait = service.wait_seconds(*req.settings())
    yield "status", (f"Starting: {req.calls:,} model calls, about {fmt_seconds(wait or 0)}...", None, None)
    for ev in stream(service, gpu_run, req, stop):
        if ev[0] == "done":
            done = ev[1]
        elif ev[4] is not None and time.perf_counter() - shown >= PREVIEW_INTERVAL_S:
            _, tick, total, spent, x0 = ev
            shown = time.perf_counter()
            text = (
                f"Step {tick + 1:,}/{total:,} - {fmt_seconds(spent)} elapsed, ETA "
                f"{fmt_seconds(spent / (tick + 1) * (total - tick - 1))}"
            )
            yield "status", (text, pictures.strip(list(x0), preview_height), (tick + 1, total))
    out_dir = new_results_dir(results_dir)
    try:
        results, seconds = page_results(done, checked, out_dir), time.perf_counter() - start
        service.note_page_run(req.model, seconds, done.model_seconds, math.prod(done.results[0].shape[:2]))
        log.info(
            "page run %s, %d calls of %d rows: %.2f s, model calls %.2f s",
            req.model,
            req.calls,
            req.rows,
            seconds,
            done.model_seconds,
        )
        yield "done", results
    finally:  # the server has copied the files by the time it asks for more (or closes us)
        shutil.rmtree(out_dir, ignore_errors=True)


def until_stopped(events, stop: threading.Event):
    """:func:`page_stream`'s events, a Stop the visitor asked for (``stop`` set) ending them with a last ("status",
    (what happened, None, None)) rather than the :class:`Stopped` error: a Stop is not a failure."""
    start, calls, stopped = time.perf_counter(), (0, 0), False
    try:
        for kind, out in events:
            if kind == "status" and out[2]:
                calls = out[2]
            yield kind, out
    except Stopped:
        if not stop.is_set():
            raise
        stopped = True  # said outside the ``except``: no traceback keeps the run's tensors alive
    if stopped:
        yield "status", (stopped_text(*calls, time.perf_counter() - start), None, None)


def api_stream(service: Service, gpu_run, req: Request, results_dir: Path = RESULTS_DIR):
    """``/inpaint``'s run: yields None first, before the run starts, and at each preview (a chance for the server to
    notice a cancel or a lost client and close this), then the (path, caption) result files, deleted when the caller
    asks for more (or closes). Gradio holds a generator, and can close it, only once it has yielded: a run started
    before that would go on to its end after a cancel."""
    yield None
    for ev in stream(service, gpu_run, req):
        if ev[0] == "done":
            done = ev[1]
        elif ev[4] is not None:
            yield None
    out_dir = new_results_dir(results_dir)
    try:
        yield save_results(out_dir, "", done.results, done.plain, req.jump_n_sample, req.seed)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def page_results(done: Finished, checked: Checked, out_dir: Path) -> dict:
    """The page's results of a finished run, files written to ``out_dir``: status, gallery (path, caption), the
    side-by-side strip and its label, the before/after pair (sample 0's; ``pairs``: every sample's, the slider's
    views) and its two labels, the process GIF and every file to download."""

    req, res, plain = done.request, done.results, done.plain
    masked = pictures.show_mask(*checked.big)
    gallery = save_results(out_dir, f"repaint_{req.model}_", res, plain, req.jump_n_sample, req.seed)
    save_png(masked, out_dir / "input_masked.png", PNG_LEVEL)
    tile = max(2 * pictures.ANIMATION_TILE, checked.model.resolution)
    gif = pictures.make_animation(
        done.frames, done.levels, req.steps, [0, len(res)] if plain else [0], out_dir / "process.gif"
    )
    labels = checked.model.class_labels([req.seed + i for i in range(len(res))], req.class_label)
    classes = f", class {', '.join(map(str, labels))}" if labels else ""
    shown = pictures.view_copy(masked)  # every sample's "before" in a plain run: one copy
    pairs = [(pictures.view_copy(plain[i]) if plain else shown, pictures.view_copy(a)) for i, a in enumerate(res)]
    return dict(
        status=(
            f"Done in **{fmt_seconds(done.seconds)}** ({len(done.levels):,} model calls, {req.model}, seed "
            f"{req.seed}{classes}). Known pixels are kept exactly; downloads are lossless PNG."
        ),
        gallery=gallery,
        side=pictures.strip([masked, plain[0], res[0]] if plain else [masked, res[0]], tile),
        side_label=f"masked input | n=1 | n={req.jump_n_sample}" if plain else "masked input | result",
        slider=pairs[0],
        pairs=pairs,
        slider_labels=("n=1", f"n={req.jump_n_sample}") if plain else ("before", "after"),
        gif=str(gif),
        files=[path for path, _ in gallery] + [str(out_dir / "input_masked.png"), str(gif)],
    )

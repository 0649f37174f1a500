"""The serving chain the page's handler and ``/inpaint`` go through: a checked request run by the GPU function, its
ticks turned into the page's status and previews, Stop, and its results turned into files and page values."""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..images import save_png
from . import pictures
from .errors import Stopped
from .estimate import fmt_seconds, sharing_text
from .files import PNG_LEVEL, RESULTS_DIR, new_results_dir, save_results
from .requests import Checked, Finished, Request
from .runner import Done, Spent, Tick

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)

PREVIEW_INTERVAL_S = 0.5  # the page's live preview at most this often: each is a PNG the browser fetches in turn

STOPPING, NOTHING_TO_STOP = "Stopping at the next model call...", "Nothing to stop: no run is in progress."


@dataclass(frozen=True)
class Progress:
    """Model calls done, as :func:`stream` hands them on: up to ``tick`` of ``total``, the run's seconds so far and,
    every few calls, the predicted x0 (uint8, one per row)."""

    tick: int
    total: int
    seconds: float
    x0: np.ndarray | None = None
    others: int = 0  # other runs sharing the model's calls then
    due: bool = True  # the run's Tick was due (a preview, or TICK_INTERVAL_S after the last): /inpaint says it


@dataclass(frozen=True)
class Status:
    """What the page shows while a run runs: a status text, the preview strip, and (done, total) model calls."""

    text: str
    preview: np.ndarray | None = None
    calls: tuple[int, int] | None = None


def stopped_text(ticks: int, total: int, seconds: float) -> str:
    """The status after a Stop the visitor asked for (not an error: nothing failed)."""
    return (
        f"Stopped as you asked, after {ticks:,} of {total:,} model calls ({fmt_seconds(seconds)}); nothing was "
        f"saved. Press Inpaint to run again."
    )


def stream(service: Service, gpu_run, req: Request, stop: threading.Event | None = None):
    """The run both handlers share after :meth:`Service.check_request`: ``gpu_run(req)`` (the GPU function: in a
    ZeroGPU worker there), its per-call time noted, ``stop`` looked at after every event. Yields a :class:`Progress`
    per :class:`Tick` of the run, then the :class:`Finished` run. Stop closes the GPU function's generator (which
    ends its run, in this process or in the worker) and raises :class:`Stopped`; a ``stop`` set before the run
    starts, before any model call."""
    start, frames, levels, finished = time.perf_counter(), [], [], None
    if stop is not None and stop.is_set():  # stopped before it started (its client gone while it queued): not run
        raise Stopped("Stopped.")
    if service.on_zerogpu and req.slot_s is None:  # the slot's seconds cross to the worker with the request
        req = dataclasses.replace(req, slot_s=service.slot.gpu_duration(req))
    gen = gpu_run(req)
    try:
        for ev in gen:
            if stop is not None and stop.is_set():
                break
            if isinstance(ev, Spent):  # the run stopped short of its slot's end: its per-call time sizes later slots
                service.timing.note_run(req.model, req.settings, ev.per_call)
            elif isinstance(ev, Done):
                if not ev.shared:  # a call shared with other runs' rows is not this run's alone to time
                    service.timing.note_run(req.model, req.settings, ev.per_call)
                finished = Finished(req, ev.results, ev.plain, frames, levels, ev.per_call * len(levels), ev.shared)
            elif isinstance(ev, Tick):
                levels.extend(ev.levels)
                if ev.x_t is not None:
                    frames.append((ev.tick, ev.x_t, ev.x0))
                yield Progress(ev.tick, ev.total, time.perf_counter() - start, ev.x0, ev.others, ev.due)
    finally:
        gen.close()
    if finished is None:  # raised here, not in an ``except``: no traceback keeps the run's tensors alive
        raise Stopped("Stopped.")
    finished.seconds = time.perf_counter() - start
    yield finished


def page_stream(
    service: Service,
    gpu_run,
    req: Request,
    checked: Checked,
    stop: threading.Event | None,
    results_dir: Path = RESULTS_DIR,
    preview_height: int = 128,
):
    """The page's run: yields a :class:`Status` while it runs, then the :func:`page_results`, whose files are
    deleted when the caller asks for more (or closes this). Previews come at most every PREVIEW_INTERVAL_S; the
    remaining time is the run's own rate so far; the run's time outside its model calls is noted for the estimates
    (:meth:`Timing.note_page_run`)."""
    start, shown, s = time.perf_counter(), -math.inf, req.settings
    yield starting(service, req)
    for ev in stream(service, gpu_run, req, stop):
        if isinstance(ev, Finished):
            done = ev
        elif ev.x0 is not None and time.perf_counter() - shown >= PREVIEW_INTERVAL_S:
            shown = time.perf_counter()
            yield dataclasses.replace(step(ev), preview=pictures.strip(list(ev.x0), preview_height))
    out_dir = new_results_dir(results_dir)
    try:
        results, seconds = page_results(done, checked, out_dir), time.perf_counter() - start
        if not done.shared:
            service.timing.note_page_run(req.model, seconds, done.model_seconds, math.prod(done.results[0].shape[:2]))
        log.info(
            "page run %s, %d calls of %d rows: %.2f s, model calls %.2f s",
            req.model,
            s.calls,
            s.rows,
            seconds,
            done.model_seconds,
        )
        yield results
    finally:  # the server has copied the files by the time it asks for more (or closes us)
        shutil.rmtree(out_dir, ignore_errors=True)


def starting(service: Service, req: Request) -> Status:
    """The status before a run's first model call: its calls and wait, counting the runs that share its model."""
    runs, sharing = service.sharing(req.model)
    wait = service.timing.wait_seconds(req.model, req.settings, sharing)
    shared = f" {sharing_text(runs)}" if runs else ""
    return Status(f"Starting: {req.settings.calls:,} model calls, about {fmt_seconds(wait or 0)}...{shared}")


def step(ev: Progress) -> Status:
    """The status after the model calls of ``ev``: how far, how long so far, the time left at that rate, and how
    many other runs shared the model's calls then."""
    calls = ev.tick + 1
    eta = fmt_seconds(ev.seconds / calls * (ev.total - calls))
    shared = f" {sharing_text(ev.others, estimated=False)}" if ev.others else ""
    text = f"Step {calls:,}/{ev.total:,} - {fmt_seconds(ev.seconds)} elapsed, ETA {eta}.{shared}"
    return Status(text, None, (calls, ev.total))


def until_stopped(events, stop: threading.Event):
    """:func:`page_stream`'s events, a Stop the visitor asked for (``stop`` set) ending them with a last
    :class:`Status` of what happened rather than the :class:`Stopped` error: a Stop is not a failure."""
    start, calls, stopped = time.perf_counter(), (0, 0), False
    try:
        for ev in events:
            if isinstance(ev, Status) and ev.calls:
                calls = ev.calls
            yield ev
    except Stopped:
        if not stop.is_set():
            raise
        stopped = True  # said outside the ``except``: no traceback keeps the run's tensors alive
    if stopped:
        yield Status(stopped_text(*calls, time.perf_counter() - start))


def api_stream(
    service: Service, gpu_run, req: Request, stop: threading.Event | None = None, results_dir: Path = RESULTS_DIR
):
    """``/inpaint``'s run: yields a :class:`Status` first, before the run starts (:func:`starting`: the page's
    estimate), and at each of the run's due ticks: each preview, and TICK_INTERVAL_S after the last (:func:`step`,
    without the pictures; each a chance for the server to notice a cancel and close this), then the (path, caption)
    result files, deleted when the caller asks for more (or closes). Gradio holds a generator, and can close it, only
    once it has yielded: a run started before that would go on to its end after a cancel, and a cancel waits for the
    next yield. ``stop`` (set when its client is gone, see :mod:`.clients`) ends the run at its next model call."""
    yield starting(service, req)
    for ev in stream(service, gpu_run, req, stop):
        if isinstance(ev, Finished):
            done = ev
        elif ev.due:  # on ZeroGPU a Tick comes at every call
            yield step(ev)
    out_dir = new_results_dir(results_dir)
    try:
        yield save_results(out_dir, "", done.results, done.plain, req.settings.jump_n_sample, req.settings.seed)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def page_results(done: Finished, checked: Checked, out_dir: Path) -> dict:
    """The page's results of a finished run, files written to ``out_dir``: status, gallery (path, caption), the
    side-by-side strip and its label, the before/after pair (sample 0's; ``pairs``: every sample's, the slider's
    views) and its two labels, the process GIF and every file to download."""

    req, s, res, plain = done.request, done.request.settings, done.results, done.plain
    masked = pictures.show_mask(*checked.big)
    stem = req.model.replace("/", "--")  # a Hub id owner/name, as the Hub cache names it
    gallery = save_results(out_dir, f"repaint_{stem}_", res, plain, s.jump_n_sample, s.seed)
    save_png(masked, out_dir / "input_masked.png", PNG_LEVEL)
    tile = max(2 * pictures.ANIMATION_TILE, checked.model.resolution)
    gif = pictures.make_animation(
        done.frames, done.levels, s.steps, [0, len(res)] if plain else [0], out_dir / "process.gif"
    )
    labels = checked.model.class_labels([s.seed + i for i in range(len(res))], s.class_label)
    classes = f", class {', '.join(map(str, labels))}" if labels else ""
    shown = pictures.view_copy(masked)  # every sample's "before" in a plain run: one copy
    pairs = [(pictures.view_copy(plain[i]) if plain else shown, pictures.view_copy(a)) for i, a in enumerate(res)]
    return dict(
        status=(
            f"Done in **{fmt_seconds(done.seconds)}** ({len(done.levels):,} model calls, {req.model}, seed "
            f"{s.seed}{classes}). Known pixels are kept exactly; downloads are lossless PNG."
        ),
        gallery=gallery,
        side=pictures.strip([masked, plain[0], res[0]] if plain else [masked, res[0]], tile),
        side_label=f"masked input | n=1 | n={s.jump_n_sample}" if plain else "masked input | result",
        slider=pairs[0],
        pairs=pairs,
        slider_labels=("n=1", f"n={s.jump_n_sample}") if plain else ("before", "after"),
        gif=str(gif),
        files=[path for path, _ in gallery] + [str(out_dir / "input_masked.png"), str(gif)],
    )

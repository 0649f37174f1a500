"""Serving the Space, gradio-free: the model cache with per-call timing, estimates and the ZeroGPU slot length, and
the serving chain both the page's handler and ``/inpaint`` go through: a :class:`Request` (one picklable value with
a run's settings) is checked (:meth:`Service.check_request`), run by the GPU function (:meth:`Service.run`, in a
ZeroGPU worker process there) through :func:`stream` (Stop, timing), and its results written (:func:`save_results`,
:func:`page_results`).

Errors meant for the visitor are :class:`ServeError` (a ValueError); the app shows their message.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import masks, models
from .bench import call_time, call_times
from .images import from_tensor, save_png
from .schedule import count_model_calls

__all__ = ["Checked", "Finished", "Request", "ServeError", "Service", "Stopped", "api_stream", "fmt_seconds",
           "is_hub_id", "new_results_dir", "page_results", "page_stream", "save_results", "stream", "sweep_results",
           "visible"]

log = logging.getLogger(__name__)

HUB_MODELS_MAX = 2  # Hub models (not in the registry) kept loaded at once; the oldest is dropped first
HUB_RESOLUTION_MAX = 512  # larger Hub models are refused (time and memory)
# owner/name as the Hub spells it: letters, digits, '-', '_', '.'; no '..' or '--', no leading/trailing '.'/'-'
HUB_ID_RE = re.compile(r"(?!.*(\.\.|--))([A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)/"
                       r"([A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)")
AOT_ENV = "REPAINT_AOT"  # "1": on ZeroGPU, preload compiles each offered UNet ahead of time (repaint.aot.compile_unet)
GPU_CAP_S = 300  # on a GPU of the server's own (not ZeroGPU): the longest run one request may ask for
GPU_MARGIN_S = 15  # added to the estimate (start-up, transfers, image encoding)
TIMING_CALLS = 3  # forward calls timed once per model at load
CHEAP_CALL_S = 0.1  # a model this fast is also timed at the batch sizes a page run uses (BATCH_ROWS_TIMED) at load,
TIMING_BUDGET_S = 1.5  # in turn with one row, for up to this long
BATCH_ROWS_TIMED = (2, 4, 8)  # 1-4 samples, twice that to compare; between them the cost is interpolated
# What runs measure refines the start-up timing, each row count on its own (Service.note_run), weighted by the run's
# calls. The start-up timing weighs as much as a run of PRIOR_CALLS calls, about the one-row calls it times (a ZeroGPU
# guess: nothing). It runs alone, so with a browser on the same machine it reads low: the bundled model's bare call
# timed 19-28 ms on this 2-core machine, its paper run in a browser 28-37 ms per call. A row count's measure weighs
# at most RUN_CALLS_MAX calls, so that the estimates follow the machine's load now.
PRIOR_CALLS = 10
RUN_CALLS_MAX = 500
GPU_BATCH_COST = 0.5  # extra cost of each further batch row on a GPU, relative to one row (CPU: 1.0), if not timed
# The wait a visitor sees from the click on Inpaint to the results shown is the model calls plus the rest: the page
# run's own work (checks, result files, the GIF; measured by each run, EXTRA_S before the first) and the browser's
# (sending the editor's layers before, showing the results after: PAGE_S, from issue 21's browser measurements, a
# 256x256 photo on this server: 0.5-1.6 s before the handler starts and 0.25-0.7 s after its last yield).
EXTRA_S = 1.0
PAGE_S = 1.5
EXTRA_PIXELS_MAX = 1_000_000  # larger results are not learned from: the estimate does not know the photo's size
PREVIEW_INTERVAL_S = 0.5  # the page's live preview at most this often: each is a PNG the browser fetches in turn
# Per-call guess on ZeroGPU, where the main process has no GPU to time: the model's TFLOP per call (the registry)
# over an assumed effective throughput at batch 1, at least a floor for launch overheads. An assumption, not a
# measurement (no GPU was lent to this project): ADM-256 (2.24 TFLOP) gets 0.09 s, so the paper's 2,410 calls ask
# for 232 s; each run's own timing replaces the guess (Service.note_run).
ZEROGPU_TFLOPS = 25.0
ZEROGPU_MIN_CALL_S = 0.01
# The guess is widened by this margin before it sizes a slot: a call up to 1.5x slower than assumed (the worker's
# start included) still fits. A run's own measurement replaces guess and margin (Service.note_run).
ZEROGPU_GUESS_MARGIN = 1.5
ZEROGPU_CALL_S = {256: 0.09, 32: ZEROGPU_MIN_CALL_S}  # by resolution, for Hub models the registry does not know
ZEROGPU_SLOT_S = 60  # ZeroGPU's default slot: the page's default settings are charged at most this
# The daily ZeroGPU quota of each kind of visitor (Hugging Face's ZeroGPU docs, 2026; PRO: spaces 0.51.3's
# spaces/zero/client.py, PRO_QUOTA_MINUTES = 40, which is also the longest task ZeroGPU schedules for anyone).
ZEROGPU_QUOTA_S = {"anonymous": 120, "free account": 300, "PRO": 2400}
ZEROGPU_TASK_MAX_S = ZEROGPU_QUOTA_S["PRO"]
# spaces multiplies each request's seconds by its GPU's duration_factor before they are scheduled and charged
# (spaces 0.51.3, spaces/zero/client.py get_duration_seconds, not for 'xlarge' requests; the factors are in
# spaces/zero/configs.json: 1.0 on the H200, 1.5 on the RTX PRO 6000 Blackwell, the hardware ZeroGPU's documentation
# names). Read from spaces itself (zerogpu_duration_factor); this, the largest it knows, where it cannot say.
ZEROGPU_FACTOR_MAX = 1.5
SIZES = ("auto", "full", "model")  # the API's result size: auto = full for a mask file, the model's for a preset
ANIMATION_FRAMES = 48  # frames of the process GIF (and streamed previews)
WORKER_JOIN_S = 1.0  # how long closing a run waits for its worker thread (it stops at its next model call)
# A run with a GPU slot (ZeroGPU) stops before a model call that would leave less than this of the slot: the worker's
# start before the run and the results' hand-over after it also count against the slot.
SLOT_RESERVE_S = 5.0
# Result files go here, one folder per run, deleted as soon as the server has copied them; folders left by a crash
# are swept after RESULTS_MAX_AGE_S.
RESULTS_DIR = Path(tempfile.gettempdir()) / "repaint_results"
RESULTS_MAX_AGE_S = 3600
# zlib level of the result PNGs (lossless at every level): a 12 MP photo takes 3.7 s at 1 and 18 s at PIL's default
# 6 on this machine, for files within 10% of each other
PNG_LEVEL = 1


def model_choices(has_gpu: bool, offered=None) -> list[tuple[str, str]]:
    """(label, name) for a chooser: name · resolution · what it is for · CPU/GPU; GPU-only models only with a GPU;
    only the ``offered`` names when given."""
    return [(f"{m.name} · {m.resolution}px · {m.description.split(';')[0].split(',')[0].split(' (')[0]} · "
             f"{'GPU' if m.gpu_only else 'CPU'}", m.name) for m in models.MODELS.values()
            if (has_gpu or not m.gpu_only) and (offered is None or m.name in offered)]


def offered_models(setting: str | None, has_gpu: bool, on_zerogpu: bool) -> list[str]:
    """The registry models a Space offers: ``setting`` (REPAINT_MODELS, comma-separated names) or, unset, every model
    the hardware can run; on ZeroGPU, unset, the models whose weights come from the Hub, and ``bundled`` (the paper's
    guided-diffusion models download 2.2 GB each from their authors' hosts: name them to offer them). A name the
    registry does not know is an error (a typo must not silently shrink the page)."""
    if setting and setting.strip():
        names = [n.strip() for n in setting.split(",") if n.strip()]
        unknown = [n for n in names if n not in models.MODELS]
        if unknown:
            raise ValueError(f"REPAINT_MODELS names unknown models {unknown}; known: {', '.join(models.MODELS)}")
        return list(dict.fromkeys(names))
    return [m.name for m in models.MODELS.values() if (has_gpu or not m.gpu_only) and not (on_zerogpu and m.url)]


def zerogpu_duration_factor() -> float:
    """The factor spaces applies to a ZeroGPU request's seconds here (its get_duration_seconds, on the GPU model it
    reads from the NVIDIA driver), or ZEROGPU_FACTOR_MAX where spaces cannot say."""
    from datetime import timedelta

    try:
        from spaces.zero.client import get_duration_seconds

        return float(get_duration_seconds(timedelta(seconds=3600), None)) / 3600
    except Exception:  # noqa: BLE001 - no spaces, or not the one this was written for
        log.warning("the ZeroGPU duration factor could not be read from spaces; assuming %s", ZEROGPU_FACTOR_MAX,
                    exc_info=True)
        return ZEROGPU_FACTOR_MAX


def gpu_seconds_text(seconds: int, charged: int) -> str:
    """What a run asks of ZeroGPU: ``seconds`` of GPU time, ``charged`` to the visitor's daily quota (the seconds
    times the GPU's duration factor), and whose quotas can pay that."""
    fits = [f"{tier} ({quota} s/day)" for tier, quota in ZEROGPU_QUOTA_S.items() if charged <= quota]
    factor = "" if charged == seconds else f" ({seconds} s x {charged / seconds:.3g}, this GPU's factor)"
    return (f"Requests **{charged} s** of ZeroGPU quota{factor}; within the daily quota of: "
            f"{', '.join(fits) if fits else 'no visitor'}" + ("" if charged <= ZEROGPU_QUOTA_S["anonymous"] else
                                                              ". Anonymous visitors: sign in for more."))


def fitting_settings(service: Service, name: str, slot_s: int) -> tuple[int, int, int]:
    """(T, j, r) for ``name`` whose ZeroGPU request fits ``slot_s`` seconds: the paper's T=250, j=10 with the most
    resamplings r <= 10 that fit, else fewer steps (T = 200, 150, 100, 50, 25) with r from 10 down."""
    for steps in (250, 200, 150, 100, 50, 25):
        for r in range(10, 0, -1):
            req = Request(name, None, None, steps, min(10, steps), r)
            if service.charged_seconds(req) <= slot_s:
                return steps, min(10, steps), r
    return 25, 5, 1


def zerogpu_guess(name: str, resolution: int = 256) -> float:
    """Seconds per call at batch 1 on ZeroGPU before any run was timed: registry TFLOP / ZEROGPU_TFLOPS, the model's
    classifier's forward and input gradient included for a model guided by default (imagenet), times
    ZEROGPU_GUESS_MARGIN."""
    info = models.MODELS.get(name)
    if info is not None and info.tflop is not None:
        tflop = info.tflop + (models.CLASSIFIERS[info.classifier].tflop if info.classifier else 0.0)
        return ZEROGPU_GUESS_MARGIN * max(ZEROGPU_MIN_CALL_S, tflop / ZEROGPU_TFLOPS)
    return ZEROGPU_GUESS_MARGIN * ZEROGPU_CALL_S.get(resolution, ZEROGPU_CALL_S[256])


def _weights(m: models.ModelInfo) -> str:
    if m.repo_id:
        return f"[{m.repo_id}](https://huggingface.co/{m.repo_id})"
    if m.url:
        return f"[{m.filename}]({m.source.split(' ')[0] if m.source else m.url}), {m.download_mb:,} MB, converted"
    return "in this package"


def model_table() -> str:
    """The registry as a Markdown table: name, resolution, purpose, licence, where the weights come from."""
    rows = [f"| {m.name} | {m.resolution} | {m.description} | {m.licence} | {_weights(m)} |"
            for m in models.MODELS.values()]
    return "| model | px | for | licence | weights |\n|---|---|---|---|---|\n" + "\n".join(rows)


class ServeError(ValueError):
    """A request the Space refuses, with a message for the visitor."""


def visible(error_cls):
    """A decorator for handlers (plain or generators): a ServeError they raise becomes ``error_cls(message)`` (for
    Gradio: gr.Error, the one error it shows, and the one ZeroGPU's worker hands on). Raised outside the
    ``except``, so no traceback of the run (and none of its tensors) hangs on the error."""
    def wrap(fn):
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                    return
                except ServeError as e:
                    message = str(e)
                raise error_cls(message)
            return gen

        @functools.wraps(fn)
        def plain(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ServeError as e:
                message = str(e)
            raise error_cls(message)
        return plain
    return wrap


OUT_OF_MEMORY = "The GPU ran out of memory for this run: use fewer samples, or turn Compare off."
GPU_FAILED = "The GPU failed during the run (a CUDA error): please try again."


def gpu_error(error: BaseException) -> BaseException:
    """What a run's error becomes for the visitor: a ValueError (bad settings) and the GPU's errors they can act on
    (out of memory, a CUDA failure) as a ServeError with a message, every other error unchanged, its traceback in
    the server's log (inside a ZeroGPU worker the visitor would see only its class name)."""
    if isinstance(error, ServeError):
        return error
    if isinstance(error, ValueError):
        return ServeError(str(error))
    text = str(error)
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        log.error("run out of GPU memory: %s", text)
        return ServeError(OUT_OF_MEMORY)
    if isinstance(error, RuntimeError) and any(w in text for w in ("CUDA", "cuDNN", "CUBLAS", "cublas", "NCCL")):
        log.error("run failed on the GPU", exc_info=error)
        return ServeError(GPU_FAILED)
    log.error("run failed", exc_info=error)
    return error


class SlotSpent(InterruptedError):
    """A run stopped before it would outlast its GPU slot (raised in the sampler's callback)."""

    def __init__(self, done: int, total: int, per_call: float, slot_s: int):
        self.per_call = per_call
        super().__init__(
            f"Stopped after {done:,} of {total:,} model calls: at {per_call * 1000:.0f} ms per call the run would "
            f"outlast its {slot_s} s GPU slot. Nothing was saved. The next run's slot is sized from this "
            f"measurement; or lower T, r or the samples.")


class Stopped(ServeError):
    """The visitor pressed Stop during the run."""


STOPPING, NOTHING_TO_STOP = "Stopping at the next model call...", "Nothing to stop: no run is in progress."


def stopped_text(ticks: int, total: int, seconds: float) -> str:
    """The status after a Stop the visitor asked for (not an error: nothing failed)."""
    return (f"Stopped as you asked, after {ticks:,} of {total:,} model calls ({fmt_seconds(seconds)}); nothing was "
            f"saved. Press Inpaint to run again.")


@dataclass(frozen=True)
class Request:
    """One run's settings, as both handlers hand them on: checked, then given to the GPU function (picklable, for
    the ZeroGPU worker process). ``image``: an RGB(A) array or an image file; ``mask``: a bool array (True = fill),
    a mask file or a preset name; ``full_size``: the result at the image's own size (else the model's square)."""

    model: str
    image: Any
    mask: Any
    steps: int = 250
    jump_length: int = 10
    jump_n_sample: int = 10
    seed: int = 0
    num_samples: int = 1
    compare: bool = False
    invert: bool = False
    full_size: bool = False
    class_label: int | None = None
    classifier_scale: float | None = None  # classifier guidance; None: the model's default (1 with a classifier)
    stop_key: str | None = None  # the session whose Stop flag the run watches in this process (see Service.run)
    # The GPU seconds asked of ZeroGPU for this run (stream sets it there): the worker, which cannot know what the
    # main process asked, stops before it would outlast them (Service.run).
    slot_s: int | None = None

    @property
    def rows(self) -> int:
        """Rows of each batched model call."""
        return batch_rows(self.num_samples, self.compare)

    @property
    def calls(self) -> int:
        return model_calls(self.steps, self.jump_length, self.jump_n_sample)

    def settings(self) -> tuple:
        """(model, T, j, r, samples, compare): what the time estimate depends on."""
        return self.model, self.steps, self.jump_length, self.jump_n_sample, self.num_samples, self.compare


@dataclass
class Checked:
    """A request that passed the checks: its model, and (image, mask) at the result's and at the model's size."""

    model: models.Inpainter
    big: tuple[np.ndarray, np.ndarray]
    small: tuple[np.ndarray, np.ndarray]


@dataclass
class Finished:
    """A finished run: the n=r results, the n=1 ones (compare), the preview frames and noise levels, the seconds."""

    request: Request
    results: list[np.ndarray]
    plain: list[np.ndarray]
    frames: list = field(default_factory=list)
    levels: list = field(default_factory=list)
    model_seconds: float = 0.0  # the GPU function's own time (the per-call time it measured, times its calls)
    seconds: float = 0.0


def is_hub_id(name) -> bool:
    """A well-formed Hub repository id ``owner/name`` (no paths, no '..'), not a registry name."""
    return isinstance(name, str) and name not in models.MODELS and HUB_ID_RE.fullmatch(name) is not None


def fmt_seconds(s: float) -> str:
    if s < 1:
        return f"{s:.2f} s"
    if s < 90:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min"


def batch_rows(num_samples: int, compare: bool) -> int:
    return int(num_samples) * (2 if compare else 1)


def call_interval(times) -> float:
    """Seconds per model call of a run whose calls came at ``times`` (two or more): the slope of a straight line
    through them (least squares). It leaves out the run's set-up before its first call, and a delay near its start
    or end (the page starting the run: a first interval of 50-95 ms in a browser) moves it far less than the average
    from the first call to the last; stalls spread through the run (previews) count alike. Measured in a browser on
    the bundled model: small runs of 35 calls averaged 25-49 ms per call, their slopes 24-40 ms; long runs 29-33 ms
    either way."""
    t = np.asarray(times, dtype=np.float64)
    k = np.arange(len(t)) - (len(t) - 1) / 2
    return float(k @ (t - t.mean()) / (k @ k))


def run_rows(steps, jump_length, jump_n_sample, num_samples, compare) -> dict[int, int]:
    """A run's model calls by their batch rows. A comparison batches its n=1 chains with the n=r ones only at the
    ticks where they call the model (repaint.sampler._ticks spreads the shorter chain's calls over the longer one's),
    so only those calls have both chains' rows."""
    calls, rows = model_calls(steps, jump_length, jump_n_sample), int(num_samples)
    both = model_calls(steps, jump_length, 1) if compare else 0
    return {r: n for r, n in ((rows, calls - both), (2 * rows, both)) if n}


COMPARE_NEEDS_R = ("Compare needs r (resamplings) of 2 or more: with r=1 the n>1 chain is the n=1 chain, so both "
                   "results would be the same picture. Raise r, or turn off Compare.")


def check_compare(jump_n_sample, compare) -> None:
    """A comparison of n=1 with n=r is refused for r=1: the two chains would be one."""
    if compare and int(jump_n_sample) == 1:
        raise ServeError(COMPARE_NEEDS_R)


def model_calls(steps, jump_length, jump_n_sample) -> int:
    return count_model_calls(int(steps), int(jump_length), int(jump_n_sample))


def batch_cost(timed: dict[int, float], rows: int, per_row: float) -> float:
    """A call of ``rows`` rows relative to one row: linear between the row counts ``timed`` ({rows: relative cost};
    one row costs 1) and on from the last two; without timings 1 + ``per_row`` * (rows - 1)."""
    points = sorted({1: 1.0, **timed}.items())
    if len(points) == 1:
        return 1 + per_row * (rows - 1)
    (r0, c0), (r1, c1) = next(((a, b) for a, b in zip(points, points[1:]) if rows <= b[0]), points[-2:])
    return c0 + (c1 - c0) * (rows - r0) / (r1 - r0)


class Service:
    """The models of one server (each loaded once and timed), and its runs in flight: their Stop flags and workers.

    ``on_zerogpu``: the model runs in a ZeroGPU process, so the per-call time is a guess refined after each run.
    """

    def __init__(self, *, has_gpu: bool = False, on_zerogpu: bool = False, allow_hub_ids: bool = False,
                 offered=None, duration_factor: float | None = None):
        # On ZeroGPU a model can only be placed on the GPU in the main thread before launch (preload): no Hub ids.
        self.has_gpu, self.on_zerogpu = has_gpu or on_zerogpu, on_zerogpu
        #: What ZeroGPU multiplies a request's seconds by (zerogpu_duration_factor, unless given); 1 elsewhere.
        self.duration_factor = 1.0 if not on_zerogpu else duration_factor or zerogpu_duration_factor()
        self.allow_hub_ids = allow_hub_ids and not on_zerogpu
        self._offered = None if offered is None else list(offered)  # None: every registry model
        self.models: dict[str, models.Inpainter] = {}
        self.call_s: dict[str, float] = {}  # seconds per forward call (batch of one) at load: timed, or a guess
        self.timed_costs: dict[str, dict[int, float]] = {}  # a batch's cost relative to one row, timed at load
        self.run_s: dict[str, dict[int, tuple[float, float]]] = {}  # rows: (seconds per call, weight), from runs
        self.extra_s: dict[str, float] = {}  # the last page run's seconds outside its model calls
        self.failed: dict[str, str] = {}  # offered models that failed to load at start (preload): why
        self.stop_flags: dict[str, threading.Event] = {}  # session -> its Stop flag, while its run runs
        self.workers: set[threading.Thread] = set()  # this service's worker threads still running
        self._lock = threading.Lock()  # guards self.models and self._load_locks, held only briefly
        self._load_locks: dict[str, threading.Lock] = {}  # one per model: a slow load blocks only that model

    # ------------------------------------------------------------------------------------------- models
    @property
    def offered(self) -> list[str]:
        """The registry names this server serves."""
        return list(models.MODELS) if self._offered is None else self._offered

    def check_model_name(self, name) -> str:
        """``name`` if it may be loaded: an offered registry name, or (only with ``allow_hub_ids``) a Hub id."""
        if isinstance(name, str) and (name in self.offered or (self.allow_hub_ids and is_hub_id(name))):
            return name
        extra = " or a Hugging Face Hub id owner/name" if self.allow_hub_ids else ""
        raise ServeError(f"unknown model {repr(name)[:80]}: choose one of {', '.join(self.offered)}{extra}")

    def model_resolution(self, name: str) -> int:
        """The model's image size (a Hub model is loaded to learn it)."""
        name = self.check_model_name(name)
        return models.MODELS[name].resolution if name in models.MODELS else self.get_model(name).resolution

    def time_calls(self, inp: models.Inpainter) -> tuple[float, dict[int, float]]:
        """(seconds per forward call of a batch of one, {rows: a batch's cost relative to one row}): medians of
        calls after a warm-up call. The relative costs only for a model under CHEAP_CALL_S (else the assumed
        :func:`batch_cost`), timed in turn with one row (:func:`repaint.bench.call_times`); runs refine both
        (:meth:`note_run`)."""
        if self.on_zerogpu:  # no GPU in the main process: a guess, refined after each run
            return zerogpu_guess(inp.name, inp.resolution), {}
        one = call_time(inp, 1, repeats=TIMING_CALLS, warmup=1)
        if one >= CHEAP_CALL_S:
            return one, {}
        times = call_times(inp, (1, *BATCH_ROWS_TIMED), repeats=20, warmup=0, budget_s=TIMING_BUDGET_S)
        return times[1], {rows: times[rows] / times[1] for rows in BATCH_ROWS_TIMED}

    def num_classes(self, name: str) -> int:
        """Classes of a class-conditional model (0: unconditional), from the registry when it knows the model."""
        name = self.check_model_name(name)
        return models.MODELS[name].num_classes if name in models.MODELS else self.get_model(name).num_classes

    def get_model(self, name: str) -> models.Inpainter:
        """The loaded model ``name`` (loaded once); a failed load is a ServeError naming it. On ZeroGPU only the
        models :meth:`preload` placed: a load there would run in a handler thread (or a GPU slot), where ZeroGPU's
        CUDA emulation refuses ``.to("cuda")``."""
        self.check_model_name(name)
        if (inp := self.models.get(name)) is not None:
            return inp
        if self.on_zerogpu and threading.current_thread() is not threading.main_thread():
            raise ServeError(f"Model {name!r} is not loaded on this Space.")
        with self._lock:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:  # a download of one model (minutes) never holds up the others
            if (inp := self.models.get(name)) is not None:
                return inp
            inp, (per_call, cost) = self._load(name)
            with self._lock:
                hub = [n for n in self.models if n not in models.MODELS]
                if name not in models.MODELS and len(hub) >= HUB_MODELS_MAX:
                    for old in hub[: len(hub) - HUB_MODELS_MAX + 1]:  # oldest first (dicts keep insertion order)
                        self.models.pop(old, None)
                        for table in (self.call_s, self.timed_costs, self.run_s, self.extra_s):
                            table.pop(old, None)
                self.call_s[name], self.timed_costs[name], self.models[name] = per_call, cost, inp
            log.info("loaded %s (%.4f s per call)", name, per_call)
            return inp

    def _load(self, name: str) -> tuple[models.Inpainter, float]:
        """A registry name through repaint.load; a Hub id is only ever downloaded (never read as a local folder)."""
        try:
            if name in models.MODELS:
                inp = models.load(name)
            else:
                inp = models.load_hub(name)
                if inp.resolution > HUB_RESOLUTION_MAX:
                    raise models.ModelLoadError(f"model {name!r} is {inp.resolution}x{inp.resolution}; at most "
                                                f"{HUB_RESOLUTION_MAX}x{HUB_RESOLUTION_MAX} is served here")
            return inp, self.time_calls(inp)
        except models.ModelLoadError as e:
            raise ServeError(f"Could not load model {name!r}: {e}. Other models still work.") from None
        except Exception as e:  # noqa: BLE001 - anything else a load can raise must not kill the server
            log.exception("loading %s failed", name)
            raise ServeError(f"Could not load model {name!r} ({type(e).__name__}). Other models still work.") \
                from None

    def preload(self) -> str:
        """Loads every offered model now (on ZeroGPU: in the main thread before launch, which places them on
        ``cuda`` as its docs ask); a model that fails is no longer offered. Returns a notice ('' if all loaded)."""
        failed, self._offered = [], list(self.offered)
        for name in list(self._offered):
            try:
                self.get_model(name)
            except ServeError as e:
                log.error("model %s is not offered: %s", name, e)  # the page says it too (the notice)
                self._offered.remove(name)
                self.failed[name] = str(e)
                failed.append(str(e))
        if os.environ.get(AOT_ENV, "").strip() == "1":  # opt-in: compiled at start-up (repaint.aot), not measured
            from . import aot

            for name in self._offered:
                aot.compile_unet(self.models[name])
        return " ".join(f"Not offered: {reason}" for reason in failed)

    def start(self, wanted: str, gpu_model: str, offline_model: str, env_name: str, paper: tuple[int, int, int],
              server: bool = False):
        """The server's start: (default model, notice for the page, its default T, j, r). On ZeroGPU every offered
        model is loaded now (:meth:`preload`: this must run in the main thread, before launch; ZeroGPU's CUDA
        emulation records ``.to("cuda")`` only there) and the defaults fit its default slot; elsewhere a model loads
        on first use and the defaults are the ``paper``'s. ``server``: this process is the server (``python
        app.py``), so torch's threads are set first, and the model is timed on the threads its runs will use."""
        if server:
            leave_a_core_to_the_server(self.has_gpu)
        load_notice = self.preload() if self.on_zerogpu else ""
        name, notice = self.pick_default(wanted, gpu_model, offline_model, env_name)
        settings = fitting_settings(self, name, ZEROGPU_SLOT_S) if self.on_zerogpu else paper
        return name, " ".join(filter(None, (notice, load_notice))), settings

    def usable_model(self, name, warn) -> str:
        """``name`` loaded, or when it cannot be: ``warn(why)`` and the name of the last model that loaded (the page
        goes back to it)."""
        try:
            self.get_model(name)
            return name
        except ServeError as e:
            if not self.models:
                raise
            fallback = next(reversed(self.models))
            warn(f"{e} Back to {fallback}.")
            return fallback

    def pick_default(self, wanted: str, gpu_model: str, offline_model: str, env_name: str) -> tuple[str, str]:
        """(default model, notice for the page or ''): ``wanted`` (from ``env_name``) if it loads, else the GPU or
        the offline model; the offline one when the first choice cannot be loaded."""
        notice = ""
        if wanted in self.failed:
            notice, wanted = f"{env_name}={wanted!r} could not be loaded; ", ""
        elif wanted and wanted not in self.offered and not (self.allow_hub_ids and is_hub_id(wanted)):
            notice, wanted = f"{env_name}={wanted!r} is not an offered model; ", ""
        first = wanted or next((m for m in (gpu_model if self.has_gpu else offline_model, offline_model)
                                if m in self.offered), self.offered[0] if self.offered else offline_model)
        try:
            self.get_model(first)
            if notice:
                notice += f"using {first!r}."
            elif first == offline_model and not wanted and not self.has_gpu:
                notice = f"No GPU here: the default is the fast offline **{offline_model}** model."
            return first, notice
        except ServeError as e:
            reason = str(e)
        if first == offline_model:
            return offline_model, f"The {offline_model} model could not be loaded: {reason}"
        log.error("the default model %s could not be loaded: %s", first, reason)
        notice = f"**The default model {first!r} could not be loaded.** {reason} Using the **{offline_model}** model."
        try:
            self.get_model(offline_model)
        except ServeError as e:
            notice += f" It failed too: {e}"
        return offline_model, notice

    # ------------------------------------------------------------------------------------------- estimates
    def rows_cost(self, name: str, rows: int) -> float:
        """A model call of ``rows`` rows relative to one row: timed at load (:meth:`time_calls`), else assumed."""
        inp = self.models.get(name)
        on_gpu = self.on_zerogpu or (inp is not None and inp.device.type == "cuda")
        return batch_cost(self.timed_costs.get(name, {}), rows, GPU_BATCH_COST if on_gpu else 1.0)

    def call_seconds(self, name: str, rows: int) -> float | None:
        """Seconds of one model call of ``rows`` rows: what runs measured at that row count; else the start-up
        timing (:meth:`rows_cost`) times how far runs found it off at the nearest row counts they measured
        (interpolated between two, held beyond them). None until the model is loaded."""
        one = self.call_s.get(name)
        if one is None:
            return None
        seen = sorted(self.run_s.get(name, {}).items())
        off = np.interp(rows, [r for r, _ in seen], [sw[0] / (one * self.rows_cost(name, r)) for r, sw in seen]) \
            if seen else 1.0
        return one * self.rows_cost(name, rows) * float(off)

    def estimate_seconds(self, name, steps, jump_length, jump_n_sample, num_samples, compare) -> float | None:
        """Seconds of model calls (what a ZeroGPU slot is sized by); :meth:`wait_seconds` is the visitor's wait."""
        if self.call_s.get(name) is None:
            return None
        plan = run_rows(steps, jump_length, jump_n_sample, num_samples, compare)
        return sum(calls * self.call_seconds(name, rows) for rows, calls in plan.items())

    def wait_seconds(self, name, *settings) -> float | None:
        """The page's whole wait, from the click to the results shown: the model calls, the page run's own work
        (the last run's, EXTRA_S before one) and the browser's PAGE_S."""
        est = self.estimate_seconds(name, *settings)
        return None if est is None else est + self.extra_s.get(name, EXTRA_S) + PAGE_S

    def note_run(self, req: Request, per_call: float) -> None:
        """After a run: what it measured (``per_call``: its seconds per model call) taken into the per-call time of
        each row count it used (a comparison's two in proportion to the estimate), weighted by its calls against
        what was known (PRIOR_CALLS for the start-up timing; a ZeroGPU guess weighs nothing), each at most
        RUN_CALLS_MAX: estimates follow the machine's load now, not at start-up, and a short run moves them less
        than a long one."""
        est = self.estimate_seconds(*req.settings())
        if est is None:
            return
        name, plan = req.model, run_rows(*req.settings()[1:])
        before = {rows: self.call_seconds(name, rows) for rows in plan}
        off = per_call * req.calls / est
        table = self.run_s.setdefault(name, {})
        for rows, calls in plan.items():
            known, weight = table.get(rows, (before[rows], 0 if self.on_zerogpu else PRIOR_CALLS))
            table[rows] = ((known * weight + before[rows] * off * calls) / (weight + calls),
                           min(weight + calls, RUN_CALLS_MAX))

    def note_page_run(self, name: str, seconds: float, model_seconds: float, pixels: int = 0) -> None:
        """After a page run with results of ``pixels`` pixels each: its seconds outside the model calls (checks,
        results, a ZeroGPU slot's start). Not after a run on a large photo (over EXTRA_PIXELS_MAX): its reading and
        full-size PNGs would add seconds to every later estimate, which does not know the photo's size."""
        if pixels <= EXTRA_PIXELS_MAX:
            self.extra_s[name] = max(0.0, seconds - model_seconds)

    def gpu_seconds_max(self) -> int:
        """The longest run one request may ask for: on ZeroGPU the longest task it schedules, in seconds before its
        duration factor; on a GPU of the server's own GPU_CAP_S, so that one visitor cannot hold it for long."""
        return int(ZEROGPU_TASK_MAX_S / self.duration_factor) if self.on_zerogpu else GPU_CAP_S

    def gpu_duration(self, req: Request) -> int:
        """ZeroGPU slot length for :meth:`run` (called with its request): its model calls times the measured
        per-call time, plus a margin, capped at :meth:`gpu_seconds_max` (requests that cannot fit are refused
        before)."""
        if req.slot_s:
            return req.slot_s  # sized when the run was handed to the GPU function (stream)
        est = self.estimate_seconds(*req.settings())
        if est is None:
            est = req.calls * zerogpu_guess(req.model)  # not loaded yet
        return int(min(self.gpu_seconds_max(), math.ceil(est + GPU_MARGIN_S)))

    def charged_seconds(self, req: Request) -> int:
        """The seconds ZeroGPU schedules and charges for the request: :meth:`gpu_duration` times the duration
        factor, rounded as spaces rounds them (get_duration_seconds, then round())."""
        return round(self.gpu_duration(req) * self.duration_factor)

    def too_long(self, est: float) -> str | None:
        """Why a run of ``est`` seconds of model calls cannot have a GPU, or None when it can (or has no GPU)."""
        if not self.has_gpu or est + GPU_MARGIN_S <= self.gpu_seconds_max():
            return None
        if self.on_zerogpu:
            return (f"ZeroGPU runs a task for at most {ZEROGPU_TASK_MAX_S // 60} min of quota ({self.gpu_seconds_max()}"
                    f" s on this GPU, whose seconds count {self.duration_factor:g}x)")
        return f"this server gives one run at most {GPU_CAP_S} s of its GPU"

    def check_fits(self, req: Request) -> None:
        est = self.estimate_seconds(*req.settings()) or 0.0
        if (why := self.too_long(est)) is not None:
            raise ServeError(
                f"This run needs about {fmt_seconds(est)} of GPU time: {why}. Use fewer steps T, a smaller resample "
                f"count r, a longer jump length j, fewer samples, or turn off the comparison.")

    def estimate_text(self, name, steps, jump_length, jump_n_sample, num_samples, compare) -> str:
        try:
            calls = model_calls(steps, jump_length, jump_n_sample)
        except (ValueError, TypeError) as e:
            return f"Settings not valid: {e}"
        rows = batch_rows(num_samples, compare)
        text = f"**{calls:,} model calls** (batch of {'up to ' if compare else ''}{rows})"
        est = self.estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare)
        if est is None:
            return text + " - time unknown until the model is loaded."
        wait = self.wait_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare)
        per = f"{est / calls * 1000:.1f} ms per call"
        if name in self.run_s:
            source = "measured by runs"
        elif self.on_zerogpu:  # an assumption until a run has measured it
            source = (f"a guess from an assumed {ZEROGPU_TFLOPS:g} TFLOP/s with a {ZEROGPU_GUESS_MARGIN:g}x margin, "
                      "not measured yet")
        else:
            source = "timed at start-up"
        where = "ZeroGPU" if self.on_zerogpu else self.models[name].device
        text += (f" - about **{fmt_seconds(wait)}** from click to result: {fmt_seconds(est)} of model calls on "
                 f"{where} ({per}, {source}), {fmt_seconds(wait - est)} for the page.")
        if (why := self.too_long(est)) is not None:
            return text + f" Too long: {why}. Reduce T, r or the samples."
        if self.on_zerogpu:
            req = Request(name, None, None, int(steps), int(jump_length), int(jump_n_sample), 0, int(num_samples),
                          bool(compare))
            text += " " + gpu_seconds_text(self.gpu_duration(req), self.charged_seconds(req)) + "."
        return text

    # ------------------------------------------------------------------------------------------- requests
    def check_request(self, req: Request, samples_max: int | None = None, on_full_mask=None) -> Checked:
        """The checks every request runs before a GPU is asked for: settings, the class label, the mask as the model
        sees it, the time limit. ``on_full_mask()`` is called when nothing is known (unconditional generation)."""
        inp = self.get_model(req.model)
        try:
            inp.check_settings(req.steps, req.jump_length, req.jump_n_sample, req.seed, req.num_samples)
            inp.class_labels([req.seed], req.class_label)
            inp.check_scale(req.classifier_scale)
            check_compare(req.jump_n_sample, req.compare)
            if samples_max is not None and req.num_samples > samples_max:
                raise ValueError(f"num_samples must be at most {samples_max} here, got {req.num_samples}")
            if req.full_size:
                big, big_mask, _, rgb, m = inp.prepare_window(req.image, req.mask, invert=req.invert, seed=req.seed)
            else:
                rgb, m = inp.prepare(req.image, req.mask, invert=req.invert, seed=req.seed)
                big, big_mask = rgb, m
        except ServeError:
            raise
        except ValueError as e:
            raise ServeError(str(e)) from None
        if not m.any():
            where = "" if req.full_size else " inside the centred square the model sees"
            raise ServeError(f"Empty mask: nothing to fill{where}. Paint the region to fill (white or opaque), or "
                             f"pick a preset.")
        self.check_fits(req)
        if on_full_mask is not None and m.all():
            on_full_mask()
        return Checked(inp, (big, big_mask), (rgb, m))

    def has_classifier(self, name: str) -> bool:
        """Whether the model is guided by a classifier (the registry's word, else the loaded model's)."""
        name = self.check_model_name(name)
        if name in models.MODELS:
            return models.MODELS[name].classifier is not None
        return self.get_model(name).classifier is not None

    def page_request(self, image, mask, model, steps, jump_length, jump_n_sample, seed, num_samples, compare,
                     invert, full_size, class_label, classifier_scale=None, stop_key=None) -> Request:
        """The page's settings as a :class:`Request` (the class box only for a class-conditional model, the
        guidance scale only for a model with a classifier; ``stop_key``: the visitor's session, whose Stop flag the
        run watches)."""
        name = self.check_model_name(model)
        if not (np.asarray(mask, bool) ^ bool(invert)).any():
            raise ServeError("Empty mask: paint the region to fill with the brush, or pick a mask preset.")
        label = None if class_label is None or class_label == "" or not self.num_classes(name) else int(class_label)
        scale = None if classifier_scale is None or not self.has_classifier(name) else float(classifier_scale)
        return Request(name, image, mask, int(steps), int(jump_length), int(jump_n_sample), int(seed),
                       int(num_samples), bool(compare), bool(invert), bool(full_size), label, scale, stop_key)

    def api_request(self, image, mask, model, steps, jump_length, jump_n_sample, seed, num_samples, compare,
                    size="auto", class_label=None, classifier_scale=None, *, upload_folder: str) -> Request:
        """The ``/inpaint`` endpoint's arguments as a :class:`Request` (see app.api_inpaint); a mask file only from
        ``upload_folder``."""
        name = self.check_model_name(model)
        if image is None:
            raise ServeError("No image: pass an image file.")
        if mask is None or (isinstance(mask, str) and not mask.strip()):
            raise ServeError("No mask: pass a preset name or a mask file.")
        if isinstance(mask, dict):
            mask = uploaded_path(mask, upload_folder)
        elif isinstance(mask, str) and mask.strip() in masks.PRESETS:
            mask = mask.strip()
        else:
            raise ServeError(f"unknown mask preset {str(mask)[:40]!r}; choose one of: {', '.join(masks.PRESETS)}, "
                             f"or pass a mask file with handle_file")
        if size not in SIZES:
            raise ServeError(f"size must be one of {', '.join(SIZES)}, got {str(size)[:20]!r}")
        full = size == "full" or (size == "auto" and mask not in masks.PRESETS)
        return Request(name, image, mask, int(steps), int(jump_length), int(jump_n_sample), int(seed),
                       int(num_samples), bool(compare), False, full, None if class_label is None else int(class_label),
                       None if classifier_scale is None else float(classifier_scale))

    # ------------------------------------------------------------------------------------------- running
    def stop(self, key) -> bool:
        """Asks the session ``key``'s run to stop; False when it has none running."""
        flag = self.stop_flags.get(key)
        if flag is not None:
            flag.set()
        return flag is not None

    def stop_flag(self, key: str) -> threading.Event:
        """A new Stop flag for the session ``key``'s run (replacing an older run's); :meth:`drop_flag` after."""
        flag = self.stop_flags[key] = threading.Event()
        return flag

    def drop_flag(self, key: str, flag: threading.Event) -> None:
        if self.stop_flags.get(key) is flag:  # not a newer run's flag of the same session
            del self.stop_flags[key]

    def run(self, req: Request):
        """The GPU function's body: runs the sampler in a worker thread; yields ("tick", tick, total, levels, x_t,
        x0) at every model call (uint8 arrays every few calls, else None) and at the end ("done", results, plains,
        seconds per call: :func:`call_interval` of the calls' times, so a run's set-up does not count as calls).
        A run with ``req.slot_s`` stops before a model call that would outlast the slot (SLOT_RESERVE_S kept): it
        yields ("spent", seconds per call) and raises a ServeError that says how far it got.
        Only picklable values are yielded (ZeroGPU runs this in another process). Closing the generator ends the run
        at its next model call; so does, off ZeroGPU, the Stop flag of ``req.stop_key``.
        On ZeroGPU the worker thread waits at each call until the generator is resumed: spaces' worker looks at its
        stop event between two yields, so a stop ends the run before the next model call. Elsewhere it runs ahead
        (the server's hand-offs do not hold the model up)."""
        inp = self.get_model(req.model)
        total = inp.model_calls(req.steps, req.jump_length, req.jump_n_sample)
        every = max(1, math.ceil(total / ANIMATION_FRAMES))
        events: queue.Queue = queue.Queue()
        resume, closed = threading.Semaphore(0), threading.Event()
        # The Stop flag of this process's table, only where this process is the server's. A ZeroGPU worker's table is
        # the copy forked with it, which would keep a Stop set at that moment for every later run of that session:
        # there a Stop comes only through spaces' stop event, which closes this generator (issue 25).
        stop = self.stop_flags.get(req.stop_key) if req.stop_key and not self.on_zerogpu else None
        in_step, times = self.on_zerogpu, []  # the times of the model calls so far

        def callback(tick, levels, x, x0):
            if closed.is_set() or (stop is not None and stop.is_set()):
                raise InterruptedError("stopped")
            times.append(time.perf_counter())
            pic = tick % every == 0 or tick == total - 1
            events.put(("tick", tick, total, levels, from_tensor(x) if pic else None,
                        from_tensor(x0) if pic else None))
            if in_step:
                resume.acquire()  # until the consumer asks for the next event (or closes the run)
                if closed.is_set():
                    raise InterruptedError("stopped")
            if req.slot_s and tick < total - 1:  # would the next call, and the hand-over, still fit the slot?
                per_call = call_interval(times) if len(times) > 1 else times[0] - start
                if time.perf_counter() - start + per_call + SLOT_RESERVE_S > req.slot_s:
                    raise SlotSpent(tick + 1, total, per_call, req.slot_s)

        def work():
            try:
                fn = inp.compare if req.compare else inp.inpaint
                out = fn(req.image, req.mask, steps=req.steps, jump_length=req.jump_length,
                         jump_n_sample=req.jump_n_sample, seed=req.seed, num_samples=req.num_samples,
                         callback=callback, invert=req.invert, full_size=req.full_size, class_label=req.class_label,
                         classifier_scale=req.classifier_scale)
                events.put(("result", out))
            except BaseException as e:  # noqa: BLE001 - handed to the generator
                events.put(("error", e))
            finally:
                self.workers.discard(threading.current_thread())

        start = time.perf_counter()
        worker = threading.Thread(target=work, daemon=True, name="repaint-worker")
        self.workers.add(worker)
        worker.start()
        try:
            while True:
                ev = events.get()
                if ev[0] == "tick":
                    yield ev
                    if in_step:
                        resume.release()
                elif ev[0] == "error":
                    error = ev[1]
                    del ev
                    if isinstance(error, InterruptedError) and stop is not None and stop.is_set():
                        return  # the visitor's Stop: stream() reports it
                    if isinstance(error, SlotSpent):
                        yield ("spent", error.per_call)  # what it measured, for later slots
                        raise ServeError(str(error))
                    raise gpu_error(error)
                else:
                    res, plain = ev[1] if req.compare else (ev[1], [])
                    per_call = (call_interval(times) if len(times) > 1
                                else (time.perf_counter() - start) / max(total, 1))
                    yield ("done", [np.asarray(i) for i in res], [np.asarray(i) for i in plain], per_call)
                    return
        finally:
            # Closed early (Stop, cancel, client gone): the worker, waiting at its callback, raises there.
            closed.set()
            resume.release()
            worker.join(timeout=WORKER_JOIN_S)

    def running(self) -> list[threading.Thread]:
        """This service's worker threads still alive."""
        return [t for t in list(self.workers) if t.is_alive()]


# ----------------------------------------------------------------------------------------------- the chain
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


def uploaded_path(value, upload_folder: str) -> str:
    """The path of a file the client uploaded (a FileData dict), refused unless it lies in ``upload_folder`` (Gradio's
    upload cache): no path a client names reaches the file system otherwise."""
    path = value.get("path") if isinstance(value, dict) else None
    resolved = Path(path).resolve() if isinstance(path, str) and path and "\0" not in path else None
    if resolved is None or Path(upload_folder).resolve() not in resolved.parents or not resolved.is_file():
        raise ServeError("The mask file was not uploaded; pass it with gradio_client.handle_file(path).")
    return str(resolved)


def page_stream(service: Service, gpu_run, req: Request, checked: Checked, stop: threading.Event | None,
                results_dir: Path = RESULTS_DIR, preview_height: int = 128):
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
            from . import pictures  # pictures imports this module (ServeError)

            _, tick, total, spent, x0 = ev
            shown = time.perf_counter()
            text = (f"Step {tick + 1:,}/{total:,} - {fmt_seconds(spent)} elapsed, ETA "
                    f"{fmt_seconds(spent / (tick + 1) * (total - tick - 1))}")
            yield "status", (text, pictures.strip(list(x0), preview_height), (tick + 1, total))
    out_dir = new_results_dir(results_dir)
    try:
        results, seconds = page_results(done, checked, out_dir), time.perf_counter() - start
        service.note_page_run(req.model, seconds, done.model_seconds, math.prod(done.results[0].shape[:2]))
        log.info("page run %s, %d calls of %d rows: %.2f s, model calls %.2f s", req.model, req.calls, req.rows,
                 seconds, done.model_seconds)
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
    from . import pictures  # pictures imports this module (ServeError)

    req, res, plain = done.request, done.results, done.plain
    masked = pictures.show_mask(*checked.big)
    gallery = save_results(out_dir, f"repaint_{req.model}_", res, plain, req.jump_n_sample, req.seed)
    save_png(masked, out_dir / "input_masked.png", PNG_LEVEL)
    tile = max(2 * pictures.ANIMATION_TILE, checked.model.resolution)
    gif = pictures.make_animation(done.frames, done.levels, req.steps, [0, len(res)] if plain else [0],
                                  out_dir / "process.gif")
    labels = checked.model.class_labels([req.seed + i for i in range(len(res))], req.class_label)
    classes = f", class {', '.join(map(str, labels))}" if labels else ""
    shown = pictures.view_copy(masked)  # every sample's "before" in a plain run: one copy
    pairs = [(pictures.view_copy(plain[i]) if plain else shown, pictures.view_copy(a)) for i, a in enumerate(res)]
    return dict(
        status=(f"Done in **{fmt_seconds(done.seconds)}** ({len(done.levels):,} model calls, {req.model}, seed "
                f"{req.seed}{classes}). Known pixels are kept exactly; downloads are lossless PNG."),
        gallery=gallery,
        side=pictures.strip([masked, plain[0], res[0]] if plain else [masked, res[0]], tile),
        side_label=f"masked input | n=1 | n={req.jump_n_sample}" if plain else "masked input | result",
        slider=pairs[0], pairs=pairs,
        slider_labels=("n=1", f"n={req.jump_n_sample}") if plain else ("before", "after"),
        gif=str(gif),
        files=[path for path, _ in gallery] + [str(out_dir / "input_masked.png"), str(gif)])


def leave_a_core_to_the_server(has_gpu: bool) -> None:
    """On a CPU (unless OMP_NUM_THREADS says otherwise) torch gets one core fewer: with torch on every core, the
    server's event loop and the run's hand-offs preempt the model's threads mid-operation (2 cores, bundled model,
    T=50, j=5, r=5, 2 samples: 7.7-8.0 s per API request with 2 threads, 4.6-4.8 s with 1; the sampler alone takes
    3.0 s and 3.8 s)."""
    import os

    import torch

    if not has_gpu and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, torch.get_num_threads() - 1))


# ----------------------------------------------------------------------------------------------- result files
def new_results_dir(root: Path = RESULTS_DIR) -> Path:
    """A fresh folder for one run's files under ``root`` (old ones swept first)."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_results(root)
    return Path(tempfile.mkdtemp(prefix="run_", dir=root))


def sweep_results(root: Path = RESULTS_DIR, max_age_s: float = RESULTS_MAX_AGE_S) -> int:
    """Deletes result folders older than ``max_age_s`` (left by a crash or a closed server); how many."""
    if not root.is_dir():
        return 0
    n, now = 0, time.time()
    for d in root.iterdir():
        try:
            if d.name.startswith("run_") and now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        except OSError:
            pass
    return n


def save_results(out_dir: Path, prefix: str, res, plain, jump_n_sample: int, seed: int) -> list[tuple[str, str]]:
    """Writes the n=r results, then the n=1 results, as PNGs: (path, caption) pairs, sample i with seed + i."""
    saved = []
    for n, arrays in ((jump_n_sample, res), (1, plain)):
        for i, a in enumerate(arrays):
            path = out_dir / f"{prefix}n{n}_seed{seed + i}.png"
            save_png(a, path, PNG_LEVEL)
            saved.append((str(path), f"n={n}, seed {seed + i}"))
    return saved

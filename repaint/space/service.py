"""The Space's service: the model cache and ZeroGPU preload, timing and estimates, checking requests, and running them
(:meth:`Service.run`, the GPU function's body) with Stop."""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time

import numpy as np
import torch

from .. import masks, models
from ..bench import call_time, call_times
from ..images import from_tensor
from . import aot
from .errors import ServeError, SlotSpent, gpu_error
from .estimate import (
    BATCH_ROWS_TIMED,
    CHEAP_CALL_S,
    EXTRA_PIXELS_MAX,
    EXTRA_S,
    GPU_BATCH_COST,
    GPU_MARGIN_S,
    PAGE_S,
    PRIOR_CALLS,
    RUN_CALLS_MAX,
    TIMING_BUDGET_S,
    TIMING_CALLS,
    batch_cost,
    call_interval,
    fmt_seconds,
)
from .offer import HUB_MODELS_MAX, HUB_RESOLUTION_MAX, is_hub_id
from .requests import SIZES, Checked, Request, batch_rows, check_compare, model_calls, run_rows, uploaded_path
from .zerogpu import (
    ZEROGPU_GUESS_MARGIN,
    ZEROGPU_SLOT_S,
    ZEROGPU_TASK_MAX_S,
    ZEROGPU_TFLOPS,
    gpu_seconds_text,
    zerogpu_duration_factor,
    zerogpu_guess,
)

log = logging.getLogger(__name__)

AOT_ENV = "REPAINT_AOT"  # "1": on ZeroGPU, preload compiles each offered UNet ahead of time (aot.compile_unet)
GPU_CAP_S = 300  # on a GPU of the server's own (not ZeroGPU): the longest run one request may ask for

ANIMATION_FRAMES = 48  # frames of the process GIF (and streamed previews)
WORKER_JOIN_S = 1.0  # how long closing a run waits for its worker thread (it stops at its next model call)
# A run with a GPU slot (ZeroGPU) stops before a model call that would leave less than this of the slot: the worker's
# start before the run and the results' hand-over after it also count against the slot.
SLOT_RESERVE_S = 5.0


def fitting_settings(service: Service, name: str, slot_s: int) -> tuple[int, int, int]:
    """(T, j, r) for ``name`` whose ZeroGPU request fits ``slot_s`` seconds: the paper's T=250, j=10 with the most
    resamplings r <= 10 that fit, else fewer steps (T = 200, 150, 100, 50, 25) with r from 10 down."""
    for steps in (250, 200, 150, 100, 50, 25):
        for r in range(10, 0, -1):
            req = Request(name, None, None, steps, min(10, steps), r)
            if service.charged_seconds(req) <= slot_s:
                return steps, min(10, steps), r
    return 25, 5, 1


class Service:
    """The models of one server (each loaded once and timed), and its runs in flight: their Stop flags and workers.

    ``on_zerogpu``: the model runs in a ZeroGPU process, so the per-call time is a guess refined after each run.
    """

    def __init__(
        self,
        *,
        has_gpu: bool = False,
        on_zerogpu: bool = False,
        allow_hub_ids: bool = False,
        offered=None,
        duration_factor: float | None = None,
    ):
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
                    raise models.ModelLoadError(
                        f"model {name!r} is {inp.resolution}x{inp.resolution}; at most "
                        f"{HUB_RESOLUTION_MAX}x{HUB_RESOLUTION_MAX} is served here"
                    )
            return inp, self.time_calls(inp)
        except models.ModelLoadError as e:
            raise ServeError(f"Could not load model {name!r}: {e}. Other models still work.") from None
        except Exception as e:  # noqa: BLE001 - anything else a load can raise must not kill the server
            log.exception("loading %s failed", name)
            raise ServeError(f"Could not load model {name!r} ({type(e).__name__}). Other models still work.") from None

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
        if os.environ.get(AOT_ENV, "").strip() == "1":  # opt-in: compiled at start-up (repaint.space.aot)
            for name in self._offered:
                aot.compile_unet(self.models[name])
        return " ".join(f"Not offered: {reason}" for reason in failed)

    def start(
        self,
        wanted: str,
        gpu_model: str,
        offline_model: str,
        env_name: str,
        paper: tuple[int, int, int],
        server: bool = False,
    ):
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
        first = wanted or next(
            (m for m in (gpu_model if self.has_gpu else offline_model, offline_model) if m in self.offered),
            self.offered[0] if self.offered else offline_model,
        )
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
        off = (
            np.interp(rows, [r for r, _ in seen], [sw[0] / (one * self.rows_cost(name, r)) for r, sw in seen])
            if seen
            else 1.0
        )
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
            table[rows] = (
                (known * weight + before[rows] * off * calls) / (weight + calls),
                min(weight + calls, RUN_CALLS_MAX),
            )

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
            return (
                f"ZeroGPU runs a task for at most {ZEROGPU_TASK_MAX_S // 60} min of quota ({self.gpu_seconds_max()}"
                f" s on this GPU, whose seconds count {self.duration_factor:g}x)"
            )
        return f"this server gives one run at most {GPU_CAP_S} s of its GPU"

    def check_fits(self, req: Request) -> None:
        est = self.estimate_seconds(*req.settings()) or 0.0
        if (why := self.too_long(est)) is not None:
            raise ServeError(
                f"This run needs about {fmt_seconds(est)} of GPU time: {why}. Use fewer steps T, a smaller resample "
                f"count r, a longer jump length j, fewer samples, or turn off the comparison."
            )

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
            source = (
                f"a guess from an assumed {ZEROGPU_TFLOPS:g} TFLOP/s with a {ZEROGPU_GUESS_MARGIN:g}x margin, "
                "not measured yet"
            )
        else:
            source = "timed at start-up"
        where = "ZeroGPU" if self.on_zerogpu else self.models[name].device
        text += (
            f" - about **{fmt_seconds(wait)}** from click to result: {fmt_seconds(est)} of model calls on "
            f"{where} ({per}, {source}), {fmt_seconds(wait - est)} for the page."
        )
        if (why := self.too_long(est)) is not None:
            return text + f" Too long: {why}. Reduce T, r or the samples."
        if self.on_zerogpu:
            req = Request(
                name, None, None, int(steps), int(jump_length), int(jump_n_sample), 0, int(num_samples), bool(compare)
            )
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
            raise ServeError(
                f"Empty mask: nothing to fill{where}. Paint the region to fill (white or opaque), or pick a preset."
            )
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

    def page_request(
        self,
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
        full_size,
        class_label,
        classifier_scale=None,
        stop_key=None,
    ) -> Request:
        """The page's settings as a :class:`Request` (the class box only for a class-conditional model, the
        guidance scale only for a model with a classifier; ``stop_key``: the visitor's session, whose Stop flag the
        run watches)."""
        name = self.check_model_name(model)
        if not (np.asarray(mask, bool) ^ bool(invert)).any():
            raise ServeError("Empty mask: paint the region to fill with the brush, or pick a mask preset.")
        label = None if class_label is None or class_label == "" or not self.num_classes(name) else int(class_label)
        scale = None if classifier_scale is None or not self.has_classifier(name) else float(classifier_scale)
        return Request(
            name,
            image,
            mask,
            int(steps),
            int(jump_length),
            int(jump_n_sample),
            int(seed),
            int(num_samples),
            bool(compare),
            bool(invert),
            bool(full_size),
            label,
            scale,
            stop_key,
        )

    def api_request(
        self,
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
        *,
        upload_folder: str,
    ) -> Request:
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
            raise ServeError(
                f"unknown mask preset {str(mask)[:40]!r}; choose one of: {', '.join(masks.PRESETS)}, "
                f"or pass a mask file with handle_file"
            )
        if size not in SIZES:
            raise ServeError(f"size must be one of {', '.join(SIZES)}, got {str(size)[:20]!r}")
        full = size == "full" or (size == "auto" and mask not in masks.PRESETS)
        return Request(
            name,
            image,
            mask,
            int(steps),
            int(jump_length),
            int(jump_n_sample),
            int(seed),
            int(num_samples),
            bool(compare),
            False,
            full,
            None if class_label is None else int(class_label),
            None if classifier_scale is None else float(classifier_scale),
        )

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
            events.put(("tick", tick, total, levels, from_tensor(x) if pic else None, from_tensor(x0) if pic else None))
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
                out = fn(
                    req.image,
                    req.mask,
                    steps=req.steps,
                    jump_length=req.jump_length,
                    jump_n_sample=req.jump_n_sample,
                    seed=req.seed,
                    num_samples=req.num_samples,
                    callback=callback,
                    invert=req.invert,
                    full_size=req.full_size,
                    class_label=req.class_label,
                    classifier_scale=req.classifier_scale,
                )
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
                    per_call = call_interval(times) if len(times) > 1 else (time.perf_counter() - start) / max(total, 1)
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


def leave_a_core_to_the_server(has_gpu: bool) -> None:
    """On a CPU (unless OMP_NUM_THREADS says otherwise) torch gets one core fewer: with torch on every core, the
    server's event loop and the run's hand-offs preempt the model's threads mid-operation (2 cores, bundled model,
    T=50, j=5, r=5, 2 samples: 7.7-8.0 s per API request with 2 threads, 4.6-4.8 s with 1; the sampler alone takes
    3.0 s and 3.8 s)."""
    if not has_gpu and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, torch.get_num_threads() - 1))

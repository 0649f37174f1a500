"""The Space's service: one server's model cache, timing, GPU slot and runner, and what needs them all (the start,
the estimate a visitor reads, building and checking requests)."""

from __future__ import annotations

import ctypes
import logging
import os
import sys

import numpy as np
import torch

from .. import masks
from ..settings import Settings
from .cache import ModelCache
from .errors import ServeError, echo
from .estimate import fmt_seconds, sharing_text
from .limits import Limits
from .requests import SIZES, Checked, Request, check_compare, pixels_refusal, uploaded_path
from .runner import Runner
from .slot import Slot
from .timing import Timing
from .zerogpu import ZEROGPU_GUESS_MARGIN, ZEROGPU_SLOT_S, ZEROGPU_TFLOPS, gpu_seconds_text

log = logging.getLogger(__name__)


class Service:
    """The parts of one server: :attr:`cache` (the models, each loaded once), :attr:`timing` (what a call costs),
    :attr:`slot` (the GPU time a run asks for) and :attr:`runner` (runs, Stop). ``on_zerogpu``: the model runs in a
    ZeroGPU process, so the per-call time is a guess refined after each run."""

    def __init__(
        self,
        *,
        has_gpu: bool = False,
        on_zerogpu: bool = False,
        allow_hub_ids: bool = False,
        offered=None,
        duration_factor: float | None = None,
        limits: Limits | None = None,
    ):
        self.on_zerogpu, self.limits = on_zerogpu, limits or Limits()
        self.timing = Timing(on_zerogpu=on_zerogpu)
        self.cache = ModelCache(
            self.timing, on_zerogpu=on_zerogpu, allow_hub_ids=allow_hub_ids, offered=offered, limits=self.limits
        )
        self.slot = Slot(
            self.timing, has_gpu=has_gpu, on_zerogpu=on_zerogpu, duration_factor=duration_factor, limits=self.limits
        )
        self.runner = Runner(self.cache, on_zerogpu=on_zerogpu)

    @property
    def has_gpu(self) -> bool:
        """Whether runs have a GPU (ZeroGPU's or the server's own): the slot's word."""
        return self.slot.has_gpu

    # ------------------------------------------------------------------------------------------- the start
    def start(self, wanted: str, gpu_model: str, offline_model: str, env_name: str, paper: Settings, server=False):
        """The server's start: (default model, notice for the page, its default settings). On ZeroGPU every offered
        model is loaded now (:meth:`ModelCache.preload`: this must run in the main thread, before launch; ZeroGPU's
        CUDA emulation records ``.to("cuda")`` only there) and the defaults fit its default slot; elsewhere a model
        loads on first use and the defaults are the ``paper``'s. ``server``: this process is the server (``python
        app.py``), so torch's threads are set first, and the model is timed on the threads its runs will use."""
        if server:
            leave_a_core_to_the_server(self.has_gpu)
            hand_freed_memory_back()
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        load_notice = self.cache.preload() if self.on_zerogpu else ""
        name, notice = self.pick_default(wanted, gpu_model, offline_model, env_name)
        settings = self.slot.fitting_settings(name, ZEROGPU_SLOT_S) if self.on_zerogpu else paper
        return name, " ".join(filter(None, (notice, load_notice))), settings

    def pick_default(self, wanted: str, gpu_model: str, offline_model: str, env_name: str) -> tuple[str, str]:
        """(default model, notice for the page or ''): ``wanted`` (from ``env_name``) if it loads, else the GPU or
        the offline model; the offline one when the first choice cannot be loaded."""
        notice = ""
        if wanted in self.cache.failed:
            notice, wanted = f"{env_name}={wanted!r} could not be loaded; ", ""
        elif wanted and not self.cache.may_load(wanted):
            notice, wanted = f"{env_name}={wanted!r} is not an offered model; ", ""
        first = wanted or next(
            (m for m in (gpu_model if self.has_gpu else offline_model, offline_model) if m in self.cache.offered),
            self.cache.offered[0] if self.cache.offered else offline_model,
        )
        try:
            self.cache.get_model(first)
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
            self.cache.get_model(offline_model)
        except ServeError as e:
            notice += f" It failed too: {e}"
        return offline_model, notice

    # ------------------------------------------------------------------------------------------- the estimate
    def estimate_text(self, name: str, settings: Settings) -> str:
        """What the page says a run of ``settings`` costs: model calls, the wait and where it comes from, and on
        ZeroGPU the GPU seconds asked for and charged."""
        try:
            calls = settings.calls
        except (ValueError, TypeError) as e:
            return f"Settings not valid: {e}"
        text = f"**{calls:,} model calls** (batch of {'up to ' if settings.compare else ''}{settings.rows})"
        alone = self.timing.estimate_seconds(name, settings)
        if alone is None:
            return text + " - time unknown until the model is loaded."
        runs, sharing = self.sharing(name)
        est, wait = (
            self.timing.estimate_seconds(name, settings, sharing),
            self.timing.wait_seconds(name, settings, sharing),
        )
        text += (
            f" - about **{fmt_seconds(wait)}** from click to result: {fmt_seconds(est)} of model calls on "
            f"{self._where(name)} ({est / calls * 1000:.1f} ms per call, {self._source(name)}), "
            f"{fmt_seconds(wait - est)} for the page."
        )
        if runs:
            text += f" {sharing_text(runs)}"
        if (why := self.slot.too_long(alone)) is not None:
            return text + f" Too long: {why}. Reduce T, r or the samples."
        if self.on_zerogpu:
            req = Request(model=name, settings=settings)
            text += " " + gpu_seconds_text(self.slot.gpu_duration(req), self.slot.charged_seconds(req)) + "."
        return text

    def sharing(self, name: str) -> tuple[int, tuple[int, int] | None]:
        """(runs of the model ``name`` now, and the ``sharing`` of :meth:`Timing.estimate_seconds`: their rows and
        the rows per call) off ZeroGPU, where runs share the model's calls; (0, None) when none run."""
        runs, rows, rows_max = (0, 0, 0) if self.on_zerogpu else self.runner.sharing(name)
        return (runs, (rows, rows_max)) if runs else (0, None)

    def _where(self, name: str) -> str:
        return "ZeroGPU" if self.on_zerogpu else str(self.cache.models[name].device)

    def _source(self, name: str) -> str:
        """Where the per-call time comes from."""
        if name in self.timing.run_s:
            return "measured by runs"
        if self.on_zerogpu:  # an assumption until a run has measured it
            margin = f"{ZEROGPU_GUESS_MARGIN:g}x margin"
            return f"a guess from an assumed {ZEROGPU_TFLOPS:g} TFLOP/s with a {margin}, not measured yet"
        return "timed at start-up"

    # ------------------------------------------------------------------------------------------- requests
    def check_request(self, req: Request, samples_max: int | None = None, on_full_mask=None) -> Checked:
        """The checks every request runs before a GPU is asked for: settings, the class label, the mask as the model
        sees it, the time limit. ``on_full_mask()`` is called when nothing is known (unconditional generation)."""
        inp, s = self.cache.get_model(req.model), req.settings
        try:
            inp.check(s)
            check_compare(s)
            if samples_max is not None and s.num_samples > samples_max:
                raise ValueError(f"num_samples must be at most {samples_max} here, got {s.num_samples}")
            if req.full_size:
                big, big_mask, _, rgb, m = inp.prepare_window(req.image, req.mask, invert=req.invert, seed=s.seed)
            else:
                rgb, m = inp.prepare(req.image, req.mask, invert=req.invert, seed=s.seed)
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
        self.slot.check_fits(req)
        if on_full_mask is not None and m.all():
            on_full_mask()
        return Checked(inp, (big, big_mask), (rgb, m))

    def page_request(self, *, image, mask, model, settings: Settings, invert, full_size, stop_key=None) -> Request:
        """The page's values as a :class:`Request` (the class box only for a class-conditional model, the guidance
        scale only for a model with a classifier; ``stop_key``: the visitor's session, whose Stop flag the run
        watches)."""
        name = self.cache.check_model_name(model)
        if not (np.asarray(mask, bool) ^ bool(invert)).any():
            raise ServeError("Empty mask: paint the region to fill with the brush, or pick a mask preset.")
        if not self.cache.num_classes(name):
            settings = settings.replace(class_label=None)
        if not self.cache.has_classifier(name):
            settings = settings.replace(classifier_scale=None)
        return Request(
            model=name,
            settings=settings,
            image=image,
            mask=mask,
            invert=bool(invert),
            full_size=bool(full_size),
            stop_key=stop_key,
        )

    def api_request(
        self, *, image, mask, model, settings: Settings, size="auto", upload_folder: str, stop_key=None
    ) -> Request:
        """The ``/inpaint`` endpoint's arguments as a :class:`Request` (see app.api_inpaint); a mask file only from
        ``upload_folder``; ``stop_key``: the key of the Stop flag the run watches."""
        name = self.cache.check_model_name(model)
        if image is None:
            raise ServeError("No image: pass an image file.")
        if mask is None or (isinstance(mask, str) and not mask.strip()):
            raise ServeError("No mask: pass a preset name or a mask file.")
        if isinstance(mask, dict):
            mask = uploaded_path(mask, upload_folder)
            if why := pixels_refusal(mask, self.limits.pixels_max, "mask file"):
                raise ServeError(why)
        elif isinstance(mask, str) and mask.strip() in masks.PRESETS:
            mask = mask.strip()
        else:
            raise ServeError(
                f"unknown mask preset {echo(mask)}; choose one of: {', '.join(masks.PRESETS)}, "
                f"or pass a mask file with handle_file"
            )
        if size not in SIZES:
            raise ServeError(f"size must be one of {', '.join(SIZES)}, got {echo(size)}")
        full = size == "full" or (size == "auto" and mask not in masks.PRESETS)
        return Request(model=name, settings=settings, image=image, mask=mask, full_size=full, stop_key=stop_key)


def form_settings(
    steps, jump_length, jump_n_sample, num_samples, compare, seed=0, class_label=None, classifier_scale=None
) -> Settings:
    """The settings of a form's values (the page's sliders give floats; an empty class box is None or "")."""
    return Settings(
        steps=int(steps),
        jump_length=int(jump_length),
        jump_n_sample=int(jump_n_sample),
        num_samples=int(num_samples),
        seed=int(seed),
        compare=bool(compare),
        class_label=None if class_label is None or class_label == "" else int(class_label),
        classifier_scale=None if classifier_scale is None else float(classifier_scale),
    )


def leave_a_core_to_the_server(has_gpu: bool) -> None:
    """On a CPU (unless OMP_NUM_THREADS says otherwise) torch gets one core fewer: with torch on every core, the
    server's event loop and the run's hand-offs preempt the model's threads mid-operation (docs/space.md measured
    both ways)."""
    if not has_gpu and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, torch.get_num_threads() - 1))


#: How often a thread that holds the interpreter hands it over (Python's default: 5 ms). The model calls need it
#: back between their operations, hundreds per call: while a handler thread runs Python beside them, every call
#: waits up to the interval at each operation. ``python -m repaint.space.crowd_bench`` measures a call with a busy
#: thread beside it at the default and at this interval (docs/benchmarks.md).
SWITCH_INTERVAL_S = 0.0002


#: Allocations from this size up get pages of their own, handed back to the system when freed (glibc's M_MMAP_THRESHOLD)
MMAP_THRESHOLD = 4 * 2**20


def hand_freed_memory_back() -> bool:
    """Large allocations (from MMAP_THRESHOLD up) get pages of their own, handed back to the system when freed.
    glibc raises this threshold to each large block freed (up to 32 MB), so that the 16 MB blocks Pillow decodes an
    image in, and numpy's arrays below 32 MB, land in the heap of whichever thread made them, which keeps them long
    after the session that sent a large photo has left (``python -m repaint.space.hostile`` measures what four such
    sessions leave behind, docs/benchmarks.md). False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD (a value fixes it: no more raising)

"""Serving the Space, gradio-free: the model cache with per-call timing, estimates and the ZeroGPU slot length, the
checks every request runs, the worker thread with its cancellation, and the result files.

Errors meant for the visitor are :class:`ServeError` (a ValueError); the app shows their message.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import models
from .bench import call_time
from .images import from_tensor
from .schedule import count_model_calls

__all__ = ["ServeError", "Service", "fmt_seconds", "is_hub_id", "new_results_dir", "save_results", "sweep_results"]

log = logging.getLogger(__name__)

HUB_MODELS_MAX = 2  # Hub models (not in the registry) kept loaded at once; the oldest is dropped first
HUB_RESOLUTION_MAX = 512  # larger Hub models are refused (time and memory)
# owner/name as the Hub spells it: letters, digits, '-', '_', '.'; no '..' or '--', no leading/trailing '.'/'-'
HUB_ID_RE = re.compile(r"(?!.*(\.\.|--))([A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)/"
                       r"([A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)")
GPU_CAP_S = 300  # longest GPU slot a request may ask for
GPU_MARGIN_S = 15  # added to the estimate (start-up, transfers, image encoding)
TIMING_CALLS = 3  # forward calls timed once per model at load
GPU_BATCH_COST = 0.5  # extra cost of each further batch row on a GPU, relative to one row (CPU: 1.0)
# Per-call guess on ZeroGPU, where the main process has no GPU to time: the model's TFLOP per call (the registry)
# over an assumed effective throughput at batch 1, at least a floor for launch overheads. An assumption, not a
# measurement (no GPU was lent to this project): ADM-256 (2.24 TFLOP) gets 0.09 s, so the paper's 2,410 calls ask
# for 232 s; each run's own timing replaces the guess (Service.note_run).
ZEROGPU_TFLOPS = 25.0
ZEROGPU_MIN_CALL_S = 0.01
ZEROGPU_CALL_S = {256: 0.09, 32: ZEROGPU_MIN_CALL_S}  # by resolution, for Hub models the registry does not know
ANIMATION_FRAMES = 48  # frames of the process GIF (and streamed previews)
WORKER_JOIN_S = 1.0  # how long closing a run waits for its worker thread (it stops at its next model call)
# Result files go here, one folder per run, deleted as soon as the server has copied them; folders left by a crash
# are swept after RESULTS_MAX_AGE_S.
RESULTS_DIR = Path(tempfile.gettempdir()) / "repaint_results"
RESULTS_MAX_AGE_S = 3600


def model_choices(has_gpu: bool) -> list[tuple[str, str]]:
    """(label, name) for a chooser: name · resolution · what it is for · CPU/GPU; GPU-only models only with a GPU."""
    return [(f"{m.name} · {m.resolution}px · {m.description.split(';')[0].split(',')[0].split(' (')[0]} · "
             f"{'GPU' if m.gpu_only else 'CPU'}", m.name) for m in models.MODELS.values() if has_gpu or not m.gpu_only]


def zerogpu_guess(name: str, resolution: int = 256) -> float:
    """Seconds per call at batch 1 on ZeroGPU before any run was timed: registry TFLOP / ZEROGPU_TFLOPS, the model's
    classifier's forward and input gradient included for a model guided by default (imagenet)."""
    info = models.MODELS.get(name)
    if info is not None and info.tflop is not None:
        tflop = info.tflop + (models.CLASSIFIERS[info.classifier].tflop if info.classifier else 0.0)
        return max(ZEROGPU_MIN_CALL_S, tflop / ZEROGPU_TFLOPS)
    return ZEROGPU_CALL_S.get(resolution, ZEROGPU_CALL_S[256])


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


def model_calls(steps, jump_length, jump_n_sample) -> int:
    return count_model_calls(int(steps), int(jump_length), int(jump_n_sample))


class Service:
    """The models of one server (each loaded once and timed), and its runs in flight: their Stop flags and workers.

    ``on_zerogpu``: the model runs in a ZeroGPU process, so the per-call time is a guess refined after each run.
    """

    def __init__(self, *, has_gpu: bool = False, on_zerogpu: bool = False, allow_hub_ids: bool = False):
        self.has_gpu, self.on_zerogpu, self.allow_hub_ids = has_gpu or on_zerogpu, on_zerogpu, allow_hub_ids
        self.models: dict[str, models.Inpainter] = {}
        self.call_s: dict[str, float] = {}  # measured seconds per forward call (batch of one)
        self.stop_flags: dict[str, threading.Event] = {}  # session -> its Stop flag, while its run runs
        self.workers: set[threading.Thread] = set()  # this service's worker threads still running
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- models
    def check_model_name(self, name) -> str:
        """``name`` if it may be loaded: a registry name, or (only with ``allow_hub_ids``) a Hub id."""
        if isinstance(name, str) and (name in models.MODELS or (self.allow_hub_ids and is_hub_id(name))):
            return name
        extra = " or a Hugging Face Hub id owner/name" if self.allow_hub_ids else ""
        raise ServeError(f"unknown model {repr(name)[:80]}: choose one of {', '.join(models.MODELS)}{extra}")

    def model_resolution(self, name: str) -> int:
        """The model's image size (a Hub model is loaded to learn it)."""
        name = self.check_model_name(name)
        return models.MODELS[name].resolution if name in models.MODELS else self.get_model(name).resolution

    def time_calls(self, inp: models.Inpainter) -> float:
        """Seconds per forward call of a batch of one: the median of a few calls after one warm-up call."""
        if self.on_zerogpu:  # no GPU in the main process: a guess, refined after each run
            return zerogpu_guess(inp.name, inp.resolution)
        return call_time(inp, 1, repeats=TIMING_CALLS, warmup=1)

    def num_classes(self, name: str) -> int:
        """Classes of a class-conditional model (0: unconditional), from the registry when it knows the model."""
        name = self.check_model_name(name)
        return models.MODELS[name].num_classes if name in models.MODELS else self.get_model(name).num_classes

    def get_model(self, name: str) -> models.Inpainter:
        """The loaded model ``name`` (loaded once); a failed load is a ServeError naming it."""
        self.check_model_name(name)
        if name in self.models:
            return self.models[name]
        with self._lock:
            if name not in self.models:
                inp, per_call = self._load(name)
                hub = [n for n in self.models if n not in models.MODELS]
                if name not in models.MODELS and len(hub) >= HUB_MODELS_MAX:
                    for old in hub[: len(hub) - HUB_MODELS_MAX + 1]:  # oldest first (dicts keep insertion order)
                        self.models.pop(old, None)
                        self.call_s.pop(old, None)
                self.call_s[name], self.models[name] = per_call, inp
                log.info("loaded %s (%.4f s per call)", name, per_call)
            return self.models[name]

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

    def pick_default(self, wanted: str, gpu_model: str, offline_model: str, env_name: str) -> tuple[str, str]:
        """(default model, notice for the page or ''): ``wanted`` (from ``env_name``) if it loads, else the GPU or
        the offline model; the offline one when the first choice cannot be loaded."""
        notice = ""
        if wanted and wanted not in models.MODELS and not (self.allow_hub_ids and is_hub_id(wanted)):
            notice, wanted = f"{env_name}={wanted!r} is not a known model; ", ""
        first = wanted or (gpu_model if self.has_gpu else offline_model)
        try:
            self.get_model(first)
            if notice:
                notice += f"using {first!r}."
            elif first == offline_model and not wanted:
                notice = f"No GPU here: the default is the fast offline **{offline_model}** model."
            return first, notice
        except ServeError as e:
            reason = str(e)
        if first == offline_model:
            return offline_model, f"The {offline_model} model could not be loaded: {reason}"
        notice = (f"Model {first!r} could not be loaded (the Hugging Face Hub could not be reached?): {reason} "
                  f"Using the offline **{offline_model}** model instead.")
        try:
            self.get_model(offline_model)
        except ServeError as e:
            notice += f" It failed too: {e}"
        return offline_model, notice

    # ------------------------------------------------------------------------------------------- estimates
    def call_seconds(self, name: str, rows: int) -> float | None:
        """Estimated seconds per batched model call of ``rows`` rows, from the time measured at load."""
        one = self.call_s.get(name)
        if one is None:
            return None
        inp = self.models.get(name)
        on_gpu = self.on_zerogpu or (inp is not None and inp.device.type == "cuda")
        return one * (1 + (GPU_BATCH_COST if on_gpu else 1.0) * (rows - 1))

    def estimate_seconds(self, name, steps, jump_length, jump_n_sample, num_samples, compare) -> float | None:
        per = self.call_seconds(name, batch_rows(num_samples, compare))
        return None if per is None else per * model_calls(steps, jump_length, jump_n_sample)

    def note_run(self, name: str, per_call: float, rows: int) -> None:
        """After a run on ZeroGPU: the per-call time (batch of one) refreshed from what the run measured."""
        if self.on_zerogpu:
            self.call_s[name] = per_call / (1 + GPU_BATCH_COST * (rows - 1))

    def gpu_duration(self, name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare, invert,
                     full_size, stop_key=None, class_label=None) -> int:
        """ZeroGPU slot length for a :meth:`run` (called with its arguments): its model calls times the measured
        per-call time, plus a margin, capped at GPU_CAP_S (requests that cannot fit are refused before)."""
        est = self.estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare)
        if est is None:
            est = model_calls(steps, jump_length, jump_n_sample) * zerogpu_guess(name)  # not loaded yet
        return int(min(GPU_CAP_S, math.ceil(est + GPU_MARGIN_S)))

    def check_fits(self, name, steps, jump_length, jump_n_sample, num_samples, compare) -> None:
        if not self.has_gpu:
            return  # a CPU has no slot to fit; the estimate is shown instead
        est = self.estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare) or 0.0
        if est + GPU_MARGIN_S > GPU_CAP_S:
            raise ServeError(
                f"This run needs about {fmt_seconds(est)} of GPU time, more than the {GPU_CAP_S} s allowed per "
                f"request. Use fewer steps T, a smaller resample count r, a longer jump length j, fewer samples, "
                f"or turn off the comparison.")

    def estimate_text(self, name, steps, jump_length, jump_n_sample, num_samples, compare) -> str:
        try:
            calls = model_calls(steps, jump_length, jump_n_sample)
        except (ValueError, TypeError) as e:
            return f"Settings not valid: {e}"
        text = f"**{calls:,} model calls** (batch of {batch_rows(num_samples, compare)})"
        est = self.estimate_seconds(name, steps, jump_length, jump_n_sample, num_samples, compare)
        if est is None:
            return text + " - time unknown until the model is loaded."
        where = "ZeroGPU (guess)" if self.on_zerogpu else str(self.models[name].device)
        text += f" - about **{fmt_seconds(est)}** on {where} ({self.call_s[name] * 1000:.1f} ms per call measured)."
        if self.has_gpu and est + GPU_MARGIN_S > GPU_CAP_S:
            text += f" Too long for the {GPU_CAP_S} s limit: reduce T, r or the samples."
        return text

    # ------------------------------------------------------------------------------------------- requests
    def check_request(self, name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare,
                      invert=False, full_size=False, samples_max=None, class_label=None):
        """The checks every request runs before a GPU is asked for: settings, the class label, the mask as the model
        sees it, the time limit. Returns (model, (image, mask) at the result's size, (image, mask) at the model's)."""
        inp = self.get_model(name)
        try:
            inp.check_settings(steps, jump_length, jump_n_sample, seed, num_samples)
            inp.class_labels([seed], class_label)
            if samples_max is not None and num_samples > samples_max:
                raise ValueError(f"num_samples must be at most {samples_max} here, got {num_samples}")
            if full_size:
                big, big_mask, _, rgb, m = inp.prepare_window(image, mask, invert=invert, seed=seed)
            else:
                rgb, m = inp.prepare(image, mask, invert=invert, seed=seed)
                big, big_mask = rgb, m
        except ServeError:
            raise
        except ValueError as e:
            raise ServeError(str(e)) from None
        if not m.any():
            where = "" if full_size else " inside the centred square the model sees"
            raise ServeError(f"Empty mask: nothing to fill{where}. Paint the region to fill (white or opaque), or "
                             f"pick a preset.")
        self.check_fits(name, steps, jump_length, jump_n_sample, num_samples, compare)
        return inp, (big, big_mask), (rgb, m)

    # ------------------------------------------------------------------------------------------- running
    def stop(self, key) -> None:
        if key in self.stop_flags:
            self.stop_flags[key].set()

    def run(self, name, image, mask, steps, jump_length, jump_n_sample, seed, num_samples, compare, invert,
            full_size, stop_key=None, class_label=None):
        """Runs the sampler in a worker thread; yields ("tick", tick, total, levels, x_t, x0) every few ticks (uint8
        arrays, else None) and at the end ("done", results, plains, seconds per call). Only picklable values are
        yielded (ZeroGPU runs this in another process). Closing the generator stops the worker at its next call."""
        inp = self.get_model(name)
        total = inp.model_calls(steps, jump_length, jump_n_sample)
        every = max(1, math.ceil(total / ANIMATION_FRAMES))
        events: queue.Queue = queue.Queue()
        stop = self.stop_flags.get(stop_key) if stop_key else None
        closed = threading.Event()

        def callback(tick, levels, x, x0):
            if closed.is_set() or (stop is not None and stop.is_set()):
                raise InterruptedError("stopped")
            pic = tick % every == 0 or tick == total - 1
            events.put(("tick", tick, total, levels, from_tensor(x) if pic else None,
                        from_tensor(x0) if pic else None))

        def work():
            try:
                fn = inp.compare if compare else inp.inpaint
                out = fn(image, mask, steps=steps, jump_length=jump_length, jump_n_sample=jump_n_sample, seed=seed,
                         num_samples=num_samples, callback=callback, invert=invert, full_size=full_size,
                         class_label=class_label)
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
                elif ev[0] == "error":
                    if isinstance(ev[1], ValueError) and not isinstance(ev[1], ServeError):
                        raise ServeError(str(ev[1])) from None
                    raise ev[1]
                else:
                    res, plain = ev[1] if compare else (ev[1], [])
                    yield ("done", [np.asarray(i) for i in res], [np.asarray(i) for i in plain],
                           (time.perf_counter() - start) / max(total, 1))
                    return
        finally:
            # Closed early (Stop, cancel, client gone): the callback raises at the next model call, ending the
            # worker. The server closes generators on its event loop, so this waits only briefly.
            closed.set()
            worker.join(timeout=WORKER_JOIN_S)

    def running(self) -> list[threading.Thread]:
        """This service's worker threads still alive."""
        return [t for t in list(self.workers) if t.is_alive()]


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
            Image.fromarray(a).save(path)
            saved.append((str(path), f"n={n}, seed {seed + i}"))
    return saved

"""The models a server holds: which it offers, each loaded once (and timed), ZeroGPU's preload before launch."""

from __future__ import annotations

import html
import logging
import os
import threading

from .. import loading
from ..crowd import sized_rows
from ..loading import ModelLoadError
from ..pipeline import Inpainter
from ..registry import MODELS
from . import aot
from .errors import ServeError, echo
from .hub_ids import HubDownloads
from .limits import Limits
from .offer import is_hub_id
from .timing import Timing

log = logging.getLogger(__name__)

AOT_ENV = "REPAINT_AOT"  # "1": on ZeroGPU, preload compiles each offered UNet ahead of time (aot.compile_unet)


class ModelCache:
    """The models of one server, each loaded once and timed (:class:`Timing`). ``offered``: the registry names
    served (None: all); ``allow_hub_ids``: any Hub id ``owner/name`` too (never on ZeroGPU, where a model can only
    be placed on the GPU in the main thread before launch), loaded within ``limits`` (:mod:`.hub_ids`), at most
    ``limits.hub_models_max`` of them held at once, the least recently used dropped first."""

    def __init__(
        self,
        timing: Timing,
        *,
        on_zerogpu: bool = False,
        allow_hub_ids: bool = False,
        offered=None,
        limits: Limits | None = None,
    ):
        self.timing, self.on_zerogpu, self.limits = timing, on_zerogpu, limits or Limits()
        self.allow_hub_ids = allow_hub_ids and not on_zerogpu
        self.hub_ids = HubDownloads(self.limits)
        self._offered = None if offered is None else list(offered)  # None: every registry model
        self.models: dict[str, Inpainter] = {}
        self.failed: dict[str, str] = {}  # offered models that failed to load at start (preload): why
        # off ZeroGPU, the rows per call of each loaded model's crowd that its memory allows (at most crowd_rows)
        self.crowd_rows: dict[str, int] = {}
        self._lock = threading.Lock()  # guards self.models and self._load_locks, held only briefly
        self._load_locks: dict[str, threading.Lock] = {}  # one per model: a slow load blocks only that model

    @property
    def offered(self) -> list[str]:
        """The registry names this server serves."""
        return list(MODELS) if self._offered is None else self._offered

    def may_load(self, name) -> bool:
        """Whether ``name`` may be loaded: an offered registry name, or (only with ``allow_hub_ids``) a Hub id."""
        return isinstance(name, str) and (name in self.offered or (self.allow_hub_ids and is_hub_id(name)))

    def check_model_name(self, name) -> str:
        """``name`` if it :meth:`may_load`, else a ServeError naming the choices."""
        if self.may_load(name):
            return name
        extra = " or a Hugging Face Hub id owner/name" if self.allow_hub_ids else ""
        raise ServeError(f"unknown model {echo(name)}: choose one of {', '.join(self.offered)}{extra}")

    def model_resolution(self, name: str) -> int:
        """The model's image size (a Hub model is loaded to learn it)."""
        name = self.check_model_name(name)
        return MODELS[name].resolution if name in MODELS else self.get_model(name).resolution

    def num_classes(self, name: str) -> int:
        """Classes of a class-conditional model (0: unconditional), from the registry when it knows the model."""
        name = self.check_model_name(name)
        return MODELS[name].num_classes if name in MODELS else self.get_model(name).num_classes

    def has_classifier(self, name: str) -> bool:
        """Whether the model is guided by a classifier (the registry's word, else the loaded model's)."""
        name = self.check_model_name(name)
        return MODELS[name].classifier is not None if name in MODELS else self.get_model(name).classifier is not None

    def get_model(self, name: str) -> Inpainter:
        """The loaded model ``name`` (loaded once); a failed load is a ServeError naming it. On ZeroGPU only the
        models :meth:`preload` placed: a load there would run in a handler thread (or a GPU slot), where ZeroGPU's
        CUDA emulation refuses ``.to("cuda")``."""
        self.check_model_name(name)
        if (inp := self.models.get(name)) is not None:
            if name not in MODELS:
                self._used(name)
            return inp
        if self.on_zerogpu and threading.current_thread() is not threading.main_thread():
            raise ServeError(f"Model {echo(name)} is not loaded on this Space.")
        with self._lock:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:  # a download of one model (minutes) never holds up the others
            if (inp := self.models.get(name)) is not None:
                return inp
            inp = self._load(name)
            with self._lock:
                hub = [n for n in self.models if n not in MODELS]  # least recently used first (_used)
                if name not in MODELS and len(hub) >= self.limits.hub_models_max:
                    for old in hub[: len(hub) - self.limits.hub_models_max + 1]:
                        self.models.pop(old, None)
                        self.crowd_rows.pop(old, None)
                        self.timing.forget(old)
                self.models[name] = inp
            return inp

    def _used(self, name: str) -> None:
        """``name`` (a Hub id) to the end of :attr:`models`, so that the Hub models are in the order they were last
        used; its download is used too."""
        with self._lock:
            if (inp := self.models.pop(name, None)) is not None:
                self.models[name] = inp
        self.hub_ids.used(name)

    def _load(self, name: str) -> Inpainter:
        """A registry name through repaint.load, then timed, and off ZeroGPU its crowd's rows per call sized from its
        memory per row (:func:`repaint.crowd.sized_rows`: two calls); a Hub id is only ever downloaded (never read
        as a local folder), within the limits (:mod:`.hub_ids`)."""
        try:
            inp = loading.load(name) if name in MODELS else self.hub_ids.load(name)
            per_call = self.timing.loaded(inp, name)
            if not self.on_zerogpu:
                self.crowd_rows[name] = sized_rows(inp.eps, inp.probe_inputs, inp.device, self.limits.crowd_rows)
            log.info("loaded %s (%.4f s per call)", name, per_call)
            return inp
        except ModelLoadError as e:
            raise ServeError(
                f"Could not load model {echo(name)}: {html.escape(str(e), quote=False)}. Other models still work."
            ) from None
        except Exception as e:  # noqa: BLE001 - anything else a load can raise must not kill the server
            log.exception("loading %s failed", name)
            raise ServeError(
                f"Could not load model {echo(name)} ({type(e).__name__}). Other models still work."
            ) from None

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

    def usable_model(self, name, warn) -> str:
        """``name`` loaded, or when it cannot be: ``warn(why)`` and the name of the offered model that loaded last
        (the page goes back to it; never to a Hub id, which another visitor may have typed)."""
        try:
            self.get_model(name)
            return name
        except ServeError as e:
            fallback = next((n for n in reversed(self.models) if n in self.offered), None)
            if fallback is None:
                raise
            warn(f"{e} Back to {fallback}.")
            return fallback

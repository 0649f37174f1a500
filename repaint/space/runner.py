"""Running a request: the sampler in a worker thread, its model calls handed on as events, Stop and the slot's end.

:meth:`Runner.run` is the GPU function's body; on ZeroGPU it runs in a worker process, so every event it yields is a
picklable dataclass. Elsewhere the runs of one model share its calls (:class:`repaint.crowd.Crowd`, one per model):
each run's worker thread waits while the crowd's loop makes the calls."""

from __future__ import annotations

import contextlib
import functools
import math
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..crowd import Crowd
from ..images import from_tensor
from ..pipeline import Inpainter
from .cache import ModelCache
from .errors import ServeError, SlotSpent, gpu_error
from .estimate import call_interval
from .requests import Request, run_rows

ANIMATION_FRAMES = 48  # frames of the process GIF (and streamed previews)
# Off ZeroGPU a run hands its consumer a Tick at least this often (and at each preview): each is the server's chance
# to notice a client's cancel, which Gradio answers only once the handler's generator has yielded. Not much less:
# each is also the server's Python work beside the model's thread, which slows its calls (a crowd of eight runs was
# slower with a Tick every 0.25 s than with previews only).
TICK_INTERVAL_S = 1.0
WORKER_JOIN_S = 1.0  # how long closing a run waits for its worker thread (it stops at its next model call)
# A run with a GPU slot (ZeroGPU) stops before a model call that would leave less than this of the slot: the worker's
# start before the run and the results' hand-over after it also count against the slot.
SLOT_RESERVE_S = 5.0


@dataclass(frozen=True)
class Tick:
    """Model calls done, up to ``tick`` of ``total``: each call's levels (one per row) since the last Tick, and every
    few calls the pictures (uint8). A Tick is ``due`` with pictures (and at the last call) and, between them, at the
    first call TICK_INTERVAL_S or more after the last due one: the run's consumer hands those on. Off ZeroGPU only
    due Ticks come, so the consumer does not wake at every call beside the model's thread, yet a cancel is noticed
    within a call or so. On ZeroGPU a Tick comes at every call."""

    tick: int
    total: int
    levels: list[list[int]]
    x_t: np.ndarray | None = None
    x0: np.ndarray | None = None
    others: int = 0  # other runs in the model's crowd at that call (off ZeroGPU)
    due: bool = True


@dataclass(frozen=True)
class Spent:
    """The run stopped short of its slot's end; ``per_call``, what it measured, sizes later slots."""

    per_call: float


@dataclass(frozen=True)
class Done:
    """The run's results (n = r), the n = 1 ones beside them (compare; else empty) and its seconds per call;
    ``shared``: other runs shared its model calls, so that time is not the model's alone."""

    results: list[np.ndarray]
    plain: list[np.ndarray]
    per_call: float
    shared: bool = False


class StopFlag(threading.Event):
    """A run's Stop flag: set by the visitor's Stop, or found set at a look (``is_set``, made before every model
    call) once ``gone`` (a callable, see :meth:`repaint.space.clients.Readers.watching`) gives why the run's client
    is gone."""

    def __init__(self):
        super().__init__()
        self.gone = None

    def is_set(self) -> bool:
        if not super().is_set() and self.gone is not None and self.gone():
            self.set()
        return super().is_set()


class Runner:
    """Runs requests on the cache's models; holds the Stop flags of the runs in flight and their worker threads, and
    off ZeroGPU each model's crowd (the rows per call the cache sized at the model's load)."""

    def __init__(self, cache: ModelCache, *, on_zerogpu: bool = False):
        self.cache, self.on_zerogpu = cache, on_zerogpu
        self.stop_flags: dict[str, StopFlag] = {}  # session -> its Stop flag, while its run runs
        self.workers: set[threading.Thread] = set()  # worker threads still running
        self._crowds: dict[str, tuple[Inpainter, Crowd]] = {}  # model name -> (the model, its crowd)
        self._lock = threading.Lock()

    def crowd(self, name: str, inp: Inpainter) -> Crowd:
        """The crowd of the loaded model ``inp`` (named ``name``): a new one if the model was loaded again, with the
        rows per call the cache sized from the model's memory at load (else ``Limits.crowd_rows``). The empty crowds of
        models the cache let go are dropped (a crowd holds its model)."""
        with self._lock:
            for other, (model, crowd) in list(self._crowds.items()):
                if self.cache.models.get(other) is not model and not len(crowd):
                    del self._crowds[other]
            held = self._crowds.get(name)
            if held is None or held[0] is not inp:
                rows = self.cache.crowd_rows.get(name, self.cache.limits.crowd_rows)
                held = self._crowds[name] = (inp, Crowd(inp.eps, rows, name))
            return held[1]

    def sharing(self, name: str) -> tuple[int, int, int]:
        """(runs, rows of their next calls, rows per call) of the model ``name``'s crowd now."""
        with self._lock:
            held = self._crowds.get(name)
        return (0, 0, 0) if held is None else (len(held[1]), held[1].waiting_rows(), held[1].rows_max)

    def stop(self, key) -> bool:
        """Asks the session ``key``'s run to stop; False when it has none running."""
        flag = self.stop_flags.get(key)
        if flag is not None:
            flag.set()
        return flag is not None

    def stopping(self, key) -> bool:
        """Whether the session ``key``'s run was asked to stop (and is ending)."""
        flag = self.stop_flags.get(key)
        return flag is not None and flag.is_set()

    @contextlib.contextmanager
    def stop_flag(self, key: str):
        """Within the block, a new Stop flag for the session ``key``'s run (replacing an older run's), dropped after."""
        flag = self.stop_flags[key] = StopFlag()
        try:
            yield flag
        finally:
            if self.stop_flags.get(key) is flag:  # not a newer run's flag of the same session
                del self.stop_flags[key]

    def running(self) -> list[threading.Thread]:
        """The worker threads still alive."""
        return [t for t in list(self.workers) if t.is_alive()]

    def run(self, req: Request):
        """The GPU function's body: runs the sampler in a worker thread; yields a :class:`Tick` (on ZeroGPU at every
        model call, elsewhere with each preview and at least every TICK_INTERVAL_S) and a :class:`Done` at the end. A
        run with ``req.slot_s`` stops before a model call that would outlast the slot (SLOT_RESERVE_S kept): it yields a
        :class:`Spent` and raises a ServeError that says how far it got. Closing the generator ends the run at its next
        model call; so does, off ZeroGPU, the Stop flag of ``req.stop_key``. On ZeroGPU the worker thread waits at each
        call until the generator is resumed: spaces' worker looks at its stop event between two yields, so a stop ends
        the run before the next model call. Elsewhere it runs ahead (the server's hand-offs do not hold the model
        up)."""
        inp = self.cache.get_model(req.model)
        # The Stop flag of this process's table, only where this process is the server's. A ZeroGPU worker's table is
        # the copy forked with it, which would keep a Stop set at that moment for every later run of that session:
        # there a Stop comes only through spaces' stop event, which closes this generator (issue 25).
        stop = self.stop_flags.get(req.stop_key) if req.stop_key and not self.on_zerogpu else None
        work = _Work(req, stop, in_step=self.on_zerogpu, crowd=None if self.on_zerogpu else self.crowd(req.model, inp))
        worker = threading.Thread(target=self._work, args=(work, inp), daemon=True, name="repaint-worker")
        self.workers.add(worker)
        worker.start()
        try:
            yield from work.events_until_done()
        finally:
            # Closed early (Stop, cancel, client gone): the worker, waiting at its callback, raises there.
            work.closed.set()
            work.resume.release()
            worker.join(timeout=WORKER_JOIN_S)

    def _work(self, work: _Work, inp) -> None:
        try:
            work.events.put(("result", inp.run(work.req.image, work.req.mask, work.req.settings, **work.options())))
        except BaseException as e:  # noqa: BLE001 - handed to the generator
            work.events.put(("error", e))
        finally:
            self.workers.discard(threading.current_thread())


class _Work:
    """One run's hand-over: its worker thread calls :meth:`callback`, the generator reads
    :meth:`events_until_done`."""

    def __init__(self, req: Request, stop: threading.Event | None, in_step: bool, crowd: Crowd | None = None):
        self.req, self.stop, self.in_step, self.crowd = req, stop, in_step, crowd
        self.crowd_rows = None if crowd is None else crowd.rows  # the rows of the crowd's calls before this run
        self.total = req.settings.calls
        self.every = max(1, math.ceil(self.total / ANIMATION_FRAMES))
        self.events: queue.Queue = queue.Queue()
        self.resume, self.closed = threading.Semaphore(0), threading.Event()
        self.times: list[float] = []  # the times of the model calls so far
        self.levels: list[list[int]] = []  # each call's levels since the last Tick
        self.start = self.ticked = time.perf_counter()

    def options(self) -> dict:
        drive = None if self.crowd is None else functools.partial(self.crowd.drive, stopped=self.stopped)
        return dict(callback=self.callback, invert=self.req.invert, full_size=self.req.full_size, drive=drive)

    def stopped(self) -> bool:
        """The run was closed, or its Stop flag is set (a Stop, or its client gone)."""
        return self.closed.is_set() or (self.stop is not None and self.stop.is_set())

    def callback(self, tick, levels, x, x0) -> None:
        if self.stopped():
            raise InterruptedError("stopped")
        now = time.perf_counter()
        self.times.append(now)
        self.levels.append(levels)
        pic = tick % self.every == 0 or tick == self.total - 1
        due = pic or now - self.ticked >= TICK_INTERVAL_S
        if due or self.in_step:
            calls, self.levels = self.levels, []
            if due:
                self.ticked = now
            x_t, x0 = (from_tensor(x), from_tensor(x0)) if pic else (None, None)
            others = 0 if self.crowd is None else len(self.crowd) - 1  # this run is one of the crowd's till it ends
            self.events.put(Tick(tick, self.total, calls, x_t, x0, others, due))
        if self.in_step:
            self.resume.acquire()  # until the consumer asks for the next event (or closes the run)
            if self.closed.is_set():
                raise InterruptedError("stopped")
        if self.req.slot_s and tick < self.total - 1:  # would the next call, and the hand-over, still fit the slot?
            per_call = self.per_call()
            if time.perf_counter() - self.start + per_call + SLOT_RESERVE_S > self.req.slot_s:
                raise SlotSpent(tick + 1, self.total, per_call, self.req.slot_s)

    def per_call(self) -> float:
        """Seconds per model call so far (at least one call made): :func:`call_interval` of the calls' times, so a
        run's set-up does not count."""
        return call_interval(self.times) if len(self.times) > 1 else self.times[0] - self.start

    def events_until_done(self):
        while True:
            ev = self.events.get()
            if isinstance(ev, Tick):
                yield ev
                if self.in_step:
                    self.resume.release()
            elif ev[0] == "error":
                error = ev[1]
                del ev
                if isinstance(error, InterruptedError) and self.stop is not None and self.stop.is_set():
                    return  # the visitor's Stop: stream() reports it
                if isinstance(error, SlotSpent):
                    yield Spent(error.per_call)  # what it measured, for later slots
                    raise ServeError(str(error))
                raise gpu_error(error)
            else:
                res, *plain = ev[1]
                # with one call or none, the whole run's time over its calls
                average = (time.perf_counter() - self.start) / max(self.total, 1)
                per_call = call_interval(self.times) if len(self.times) > 1 else average
                own = sum(rows * calls for rows, calls in run_rows(self.req.settings).items())
                shared = self.crowd is not None and self.crowd.rows - self.crowd_rows > own
                results = [np.asarray(i) for i in res], [np.asarray(i) for i in (plain[0] if plain else [])]
                yield Done(*results, per_call, shared)
                return

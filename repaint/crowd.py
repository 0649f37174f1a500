"""A crowd on one machine: the chains of many runs share each call of one model (continuous batching).

One loop thread per model. Each model call takes the next rows of the runs in the crowd, each run's rows at their own
timesteps and with their own class labels, up to ``rows_max`` rows, then hands each run its part of the output
(:meth:`repaint.sampler.Chain.take`). So:

- a run joins at the next call after it arrives, and does not wait for another run to end;
- a run leaves when its chain ends, when its callback raises (a Stop), or before any call once ``stopped()`` says so;
- a run's draws come from its own generators, so its result is its run alone's, up to the rounding of a batched
  convolution (a filled pixel may round one level apart).

Fairness: when the runs' rows do not all fit in one call, the run that has waited longest since its last call goes
first (oldest-first; a run's rows are taken whole), so every run gets a call at least once in as many calls as there
are runs.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .memory import free_bytes, peak_bytes
from .sampler import Callback, Chain, Guide, Model

__all__ = ["MEMORY_SHARE", "ROWS_MAX", "Crowd", "rows_for_memory", "sized_rows"]

log = logging.getLogger(__name__)

#: rows per model call at most, by default: on this project's 2-core CPU a call of the bundled model costs, per row,
#: about half of a one-row call's at 8 to 16 rows (docs/benchmarks.md, the crowd's per-row curve), and little less
#: beyond. Fewer when the model's memory per row says so (:func:`sized_rows`).
ROWS_MAX = 16
#: the share of a device's free memory one model call's rows may take (the rest: the runs' own tensors, a guided
#: run's classifier gradient, the allocator's slack, other programs)
MEMORY_SHARE = 0.5


@dataclass(eq=False)
class _Run:
    chain: Chain
    callback: Callback | None
    guide: Guide | None
    stopped: Callable[[], bool] | None
    order: int  # when it joined, then the number of the call it last had
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Crowd:
    """The runs of one model: :meth:`drive` a chain (in the caller's thread, which waits), the model's calls made by
    the crowd's loop thread. ``rows_max``: rows per call (a run larger than that gets a call of its own)."""

    def __init__(self, model: Model, rows_max: int = ROWS_MAX, name: str = "model"):
        if rows_max < 1:
            raise ValueError(f"rows_max must be at least 1, got {rows_max}")
        self.model, self.rows_max, self.name = model, rows_max, name
        self._runs: list[_Run] = []
        self._cond = threading.Condition()
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        #: model calls made, and rows in them (for the benchmark and the tests)
        self.calls, self.rows = 0, 0

    def __len__(self) -> int:
        """Runs in the crowd now."""
        with self._cond:
            return len(self._runs)

    def waiting_rows(self) -> int:
        """The rows the crowd's runs ask of their next call, all together."""
        with self._cond:
            return sum(run.chain.rows() for run in self._runs)

    def drive(
        self,
        chain: Chain,
        callback: Callback | None = None,
        guide: Guide | None = None,
        stopped: Callable[[], bool] | None = None,
    ) -> torch.Tensor:
        """Runs ``chain`` to its end among the crowd's other runs: its x_0. ``callback`` and ``guide`` as
        :func:`repaint.sampler.run_chain` takes them; ``stopped()``, asked before each call the run would be in,
        ends it with an InterruptedError. The callback's exception, or the model's, is raised here."""
        if chain.done:
            return chain.x
        run = _Run(chain, callback, guide, stopped, next(self._counter))
        with self._cond:
            self._runs.append(run)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name=f"crowd-{self.name}")
                self._thread.start()
            self._cond.notify_all()
        run.done.wait()
        if run.error is not None:
            raise run.error
        return chain.x

    # ------------------------------------------------------------------------------------------- the loop
    def _loop(self) -> None:
        """Model calls while the crowd has runs; the thread ends when it has none (:meth:`drive` starts another)."""
        while True:
            with self._cond:
                if not self._runs:
                    self._thread = None
                    return
            picked = self._pick()
            if picked:
                with torch.inference_mode():
                    self._call(picked)

    def _pick(self) -> list[_Run]:
        """The runs of the next call: those whose ``stopped()`` is set leave; then oldest-first while rows fit."""
        with self._cond:
            for run in [r for r in self._runs if r.stopped is not None and _asked(r.stopped)]:
                self._leave(run, InterruptedError("stopped"))
            picked, rows = [], 0
            for run in sorted(self._runs, key=lambda r: r.order):
                n = run.chain.rows()
                if not picked or rows + n <= self.rows_max:
                    picked.append(run)
                    rows += n
            return picked

    def _call(self, picked: list[_Run]) -> None:
        """One model call for the ``picked`` runs' rows, each run's step from its part of the output."""
        inputs = []
        for run in list(picked):
            try:
                inputs.append(run.chain.next_input())
            except BaseException as e:  # noqa: BLE001 - the run's own failure ends that run only
                self._end(run, e)
                picked.remove(run)
        if not picked:
            return
        x = torch.cat([xa for xa, _, _ in inputs])
        t = torch.cat([ts for _, ts, _ in inputs])
        labels = None if inputs[0][2] is None else torch.cat([lb for _, _, lb in inputs])
        try:
            out = _forward(self.model, x, t, labels)
        except BaseException as e:  # noqa: BLE001 - the model's failure (out of memory) ends the runs in the call
            for run in picked:
                self._end(run, e)
            return
        self.calls, self.rows = self.calls + 1, self.rows + len(x)
        number = next(self._counter)
        for run, (xa, ts, lb), part in zip(picked, inputs, out.split([len(xa) for xa, _, _ in inputs])):
            try:
                run.chain.take(part, None if run.guide is None else run.guide(xa, ts, lb))
                if run.callback is not None:
                    run.callback(run.chain.tick - 1, list(run.chain.levels), run.chain.x, run.chain.x0_pred)
            except BaseException as e:  # noqa: BLE001 - a Stop (the callback raised) or a failure: that run leaves
                self._end(run, e)
                continue
            run.order = number
            if run.chain.done:
                self._end(run, None)

    def _end(self, run: _Run, error: BaseException | None) -> None:
        with self._cond:
            self._leave(run, error)

    def _leave(self, run: _Run, error: BaseException | None) -> None:
        if run in self._runs:
            self._runs.remove(run)
        run.error = error
        run.done.set()


def _forward(model: Model, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """One model call: labels only for a class-conditional model's rows."""
    return model(x, t) if labels is None else model(x, t, labels)


def _asked(stopped: Callable[[], bool]) -> bool:
    try:
        return bool(stopped())
    except Exception:  # noqa: BLE001 - a broken check stops its run rather than the crowd
        log.exception("a run's stopped() failed")
        return True


# ----------------------------------------------------------------------------------------------- rows per call
def rows_for_memory(
    fixed: int, per_row: int, free: int | None, cap: int = ROWS_MAX, share: float = MEMORY_SHARE
) -> int:
    """The most rows, from 1 to ``cap``, of a call that takes ``fixed`` + rows x ``per_row`` bytes within ``share``
    of ``free`` bytes; ``cap`` when the free memory is not known."""
    if free is None:
        return cap
    return int(max(1, min(cap, (free * share - fixed) // max(per_row, 1))))


def sized_rows(model: Model, inputs: Callable[[int], tuple], device: torch.device, cap: int = ROWS_MAX) -> int:
    """Rows per call of ``model`` on ``device`` (:func:`rows_for_memory`); ``inputs(rows)``: the (x, t, labels) of a
    call of that many rows. Its peak memory at two rows, then at one (a CPU's allocator may keep what the first
    freed, which makes the second's read lower and the cost per row higher, never lower), gives the cost per row
    and the rest."""
    with torch.inference_mode():
        two = peak_bytes(lambda: _forward(model, *inputs(2)), device)
        one = peak_bytes(lambda: _forward(model, *inputs(1)), device)
    if two is None or one is None:
        return cap
    per_row = max(two - one, 1)
    return rows_for_memory(max(one - per_row, 0), per_row, free_bytes(device), cap)

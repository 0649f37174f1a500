"""What a model call costs on this server: timed when a model loads, refined by every run, and the estimates built
from it (seconds of model calls, and a visitor's whole wait)."""

from __future__ import annotations

import math

import numpy as np

from ..bench import call_time, call_times
from ..pipeline import Inpainter
from ..settings import Settings
from .estimate import (
    BATCH_ROWS_TIMED,
    CHEAP_CALL_S,
    EXTRA_PIXELS_MAX,
    EXTRA_S,
    GPU_BATCH_COST,
    PAGE_S,
    PRIOR_CALLS,
    RUN_CALLS_MAX,
    TIMING_BUDGET_S,
    TIMING_CALLS,
    batch_cost,
)
from .requests import run_rows
from .zerogpu import zerogpu_guess


class Timing:
    """Per model: seconds per call at load (timed, or on ZeroGPU a guess), a batch's relative cost, what runs
    measured at each row count, and a page run's seconds outside its model calls."""

    def __init__(self, *, on_zerogpu: bool = False):
        self.on_zerogpu = on_zerogpu
        self.call_s: dict[str, float] = {}  # seconds per forward call (batch of one) at load: timed, or a guess
        self.timed_costs: dict[str, dict[int, float]] = {}  # a batch's cost relative to one row, timed at load
        self.run_s: dict[str, dict[int, tuple[float, float]]] = {}  # rows: (seconds per call, weight), from runs
        self.extra_s: dict[str, float] = {}  # the last page run's seconds outside its model calls
        self.on_gpu: dict[str, bool] = {}  # whether the model runs on a GPU (a batch row costs less there)

    def time_calls(self, inp: Inpainter) -> tuple[float, dict[int, float]]:
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

    def loaded(self, inp: Inpainter, name: str) -> float:
        """Times the model ``name`` just loaded (:meth:`time_calls`); returns its seconds per call."""
        per_call, costs = self.time_calls(inp)
        self.call_s[name], self.timed_costs[name] = per_call, costs
        self.on_gpu[name] = self.on_zerogpu or inp.device.type == "cuda"
        return per_call

    def forget(self, name: str) -> None:
        """Drops what is known of a model the cache let go."""
        for table in (self.call_s, self.timed_costs, self.run_s, self.extra_s, self.on_gpu):
            table.pop(name, None)

    def rows_cost(self, name: str, rows: int) -> float:
        """A model call of ``rows`` rows relative to one row: timed at load (:meth:`time_calls`), else assumed."""
        on_gpu = self.on_gpu.get(name, self.on_zerogpu)
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

    def estimate_seconds(self, name: str, settings: Settings, sharing: tuple[int, int] | None = None) -> float | None:
        """Seconds of model calls (what a ZeroGPU slot is sized by); :meth:`wait_seconds` is the visitor's wait.
        ``sharing``: (other runs' rows, rows per call at most) of the model's crowd, who share each call as they
        are now until this run ends: each call has their rows too, and past the rows per call the runs take
        turns."""
        if self.call_s.get(name) is None:
            return None
        others, rows_max = sharing or (0, 0)
        total = 0.0
        for rows, calls in run_rows(settings).items():
            together = rows + others
            turns = math.ceil(together / rows_max) if others else 1
            total += calls * turns * self.call_seconds(name, min(together, rows_max) if others else rows)
        return total

    def wait_seconds(self, name: str, settings: Settings, sharing: tuple[int, int] | None = None) -> float | None:
        """The page's whole wait, from the click to the results shown: the model calls (``sharing``: as
        :meth:`estimate_seconds` takes it), the page run's own work (the last run's, EXTRA_S before one) and the
        browser's PAGE_S."""
        est = self.estimate_seconds(name, settings, sharing)
        return None if est is None else est + self.extra_s.get(name, EXTRA_S) + PAGE_S

    def note_run(self, name: str, settings: Settings, per_call: float) -> None:
        """After a run: what it measured (``per_call``: its seconds per model call) taken into the per-call time of
        each row count it used (a comparison's two in proportion to the estimate), weighted by its calls against
        what was known (PRIOR_CALLS for the start-up timing; a ZeroGPU guess weighs nothing), each at most
        RUN_CALLS_MAX: estimates follow the machine's load now, not at start-up, and a short run moves them less
        than a long one."""
        est = self.estimate_seconds(name, settings)
        if est is None:
            return
        plan = run_rows(settings)
        before = {rows: self.call_seconds(name, rows) for rows in plan}
        off = per_call * settings.calls / est
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
